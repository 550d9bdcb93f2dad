"""lmer_many: each response's fit is lmer's on that response alone.

lmer's own θ is only as precise as its stopping rule (L-BFGS-B, then Newton steps kept only where f
visibly falls): up to some 1e-7 from the optimum.  So each batched fit is checked three ways: its
objective equals lmer's (to rounding, never above it), its θ is the optimum to 1e-8 or better (Newton
steps on the analytic gradient of lmer's own deviance function move it by less), and its β̂, standard
errors and σ̂ are lmer's at that θ (``result[i]``, built by ``lmer``'s final stage, to 1e-9).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import skmixed
from skmixed.exceptions import DataError, FormulaError, OptionError
from skmixed.many_pls import BatchedDesign, BatchedResponses

N_RESPONSES = 50
#: singular fits among the simulated responses are expected; lmer_many's summary of them is tested below
pytestmark = pytest.mark.filterwarnings("ignore::skmixed.SingularFitWarning")


def _data(n=200, n_donors=20, n_batches=6, m=N_RESPONSES, seed=7):
    rng = np.random.default_rng(seed)
    donor, batch = rng.integers(0, n_donors, n), rng.integers(0, n_batches, n)
    x, x2 = rng.normal(size=n), rng.normal(size=n)
    sd_d, sd_b, sd_s = rng.uniform(0, 1.5, m), rng.uniform(0, 1, m), rng.uniform(0, 0.5, m)
    Y = (
        3.0
        + 0.4 * x[:, None]
        + (rng.normal(size=(n_donors, m)) * sd_d)[donor]
        + (rng.normal(size=(n_donors, m)) * sd_s)[donor] * x2[:, None]
        + (rng.normal(size=(n_batches, m)) * sd_b)[batch]
        + rng.normal(size=(n, m))
    )
    samples = pd.DataFrame(
        {
            "x": x,
            "x2": x2,
            "w": rng.uniform(0.5, 2.0, n),
            "donor": pd.Categorical([f"d{i}" for i in donor]),
            "batch": pd.Categorical([f"b{i}" for i in batch]),
        }
    )
    return samples, pd.DataFrame(Y, columns=[f"gene{j}" for j in range(m)])


SAMPLES, GENES = _data()
DATA = pd.concat([SAMPLES, GENES], axis=1)


def _refined(devfun, theta, lower, steps=4):
    """Newton steps on the analytic gradient of lmer's deviance function (its Hessian from differences of it)."""
    x = np.array(theta, dtype=float)
    for _ in range(steps):
        _, g = devfun.value_and_gradient(x)
        k, h = len(x), 1e-6
        H = np.column_stack(
            [
                (devfun.value_and_gradient(x + h * e)[1] - devfun.value_and_gradient(x - h * e)[1]) / (2 * h)
                for e in np.eye(k)
            ]
        )
        free = ~(np.isfinite(lower) & (x - lower < 1e-6))
        if not free.any():
            break
        step = np.zeros(k)
        step[free] = np.linalg.solve(H[np.ix_(free, free)], g[free])
        x = np.maximum(x - step, lower)
    return x


#: per shape: the responses compared (fewer where lmer's fits take longer),
#: how close θ̂ is to the optimum, and how close lmer's θ̂ is (a vector term's slope variance near 0 is a flat
#: direction, where lmer's stopping rule leaves θ furthest from the optimum; the objectives agree to rounding)
SHAPES = [
    ("~ x + (1 | donor) + (1 | batch)", True, None, N_RESPONSES, 1e-8, 5e-7),
    ("~ x + (1 | donor)", True, None, 20, 1e-8, 5e-7),
    ("~ x + (1 | donor) + (1 | batch)", False, None, 20, 1e-8, 5e-7),
    ("~ x + (1 | donor) + (1 | batch)", True, "w", 20, 1e-8, 5e-7),
    ("~ x + (1 + x2 | donor)", True, None, 8, 3e-8, 3e-5),
    ("~ x + (1 + x2 | donor) + (1 | batch)", False, None, 8, 3e-8, 3e-5),
]


@pytest.mark.parametrize(("rhs", "REML", "weights", "m", "theta_tol", "lmer_tol"), SHAPES)
def test_each_response_is_lmers_fit(rhs, REML, weights, m, theta_tol, lmer_tol):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        many = skmixed.lmer_many(rhs, DATA, list(GENES.columns[:m]), REML=REML, weights=weights)
        assert many.table["converged"].all()
        for i, gene in enumerate(GENES.columns[:m]):
            single = skmixed.lmer(f"{gene} {rhs}", DATA, REML=REML, weights=weights)
            objective = many.table.loc[gene, "objective"]
            assert objective == pytest.approx(single.objective, rel=1e-12, abs=0)
            assert objective <= single.objective + 1e-10
            np.testing.assert_allclose(many.theta.loc[gene], single.theta, rtol=0, atol=lmer_tol)
            fit = many[i]
            lower = fit.re.theta_lower
            refined = _refined(fit.devfun, fit.theta, lower)
            np.testing.assert_allclose(fit.theta, refined, rtol=0, atol=theta_tol)
            np.testing.assert_allclose(many.fixef.loc[gene], fit.fixef, rtol=1e-9)
            np.testing.assert_allclose(many.fixef_se.loc[gene], fit.fixef_se, rtol=1e-9)
            assert many.table.loc[gene, "sigma"] == pytest.approx(fit.sigma, rel=1e-9)
            assert objective == pytest.approx(fit.objective, rel=1e-12)
            np.testing.assert_allclose(many.fixef.loc[gene], single.fixef, rtol=2e-6)
            np.testing.assert_allclose(many.fixef_se.loc[gene], single.fixef_se, rtol=2e-6)


def test_batched_deviance_is_lmers_at_any_theta():
    """The reduced factor's deviance equals lmer's deviance function's (standardized problem) at random θ."""
    rng = np.random.default_rng(1)
    for rhs in ["~ x + (1 | donor) + (1 | batch)", "~ x + (1 + x2 | donor)", "~ x + (1 | donor) + (1 + x2 | batch)"]:
        for REML in (True, False):
            models = [skmixed.build(f"{g} {rhs}", DATA, REML=REML) for g in GENES.columns[:5]]
            Zty, Xty = (np.column_stack([getattr(m.cp, a) for m in models]) for a in ("Zty", "Xty"))
            batched = BatchedResponses(BatchedDesign(models[0]), Zty, Xty, np.array([m.cp.yty for m in models]))
            lower = models[0].re.theta_lower
            theta = rng.uniform(0.05, 2.0, (5, len(lower))) * np.where(lower == 0, 1.0, 0.4)
            expected = [skmixed.deviance(m).standardized(t) for m, t in zip(models, theta)]
            np.testing.assert_allclose(batched.deviance(theta, np.arange(5)), expected, rtol=1e-13)


def test_numbers_do_not_depend_on_location_and_units():
    """Issue 10's guarantee, per response: 1e4 + 1e-2·y (whose values keep all but 1e-10 of y's precision) has
    θ̂ unchanged to the optimizer's precision and β̂, σ̂ mapped."""
    rhs = "~ x + (1 | donor) + (1 | batch)"
    base = skmixed.lmer_many(rhs, SAMPLES, GENES.iloc[:, :10])
    moved = skmixed.lmer_many(rhs, SAMPLES, 1e4 + 1e-2 * GENES.iloc[:, :10])
    np.testing.assert_allclose(moved.theta, base.theta, rtol=0, atol=2e-8)
    np.testing.assert_allclose(moved.table["sigma"], 1e-2 * base.table["sigma"], rtol=1e-8)
    np.testing.assert_allclose(moved.fixef["x"], 1e-2 * base.fixef["x"], rtol=1e-7)
    np.testing.assert_allclose(moved.fixef["(Intercept)"], 1e4 + 1e-2 * base.fixef["(Intercept)"], rtol=1e-13)


def test_missing_values_drop_rows_per_response():
    """A response's missing rows are dropped for it alone, as lmer drops them; responses sharing a pattern share a
    design."""
    genes = GENES.iloc[:, :6].copy()
    genes.iloc[[3, 50, 51], 1] = np.nan
    genes.iloc[[3, 50, 51], 4] = np.nan
    genes.iloc[:20, 2] = np.nan
    rhs = "~ x + (1 | donor) + (1 | batch)"
    many = skmixed.lmer_many(rhs, SAMPLES, genes)
    assert list(many.table["nobs"]) == [200, 197, 180, 200, 197, 200]
    assert len(many.fits) == 3
    data = pd.concat([SAMPLES, genes], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for gene in genes.columns:
            single = skmixed.lmer(f"{gene} {rhs}", data)
            assert many.table.loc[gene, "objective"] == pytest.approx(single.objective, rel=1e-12)
            np.testing.assert_allclose(many.theta.loc[gene], single.theta, atol=5e-7)
            assert many[gene].nobs == single.nobs


def test_result_per_response_is_a_full_lmer_result():
    many = skmixed.lmer_many("~ x + (1 | donor) + (1 | batch)", DATA, ["gene3", "gene7"])
    fit = many["gene7"]
    assert isinstance(fit, skmixed.LmerResult)
    assert fit is many[1] and fit is many[-1]
    assert fit.formula == "gene7 ~ x + (1 | donor) + (1 | batch)"
    assert fit.optsum.optimizer == "batched Newton (lmer_many)"
    single = skmixed.lmer("gene7 ~ x + (1 | donor) + (1 | batch)", DATA)
    np.testing.assert_allclose(fit.ranef["donor"], single.ranef["donor"], atol=1e-5)
    assert "gene7 ~ x" in str(fit.summary())
    varcorr = fit.varcorr
    assert many.varcorr.loc["gene7", "donor.(Intercept)"] == pytest.approx(varcorr["vcov"][0], rel=1e-9)
    assert many.sdcor.loc["gene7", "Residual"] == pytest.approx(fit.sigma, rel=1e-12)
    with pytest.raises(KeyError, match="gene1"):
        many["gene1"]
    with pytest.raises(IndexError):
        many[2]


def test_correlations_and_names_follow_lme4():
    many = skmixed.lmer_many("~ x + (1 + x2 | donor)", DATA, ["gene0", "gene1"])
    assert list(many.theta.columns) == ["donor.(Intercept)", "donor.x2.(Intercept)", "donor.x2"]
    assert list(many.varcorr.columns) == ["donor.(Intercept)", "donor.x2", "donor.(Intercept).x2", "Residual"]
    vc = many[0].varcorr
    np.testing.assert_allclose(many.varcorr.iloc[0], vc["vcov"], rtol=1e-9)
    np.testing.assert_allclose(many.sdcor.iloc[0], vc["sdcor"], rtol=1e-9)


def test_singular_fits_sit_on_the_boundary_as_lmers():
    """A response with no batch effect: θ_batch is exactly 0, as lmer's boundary snap leaves it."""
    rng = np.random.default_rng(3)
    y = np.asarray(pd.Categorical(SAMPLES["donor"]).codes, dtype=float) * 0.3 + rng.normal(size=len(SAMPLES))
    with pytest.warns(skmixed.SingularFitWarning, match=r"1 of 1 responses are boundary \(singular\) fits: \['flat'\]"):
        many = skmixed.lmer_many("~ x + (1 | donor) + (1 | batch)", SAMPLES, pd.DataFrame({"flat": y}))
    with pytest.warns(skmixed.SingularFitWarning):
        single = skmixed.lmer("flat ~ x + (1 | donor) + (1 | batch)", SAMPLES.assign(flat=y))
    assert single.theta[1] == 0.0
    assert many.theta.iloc[0, 1] == 0.0
    assert bool(many.table["singular"].iloc[0])
    assert many.table["objective"].iloc[0] == pytest.approx(single.objective, rel=1e-12)


def test_large_designs_use_lmers_optimizer():
    """Two crossed factors of 300 and 280 levels: the reduced factor (order 282) is too large to batch; each
    response then goes through lmer's own optimizer on the shared design, with lmer's numbers."""
    rng = np.random.default_rng(5)
    n = 1200
    samples = pd.DataFrame({"a": rng.integers(0, 300, n).astype(str), "b": rng.integers(0, 280, n).astype(str)})
    Y = rng.normal(size=(n, 2)) + rng.normal(size=(300, 2))[pd.factorize(samples["a"])[0]]
    many = skmixed.lmer_many("~ 1 + (1 | a) + (1 | b)", samples, Y)
    for j in range(2):
        single = skmixed.lmer("y ~ 1 + (1 | a) + (1 | b)", samples.assign(y=Y[:, j]))
        assert many.table["optimizer"].iloc[j] == single.optsum.optimizer
        np.testing.assert_allclose(many.theta.iloc[j], single.theta, rtol=0, atol=5e-7)  # lmer's stopping rule
        assert many.table["objective"].iloc[j] == pytest.approx(single.objective, rel=1e-12)
        np.testing.assert_allclose(many.fixef_se.iloc[j], single.fixef_se, rtol=1e-6)
        assert many[j].devfun is many.fits[0].devfuns[j]  # the deviance function the optimizer ran on


def test_a_larger_reduced_factor_is_batched():
    """80 levels of the second factor (the reduced factor of order 82) are still batched, with lmer's objectives."""
    rng = np.random.default_rng(6)
    n = 900
    samples = pd.DataFrame({"a": rng.integers(0, 200, n).astype(str), "b": rng.integers(0, 80, n).astype(str)})
    Y = rng.normal(size=(n, 4)) + rng.normal(size=(200, 4))[pd.factorize(samples["a"])[0]]
    Y += 0.5 * rng.normal(size=(80, 4))[pd.factorize(samples["b"])[0]]
    many = skmixed.lmer_many("~ 1 + (1 | a) + (1 | b)", samples, Y)
    assert (many.table["optimizer"] == "batched Newton (lmer_many)").all()
    for j in range(4):
        single = skmixed.lmer("y ~ 1 + (1 | a) + (1 | b)", samples.assign(y=Y[:, j]))
        assert many.table["objective"].iloc[j] == pytest.approx(single.objective, rel=1e-12)
        assert many.table["objective"].iloc[j] <= single.objective + 1e-10
        np.testing.assert_allclose(many.theta.iloc[j], single.theta, rtol=0, atol=5e-7)


def test_response_forms_agree():
    rhs = "~ x + (1 | donor)"
    by_name = skmixed.lmer_many(rhs, DATA, ["gene0", "gene1"])
    by_frame = skmixed.lmer_many(rhs, SAMPLES, GENES[["gene0", "gene1"]])
    by_array = skmixed.lmer_many(rhs, SAMPLES, GENES[["gene0", "gene1"]].to_numpy())
    shuffled = GENES[["gene0", "gene1"]].sample(frac=1.0, random_state=1)  # aligned by index label
    by_label = skmixed.lmer_many(rhs, SAMPLES, shuffled)
    threads = skmixed.lmer_many(rhs, SAMPLES, GENES[["gene0", "gene1"]], n_jobs=2)
    assert list(by_array.names) == [0, 1]
    for other in (by_frame, by_array, by_label, threads):
        np.testing.assert_array_equal(other.theta.to_numpy(), by_name.theta.to_numpy())
    assert by_array[1].formula == "`1` ~ x + (1 | donor)"


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: skmixed.lmer_many("gene0 ~ x + (1 | donor)", DATA, ["gene1"]), FormulaError, "write '~ x"),
        (lambda: skmixed.lmer_many("~ x + (1 | donor", DATA, ["gene1"]), FormulaError, "missing '\\)'"),
        (lambda: skmixed.lmer_many("~ x + (1 | donor)", DATA, ["nope"]), DataError, "not columns of data"),
        (lambda: skmixed.lmer_many("~ x + (1 | donor)", SAMPLES, GENES.T), DataError, "pass responses.T"),
        (
            lambda: skmixed.lmer_many("~ x + (1 | donor)", SAMPLES, GENES.set_index(GENES.index + 1000)),
            DataError,
            "set_index",
        ),
        (
            lambda: skmixed.lmer_many("~ x + (1 | donor)", SAMPLES, GENES.iloc[:, :2].assign(gene1="a")),
            DataError,
            "not numeric",
        ),
        (
            lambda: skmixed.lmer_many("~ x + (1 | donor)", SAMPLES, GENES.iloc[:, :2].assign(gene1=np.inf)),
            DataError,
            "infinite",
        ),
        (
            lambda: skmixed.lmer_many("~ x + (1 | donor)", SAMPLES, GENES.iloc[:, :2].assign(gene1=5.0)),
            DataError,
            "'gene1' are exact linear functions",
        ),
        (
            lambda: skmixed.lmer_many("~ x + (1 | donor)", SAMPLES, GENES.iloc[:, :2].assign(gene1=np.nan)),
            DataError,
            r"\['gene1'\] have no value",
        ),
        (lambda: skmixed.lmer_many("~ x + (1 | donor)", SAMPLES, GENES.iloc[:, :0]), DataError, "empty"),
        (lambda: skmixed.lmer_many("~ x + (1 | donor)", SAMPLES, GENES, n_jobs=0), OptionError, "n_jobs"),
        (lambda: skmixed.lmer_many("~ x + (1 | donor)", SAMPLES, GENES, REML="yes"), OptionError, "REML"),
    ],
)
def test_bad_input_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_few_rows_left_names_the_responses():
    genes = GENES.iloc[:, :2].copy()
    genes.iloc[5:, 1] = np.nan
    with pytest.raises(DataError, match=r"the responses \['gene1'\], without their 195 missing rows"):
        skmixed.lmer_many("~ x + (1 | donor) + (1 | batch)", SAMPLES, genes)


def test_mixedlm_takes_several_responses_as_a_multi_output_regressor():
    """MixedLM in formula mode with a 2-D y: one fit per column by lmer_many; predictions one column per response."""
    est = skmixed.MixedLM(formula="~ x + (1 | donor) + (1 | batch)")
    Y = GENES.iloc[:, :3]
    est.fit(SAMPLES, Y)
    many = skmixed.lmer_many("~ x + (1 | donor) + (1 | batch)", SAMPLES, Y)
    assert est.coef_.shape == (3, 1) and est.intercept_.shape == (3,)
    np.testing.assert_array_equal(est.coef_[:, 0], many.fixef["x"])
    np.testing.assert_array_equal(est.intercept_, many.fixef["(Intercept)"])
    assert list(est.results_.names) == list(Y.columns)
    prediction = est.predict(SAMPLES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for j, gene in enumerate(Y.columns):
            np.testing.assert_allclose(prediction[:, j], many[gene].fitted, rtol=1e-12)
    assert est.score(SAMPLES, Y) == pytest.approx(
        np.mean(
            [1 - ((Y[g] - prediction[:, j]) ** 2).sum() / ((Y[g] - Y[g].mean()) ** 2).sum() for j, g in enumerate(Y)]
        )
    )
    with pytest.raises(OptionError, match="results_"):
        est.predict(SAMPLES, return_std=True)
    with pytest.raises(OptionError, match="results_"):
        est.summary()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", skmixed.SingularFitWarning)
        est.fit(SAMPLES, Y["gene0"])  # one response again: the single-response attributes
    assert est.results_ is None and est.predict(SAMPLES).shape == (len(SAMPLES),)


def test_responses_the_batched_newton_leaves_go_to_lmers_optimizer(monkeypatch):
    """Responses the batched iteration does not finish (here: it may take one step) are refitted by lmer's optimizer,
    the summary saying so."""
    from skmixed import many_newton

    monkeypatch.setattr(many_newton, "MAX_ITERATIONS", 1)
    rhs = "~ x + (1 | donor) + (1 | batch)"
    many = skmixed.lmer_many(rhs, DATA, list(GENES.columns[:5]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for gene in GENES.columns[:5]:
            single = skmixed.lmer(f"{gene} {rhs}", DATA)
            assert many.table.loc[gene, "optimizer"] == single.optsum.optimizer == many[gene].optsum.optimizer
            assert many.table.loc[gene, "objective"] == pytest.approx(single.objective, rel=1e-12)
            np.testing.assert_allclose(many.theta.loc[gene], single.theta, rtol=0, atol=5e-7)


def test_no_fixed_effects_and_offsets():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rhs in ["~ 0 + (1 | donor)", "~ x + offset(x2) + (1 | donor)"]:
            many = skmixed.lmer_many(rhs, DATA, list(GENES.columns[:5]))
            for gene in GENES.columns[:5]:
                single = skmixed.lmer(f"{gene} {rhs}", DATA)
                assert many.table.loc[gene, "objective"] == pytest.approx(single.objective, rel=1e-12)
                np.testing.assert_allclose(many.theta.loc[gene], single.theta, rtol=0, atol=5e-7)
                np.testing.assert_allclose(many.fixef.loc[gene], single.fixef, rtol=1e-6)


def test_failed_convergence_is_flagged_and_warned_once(monkeypatch):
    """lmer's optimizer stopped at its evaluation limit: the response is flagged, lmer's message kept, and one
    ConvergenceWarning names it."""
    import functools

    from skmixed import many as many_module
    from skmixed import many_newton

    monkeypatch.setattr(many_newton, "MAX_ITERATIONS", 1)
    monkeypatch.setattr(many_module, "optimize", functools.partial(many_module.optimize, maxeval=3))
    with pytest.warns(skmixed.ConvergenceWarning, match=r"2 of 2 responses failed lme4's convergence checks"):
        many = skmixed.lmer_many("~ x + (1 | donor) + (1 | batch)", DATA, ["gene1", "gene2"])
    assert not many.table["converged"].any()
    assert any("limit of 3 evaluations" in message for message in many["gene1"].optsum.messages)
