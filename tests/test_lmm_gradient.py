"""The dense small-q path (skmixed.dense_pls): its solution equals the sparse path's, its gradient equals finite
differences for vector, uncorrelated and crossed terms, and the fits it drives reach BOBYQA's optimum."""

import numpy as np
import pandas as pd
import pytest
from reference import load_data, references

import skmixed
from skmixed.backends import DenseBackend, SparseBackend
from skmixed.optimizers import bobyqa


def random_data(seed: int, n: int = 150) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g, h = rng.integers(0, 9, n), rng.integers(0, 6, n)
    x, z = rng.normal(size=n), rng.uniform(0, 5, n)
    y = 2 + x + rng.normal(size=9)[g] * (1 + 0.4 * z) + 0.6 * rng.normal(size=6)[h] * x + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "z": z, "g": [f"g{i}" for i in g], "h": h, "w": rng.uniform(0.5, 2.0, n)})


FORMULAS = [
    "y ~ x + (z | g)",  # correlated vector term
    "y ~ x + (z || g) + (0 + x | h)",  # uncorrelated: two terms on one factor, and a slope-only term
    "y ~ x * z + (1 + x + z | g)",  # k = 3: six θ, off-diagonals negative as well
    "y ~ 0 + (1 | g) + (1 | h)",  # crossed scalar terms, no fixed effects (p = 0)
]


def deviance(formula, df, reml, weights=None) -> skmixed.ProfiledDeviance:
    return skmixed.deviance(skmixed.build(formula, df, REML=reml, weights=weights))


def random_theta(dev, rng) -> np.ndarray:
    """A θ with diagonals in (0.2, 1.5) (some negative: f is even in each column of T) and off-diagonals N(0, 0.5²)."""
    lower = dev.model.re.theta_lower
    diag = rng.uniform(0.2, 1.5, len(lower)) * rng.choice([-1.0, 1.0], len(lower))
    return np.where(lower == 0, diag, rng.normal(0, 0.5, len(lower)))


def assert_gradient_matches_finite_differences(dev, rng, points: int, h: float = 1e-4):
    """At random θ: the value equals dev(θ) and the gradient 4th-order central differences."""
    for _ in range(points):
        theta = random_theta(dev, rng)
        value, grad = dev.value_and_gradient(theta)
        assert value == pytest.approx(dev(theta), rel=1e-13)
        steps = np.eye(len(theta)) * h
        fd = np.array(
            [
                (-dev(theta + 2 * e) + 8 * dev(theta + e) - 8 * dev(theta - e) + dev(theta - 2 * e)) / (12 * h)
                for e in steps
            ]
        )
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("weights", [None, "w"])
def test_dense_gradient_matches_finite_differences(formula, reml, weights):
    dev = deviance(formula, random_data(1), reml, weights)
    assert isinstance(dev.standardized.backend, DenseBackend) and dev.has_gradient
    assert_gradient_matches_finite_differences(dev, np.random.default_rng(2), points=3)


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("reml", [False, True])
def test_dense_solution_equals_sparse_solution(formula, reml):
    dev = deviance(formula, random_data(3), reml, "w")
    model = dev.model
    sparse_path = SparseBackend(model.cp, model.re, reml, "the same model on the sparse path")
    rng = np.random.default_rng(4)
    for _ in range(3):
        theta = random_theta(dev, rng)
        std = model.standardization
        dense, sparse = dev.solve(theta), std.solution(sparse_path.solve(std.theta_tilde(theta)), reml)
        assert dense.deviance == pytest.approx(sparse.deviance, rel=1e-12)
        for name in ("pwrss", "ldL2", "ldRX2", "sigma"):
            assert getattr(dense, name) == pytest.approx(getattr(sparse, name), rel=1e-10, abs=1e-12), name
        for name in ("beta", "u", "b", "RX"):
            np.testing.assert_allclose(getattr(dense, name), getattr(sparse, name), rtol=1e-9, atol=1e-11, err_msg=name)


def test_canonical_theta_flips_columns_and_keeps_the_deviance():
    dev = deviance("y ~ x * z + (1 + x + z | g)", random_data(5), reml=True)
    theta = np.array([-0.8, 0.3, -0.2, 0.9, 0.4, -0.6])  # T columns: (θ₁, θ₂, θ₃), (θ₄, θ₅), (θ₆)
    canonical = dev.model.re.canonical_theta(theta)
    np.testing.assert_array_equal(canonical, [0.8, -0.3, 0.2, 0.9, 0.4, 0.6])
    assert dev(canonical) == pytest.approx(dev(theta), rel=1e-13)


@pytest.mark.filterwarnings("ignore::skmixed.SingularFitWarning")  # the k = 3 term is singular here
@pytest.mark.parametrize("formula", FORMULAS[:3])
def test_gradient_fit_reaches_the_bobyqa_optimum(formula):
    df = random_data(6)
    m = skmixed.lmer(formula, df)
    assert m.optsum.optimizer.startswith("scipy L-BFGS-B")
    dev = deviance(formula, df, reml=True)
    ref = bobyqa(dev, dev.model.re.theta_init, dev.model.re.theta_lower, xtol_abs=1e-10, ftol_abs=1e-12)
    assert m.objective <= ref.objective + 1e-8
    np.testing.assert_allclose(m.theta, ref.theta, rtol=1e-3, atol=1e-4)
    assert np.all(m.theta[dev.model.re.theta_lower == 0] >= 0)


def test_singular_fit_lands_on_the_bound():
    ref = references()["dyestuff2_singular"]
    with pytest.warns(skmixed.SingularFitWarning):
        m = skmixed.lmer(ref["formula"], load_data(ref))
    assert m.theta[0] == 0.0 and m.is_singular


def test_sleepstudy_needs_few_evaluations():
    """The preconditioned gradient path: lme4's BOBYQA needs about 40 evaluations here; we need about 10."""
    ref = references()["sleepstudy_slope_reml"]
    m = skmixed.lmer(ref["formula"], load_data(ref))
    assert m.optsum.n_evaluations <= 15
    assert m.objective <= ref["objective"] + 1e-8


def many_levels(seed: int, levels: int = 120, n: int = 900) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g, x = rng.integers(0, levels, n), rng.uniform(0, 4, n)
    y = 1 + x + rng.normal(size=levels)[g] + 0.5 * rng.normal(size=levels)[g] * x + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": g, "w": rng.uniform(0.5, 2.0, n)})


@pytest.mark.parametrize("formula", ["y ~ x + (x | g)", "y ~ x + (x || g)", "y ~ 1 + (1 | g)"])
@pytest.mark.parametrize("reml", [False, True])
def test_sparse_gradient_for_terms_on_one_factor(formula, reml):
    """Above the dense limit, terms sharing one grouping factor make A block diagonal by level: the sparse path's
    gradient inverts those blocks."""
    df = many_levels(7)
    dev = deviance(formula, df, reml, "w")
    assert not isinstance(dev.standardized.backend, DenseBackend) and dev.has_gradient
    assert_gradient_matches_finite_differences(dev, np.random.default_rng(8), points=2)
    m = skmixed.lmer(formula, df, REML=reml, weights="w")
    assert m.optsum.optimizer.startswith("scipy L-BFGS-B")
    ref = bobyqa(dev, dev.model.re.theta_init, dev.model.re.theta_lower, xtol_abs=1e-10, ftol_abs=1e-12)
    assert m.objective <= ref.objective + 1e-8
    np.testing.assert_allclose(m.theta, ref.theta, rtol=1e-3, atol=1e-4)
