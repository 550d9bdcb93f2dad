"""The analytic gradient of the Laplace deviance (skmixed.laplace_gradient) and glmer's gradient path."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import special

import skmixed
from skmixed.families import Binomial, Gamma, Gaussian, InverseGaussian, NegativeBinomial, Poisson
from skmixed.laplace import laplace
from skmixed.laplace_gradient import LaplaceGradient
from skmixed.pirls import Pirls


def data(seed: int = 1, n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g, h, x = rng.integers(0, 8, n), rng.integers(0, 5, n), rng.normal(size=n)
    eta = (
        -0.3
        + 0.6 * x
        + rng.normal(scale=0.8, size=8)[g]
        + 0.4 * rng.normal(size=8)[g] * x
        + 0.5 * rng.normal(size=5)[h]
    )
    return pd.DataFrame(
        {
            "x": x,
            "g": [f"g{i}" for i in g],
            "h": [f"h{i}" for i in h],
            "yb": rng.binomial(1, special.expit(eta)).astype(float),
            "yc": rng.poisson(np.exp(eta)).astype(float),
            "yg": rng.gamma(2.0, np.exp(eta) / 2),
            "w": rng.uniform(0.5, 2.0, n),
            "off": rng.normal(scale=0.3, size=n),
        }
    )


def engine(formula, df, family, weights=None, offset=None) -> Pirls:
    """The PIRLS of the model as the stages build it (X standardized: β in its coordinates)."""
    return skmixed.deviance(skmixed.build(formula, df, family=family, weights=weights, offset=offset)).pirls


def five_point(f, x: np.ndarray, h: float = 1e-3) -> np.ndarray:
    """Central differences of order h⁴."""
    out = np.zeros_like(x)
    for i in range(len(x)):
        e = np.zeros_like(x)
        e[i] = h
        out[i] = (-f(x + 2 * e) + 8 * f(x + e) - 8 * f(x - e) + f(x - 2 * e)) / (12 * h)
    return out


CASES = [  # canonical and not, scalar and vector terms, weights and offsets, families with a dispersion
    ("yb ~ x + (1 | g)", Binomial(), None, None),
    ("yb ~ x + (x | g) + (1 | h)", Binomial(link="probit"), None, "off"),
    ("yb ~ x + (x | g)", Binomial(link="cloglog"), "w", None),
    ("yc ~ x + (x | g) + (1 | h)", Poisson(), "w", "off"),
    ("yg ~ x + (x | g)", Gamma(link="log"), "w", None),
    ("yg ~ x + (1 | g) + (1 | h)", InverseGaussian(link="log"), None, None),
    ("yc ~ x + (x | g)", NegativeBinomial(theta=2.0), None, "off"),
]


@pytest.mark.parametrize("formula, family, weights, offset", CASES)
def test_gradient_matches_high_order_differences_of_the_laplace_deviance(formula, family, weights, offset):
    eng = engine(formula, data(), family, weights, offset)
    k = eng.re.n_theta
    theta = np.where(eng.re.theta_lower == 0, 0.7, 0.2)
    beta = np.array([0.1, 0.4])
    value, grad = LaplaceGradient(eng)(theta, beta)
    assert value == pytest.approx(laplace(eng, eng.mode(theta, beta)), rel=1e-12)
    numeric = five_point(lambda z: laplace(eng, eng.mode(z[:k], z[k:])), np.concatenate([theta, beta]))
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6 * np.max(np.abs(numeric)))


def test_mode_derivative_predicts_the_next_mode():
    """dû/d(θ, β), used to start PIRLS at the next point, is the derivative of the mode (probit: W_obs ≠ W)."""
    eng = engine("yb ~ x + (x | g) + (1 | h)", data(2), Binomial(link="probit"))
    k = eng.re.n_theta
    x = np.array([0.8, 0.2, 0.6, 0.5, -0.2, 0.3])
    gradient = LaplaceGradient(eng)
    du_dx = gradient.gradient(eng.mode(x[:k], x[k:]))[1]
    numeric = np.column_stack(
        [
            (eng.mode((x + e)[:k], (x + e)[k:]).u - eng.mode((x - e)[:k], (x - e)[k:]).u) / 2e-5
            for e in 1e-5 * np.eye(len(x))
        ]
    )
    np.testing.assert_allclose(du_dx, numeric, atol=1e-7 * np.max(np.abs(numeric)))


FAMILIES = (
    [Binomial(link=link) for link in Binomial.links]
    + [Poisson(link=link) for link in Poisson.links]
    + [F(link=link) for F in (Gamma, InverseGaussian, Gaussian) for link in F.links]
    + [NegativeBinomial(2.5, link=link) for link in NegativeBinomial.links]
)


@pytest.mark.parametrize("family", FAMILIES, ids=repr)
def test_family_derivatives(family):
    """dW/dη of the IRLS weights and ∂aic/∂μ (through the plug-in dispersion too) against central differences."""
    rng = np.random.default_rng(3)
    n = 6
    if isinstance(family, Binomial):
        trials = np.full(n, 4.0)
        y, wt, mu = rng.integers(0, 5, n) / 4, trials, rng.uniform(0.1, 0.9, n)
    else:
        trials = np.ones(n)
        y, wt, mu = rng.gamma(2.0, 1.5, n), rng.uniform(0.5, 2.0, n), rng.uniform(1.0, 3.0, n)
    eta, h = family.linkfun(mu), 1e-6

    def weights(e):
        return wt * family.mu_eta(e) ** 2 / family.variance(family.linkinv(e))

    np.testing.assert_allclose(
        family.weights_deriv(mu, eta, wt), (weights(eta + h) - weights(eta - h)) / (2 * h), rtol=1e-6, atol=1e-8
    )

    def aic(m):
        return family.aic(y, trials, m, wt, float(np.sum(family.dev_resids(y, m, wt))))

    numeric = [(aic(mu + h * e) - aic(mu - h * e)) / (2 * h) for e in np.eye(n)]
    analytic = family.aic_deriv(y, trials, mu, wt, float(np.sum(family.dev_resids(y, mu, wt))))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def fit(formula, df, family, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = skmixed.glmer(formula, df, family=family, **kwargs)
    return m, caught


@pytest.mark.parametrize(
    "formula, family",
    [
        ("yb ~ x + (x | g) + (1 | h)", Binomial(link="probit")),
        ("yc ~ x + (1 | g) + (1 | h)", Poisson()),
    ],
)
def test_gradient_path_agrees_with_the_derivative_free_path(formula, family, monkeypatch):
    df = data(8, n=200)
    quasi_newton, _ = fit(formula, df, family)
    assert "BFGS" in quasi_newton.optsum.optimizer
    monkeypatch.setattr(LaplaceGradient, "available", staticmethod(lambda engine: False))
    bobyqa, _ = fit(formula, df, family)
    assert "BOBYQA" in bobyqa.optsum.optimizer
    assert quasi_newton.objective <= bobyqa.objective + 1e-7
    assert quasi_newton.objective == pytest.approx(bobyqa.objective, abs=1e-5)
    np.testing.assert_allclose(quasi_newton.theta, bobyqa.theta, atol=2e-3)
    np.testing.assert_allclose(quasi_newton.fixef, bobyqa.fixef, atol=1e-3)
    # vcov: the Hessian from gradient differences against the one from value differences
    np.testing.assert_allclose(quasi_newton.fixef_se, bobyqa.fixef_se, rtol=2e-3)


def test_singular_fit_on_the_gradient_path(monkeypatch):
    """No group effect in the data: θ̂ = 0 exactly and flagged, with the derivative-free path's likelihood."""
    rng = np.random.default_rng(6)
    n = 300
    df = pd.DataFrame({"x": rng.normal(size=n), "g": rng.integers(0, 20, n).astype(str)})
    df["y"] = rng.binomial(1, special.expit(0.2 + 0.8 * df.x)).astype(float)
    m, caught = fit("y ~ x + (1 | g)", df, "binomial")
    assert "BFGS" in m.optsum.optimizer
    assert m.theta[0] == 0.0 and m.is_singular
    assert any(issubclass(w.category, skmixed.SingularFitWarning) for w in caught)
    assert not any(issubclass(w.category, skmixed.ConvergenceWarning) for w in caught)
    monkeypatch.setattr(LaplaceGradient, "available", staticmethod(lambda engine: False))
    bobyqa, _ = fit("y ~ x + (1 | g)", df, "binomial")
    assert bobyqa.is_singular and m.objective == pytest.approx(bobyqa.objective, abs=1e-8)


def test_large_models_keep_bobyqa(monkeypatch):
    """Beyond the selected inverse's size limit glmer uses the derivative-free path."""
    import skmixed.laplace_gradient as lg

    df = data()
    eng = engine("yb ~ x + (x | g) + (1 | h)", df, Binomial())
    assert LaplaceGradient.available(eng)
    monkeypatch.setattr(
        lg, "MAX_INVERSE_ENTRIES", eng.q * eng.q - 1
    )  # first term not scalar: the whole inverse is needed
    assert not LaplaceGradient.available(eng)
    m, _ = fit("yb ~ x + (x | g) + (1 | h)", df, Binomial())
    assert "BOBYQA" in m.optsum.optimizer


def test_a_model_without_fixed_effects(monkeypatch):
    """p = 0: no β to search (and no separation to look for)."""
    df = data(3, n=200)
    m, caught = fit("yb ~ 0 + (1 | g)", df, Binomial())
    assert "BFGS" in m.optsum.optimizer and len(m.fixef) == 0 and not caught
    monkeypatch.setattr(LaplaceGradient, "available", staticmethod(lambda engine: False))
    bobyqa, _ = fit("yb ~ 0 + (1 | g)", df, Binomial())
    assert m.objective == pytest.approx(bobyqa.objective, abs=1e-7) and m.objective <= bobyqa.objective + 1e-9
