"""Property-based checks (hypothesis): generated data and formulas.

* Invariance: the fit does not depend on row order, the labels or dtype of the grouping levels, the location and
  units of y and x, or the units of the weights (each transformation's exact effect is accounted for).
* Bad input: whatever is generated, an exception raised to the user is an :class:`skmixed.InputError`
  (or, in the estimators, scikit-learn's own validation error), never a raw error from deep code.

``make test`` runs a bounded number of examples (the ``default`` profile of conftest.py); ``make fuzz`` many more.
"""
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import skmixed

TOL = 1e-6
FORMULAS = ["y ~ 1 + (1 | g)", "y ~ x + (1 | g)", "y ~ x + (1 | g) + (1 | h)", "y ~ x + (x | g)", "y ~ x + (1 | g/h)"]


@st.composite
def datasets(draw):
    """A grouped data set: 3–12 levels of g with 2–7 rows each, a crossed factor h, a covariate and weights."""
    seed = draw(st.integers(0, 2**31 - 1))
    levels = draw(st.integers(3, 12))
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 8, levels)
    g = np.repeat(np.arange(levels), sizes)
    n = len(g)
    h = rng.integers(0, 4, n)
    x = rng.normal(size=n) * draw(st.sampled_from([1e-3, 1.0, 1e3]))
    tau, sigma = draw(st.sampled_from([0.0, 0.3, 1.0, 3.0])), draw(st.sampled_from([0.1, 1.0]))
    y = 1.0 + 0.5 * x / np.std(x) + tau * rng.normal(size=levels)[g] + 0.5 * rng.normal(size=4)[h] + sigma * rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": g, "h": h, "w": rng.uniform(0.2, 3.0, n)})


def fit(formula, df, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return skmixed.lmer(formula, df, **kw)


def try_fit(formula, df, **kw):
    """The fit, or None when the data cannot support the model (an InputError is an acceptable answer)."""
    try:
        return fit(formula, df, **kw)
    except skmixed.InputError:
        return None


def close(a, b, what, tol=TOL):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
    assert np.max(np.abs(a - b), initial=0.0) <= tol * scale, f"{what}: {a} against {b}"


def same_fit(m, base, beta=None, theta=None, sigma=None, objective=None, fitted=None, order=None):
    """m equals base transformed: objective, θ, β, σ, and the fitted values Xβ̂ + Zb̂ row by row (so every BLUP,
    whatever the labels and order of the levels); ``order`` maps m's rows to base's."""
    assert m.objective == pytest.approx(base.objective if objective is None else objective, rel=TOL, abs=TOL)
    close(m.theta, base.theta if theta is None else theta, "θ", 10 * TOL)
    close(m.fixef.to_numpy(), base.fixef.to_numpy() if beta is None else beta, "β")
    close(m.sigma, base.sigma if sigma is None else sigma, "σ")
    expected = base.fitted if fitted is None else fitted
    close(m.fitted, expected if order is None else expected[order], "fitted values (BLUPs)")


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(datasets(), st.sampled_from(FORMULAS), st.booleans(), st.integers(0, 2**31 - 1))
def test_row_order(df, formula, reml, seed):
    base = try_fit(formula, df, REML=reml)
    assume(base is not None)
    perm = np.random.default_rng(seed).permutation(len(df))
    same_fit(fit(formula, df.iloc[perm], REML=reml), base, order=perm)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(datasets(), st.sampled_from(FORMULAS), st.sampled_from(["int", "str", "category", "datetime", "float"]),
       st.integers(0, 2**31 - 1))
def test_group_levels_relabelled_or_of_another_dtype(df, formula, dtype, seed):
    base = try_fit(formula, df)
    assume(base is not None)
    levels = np.random.default_rng(seed).permutation(200)[: df.g.max() + 1]  # new labels, in another order
    new = levels[df.g.to_numpy()]
    column = {
        "int": new,
        "str": np.array([f"L{v}" for v in new], dtype=object),
        "category": pd.Categorical([f"L{v}" for v in new]),
        "datetime": pd.Timestamp("2020-01-01") + pd.to_timedelta(new, unit="D"),
        "float": new.astype(float),
    }[dtype]
    same_fit(fit(formula, df.assign(g=column)), base)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(datasets(), st.sampled_from(FORMULAS), st.booleans(), st.floats(-9, 9), st.floats(-8, 8))
def test_response_location_and_units(df, formula, reml, log_shift, log_scale):
    base = try_fit(formula, df, REML=reml)
    assume(base is not None)
    shift, scale = np.sign(log_shift) * 10 ** abs(log_shift) * df.y.std(), 10.0**log_scale
    m = fit(formula, df.assign(y=(df.y + shift) * scale), REML=reml)
    beta = base.fixef.to_numpy() * scale
    beta[0] += shift * scale
    n, p = base.nobs, len(base.fixef)
    objective = base.objective + 2 * (n - p if reml else n) * np.log(scale)
    same_fit(m, base, beta=beta, sigma=base.sigma * scale, objective=objective, fitted=(base.fitted + shift) * scale)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(datasets(), st.sampled_from([f for f in FORMULAS if "x +" in f and "(x" not in f]), st.floats(-6, 6))
def test_covariate_location(df, formula, log_shift):
    base = try_fit(formula, df)
    assume(base is not None)
    shift = np.sign(log_shift) * 10 ** abs(log_shift) * df.x.std()
    m = fit(formula, df.assign(x=df.x + shift))
    beta = base.fixef.to_numpy().copy()
    beta[0] -= shift * beta[1]
    close(m.fixef_se.to_numpy()[1:], base.fixef_se.to_numpy()[1:], "SE")
    same_fit(m, base, beta=beta)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(datasets(), st.sampled_from(FORMULAS), st.booleans(), st.floats(-12, 12))
def test_weight_units(df, formula, reml, log_scale):
    base = try_fit(formula, df, REML=reml, weights="w")
    assume(base is not None)
    k = 10.0**log_scale
    m = fit(formula, df, REML=reml, weights=df.w * k)
    same_fit(m, base, theta=base.theta / np.sqrt(k), sigma=base.sigma * np.sqrt(k))

