"""One scalar random-effects term: the elementwise PIRLS, Laplace gradient, EM step, joint PIRLS and RX of
skmixed.pirls_scalar agree with the general sparse-factor code (the same model with ``scalar`` switched off)."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import special

import skmixed
from skmixed.families import Binomial, Gamma, NegativeBinomial, Poisson
from skmixed.laplace import laplace
from skmixed.laplace_gradient import LaplaceGradient


def data(seed: int = 4, n: int = 150) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g, x = rng.integers(0, 12, n), rng.normal(size=n)
    eta = -0.2 + 0.5 * x + rng.normal(scale=0.9, size=12)[g]
    trials = rng.integers(1, 6, n)
    return pd.DataFrame(
        {
            "x": x,
            "z": rng.uniform(0.5, 1.5, n),
            "g": [f"g{i}" for i in g],
            "yb": rng.binomial(1, special.expit(eta)).astype(float),
            "k": rng.binomial(trials, special.expit(eta)),
            "m": trials,
            "yc": rng.poisson(np.exp(eta)).astype(float),
            "yg": rng.gamma(2.0, np.exp(eta) / 2),
            "w": rng.uniform(0.5, 2.0, n),
        }
    )


CASES = [  # canonical (μ' = V and not), Newton on the observed information, a dispersion, weights, an offset, a slope
    ("yb ~ x + (1 | g)", Binomial(), None),
    ("cbind(k, m - k) ~ x + (1 | g)", Binomial(link="probit"), None),
    ("yc ~ x + (0 + z | g)", Poisson(), "w"),
    ("yc ~ x + offset(log(z)) + (1 | g)", Poisson(link="sqrt"), None),
    ("yg ~ x + (1 | g)", Gamma(link="log"), "w"),
    ("yc ~ x + (1 | g)", NegativeBinomial(theta=3.0), None),
]


def pair(formula, family, weights):
    """The deviance functions of the same model with the scalar path and with the general one."""
    model = skmixed.build(formula, data(), family=family, weights=weights)
    fast, general = skmixed.deviance(model), skmixed.deviance(model)
    assert fast.pirls.scalar is not None and "elementwise" in fast.pirls.reason
    general.pirls.scalar = None
    assert "factored by" in general.pirls.reason
    return fast, general


@pytest.mark.parametrize("theta", [0.8, -0.8, 0.0])  # BFGS searches θ unbounded (f is even in it); 0: a singular fit
@pytest.mark.parametrize("formula, family, weights", CASES)
def test_modes_gradients_and_start_agree_with_the_general_path(formula, family, weights, theta):
    fast, general = (d.pirls for d in pair(formula, family, weights))
    theta, beta = np.array([theta]), np.array([-0.1, 0.4])
    a, b = fast.mode(theta, beta), general.mode(theta, beta)
    assert a.converged and b.converged
    np.testing.assert_allclose(a.u, b.u, rtol=1e-9, atol=1e-11)
    assert a.ldL2 == pytest.approx(b.ldL2, rel=1e-12)
    assert laplace(fast, a) == pytest.approx(laplace(general, b), rel=1e-12)
    (fa, ga), (fb, gb) = LaplaceGradient(fast)(theta, beta), LaplaceGradient(general)(theta, beta)
    assert fa == pytest.approx(fb, rel=1e-12)
    np.testing.assert_allclose(ga, gb, rtol=1e-9, atol=1e-9 * np.abs(gb).max())
    du_a, du_b = LaplaceGradient(fast).gradient(a)[1], LaplaceGradient(general).gradient(b)[1]
    np.testing.assert_allclose(du_a, du_b, rtol=1e-9, atol=1e-11)
    ja, jb = fast.joint_mode(theta), general.joint_mode(theta)
    np.testing.assert_allclose(np.concatenate([ja.beta, ja.u]), np.concatenate([jb.beta, jb.u]), rtol=1e-9, atol=1e-10)
    assert ja.ldL2 == pytest.approx(jb.ldL2, rel=1e-12)
    for x, y in zip(LaplaceGradient(fast).em_step(ja), LaplaceGradient(general).em_step(jb)):
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(fast.fixed_rx(a), general.fixed_rx(b), rtol=1e-10)
    ca, cb = fast.working_cross_products(a), general.working_cross_products(b)
    np.testing.assert_allclose(ca.ZtZ.toarray(), cb.ZtZ.toarray(), rtol=1e-12)
    for name in ("ZtX", "Zty", "XtX", "Xty", "yty"):
        np.testing.assert_allclose(getattr(ca, name), getattr(cb, name), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("formula, family, weights", CASES)
def test_fits_agree_with_the_general_path(formula, family, weights):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = (skmixed.optimize(devfun) for devfun in pair(formula, family, weights))
    assert a.objective == pytest.approx(b.objective, rel=1e-14, abs=1e-12)
    np.testing.assert_allclose(a.theta, b.theta, rtol=0, atol=1e-12)  # (θ, β)
    assert a.n_evaluations == b.n_evaluations


def test_the_last_mode_is_reused_only_at_its_own_point():
    pirls = pair(*CASES[0])[0].pirls
    theta, beta = np.array([0.8]), np.array([-0.1, 0.4])
    first = pirls.mode(theta, beta)
    assert pirls.mode(theta.copy(), beta.copy()) is first
    theta[0] = 0.5  # the caller's array changed in place: a new point, a new mode
    moved = pirls.mode(theta, beta)
    assert moved is not first and not np.allclose(moved.u, first.u)
    assert pirls.mode(theta, beta, np.zeros(pirls.q)) is not moved  # a start given: PIRLS runs
