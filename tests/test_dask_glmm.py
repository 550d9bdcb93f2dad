"""skmixed.glmer on Dask DataFrames (skmixed.dask.glmm): the in-memory fit, with the rows persisted on the workers.

Each PIRLS iteration and each Laplace gradient is one pass over the partitions; the sums come in another order
than in memory, so the fits differ in the last bits: θ̂ agrees to ~3e-11 for nAGQ = 0 (BOBYQA's Newton finish)
and ~1e-15 for the Laplace fit (its BFGS path is the in-memory one, gradient for gradient), β̂ to ~1e-12, the
objective to ~1e-16, and the standard errors from the Hessian of gradient differences to ~1e-10.
"""

import warnings

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster

import skmixed
from skmixed.dask.glmm_result import DaskGlmerResult
from skmixed.exceptions import DataError, OptionError
from skmixed.families import Binomial


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the dashboard's port may be taken
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None)
    with Client(cluster) as c:
        yield c
    cluster.close()


def simulated(n: int = 900, seed: int = 2) -> pd.DataFrame:
    """A 0/1 response, successes and failures of 1–5 trials, and counts; crossed factors a (30 levels) and b (8)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 30, n)
    b = rng.choice(list("pqrstuvw"), n)
    x = rng.normal(size=n)
    eta = -0.3 + 0.8 * x + rng.normal(size=30)[a] + 0.5 * rng.normal(size=8)[np.searchsorted(sorted(set(b)), b)]
    p = 1 / (1 + np.exp(-eta))
    trials = rng.integers(1, 6, n)
    s = rng.binomial(trials, p)
    counts = rng.poisson(np.exp(0.5 + 0.3 * x + 0.4 * rng.normal(size=30)[a] + 0.3 * rng.normal(size=30)[a] * x))
    o = rng.normal(size=n) / 10
    return pd.DataFrame({"a": a, "b": b, "x": x, "y": rng.binomial(1, p), "s": s, "f": trials - s, "c": counts, "o": o})


@pytest.fixture(scope="module")
def data():
    return simulated()


MODELS = [
    ("y ~ x + (1 | a)", {"family": "binomial"}),
    ("cbind(s, f) ~ x + (1 | a) + (1 | b)", {"family": "binomial"}),
    ("y ~ x + (1 | a) + (1 | b)", {"family": "binomial", "nAGQ": 0}),
    ("c ~ x + (x | a)", {"family": "poisson", "offset": "o"}),
    ("y ~ x + (1 | a)", {"family": Binomial(link="probit")}),
]
IDS = ["binary", "cbind-crossed", "crossed-nAGQ0", "poisson-slopes-offset", "probit"]


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-8)))


@pytest.mark.parametrize("formula, options", MODELS, ids=IDS)
def test_the_fit_equals_the_in_memory_one(client, data, formula, options):
    memory = skmixed.glmer(formula, data, **options)
    fit = skmixed.glmer(formula, dd.from_pandas(data, npartitions=4), **options)
    assert isinstance(fit, DaskGlmerResult) and fit.nAGQ == memory.nAGQ
    assert rel(fit.theta, memory.theta) < 1e-10
    assert rel(fit.fixef, memory.fixef) < 1e-11
    assert rel(fit.objective, memory.objective) < 1e-14
    assert rel(fit.fixef_se, memory.fixef_se) < 1e-9  # the Hessian from gradient differences (step 1e-5)
    np.testing.assert_allclose(fit.solution.b, memory.solution.b, rtol=0, atol=1e-10)
    assert fit.nobs == memory.nobs and fit.summary().coefficients.index.tolist() == memory.fixef.index.tolist()


def test_per_row_quantities_are_lazy_and_equal_the_in_memory_ones(client, data):
    options = {"family": "poisson", "offset": "o"}
    memory = skmixed.glmer("c ~ x + (x | a)", data, **options)
    ddf = dd.from_pandas(data, npartitions=3)
    fit = skmixed.glmer("c ~ x + (x | a)", ddf, **options)
    for name in ("fitted", "residuals", "residuals_pearson", "linear_predictor"):
        lazy = getattr(fit, name)
        assert isinstance(lazy, dd.Series), name
        np.testing.assert_allclose(lazy.compute().to_numpy(), getattr(memory, name), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fit.predict(type="response").compute().to_numpy(), memory.fitted, rtol=1e-8)
    np.testing.assert_allclose(fit.predict(re_form="~0").compute().to_numpy(), memory.predict(re_form="~0"), rtol=1e-8)
    assert str(fit.summary()) == str(memory.summary())  # its scaled-residual quantiles found on the workers
    new = data.iloc[:50].assign(a=data.a.iloc[:50] + 25)  # levels 30–54 are new: population-level predictions
    np.testing.assert_allclose(fit.predict(new, type="response"), memory.predict(new, type="response"), rtol=1e-8)
    lazy_new = fit.predict(dd.from_pandas(new, npartitions=2), re_form="~0")
    np.testing.assert_allclose(lazy_new.compute().to_numpy(), memory.predict(new, re_form="~0"), rtol=1e-8)
    cbind = skmixed.glmer("cbind(s, f) ~ x + (1 | a)", ddf)
    np.testing.assert_allclose(
        cbind.residuals.compute().to_numpy(), skmixed.glmer("cbind(s, f) ~ x + (1 | a)", data).residuals, atol=1e-8
    )


def _message(formula, frame, **options) -> str:
    with pytest.raises(DataError) as caught:
        skmixed.glmer(formula, frame, **options)
    return str(caught.value)


def test_bad_responses_are_named_as_in_memory(client, data):
    not_binary = data.assign(y=data.y.where(data.index % 97 != 5, 2.0))
    negative = data.assign(c=data.c.where(data.index % 89 != 7, -1))
    constant = data.assign(y=1)
    cases = [(not_binary, "y ~ x + (1 | a)", "binomial"), (negative, "c ~ x + (1 | a)", "poisson")]
    for frame, formula, family in cases + [(constant, "y ~ x + (1 | a)", "binomial")]:
        memory = _message(formula, frame, family=family)
        assert _message(formula, dd.from_pandas(frame, npartitions=4), family=family) == memory


def test_options_and_what_a_dask_glmer_does_not_do(client, data):
    ddf = dd.from_pandas(data, npartitions=2)
    with pytest.raises(OptionError, match="nAGQ = 5 .* not available for a Dask DataFrame"):
        skmixed.glmer("y ~ x + (1 | a)", ddf, nAGQ=5)
    with pytest.raises(OptionError, match="Gamma family is not available"):
        skmixed.glmer("c ~ x + (1 | a)", ddf, family="gamma")
    with pytest.raises(OptionError, match="negative binomial with θ estimated"):
        skmixed.glmer("c ~ x + (1 | a)", ddf, family="negative_binomial")
    with pytest.raises(OptionError, match="column"):
        skmixed.glmer("y ~ x + (1 | a)", ddf, weights=np.ones(len(data)))
    start = {"theta": [0.5], "fixef": [0.0, 0.5]}  # a start of (θ, β), as in memory
    fit = skmixed.glmer("y ~ x + (1 | a)", ddf, start=start)
    assert rel(fit.theta, skmixed.glmer("y ~ x + (1 | a)", data, start=start).theta) < 1e-10
    with pytest.raises(OptionError, match="se_fit"):
        fit.predict(data, se_fit=True)
    with pytest.raises(OptionError, match="stays on the workers"):  # was: "fitted to different data"
        skmixed.anova(skmixed.glmer("y ~ 1 + (1 | a)", ddf), fit)
    with pytest.raises(OptionError, match="stays on the workers"):
        fit.simulate(1)


def test_the_glmm_estimators_take_dask_frames_in_formula_mode(client, data):
    """GLMM and GLMMClassifier on Dask: the fit equals the in-memory one; predictions, probabilities and the decision
    function are lazy and equal too; the classifier's classes are found in one pass and checked as in memory."""
    from skmixed.estimators import GLMM, GLMMClassifier

    frame = data.assign(label=np.where(data.y == 1, "yes", "no"))
    ddf = dd.from_pandas(frame, npartitions=4)
    X, Xm = ddf[["x", "a"]], frame[["x", "a"]]
    counts = GLMM(formula="~ x + (1 | a)", family="poisson").fit(X, ddf["c"])
    counts_memory = GLMM(formula="~ x + (1 | a)", family="poisson").fit(Xm, frame["c"])
    assert rel(counts.coef_, counts_memory.coef_) < 1e-10
    mean = counts.predict(X)
    assert isinstance(mean, dd.Series)
    np.testing.assert_allclose(mean.compute().to_numpy(), counts_memory.predict(Xm), rtol=1e-10)
    labels = GLMMClassifier(formula="~ x + (1 | a)").fit(X, ddf["label"])
    labels_memory = GLMMClassifier(formula="~ x + (1 | a)").fit(Xm, frame["label"])
    assert list(labels.classes_) == list(labels_memory.classes_) == ["no", "yes"]
    predicted, proba = labels.predict(X), labels.predict_proba(X)
    assert isinstance(predicted, dd.Series) and isinstance(proba, dd.DataFrame) and list(proba.columns) == ["no", "yes"]
    assert (predicted.compute().to_numpy() == labels_memory.predict(Xm)).all()
    np.testing.assert_allclose(proba.compute().to_numpy(), labels_memory.predict_proba(Xm), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(labels.decision_function(X).compute(), labels_memory.decision_function(Xm), atol=1e-10)
    with pytest.raises(DataError, match="Only binary classification is supported; y has 30 classes"):
        GLMMClassifier(formula="~ x + (1 | a)").fit(X, ddf["a"])
