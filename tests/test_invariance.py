"""The numbers do not depend on the location and units of y, x and the weights (issue: trust on every input).

Each transformation has an exact effect on the estimates; the fit of the transformed data must show
that effect to 1e-6 (LMMs) or 1e-4 (GLMMs) relative:

* y + a:  β₀ + a; nothing else moves.
* y · k:  β, b̂, σ times k; θ unchanged; the ML deviance + 2n log k, the REML criterion + 2(n − p) log k.
* x + a (x in the fixed part only):  β₀ − aβₓ; nothing else moves (X changes by a unit triangular matrix).
* w · k:  Var(ε) = σ²W⁻¹ and Var(b) = σ²ΛΛ' are unchanged by σ → σ√k, θ → θ/√k; β, b̂ and both criteria
  are unchanged (the distribution of y is the same).
"""

import warnings

import numpy as np
import pandas as pd
import pytest

import skmixed

LMM_TOL = 1e-6
GLMM_TOL = 1e-4


def grouped_data(seed: int = 1, groups: int = 300, per: int = 5, sigma: float = 0.1) -> pd.DataFrame:
    """The issue's example: residual SD 0.1 against group SD 1, 300 groups, plus a crossed factor and weights."""
    rng = np.random.default_rng(seed)
    n = groups * per
    g = np.repeat(np.arange(groups), per)
    h = rng.integers(0, 12, n)
    x = rng.normal(size=n)
    z = rng.normal(size=n)
    y = 2 + 0.5 * x + rng.normal(size=groups)[g] + 0.3 * rng.normal(size=12)[h] + 0.2 * rng.normal(size=groups)[g] * z
    y = y + rng.normal(scale=sigma, size=n)
    return pd.DataFrame({"y": y, "x": x, "z": z, "g": g, "h": h, "w": rng.uniform(0.5, 2.0, n)})


def fit(formula, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return skmixed.lmer(formula, data, **kw)


def blups(m) -> np.ndarray:
    return np.concatenate([df.to_numpy().ravel() for df in m.ranef.values()])


def assert_close(actual, expected, tol, what):
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1e-300)
    err = float(np.max(np.abs(actual - expected), initial=0.0)) / scale
    assert err <= tol, f"{what}: relative error {err:.2e} > {tol:g}\n actual {actual}\n expected {expected}"


def assert_transformed(m, base, *, beta, theta, sigma, b, objective, tol=LMM_TOL):
    assert_close(m.fixef.to_numpy(), beta, tol, "β")
    assert_close(m.theta, theta, tol, "θ")
    assert_close(m.sigma, sigma, tol, "σ")
    assert_close(blups(m), b, tol, "BLUPs")
    assert m.objective == pytest.approx(objective, rel=tol, abs=tol * max(1.0, abs(base.objective)))


FORMULAS = [
    "y ~ x + (1 | g)",  # one scalar term: the blocked sparse factor with its gradient
    "y ~ x + (1 | g) + (1 | h)",  # crossed scalar terms
    "y ~ x + (1 + z | h)",  # a vector term, q ≤ 100: the dense path
    "y ~ x + (1 + z | g) + (1 | h)",  # vector and scalar terms on the sparse path: BOBYQA
]


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("reml", [True, False])
def test_response_shift_and_scale(formula, reml):
    df = grouped_data()
    base = fit(formula, df, REML=reml)
    sd = df.y.std()
    n, p = base.nobs, len(base.fixef)
    for shift in (1e9 * sd, -1e6 * sd):
        m = fit(formula, df.assign(y=df.y + shift), REML=reml)
        beta = base.fixef.to_numpy().copy()
        beta[0] += shift
        assert_transformed(
            m, base, beta=beta, theta=base.theta, sigma=base.sigma, b=blups(base), objective=base.objective
        )
    for k in (1e8, 1e-8):
        m = fit(formula, df.assign(y=df.y * k), REML=reml)
        objective = base.objective + 2 * (n - p if reml else n) * np.log(k)
        assert_transformed(
            m,
            base,
            beta=base.fixef.to_numpy() * k,
            theta=base.theta,
            sigma=base.sigma * k,
            b=blups(base) * k,
            objective=objective,
        )


@pytest.mark.parametrize("formula", FORMULAS)
def test_covariate_shift_moves_only_the_intercept(formula):
    df = grouped_data()
    base = fit(formula, df)
    shift = 1e6 * df.x.std()
    m = fit(formula, df.assign(x=df.x + shift))
    beta = base.fixef.to_numpy().copy()
    beta[0] -= shift * beta[1]
    assert_transformed(m, base, beta=beta, theta=base.theta, sigma=base.sigma, b=blups(base), objective=base.objective)
    # the slope's standard error is the same; the intercept's is that of the prediction at x = −shift
    assert m.fixef_se["x"] == pytest.approx(base.fixef_se["x"], rel=LMM_TOL)


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("reml", [True, False])
def test_weights_scale(formula, reml):
    df = grouped_data()
    base = fit(formula, df, REML=reml, weights="w")
    for k in (1e12, 1e-12):
        m = fit(formula, df, REML=reml, weights=df.w * k)
        assert_transformed(
            m,
            base,
            beta=base.fixef.to_numpy(),
            theta=base.theta / np.sqrt(k),
            sigma=base.sigma * np.sqrt(k),
            b=blups(base),
            objective=base.objective,
        )
        assert m.is_singular == base.is_singular
        assert_close(m.fixef_se.to_numpy(), base.fixef_se.to_numpy(), LMM_TOL, "SE")
        for (name, sd), (_, sd0) in zip(m.ranef_sd.items(), base.ranef_sd.items()):
            assert_close(sd.to_numpy(), sd0.to_numpy(), LMM_TOL, f"conditional SDs of {name}")


def test_issue_example_keeps_sigma_and_theta():
    """σ = 0.1 and 300 groups: y + 1e6 gave σ 45% and θ 90% off; y + 1e9 raised AttributeError."""
    df = grouped_data()
    base = fit("y ~ x + (1 | g)", df)
    for shift in (1e6, 1e9):
        m = fit("y ~ x + (1 | g)", df.assign(y=df.y + shift))
        assert m.sigma == pytest.approx(base.sigma, rel=1e-6)
        assert m.theta == pytest.approx(base.theta, rel=1e-6)
    m = fit("y ~ x + (1 | g)", df.assign(x=df.x + 1e6))
    assert m.fixef_se["x"] == pytest.approx(base.fixef_se["x"], rel=1e-6)


def test_a_response_linear_in_the_fixed_effects_is_an_input_error():
    df = grouped_data()
    for y in (np.full(len(df), 3.0), 2 + 3 * df.x, np.zeros(len(df))):
        with pytest.raises(skmixed.InputError, match="exact linear function|zero in every row"):
            skmixed.lmer("y ~ x + (1 | g)", df.assign(y=y))


def test_zero_weights_are_rows_left_out():
    df = grouped_data(groups=40)
    w = df.w.to_numpy().copy()
    w[::7] = 0.0
    m = fit("y ~ x + (1 | g) + (1 | h)", df, weights=w)
    kept = fit("y ~ x + (1 | g) + (1 | h)", df[w > 0], weights=w[w > 0])
    assert m.nobs == kept.nobs == int((w > 0).sum())
    assert m.objective == pytest.approx(kept.objective, rel=1e-12)
    np.testing.assert_allclose(m.theta, kept.theta, rtol=1e-8)
    with pytest.raises(skmixed.DataError, match="every weight is zero"):
        skmixed.lmer("y ~ x + (1 | g)", df, weights=np.zeros(len(df)))


GLMM_CASES = [
    ("binomial", "yb ~ x + (1 | g)"),
    ("poisson", "yc ~ x + (1 | g)"),
    ("poisson", "yc ~ x + (1 | g) + (1 | h)"),
]


def glmm_data(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = grouped_data(seed, groups=60)
    eta = -0.3 + 0.6 * df.x + 0.8 * rng.normal(size=60)[df.g]
    df["yb"] = rng.random(len(df)) < 1 / (1 + np.exp(-eta))
    df["yc"] = rng.poisson(np.exp(0.5 + 0.3 * df.x + 0.5 * rng.normal(size=60)[df.g]))
    df["yg"] = rng.gamma(shape=4.0, scale=np.exp(1 + 0.3 * df.x + 0.4 * rng.normal(size=60)[df.g]) / 4.0)
    return df


def gfit(formula, data, family, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return skmixed.glmer(formula, data, family=family, **kw)


@pytest.mark.parametrize("family,formula", GLMM_CASES)
@pytest.mark.parametrize("nAGQ", [0, 1])
def test_glmm_covariate_shift(family, formula, nAGQ):
    df = glmm_data()
    base = gfit(formula, df, family, nAGQ=nAGQ)
    shift = 1e6 * df.x.std()
    m = gfit(formula, df.assign(x=df.x + shift), family, nAGQ=nAGQ)
    beta = base.fixef.to_numpy().copy()
    beta[0] -= shift * beta[1]
    assert_transformed(
        m, base, beta=beta, theta=base.theta, sigma=base.sigma, b=blups(base), objective=base.objective, tol=GLMM_TOL
    )
    assert m.fixef_se["x"] == pytest.approx(base.fixef_se["x"], rel=GLMM_TOL)


def test_glmm_gamma_response_scale():
    """Gamma, log link: y·k moves β₀ by log k, the density by 1/k per observation; the dispersion is unchanged."""
    df = glmm_data()
    base = gfit("yg ~ x + (1 | g)", df, skmixed.families.Gamma(link="log"))
    k = 1e8
    m = gfit("yg ~ x + (1 | g)", df.assign(yg=df.yg * k), skmixed.families.Gamma(link="log"))
    beta = base.fixef.to_numpy().copy()
    beta[0] += np.log(k)
    assert_transformed(
        m,
        base,
        beta=beta,
        theta=base.theta,
        sigma=base.sigma,
        b=blups(base),
        objective=base.objective + 2 * base.nobs * np.log(k),
        tol=GLMM_TOL,
    )
