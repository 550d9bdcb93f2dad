"""simulate and the parametric bootstrap: reproducibility, the distribution drawn, and what a replicate is.

R's random numbers cannot be matched, so these check the statistical properties: the covariance of
simulated responses against the model's, the bootstrap distribution of β̂ against its standard errors,
and that a replicate is exactly the fit of the response ``simulate`` draws with the same seed.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

import skmixed
from skmixed import datasets
from skmixed.exceptions import ConvergenceWarning, DataError, OptionError


@pytest.fixture(scope="module")
def sleep():
    return datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def fm(sleep):
    return skmixed.lmer("Reaction ~ Days + (Days | Subject)", sleep)


@pytest.fixture(scope="module")
def gm():
    return skmixed.glmer(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", datasets.load("cbpp"), family="binomial"
    )


def _within(sample_cov: np.ndarray, cov: np.ndarray, n: int, k: float = 5.0, variances=None) -> bool:
    """Every entry of a sample covariance within k standard errors, √((σ_ii σ_jj + σ_ij²)/n), of the truth
    (``variances``: the two sets of variances of a cross-covariance)."""
    d1, d2 = (np.diag(cov), np.diag(cov)) if variances is None else variances
    se = np.sqrt((np.outer(d1, d2) + cov**2) / n)
    return bool(np.all(np.abs(sample_cov - cov) < k * se))


def test_simulate_is_reproducible_per_replicate(fm):
    five = fm.simulate(5, seed=11)
    assert list(five.columns) == [f"sim_{i}" for i in range(1, 6)] and len(five) == fm.nobs
    pd.testing.assert_frame_equal(fm.simulate(5, seed=11), five)
    np.testing.assert_array_equal(fm.simulate(2, seed=11)["sim_2"], five["sim_2"])  # replicate i is nsim-free
    assert not np.allclose(fm.simulate(1, seed=12)["sim_1"], five["sim_1"])


def test_simulated_lmm_responses_have_the_models_covariance(fm):
    """Within a subject, Cov(y) = σ²(Z_i TT'Z_i' + I); across subjects the responses are independent."""
    n = 3000
    sims = fm.simulate(n, seed=1).to_numpy()
    T = fm.re.terms[0].T(fm.theta)
    Z = np.column_stack([np.ones(10), np.arange(10.0)])
    cov = fm.sigma**2 * (Z @ T @ T.T @ Z.T + np.eye(10))
    assert _within(np.cov(sims[:10]), cov, n)
    assert _within(np.cov(sims[:10], sims[10:20])[:10, 10:], np.zeros((10, 10)), n, variances=(np.diag(cov),) * 2)
    mean_se = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(sims[:10].mean(axis=1) - fm.predict(re_form="~0")[:10]) < 5 * mean_se)


def test_use_u_conditions_on_the_conditional_modes(fm):
    n = 3000
    sims = fm.simulate(n, seed=2, use_u=True).to_numpy()
    assert np.all(np.abs(sims.mean(axis=1) - fm.fitted) < 5 * fm.sigma / np.sqrt(n))
    assert _within(np.cov(sims[:5]), fm.sigma**2 * np.eye(5), n)
    with pytest.raises(OptionError, match="not both"):
        fm.simulate(use_u=True, re_form="~(Days | Subject)")


def test_re_form_draws_only_the_terms_it_leaves_out():
    data = datasets.load("Penicillin")
    m = skmixed.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", data)
    n = 3000
    sims = m.simulate(n, seed=3, re_form="~(1 | plate)").to_numpy()  # plate's BLUPs kept, sample drawn anew
    sd_plate, sd_sample = m.varcorr["sdcor"][:2]  # lme4's order: the factor with more levels first
    by_plate = m.predict(re_form="~(1 | plate)")
    assert np.all(np.abs(sims.mean(axis=1) - by_plate) < 5 * np.sqrt(sd_sample**2 + m.sigma**2) / np.sqrt(n))
    # rows of one plate in different samples share no drawn effect; rows of one sample share its draw
    rows = np.flatnonzero(data["sample"] == data["sample"].iloc[0])[:2]
    cov = np.cov(sims[rows])
    expected = np.full((2, 2), sd_sample**2) + np.eye(2) * m.sigma**2
    assert m.varcorr["grp"][0] == "plate" and sd_plate > 0
    assert _within(cov, expected, n)


def test_new_data_get_new_draws_for_new_levels(fm):
    new = pd.DataFrame({"Days": [0.0, 0.0, 0.0], "Subject": ["new", "new", "other"]})
    sims = fm.simulate(4000, seed=4, newdata=new).to_numpy()
    T = fm.re.terms[0].T(fm.theta)
    tau2 = fm.sigma**2 * (T @ T.T)[0, 0]
    cov = np.diag([tau2, tau2, tau2]) + fm.sigma**2 * np.eye(3)  # each new level draws its own intercept
    cov[0, 1] = cov[1, 0] = tau2  # the two rows of level "new" share theirs
    assert _within(np.cov(sims), cov, 4000)


def test_binomial_simulation_draws_successes_of_the_trials(gm):
    cbpp = datasets.load("cbpp")
    sims = gm.simulate(2000, seed=5, use_u=True).to_numpy()
    size = cbpp["size"].to_numpy()
    assert np.all((sims >= 0) & (sims <= size[:, None])) and np.all(sims == np.round(sims))
    p = gm.fitted
    se = np.sqrt(size * p * (1 - p) / 2000)
    assert np.all(np.abs(sims.mean(axis=1) - size * p) < 5 * se + 1e-12)


def test_a_replicate_is_the_fit_of_the_simulated_response(fm, sleep):
    boot = fm.bootstrap(4, seed=7)
    sims = fm.simulate(4, seed=7)
    for i in range(4):
        data = sleep.assign(Reaction=sims[f"sim_{i + 1}"].to_numpy())
        refit = skmixed.lmer("Reaction ~ Days + (Days | Subject)", data)
        row = boot.replicates.iloc[i]
        assert row["objective"] == pytest.approx(refit.objective, abs=1e-6)
        np.testing.assert_allclose(row[["theta_1", "theta_2", "theta_3"]].to_numpy(float), refit.theta, atol=1e-4)
        np.testing.assert_allclose(row[["(Intercept)", "Days"]].to_numpy(float), refit.fixef, rtol=1e-6)
        assert row["sigma"] == pytest.approx(refit.sigma, rel=2e-5)  # a refit stops at a decrement of 1e-6
        assert row["converged"]


def test_glmm_replicate_is_the_fit_of_the_simulated_response(gm):
    boot = gm.bootstrap(2, seed=8)
    sims = gm.simulate(2, seed=8)
    cbpp = datasets.load("cbpp")
    data = cbpp.assign(incidence=sims["sim_2"].to_numpy())
    refit = skmixed.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", data, family="binomial")
    row = boot.replicates.iloc[1]
    assert row["objective"] == pytest.approx(refit.objective, abs=1e-5)
    np.testing.assert_allclose(row[list(refit.fixef.index)].to_numpy(float), refit.fixef, rtol=1e-3)


def test_bootstrap_distribution_of_the_fixed_effects(fm):
    """For an LMM, β̂ given θ is normal with covariance vcov(β̂): the replicates' mean and SD of β̂ agree with β̂
    and its standard errors within their Monte Carlo errors (5 SEs; n = 500)."""
    n = 500
    boot = fm.bootstrap(n, seed=9)
    assert boot.n_failed == 0
    beta = boot.replicates[list(fm.fixef.index)]
    assert np.all(np.abs(beta.mean() - fm.fixef) < 5 * fm.fixef_se / np.sqrt(n))
    assert np.all(np.abs(beta.std() / fm.fixef_se - 1) < 5 / np.sqrt(2 * n))
    ci, profile = boot.confint(), fm.confint("profile")
    width = profile["upper"] - profile["lower"]
    for name in fm.fixef.index:  # percentile and profile intervals of β agree to Monte Carlo error
        assert np.all(np.abs(ci.loc[name] - profile.loc[name]) < 0.1 * width[name])


def test_bootstrap_is_reproducible_and_independent_of_n_jobs(fm):
    one = fm.bootstrap(6, seed=21)
    pd.testing.assert_frame_equal(fm.bootstrap(6, seed=21).replicates, one.replicates)
    pd.testing.assert_frame_equal(fm.bootstrap(6, seed=21, n_jobs=2).replicates, one.replicates)
    assert list(one.replicates.columns[:4]) == ["objective", "theta_1", "theta_2", "theta_3"]
    assert list(one.replicates.columns[-1:]) == ["converged"]


def test_bootstrap_interval_methods(fm):
    boot = fm.bootstrap(50, seed=5)
    values = boot.replicates[boot.parameters]
    pct, basic, normal = boot.confint("percentile", 0.9), boot.confint("basic", 0.9), boot.confint("normal", 0.9)
    np.testing.assert_allclose(pct["lower"], values.quantile(0.05))
    np.testing.assert_allclose(basic["upper"], 2 * boot.estimates[boot.parameters] - values.quantile(0.05))
    centre = 2 * boot.estimates[boot.parameters] - values.mean()
    np.testing.assert_allclose((normal["lower"] + normal["upper"]) / 2, centre)
    assert list(fm.confint("boot", nsim=50, seed=5).index) == list(fm.confint("Wald").index)
    with pytest.raises(OptionError, match="'percentile', 'basic' or 'normal'"):
        boot.confint("bca")


def test_failed_replicates_are_counted_and_left_out(fm, monkeypatch):
    import skmixed.bootstrap as bootstrap_module

    fit_one = bootstrap_module._LmmRefit.__call__
    calls = {"n": 0}

    def every_third_fails(self, rng):
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            raise DataError("simulated failure")
        return fit_one(self, rng)

    monkeypatch.setattr(bootstrap_module._LmmRefit, "__call__", every_third_fails)
    with pytest.warns(ConvergenceWarning, match="3 of 9 bootstrap replicates"):
        boot = fm.bootstrap(9, seed=1)
    assert boot.n_failed == 3 and (~boot.replicates["converged"]).sum() == 3
    assert boot.replicates.loc[~boot.replicates["converged"], "objective"].isna().all()
    kept = boot.replicates.loc[boot.replicates["converged"], "Days"]
    assert boot.confint()["upper"]["Days"] == pytest.approx(kept.quantile(0.975))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.simulate(0), "nsim must be a whole number"),
        (lambda m: m.simulate(seed="x"), "seed must be None, an int"),
        (lambda m: m.bootstrap(2, n_jobs=0), "n_jobs must be None"),
        (lambda m: m.simulate(re_form="~(1 | nope)"), "not in the model"),
    ],
)
def test_bad_options(fm, call, message):
    with pytest.raises(OptionError, match=message):
        call(fm)


def test_binomial_with_fractional_trials_cannot_be_simulated():
    cbpp = datasets.load("cbpp").assign(w=1.5, p=lambda d: d["incidence"] / d["size"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = skmixed.glmer("p ~ period + (1 | herd)", cbpp, family="binomial", weights="w")
    with pytest.raises(DataError, match="non-integer prior weights"):
        m.simulate()
