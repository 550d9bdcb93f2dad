"""skmixed.lmer on Dask DataFrames (skmixed.dask): the same fit as in memory, with the rows left on the workers.

The Dask fit sums the cross-products partition by partition, so they differ from the in-memory ones in the last
bits; the deviance functions then agree to ~1e-14 (and the PLS solutions at one θ to ~1e-11), the fits to 1e-10
(the optimizer's Newton finish pins θ̂ down to ~1e-11, whatever the order of the rows).
"""

import pickle
import subprocess
import sys
import warnings

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster, get_worker

import skmixed
from skmixed.dask.result import DaskLmerResult
from skmixed.exceptions import DataError, OptionError


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the dashboard's port may be taken
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None)
    with Client(cluster) as c:
        yield c
    cluster.close()


def simulated(n: int = 2400, seed: int = 1) -> pd.DataFrame:
    """Crossed (a: 40 levels, b: 11) and nested (b within a) effects, a random slope, a factor, weights and an
    offset; x has a large mean (the passes shift it, as the in-memory QR copes with it)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 40, n)
    b = rng.choice(list("pqrstuvwxyz"), n)
    x = rng.normal(size=n) + 1e3
    t = rng.normal(size=n)
    f = rng.choice(["lo", "mid", "hi"], n)
    y = (
        1.0
        + 2.0 * (x - 1e3)
        + t
        + rng.normal(size=40)[a] * (1 + 0.5 * t)
        + rng.normal(size=40)[a] * 0.6 * t
        + rng.normal(size=11)[np.searchsorted(sorted(set(b)), b)]
        + (f == "hi") * 0.5
        + rng.normal(size=n)
    )
    w, o = rng.uniform(0.5, 2.0, n), rng.normal(size=n) / 10
    return pd.DataFrame({"a": a, "b": b, "x": x, "t": t, "f": f, "w": w, "o": o, "y": y})


MODELS = [
    ("y ~ x + (1 | a) + (1 | b)", {}),  # crossed
    ("y ~ x + (1 | a/b)", {}),  # nested
    ("y ~ x + t + f + (t | a)", {}),  # correlated slopes, a fixed-effect factor
    ("y ~ x + (1 | a) + (1 | b)", {"weights": "w", "offset": "o"}),
    ("y ~ x + t + (1 | a) + (0 + t | a)", {"REML": False}),
]
IDS = ["crossed", "nested", "slopes", "weights", "ml"]


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-8)))


@pytest.fixture(scope="module")
def data():
    return simulated()


@pytest.mark.parametrize("formula, options", MODELS, ids=IDS)
def test_the_deviance_function_and_the_fit_equal_the_in_memory_ones(client, data, formula, options):
    memory = skmixed.lmer(formula, data, **options)
    fit = skmixed.lmer(formula, dd.from_pandas(data, npartitions=7), **options)
    assert isinstance(fit, DaskLmerResult) and isinstance(fit, skmixed.LmerResult)
    theta = memory.theta
    for t in (theta, theta * 0.7, theta * 1.3 + 0.01):
        assert rel(fit.profiled_deviance(t), memory.profiled_deviance(t)) < 1e-13
    at_same_theta = fit.devfun.solve(theta), memory.devfun.solve(theta)
    assert rel(at_same_theta[0].beta, at_same_theta[1].beta) < 1e-10
    assert rel(at_same_theta[0].b, at_same_theta[1].b) < 1e-10
    assert rel(fit.objective, memory.objective) < 1e-13
    assert fit.nobs == memory.nobs and fit.ngroups == memory.ngroups
    # the optimum itself, to the 1e-10 (measured: θ̂ 4e-11 for the nested model, ~1e-14 for the others)
    assert rel(fit.theta, memory.theta) < 1e-10
    assert rel(fit.fixef, memory.fixef) < 1e-10
    assert rel(fit.sigma, memory.sigma) < 1e-10
    assert list(fit.fixef.index) == list(memory.fixef.index)
    assert rel(fit.deviance, memory.deviance) < 1e-10  # the ML deviance at the REML θ̂: first order in θ̂


def test_rows_in_another_order_give_the_same_fit(data):
    """Reordering the rows changes the cross-products' last bits, as the partitions do, and θ̂ by less than 1e-12."""
    formula = "y ~ x + t + f + (t | a)"
    memory = skmixed.lmer(formula, data)
    shuffled = skmixed.lmer(formula, data.sample(frac=1, random_state=3))
    assert rel(shuffled.theta, memory.theta) < 1e-12
    assert rel(shuffled.objective, memory.objective) < 1e-13


def test_summary_and_lazy_rows_match_in_memory(client, data):
    formula = "y ~ x + (1 | a) + (1 | b)"
    memory = skmixed.lmer(formula, data, weights="w")
    ddf = dd.from_pandas(data, npartitions=5)
    fit = skmixed.lmer(formula, ddf, weights="w")
    assert isinstance(fit.fitted, dd.Series) and isinstance(fit.residuals, dd.Series)
    np.testing.assert_allclose(fit.fitted.compute().to_numpy(), memory.fitted, rtol=1e-9)
    np.testing.assert_allclose(fit.residuals_scaled.compute().to_numpy(), memory.residuals_scaled, atol=1e-10)
    # the summary's text: its scaled-residual quantiles are exact (found by passes of counts)
    assert str(fit.summary()).split("Scaled residuals")[1] == str(memory.summary()).split("Scaled residuals")[1]
    assert rel(fit.fixef_se, memory.fixef_se) < 1e-10
    for name in ("a", "b"):
        np.testing.assert_allclose(fit.ranef[name], memory.ranef[name], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(fit.ranef_sd[name], memory.ranef_sd[name], rtol=1e-10)


def test_predict_on_dask_and_pandas_new_data(client, data):
    formula = "y ~ x + f + (1 | a) + (1 | b)"
    memory = skmixed.lmer(formula, data)
    fit = skmixed.lmer(formula, dd.from_pandas(data, npartitions=4))
    new = data.iloc[:50].assign(a=np.r_[np.arange(45), [99] * 5])  # five rows of a level not in the fit
    lazy = fit.predict(dd.from_pandas(new, npartitions=3))
    assert isinstance(lazy, dd.Series)
    np.testing.assert_allclose(lazy.compute().to_numpy(), memory.predict(new), rtol=1e-10)
    np.testing.assert_allclose(fit.predict(new, re_form="~0"), memory.predict(new, re_form="~0"), rtol=1e-10)
    with pytest.raises(DataError, match="levels of 'a' not in the fit"):
        fit.predict(dd.from_pandas(new, npartitions=2), allow_new_levels=False).compute()
    with pytest.raises(OptionError, match="se_fit"):
        fit.predict(new, se_fit=True)


def _worker_partition(i: int, n: int) -> pd.DataFrame:
    get_worker()  # raises ValueError outside a worker: the client cannot make these rows
    return simulated(n, seed=100 + i)


def test_the_client_never_holds_the_rows(client):
    """Every partition can only be made on a worker, and the result pickles to the same size for any n."""
    sizes = []
    for n in (500, 5000):
        parts = [dask.delayed(_worker_partition)(i, n) for i in range(4)]
        ddf = dd.from_delayed(parts, meta=simulated(2).iloc[:0])
        assert not ddf.known_divisions  # the fit needs none
        with pytest.raises(ValueError):
            _worker_partition(0, n)
        fit = skmixed.lmer("y ~ x + (1 | a) + (1 | b)", ddf)
        assert fit.nobs == 4 * n
        sizes.append(len(pickle.dumps(dataclass_state(fit))))
    assert abs(sizes[1] - sizes[0]) < 2000  # the record holds the q × q pieces, not the rows


def dataclass_state(fit):
    model = fit.model
    return (model.cp, model.standardization, fit.solution, model.re.terms[0].factor.levels, model.frame.x_names)


def test_what_stays_on_the_workers_is_a_clear_error(client, data):
    fit = skmixed.lmer("y ~ x + (1 | a)", dd.from_pandas(data, npartitions=3))
    with pytest.raises(OptionError, match="stays on the workers"):
        np.asarray(fit.frame.y)
    with pytest.raises(OptionError, match="stays on the workers"):
        fit.re.Z  # noqa: B018


def test_bad_input_is_named(client, data):
    ddf = dd.from_pandas(data, npartitions=3)
    with pytest.raises(OptionError, match="column"):
        skmixed.lmer("y ~ x + (1 | a)", ddf, weights=np.ones(len(data)))
    with pytest.raises(OptionError, match="poly"):
        skmixed.lmer("y ~ poly(x, 2) + (1 | a)", ddf)
    unknown = dd.from_pandas(data.assign(b=data.b.astype("category")), npartitions=3)
    unknown["b"] = unknown["b"].cat.as_unknown()
    with pytest.raises(DataError, match="categorize"):
        skmixed.lmer("y ~ x + (1 | b)", unknown)
    with pytest.raises(DataError, match="no random-effects term|has only 1 level"):
        skmixed.lmer("y ~ x + (1 | a)", dd.from_pandas(data.assign(a=1), npartitions=2))


def test_missing_grouping_values_drop_rows_as_in_memory(client, data):
    holes = data.assign(a=data.a.astype(float).where(np.arange(len(data)) % 17 != 0))
    with pytest.warns(UserWarning, match="rows with missing values were dropped"):
        memory = skmixed.lmer("y ~ x + (1 | a)", holes)
    with pytest.warns(UserWarning, match="rows with missing values were dropped"):
        fit = skmixed.lmer("y ~ x + (1 | a)", dd.from_pandas(holes, npartitions=4))
    assert fit.nobs == memory.nobs == len(data) - len(range(0, len(data), 17))
    assert rel(fit.objective, memory.objective) < 1e-13


def test_known_categoricals_keep_their_order(client, data):
    cat = data.assign(b=pd.Categorical(data.b, categories=list("zyxwvutsrqp") + ["unused"]))
    memory = skmixed.lmer("y ~ x + b + (1 | a)", cat)
    fit = skmixed.lmer("y ~ x + b + (1 | a)", dd.from_pandas(cat, npartitions=3))
    assert list(fit.fixef.index) == list(memory.fixef.index)
    assert rel(fit.objective, memory.objective) < 1e-13


def test_import_skmixed_does_not_import_dask():
    script = "import sys, skmixed\nprint(any(m == 'dask' or m.startswith('dask.') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_estimator_takes_dask_frames_in_formula_mode(client, data):
    from skmixed.estimators import MixedLM

    ddf = dd.from_pandas(data, npartitions=4)
    X, y, w = ddf.drop(columns="y"), ddf["y"], ddf["w"]
    fit = MixedLM(formula="~ x + (1 | a) + (1 | b)").fit(X, y, sample_weight=w)
    memory = MixedLM(formula="~ x + (1 | a) + (1 | b)").fit(data.drop(columns="y"), data["y"], sample_weight=data["w"])
    assert rel(fit.coef_, memory.coef_) < 1e-9 and list(fit.feature_names_in_) == list(memory.feature_names_in_)
    predicted = fit.predict(X)
    assert isinstance(predicted, dd.Series)
    np.testing.assert_allclose(predicted.compute().to_numpy(), memory.predict(data.drop(columns="y")), atol=1e-10)
    holes = dd.from_pandas(data.assign(x=data.x.where(data.index % 50 != 0)), npartitions=4)
    with pytest.raises(DataError, match="missing values"):
        MixedLM(formula="~ x + (1 | a)").fit(holes.drop(columns="y"), holes["y"])
    with pytest.raises(DataError, match="Dask Series"):
        MixedLM(formula="~ x + (1 | a)").fit(X, data["y"].to_numpy())


def test_build_names_what_takes_a_dask_frame(data):  # glmer takes one: tests/test_dask_glmm.py
    with pytest.raises(DataError, match="skmixed.lmer and skmixed.glmer fit one"):
        skmixed.build("y ~ x + (1 | a)", dd.from_pandas(data, npartitions=2), family="poisson")
