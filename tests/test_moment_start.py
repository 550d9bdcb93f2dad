"""The gradient path's starting θ (skmixed.starts.moment_theta): per-level least-squares moments of a vector
term's covariance, near the fitted one on a single factor, the identity start where no levels allow them, and fewer
evaluations on a crossed maximal model than from the identity."""

import numpy as np
import pandas as pd
from test_blocked_pls import kb07_shape

import skmixed
from skmixed.pls import theta_scale
from skmixed.starts import moment_theta


def one_factor(seed: int = 5, groups: int = 300, per_group: int = 15) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per_group)
    x1, x2 = rng.normal(size=len(g)), rng.uniform(0, 2, len(g))
    cov = [[1.0, 0.3, -0.2], [0.3, 0.5, 0.1], [-0.2, 0.1, 0.3]]
    effects = rng.multivariate_normal(np.zeros(3), cov, groups)
    y = 1 + 0.5 * x1 + effects[g, 0] + effects[g, 1] * x1 + effects[g, 2] * x2 + rng.normal(0, 0.8, len(g))
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g})


def start(formula, df):
    model = skmixed.build(formula, df)
    return model, moment_theta(model.cp, model.re, theta_scale(model.cp, model.re))


def test_vector_start_is_near_the_fitted_covariance():
    formula, df = "y ~ x1 + x2 + (1 + x1 + x2 | g)", one_factor()
    model, theta0 = start(formula, df)
    term = model.re.terms[0]
    T0, T = term.T(theta0), term.T(skmixed.lmer(formula, df).theta)  # unit weights: θ̃ = θ
    assert np.linalg.norm(T0 @ T0.T - T @ T.T) <= 0.02 * np.linalg.norm(T @ T.T)


def test_a_covariate_constant_within_levels_leaves_the_identity_start():
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(20), 3)
    df = pd.DataFrame({"y": rng.normal(size=60), "x": rng.normal(size=20)[g], "g": g})
    model, theta0 = start("y ~ x + (1 + x | g)", df)  # every Zⱼ'Zⱼ has rank 1: no per-level estimate
    np.testing.assert_array_equal(theta0, model.re.theta_init / theta_scale(model.cp, model.re))


def test_crossed_maximal_model_needs_fewer_evaluations_than_from_the_identity():
    formula, df = "y ~ 1 + a + b + c + (1 + a + b + c | subj) + (1 + a + b + c | item)", kb07_shape(0)
    m = skmixed.lmer(formula, df)
    model = skmixed.build(formula, df)
    identity = model.standardization.theta(model.re.theta_init / theta_scale(model.cp, model.re))
    from_identity = skmixed.lmer(formula, df, start=identity)
    assert m.optsum.n_evaluations <= 0.75 * from_identity.optsum.n_evaluations  # 24 against 37
    assert m.objective <= from_identity.objective + 1e-9


def crossed_and_nested(seed: int = 3, n: int = 20_000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a, b, c = rng.integers(0, 2000, n), rng.integers(0, 100, n), rng.integers(0, 30, n)
    ac = a % 30  # a nested in ac: each level of a is in one level of ac
    y = rng.normal(0, 1.0, 2000)[a] + rng.normal(0, 0.5, 100)[b] + rng.normal(0, 0.8, 30)[ac] + rng.normal(0, 1, n)
    return pd.DataFrame({"y": y + 0.3 * c, "c": c, "a": a, "b": b, "ac": ac})


def test_intercept_starts_separate_crossed_and_nested_variances():
    """Each intercept term's one-way analysis takes the other terms' variance for noise: θ of the 100-level factor
    would start near 0.5/√(1 + 1 + 0.64); the joint equations start within a few percent of the fitted θ."""
    formula, df = "y ~ c + (1 | a) + (1 | b) + (1 | ac)", crossed_and_nested()
    model, theta0 = start(formula, df)
    theta = skmixed.lmer(formula, df, REML=False).theta
    np.testing.assert_allclose(model.standardization.theta(theta0), theta, rtol=0.1)


def test_singular_moment_equations_fall_back_on_each_terms_own_analysis():
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(40), 5)
    df = pd.DataFrame({"y": rng.normal(size=200) + rng.normal(size=40)[g], "g": g, "h": g})  # h is g renamed
    model, theta0 = start("y ~ 1 + (1 | g) + (1 | h)", df)  # the two terms' equations are the same equation
    assert np.all(np.isfinite(theta0)) and np.all(theta0 > 0)
    np.testing.assert_allclose(theta0[0], theta0[1], rtol=1e-12)
