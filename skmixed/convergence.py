"""The one convergence check every fit goes through: :func:`minimize` runs an optimizer
(:mod:`skmixed.optimizers`) and finishes the same way whichever ran, as lme4's ``optwrap`` +
``checkConv`` do and a little more:

1. the optimizer's return code: an evaluation limit or a breakdown (nlopt's round-off) is
   reported, never taken as convergence;
2. components within ``BOUNDARY_TOL`` of their bound move onto it if that does not raise f
   (lme4's ``check.boundary``);
3. the boundary probe: a variance component at 0 is accepted only if moving into the
   interior does not lower f.  A scalar term's deviance is even in θ, so its gradient is 0
   at θ = 0 whatever the curvature there; a gradient method can stop on that stationary
   point with a worse objective than the interior optimum, which the probe then restarts from;
4. Newton steps on the Hessian (from differences of the analytic gradient, or of f), kept
   only when they lower f: BOBYQA stops on small changes of f, short of the optimum on flat
   directions;
5. lme4's checks at the optimum, on the components away from their bounds: the gradient
   scaled by the Hessian's Cholesky factor (``min(|R'⁻¹g|, |g|)`` below 2e-3), "unable to
   evaluate scaled gradient" where the Hessian is not positive definite, and the Hessian's
   eigenvalues (negative: a saddle, not a minimum; a tiny ratio: parameters not determined).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from .exceptions import ConvergenceWarning
from .optimizers import ROUNDING, OptSummary  # within ROUNDING, a Newton step is judged by its gradient

GRAD_TOL = 2e-3  # lme4's check.conv.grad tolerance
HESS_TOL = 1e-6  # lme4's check.conv.hess tolerance (here relative to the largest eigenvalue)
BOUNDARY_TOL = 1e-5  # lme4's boundary.tol: closer than this, a component is tried on its bound
SINGULAR_TOL = 1e-4  # lme4's isSingular tolerance: closer than this, a component counts as on its bound
#: where the probe puts a component found on its bound, in units of 1/scale (scale: see :func:`minimize`)
PROBE_STEPS = (0.01, 0.1, 1.0)
#: a probe point must improve f by this much to restart the optimizer (round-off of a deviance is far below)
PROBE_GAIN = 1e-6
#: up to this many parameters a Hessian is built from differences of f alone: O(k²) evaluations, what BOBYQA
#: itself spends on a model of that size (22 θ: 676 evaluations to converge, 276 for the Hessian)
MAX_FD_HESSIAN = 50


# --- derivatives --------------------------------------------------------------------------
def finite_difference(f, x: np.ndarray, lower: np.ndarray, h: float = 1e-4, hessian: bool = True):
    """Gradient and (with ``hessian``) Hessian of f at x by central differences (forward steps at a lower bound)."""
    n = len(x)
    f0 = f(x)
    step = np.where(x - h < lower, 0.0, h)  # 0: one-sided
    grad, hess = np.zeros(n), np.zeros((n, n))
    fp = np.zeros(n)
    for i in range(n):
        e = np.zeros(n)
        e[i] = h
        fp[i] = f(x + e)
        if step[i] > 0:
            fm = f(x - e)
            grad[i] = (fp[i] - fm) / (2 * h)
            hess[i, i] = (fp[i] - 2 * f0 + fm) / h**2
        else:
            f2 = f(x + 2 * e)
            grad[i] = (-3 * f0 + 4 * fp[i] - f2) / (2 * h)
            hess[i, i] = (f2 - 2 * fp[i] + f0) / h**2
    if not hessian:
        return grad, None
    for i in range(n):
        for j in range(i):
            ei, ej = np.zeros(n), np.zeros(n)
            ei[i], ej[j] = h, h
            hess[i, j] = hess[j, i] = (f(x + ei + ej) - fp[i] - fp[j] + f0) / h**2
    return grad, hess


def gradient_hessian(f_and_grad, x: np.ndarray, g: np.ndarray, lower: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """The Hessian from forward differences of an analytic gradient (n gradient calls), symmetrised."""
    n = len(x)
    H = np.zeros((n, n))
    for i in range(n):
        e = np.zeros(n)
        e[i] = h * max(1.0, abs(x[i]))
        H[:, i] = (f_and_grad(np.maximum(x + e, lower))[1] - g) / e[i]
    return (H + H.T) / 2


class _Derivatives:
    """Value, gradient and Hessian at a point: analytic gradient (Hessian from its differences) or differences
    of f alone (Hessian only up to ``MAX_FD_HESSIAN`` parameters)."""

    def __init__(self, f, f_and_grad, lower, hessian_step: float):
        self.f, self.f_and_grad, self.lower, self.h = f, f_and_grad, lower, hessian_step

    def value(self, x) -> float:
        return float(self.f_and_grad(x)[0]) if self.f_and_grad is not None else float(self.f(x))

    def at(self, x, hessian: bool) -> tuple[float, np.ndarray, np.ndarray | None]:
        if self.f_and_grad is not None:
            fx, g = self.f_and_grad(x)
            return float(fx), g, gradient_hessian(self.f_and_grad, x, g, self.lower, self.h) if hessian else None
        g, H = finite_difference(self.f, x, self.lower, hessian=hessian and len(x) <= MAX_FD_HESSIAN)
        return float(self.f(x)), g, H


# --- the common finish ----------------------------------------------------------------------
def minimize(
    optimizer: Callable[[np.ndarray], OptSummary],
    x0: np.ndarray,
    lower: np.ndarray,
    *,
    f=None,
    f_and_grad=None,
    scale: np.ndarray | None = None,
    check: bool = True,
    hessian: bool = True,
    newton_steps: int = 3,
    hessian_step: float = 1e-4,
    grad_tol: float = GRAD_TOL,
) -> OptSummary:
    """Run ``optimizer(x0)``, then the steps 1–5 of the module docstring; warn (ConvergenceWarning) on failure.

    ``f`` or ``f_and_grad`` is the objective; ``scale`` puts the parameters on one footing for the probe
    (a component's typical size is 1/scale).  ``hessian``: compute the Hessian at the optimum for the checks
    (lme4 does where n < 10⁴ and there are few parameters); without it, a Hessian is computed only when the
    gradient calls for Newton steps.  With ``check=False`` only steps 2 and 3 run, silently.  The returned
    summary carries the gradient (and Hessian) at the optimum when they were computed.
    """
    lower = np.asarray(lower, dtype=float)
    scale = np.ones(len(x0)) if scale is None else np.asarray(scale, dtype=float)
    deriv = _Derivatives(f, f_and_grad, lower, hessian_step)
    summary = optimizer(np.asarray(x0, dtype=float))
    summary.lower = lower
    for _ in range(3):
        _snap_to_bound(deriv, summary, lower)
        start = _probe(deriv, summary, lower, scale)
        if start is None:
            break
        again = optimizer(start)
        summary.messages.append(f"restarted from {np.array2string(start, precision=4)}: the bound was not a minimum")
        _merge(summary, again)
    if check:
        _newton(deriv, summary, lower, newton_steps, grad_tol, hessian)
        _check(summary, lower, scale, grad_tol)
    return summary


def _merge(summary: OptSummary, again: OptSummary) -> None:
    """Continue ``summary`` with a restarted run's result."""
    summary.fitlog += again.fitlog
    summary.n_evaluations += again.n_evaluations
    if again.objective < summary.objective:
        summary.theta, summary.objective = again.theta, again.objective
    summary.return_code, summary.converged = again.return_code, again.converged


def _snap_to_bound(deriv: _Derivatives, summary: OptSummary, lower: np.ndarray) -> None:
    """Components within BOUNDARY_TOL of their bound move onto it if f does not rise (lme4's check.boundary)."""
    x = summary.theta
    near = np.isfinite(lower) & (x != lower) & (x - lower < BOUNDARY_TOL)
    if near.any():
        x_bound = np.where(near, lower, x)
        f_bound = deriv.value(x_bound)
        summary.n_evaluations += 1
        if f_bound <= summary.objective:
            summary.theta, summary.objective = x_bound, f_bound


def _probe(deriv: _Derivatives, summary: OptSummary, lower: np.ndarray, scale: np.ndarray) -> np.ndarray | None:
    """The best point, if any, that moving a component on its bound into the interior reaches with a lower f."""
    x, fx = summary.theta, summary.objective
    best, best_f = None, fx - PROBE_GAIN
    for i in np.flatnonzero(np.isfinite(lower) & (x - lower < SINGULAR_TOL)):
        for step in PROBE_STEPS:
            trial = x.copy()
            trial[i] = lower[i] + step / scale[i]
            value = deriv.value(trial)
            summary.n_evaluations += 1
            if value < best_f:
                best, best_f = trial, value
    return best


def _free(x: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Components away from their bounds (lme4 checks no derivative at a singular fit; we check the others)."""
    return ~(np.isfinite(lower) & (x - lower < SINGULAR_TOL))


def _newton(
    deriv: _Derivatives, summary: OptSummary, lower: np.ndarray, steps: int, grad_tol: float, hessian: bool
) -> None:
    """Newton steps on the free components, kept while f falls; leaves the gradient and Hessian at the optimum.

    A step is taken while the gradient exceeds ``grad_tol``, and once more when the Hessian is at hand anyway.
    After a step the Hessian of the previous point is kept for the checks unless another step needs a fresh one:
    so close to the optimum it changes by far less than its own differencing error.
    """
    x = summary.theta
    fx, g, H = deriv.at(x, hessian)
    taken, stale = False, False
    for _ in range(steps):
        free = _free(x, lower)
        if not free.any() or not np.all(np.isfinite(g)):
            break
        if np.max(np.abs(g[free])) <= grad_tol and (H is None or taken):
            break
        if H is None or stale:
            H, stale = deriv.at(x, True)[2], False
            if H is None:
                break
        step = np.zeros_like(x)
        try:
            step[free] = np.linalg.solve(H[np.ix_(free, free)], g[free])
        except np.linalg.LinAlgError:
            break
        x_new = np.maximum(x - step, lower)
        f_new = deriv.value(x_new)
        summary.n_evaluations += 1
        if not f_new < fx:  # at the optimum f's last digits are rounding: there the step must lower the gradient
            if f_new > fx + ROUNDING * max(1.0, abs(fx)):
                break
            g_new = deriv.at(x_new, False)[1]
            if not np.max(np.abs(g_new[free])) < np.max(np.abs(g[free])):
                break
            x, fx, g = x_new, f_new, g_new
        else:
            x = x_new
            fx, g, _ = deriv.at(x, False)
        taken, stale = True, True
        summary.messages.append("finished with a Newton step")
    summary.theta, summary.objective, summary.gradient, summary.hessian = x, fx, g, H


def _check(summary: OptSummary, lower: np.ndarray, scale: np.ndarray, grad_tol: float) -> None:
    """lme4's checkConv on the free components, and the optimizer's return code; warn on each failure.

    An evaluation limit is always a failure.  Another stop the optimizer itself calls abnormal (nlopt's
    round-off, scipy's line-search failures) is judged by the derivatives: it fails unless they show a minimum.
    """
    free = _free(summary.theta, lower)
    g, H = summary.gradient, summary.hessian
    problems = []
    if free.any():
        problems += _gradient_problems(g, H, free, scale, grad_tol)
    if summary.return_code in ("MAXEVAL_REACHED", "MAXTIME_REACHED"):
        problems.insert(0, f"the optimizer ({summary.optimizer}) stopped at its limit of {summary.maxeval} evaluations")
    elif not summary.converged:
        if problems:
            problems.insert(0, f"convergence code {summary.return_code} from {summary.optimizer}")
        else:
            summary.messages.append(
                f"{summary.optimizer} stopped with {summary.return_code}; the derivatives show a minimum"
            )
    summary.converged = not problems
    for message in problems:
        summary.messages.append(message)
        warnings.warn(message, ConvergenceWarning, stacklevel=4)


def _gradient_problems(g, H, free: np.ndarray, scale: np.ndarray, grad_tol: float) -> list[str]:
    """:func:`_derivative_problems` of the ``free`` components' derivatives, or that the gradient could not be had."""
    if g is None or not np.isfinite(g[free]).all():
        return ["unable to evaluate the gradient at the optimum"]
    if free.all():  # no component on its bound: nothing to select
        return _derivative_problems(g, H, scale, grad_tol)
    return _derivative_problems(g[free], None if H is None else H[np.ix_(free, free)], scale[free], grad_tol)


def _derivative_problems(g: np.ndarray, H: np.ndarray | None, scale: np.ndarray, grad_tol: float) -> list[str]:
    """lme4's gradient check (scaled by the Hessian's Cholesky factor where it exists) and Hessian check."""
    problems = []
    scaled = None
    finite = H is not None and bool(np.isfinite(H).all())
    if finite:
        try:  # R'⁻¹g for H = R'R: L⁻¹g with numpy's lower factor L = R' (scipy's wrappers cost more than the solve)
            scaled = np.linalg.solve(np.linalg.cholesky(H), g)
        except np.linalg.LinAlgError:
            problems.append("unable to evaluate scaled gradient: the Hessian is not positive definite")
    worst_each = np.abs(g) if scaled is None else np.minimum(np.abs(scaled), np.abs(g))
    j = int(np.argmax(worst_each))
    if worst_each[j] > grad_tol:
        problems.append(
            f"Model failed to converge with max|grad| = {worst_each[j]:.6g} (tol = {grad_tol}, component {j + 1})"
        )
    if finite:
        D = 1.0 / scale  # eigenvalues in coordinates where each parameter's typical size is 1
        ev = np.linalg.eigvalsh(H * np.outer(D, D))
        top = max(float(np.max(np.abs(ev))), np.finfo(float).tiny)
        negative = int(np.sum(ev < -HESS_TOL * top))
        if negative:
            problems.append(f"Model failed to converge: degenerate Hessian with {negative} negative eigenvalues")
        elif np.min(ev) < HESS_TOL * top:
            problems.append("Hessian is numerically singular: parameters are not uniquely determined")
    return problems
