"""The public stages build → deviance → optimize → make_result, of which lmer and glmer are the composition."""

import dataclasses
import pickle
import warnings

import numpy as np
import pytest

import skmixed
from skmixed import datasets
from skmixed.backends import BlockedDenseBackend, DenseBackend, ScalarTermsBackend, SparseBackend


@pytest.fixture(scope="module")
def sleep():
    return datasets.load("sleepstudy")


def test_lmer_is_the_composition_of_the_stages(sleep):
    formula = "Reaction ~ Days + (Days | Subject)"
    model = skmixed.build(formula, sleep, REML=False)
    assert isinstance(model, skmixed.LinearMixedModel) and not model.REML
    devfun = skmixed.deviance(model)
    optsum = skmixed.optimize(devfun)
    staged = skmixed.make_result(model, devfun, optsum)
    direct = skmixed.lmer(formula, sleep, REML=False)
    assert staged.objective == direct.objective
    np.testing.assert_array_equal(staged.theta, direct.theta)
    np.testing.assert_array_equal(staged.fixef, direct.fixef)
    assert staged.model is model and staged.optsum is optsum


def test_glmer_is_the_composition_of_the_stages():
    cbpp = datasets.load("cbpp")
    formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    model = skmixed.build(formula, cbpp, family="binomial")
    assert isinstance(model, skmixed.GeneralizedLinearMixedModel)
    devfun = skmixed.deviance(model, nAGQ=1)
    staged = skmixed.make_result(model, devfun, skmixed.optimize(devfun))
    direct = skmixed.glmer(formula, cbpp, family="binomial")
    assert staged.objective == pytest.approx(direct.objective, rel=1e-14)
    np.testing.assert_allclose(staged.fixef, direct.fixef, rtol=1e-12)
    # the GLMM objective takes (θ, β) on the user's scale and gives −2 log-likelihood
    assert devfun(np.concatenate([staged.theta, staged.fixef])) == pytest.approx(staged.objective, rel=1e-10)


def test_the_deviance_function_is_on_the_users_scale(sleep):
    """With weights of mean 10⁶ the optimizer works on θ̃ = θ√c; the public function takes the reported θ."""
    w = np.random.default_rng(0).uniform(0.5, 2, len(sleep)) * 1e6
    m = skmixed.lmer("Reaction ~ Days + (Days | Subject)", sleep, weights=w)
    devfun = m.devfun
    assert devfun(m.theta) == pytest.approx(m.objective, rel=1e-12)
    theta = m.theta * np.array([1.5, 0.5, 0.7])  # away from the optimum, where the gradient is not ~0
    value, grad = devfun.value_and_gradient(theta)
    assert value == pytest.approx(devfun(theta), rel=1e-12)
    h = 1e-4 * np.abs(theta).max()
    fd = np.array([(devfun(theta + h * e) - devfun(theta - h * e)) / (2 * h) for e in np.eye(3)])
    np.testing.assert_allclose(grad, fd, rtol=1e-5)
    sol = devfun.solve(m.theta)
    np.testing.assert_allclose(sol.beta, m.fixef, rtol=1e-10)
    assert sol.sigma == pytest.approx(m.sigma, rel=1e-10)


@pytest.mark.parametrize(
    "formula,backend,gradient",
    [
        ("Reaction ~ Days + (Days | Subject)", DenseBackend, True),
    ],
)
def test_backend_choice_is_recorded(sleep, formula, backend, gradient):
    devfun = skmixed.deviance(skmixed.build(formula, sleep))
    assert isinstance(devfun.standardized.backend, backend) and devfun.has_gradient == gradient
    assert "dense" in devfun.reason


def test_backends_for_larger_shapes():
    rng = np.random.default_rng(1)
    n = 2000
    g, h = rng.integers(0, 150, n), rng.integers(0, 30, n)
    x = rng.normal(size=n)
    y = x + rng.normal(size=150)[g] + rng.normal(size=30)[h] + rng.normal(size=150)[g] * x + rng.normal(size=n)
    import pandas as pd

    df = pd.DataFrame({"y": y, "x": x, "g": g, "h": h})
    crossed = skmixed.deviance(skmixed.build("y ~ x + (1 | g) + (1 | h)", df))
    assert isinstance(crossed.standardized.backend, ScalarTermsBackend) and crossed.has_gradient
    vector = skmixed.deviance(skmixed.build("y ~ x + (x | g) + (1 | h)", df))
    assert isinstance(vector.standardized.backend, BlockedDenseBackend) and vector.has_gradient
    assert "150 levels factored as blocks" in vector.reason
    # 1,000 × 500 levels met by 3,000 rows: CHOLMOD's sparse factor, with the gradient from its selected inverse,
    # costs less than the blocked path's complement of order 503
    many = pd.DataFrame({"y": rng.normal(size=3000), "x": rng.normal(size=3000)}).assign(
        g=rng.integers(0, 1000, 3000), h=rng.integers(0, 500, 3000)
    )
    vector = skmixed.deviance(skmixed.build("y ~ x + (x | g) + (1 | h)", many))
    assert isinstance(vector.standardized.backend, SparseBackend) and vector.has_gradient
    assert "selected inverse" in vector.reason
    one_factor = skmixed.deviance(skmixed.build("y ~ x + (x | g)", df))
    assert isinstance(one_factor.standardized.backend, SparseBackend) and one_factor.has_gradient


def test_records_and_results_pickle_and_results_are_not_changed(sleep):
    model = skmixed.build("Reaction ~ Days + (Days | Subject)", sleep)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.cp.ZtX, model.cp.ZtX)
    m = skmixed.lmer("Reaction ~ Days + (Days | Subject)", sleep)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.optsum = None
    m2 = pickle.loads(pickle.dumps(m))
    assert "devfun" not in m2._cache  # rebuilt from the model record on first use
    assert m2.profiled_deviance(m.theta) == pytest.approx(m.objective, rel=1e-12)
    np.testing.assert_allclose(m2.ranef_sd["Subject"], m.ranef_sd["Subject"], rtol=1e-10)


def test_refit_by_ml_shares_the_model_record(sleep):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reml = skmixed.lmer("Reaction ~ Days + (Days | Subject)", sleep)
    ml = reml.refit_ml()
    assert not ml.REML and ml.model.cp is reml.model.cp
    assert ml.objective == pytest.approx(
        skmixed.lmer("Reaction ~ Days + (Days | Subject)", sleep, REML=False).objective, rel=1e-10
    )


def test_stage_arguments_are_checked(sleep):
    model = skmixed.build("Reaction ~ Days + (Days | Subject)", sleep)
    devfun = skmixed.deviance(model)
    with pytest.raises(skmixed.OptionError, match="deviance"):
        skmixed.optimize(model)
    with pytest.raises(skmixed.OptionError, match="start"):
        skmixed.optimize(devfun, start="x")
    with pytest.raises(skmixed.OptionError, match="make_result"):
        skmixed.make_result(model, object(), skmixed.optimize(devfun))
    with pytest.raises(skmixed.OptionError, match="skmixed.build"):
        skmixed.deviance(sleep)
    cbpp = skmixed.build(
        "cbind(incidence, size - incidence) ~ period + (1 | herd) + (1 | period)",
        datasets.load("cbpp"),
        family="binomial",
    )
    with pytest.raises(skmixed.OptionError, match="single scalar random-effects term"):
        skmixed.deviance(cbpp, nAGQ=5)
