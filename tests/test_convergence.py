"""The one convergence check every fit goes through (skmixed.optimizers.minimize), and the boundary probe."""

import warnings

import numpy as np
import pandas as pd
import pytest

import skmixed
from skmixed.convergence import minimize
from skmixed.exceptions import ConvergenceWarning
from skmixed.optimizers import OptSummary, bobyqa


def data(seed: int = 0, groups: int = 20, per: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = groups * per
    g = np.repeat(np.arange(groups), per)
    x = rng.normal(size=n)
    y = 1 + x + 0.9 * rng.normal(size=groups)[g] + 0.4 * rng.normal(size=groups)[g] * x + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": g, "one": 1.0, "yb": (y > 1).astype(int)})


def quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


# --- the stationary point θ = 0 -------------------------------------------------------------
@pytest.mark.parametrize(
    "formula,start",
    [
        ("y ~ x + (0 + one | g)", [0.0]),  # the case: a scalar term's deviance is even in θ, ∇f(0) = 0
        ("y ~ x + (1 | g)", [0.0]),
        ("y ~ x + (1 + x | g)", [0.0, 0.0, 0.0]),  # a vector term at T = 0: every first derivative vanishes
    ],
)
def test_a_start_on_the_bound_does_not_stop_the_fit_there(formula, start):
    df = data()
    stuck = quiet(skmixed.lmer, formula, df, start=start)
    free = quiet(skmixed.lmer, formula, df)
    assert stuck.objective == pytest.approx(free.objective, abs=1e-7)
    np.testing.assert_allclose(stuck.theta, free.theta, atol=1e-5)
    assert stuck.is_singular == free.is_singular
    assert any("restarted" in m for m in stuck.optsum.messages)


def test_one_column_term_equals_the_intercept_term():
    """(0 + one | g) with a column of ones is (1 | g): same fit (it was 28 deviance units worse, variance 0)."""
    df = data()
    one = quiet(skmixed.lmer, "y ~ x + (0 + one | g)", df, start=[0.0])
    intercept = quiet(skmixed.lmer, "y ~ x + (1 | g)", df)
    assert one.objective == pytest.approx(intercept.objective, rel=1e-12)
    assert one.varcorr.vcov[0] == pytest.approx(intercept.varcorr.vcov[0], rel=1e-6)


def test_glmm_start_on_the_bound():
    df = data()
    stuck = quiet(skmixed.glmer, "yb ~ x + (1 | g)", df, family="binomial", start=[0.0])
    free = quiet(skmixed.glmer, "yb ~ x + (1 | g)", df, family="binomial")
    assert stuck.objective == pytest.approx(free.objective, abs=1e-6)
    assert stuck.theta == pytest.approx(free.theta, abs=1e-4)


def test_probe_restarts_an_optimizer_that_stopped_on_a_stationary_bound():
    """f(θ) = (θ² − 1)²: even, ∇f(0) = 0, f(0) = 1 > f(1) = 0.  An optimizer that returns θ = 0 is restarted."""

    def f(x):
        return float((x[0] ** 2 - 1) ** 2)

    calls = []

    def optimizer(x0):  # like a gradient method: it stays where the gradient vanishes
        calls.append(x0.copy())
        if x0[0] == 0:
            return OptSummary("gradient stub", x0, f(x0), x0, f(x0), 1, True, "SUCCESS")
        return bobyqa(f, x0, np.zeros(1))

    summary = minimize(optimizer, np.zeros(1), np.zeros(1), f=f)
    assert summary.theta == pytest.approx([1.0], abs=1e-5) and summary.objective < 1e-9
    assert len(calls) == 2 and calls[1][0] > 0


def test_a_true_minimum_on_the_bound_stays_there():
    """f(θ) = (θ + 1)²: the constrained minimum is θ = 0, and the probe finds nothing lower."""
    summary = minimize(
        lambda x0: bobyqa(lambda x: float((x[0] + 1) ** 2), x0, np.zeros(1)),
        np.ones(1),
        np.zeros(1),
        f=lambda x: float((x[0] + 1) ** 2),
    )
    assert summary.theta[0] == 0.0 and summary.converged and not any("restarted" in m for m in summary.messages)


# --- return codes and derivative checks ------------------------------------------------------
def _rosenbrock(x):
    return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


@pytest.mark.parametrize("k", [3, 25])
def test_evaluation_limit_is_reported_whatever_the_number_of_parameters(k):
    """BOBYQA at its evaluation limit was silent for more than 20 parameters."""
    lower = np.full(k, -np.inf)
    with pytest.warns(ConvergenceWarning, match="limit of 30 evaluations"):
        summary = minimize(lambda x0: bobyqa(_rosenbrock, x0, lower, maxeval=30), np.zeros(k), lower, f=_rosenbrock)
    assert not summary.converged and summary.return_code == "MAXEVAL_REACHED"
    assert summary.maxeval == 30 and summary.tolerances == {"xtol_abs": 1e-8, "ftol_abs": 1e-8}


def _stub(x, value, code, converged=False):
    def optimizer(x0):
        return OptSummary("stub", x0, value, np.asarray(x, dtype=float), value, 1, converged, code)

    return optimizer


def test_roundoff_is_not_convergence_unless_the_derivatives_show_a_minimum():
    def f(x):
        return float(np.sum((x - 1) ** 2))

    with pytest.warns(ConvergenceWarning, match="convergence code ROUNDOFF_LIMITED"):
        away = minimize(
            _stub([0.5, 0.5], f(np.array([0.5, 0.5])), "ROUNDOFF_LIMITED"),
            np.zeros(2),
            np.full(2, -np.inf),
            f=f,
            newton_steps=0,
        )
    assert not away.converged
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        at = minimize(_stub([1.0, 1.0], 0.0, "ROUNDOFF_LIMITED"), np.zeros(2), np.full(2, -np.inf), f=f)
    assert at.converged and any("derivatives show a minimum" in m for m in at.messages)


def test_a_saddle_is_reported_through_the_hessian():
    """At a saddle the gradient is 0 but the Hessian is not positive definite: lme4's two messages."""

    def f(x):
        return float(x[0] ** 2 - x[1] ** 2)

    with pytest.warns(ConvergenceWarning) as caught:
        summary = minimize(
            _stub([0.0, 0.0], 0.0, "SUCCESS", converged=True), np.zeros(2), np.full(2, -np.inf), f=f, newton_steps=0
        )
    text = " | ".join(str(w.message) for w in caught)
    assert "unable to evaluate scaled gradient" in text and "1 negative eigenvalues" in text
    assert not summary.converged


def test_large_gradient_is_reported_with_its_component():
    def f(x):
        return float(np.sum((x - 1) ** 2))

    with pytest.warns(ConvergenceWarning, match=r"max\|grad\| = 0.707107 \(tol = 0.002, component 2\)"):
        minimize(
            _stub([1.0, 0.5], 0.25, "SUCCESS", converged=True), np.zeros(2), np.full(2, -np.inf), f=f, newton_steps=0
        )


def test_glmm_with_many_rows_is_still_checked():
    """The GLMM paths skipped every check from n = 10⁴ on; the gradient is now checked at any n."""
    rng = np.random.default_rng(5)
    n, groups = 12_000, 200
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    y = rng.random(n) < 1 / (1 + np.exp(-(0.2 + 0.5 * x + rng.normal(size=groups)[g])))
    df = pd.DataFrame({"y": y.astype(int), "x": x, "g": g})
    m = skmixed.glmer("y ~ x + (1 | g)", df, family="binomial")
    assert m.optsum.gradient is not None and m.optsum.converged
    with pytest.warns(ConvergenceWarning, match="limit of 3 evaluations"):
        skmixed.glmer("y ~ x + (1 | g)", df, family="binomial", nAGQ=0, maxeval=3)


def test_lmer_at_its_evaluation_limit_warns(monkeypatch):
    """A model on the BOBYQA path (crossed vector and scalar terms above the dense size, the blocked factor's cost
    set out of reach and the sparse factor's selected inverse withheld: either would give this one a gradient)."""
    monkeypatch.setattr(skmixed.backends, "BLOCKED_WORK", np.inf)
    monkeypatch.setattr(skmixed.backends, "make_selected_inverse", lambda chol, A: None)
    rng = np.random.default_rng(2)
    n, groups = 900, 150
    g, h = rng.integers(0, groups, n), rng.integers(0, 10, n)
    x = rng.normal(size=n)
    y = (
        x
        + rng.normal(size=groups)[g]
        + 0.5 * rng.normal(size=groups)[g] * x
        + rng.normal(size=10)[h]
        + rng.normal(size=n)
    )
    df = pd.DataFrame({"y": y, "x": x, "g": g, "h": h})
    with pytest.warns(ConvergenceWarning, match="limit of 5 evaluations"):
        m = skmixed.lmer("y ~ x + (1 + x | g) + (1 | h)", df, maxeval=5)
    assert m.optsum.optimizer == "nlopt LN_BOBYQA" and not m.optsum.converged


def test_optimization_summary_keeps_bounds_tolerances_and_a_log_on_the_users_scale():
    df = data()
    w = np.random.default_rng(1).uniform(0.5, 2, len(df)) * 1e6  # θ on the user's scale differs from the fitted one
    m = quiet(skmixed.lmer, "y ~ x + (1 + x | g)", df, weights=w)
    opt = m.optsum
    np.testing.assert_array_equal(opt.lower, [0.0, -np.inf, 0.0])
    assert opt.tolerances and len(opt.fitlog) >= 2
    best = min(opt.fitlog, key=lambda pair: pair[1])
    assert best[1] == pytest.approx(m.objective, abs=1e-6)
    np.testing.assert_allclose(opt.theta, m.theta, rtol=1e-12)
    assert "tolerances" in str(opt) and "evaluations" in str(opt)


def test_more_than_twenty_parameters_are_checked_too(monkeypatch):
    """22 θ on the BOBYQA path: no check at all before; now the scaled gradient on a finite-difference Hessian.

    The path crossed vector terms take where the blocked factor (skmixed.blocked_pls) would cost more than the sparse
    one and the sparse factor's selected inverse is not offered: here neither holds, so both are set out of reach."""
    monkeypatch.setattr(skmixed.backends, "BLOCKED_WORK", np.inf)
    monkeypatch.setattr(skmixed.backends, "make_selected_inverse", lambda chol, A: None)
    rng = np.random.default_rng(3)
    n, groups = 3000, 40
    g, h = rng.integers(0, groups, n), rng.integers(0, 15, n)
    X = rng.normal(size=(n, 5))
    B = rng.normal(size=(groups, 6)) * [1, 0.5, 0.5, 0.3, 0.3, 0.2]
    y = B[g, 0] + np.einsum("ij,ij->i", X, B[g, 1:]) + rng.normal(size=15)[h] + rng.normal(size=n)
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(1, 6)]).assign(y=y, g=g, h=h)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        m = skmixed.lmer("y ~ x1 + x2 + x3 + x4 + x5 + (1 + x1 + x2 + x3 + x4 + x5 | g) + (1 | h)", df)
    assert len(m.theta) == 22 and m.optsum.optimizer == "nlopt LN_BOBYQA"
    assert m.optsum.converged and m.optsum.gradient is not None and m.optsum.hessian is not None
