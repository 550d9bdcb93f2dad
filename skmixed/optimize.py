"""Bound-constrained derivative-free minimisation of a profiled deviance, and its summary.

lme4 fits LMMs with nlopt's BOBYQA (``nloptwrap``: xtol_abs = ftol_abs = 1e-8);
we use the same algorithm from the same library.  Every fit keeps an
:class:`OptSummary`, and the optimum is checked as lme4's ``checkConv`` does: the
finite-difference gradient, scaled by the Hessian where it is positive definite,
must be below ``grad_tol``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import nlopt
import numpy as np
import scipy.linalg as la

from .exceptions import ConvergenceWarning


@dataclass
class OptSummary:
    """What the optimizer did: start, end, number of evaluations, convergence and messages."""

    optimizer: str
    theta_init: np.ndarray
    objective_init: float
    theta: np.ndarray
    objective: float
    n_evaluations: int
    converged: bool
    return_code: str
    messages: list[str] = field(default_factory=list)
    gradient: np.ndarray | None = None

    def __str__(self) -> str:
        lines = [
            f"optimizer: {self.optimizer} ({self.return_code}), {self.n_evaluations} evaluations",
            f"initial: θ = {np.array2string(self.theta_init, precision=5)}, objective {self.objective_init:.6f}",
            f"final:   θ = {np.array2string(self.theta, precision=5)}, objective {self.objective:.6f}",
            f"converged: {self.converged}",
        ]
        lines += [f"message: {m}" for m in self.messages]
        return "\n".join(lines)


_RETURN = {
    nlopt.SUCCESS: "SUCCESS",
    nlopt.STOPVAL_REACHED: "STOPVAL_REACHED",
    nlopt.FTOL_REACHED: "FTOL_REACHED",
    nlopt.XTOL_REACHED: "XTOL_REACHED",
    nlopt.MAXEVAL_REACHED: "MAXEVAL_REACHED",
    nlopt.MAXTIME_REACHED: "MAXTIME_REACHED",
}


class _Tracked:
    """Counts calls and remembers the best point (nlopt may stop with a round-off error)."""

    def __init__(self, f):
        self.f, self.count, self.best_x, self.best_f = f, 0, None, np.inf

    def __call__(self, x, grad=None):
        self.count += 1
        val = float(self.f(np.array(x, dtype=float)))
        if not np.isfinite(val):
            val = np.finfo(float).max / 1e10
        if val < self.best_f:
            self.best_f, self.best_x = val, np.array(x, dtype=float)
        return val


def bobyqa(f, x0, lower, *, xtol_abs=1e-8, ftol_abs=1e-8, maxeval=100_000, initial_step=None) -> OptSummary:
    """Minimise ``f`` from ``x0`` subject to ``x >= lower`` with nlopt's LN_BOBYQA.

    ``initial_step`` (per coordinate) sets the first trust-region radius; nlopt's default
    otherwise.
    """
    x0 = np.asarray(x0, dtype=float)
    lower = np.asarray(lower, dtype=float)
    tracked = _Tracked(f)
    f0 = tracked(x0)
    opt = nlopt.opt(nlopt.LN_BOBYQA, len(x0))
    opt.set_min_objective(tracked)
    opt.set_lower_bounds(lower)
    opt.set_xtol_abs(xtol_abs)
    opt.set_ftol_abs(ftol_abs)
    opt.set_maxeval(maxeval)
    if initial_step is not None:
        opt.set_initial_step(np.asarray(initial_step, dtype=float))
    messages = []
    try:
        x = opt.optimize(x0.copy())
        code = _RETURN.get(opt.last_optimize_result(), str(opt.last_optimize_result()))
    except nlopt.RoundoffLimited:
        x, code = tracked.best_x, "ROUNDOFF_LIMITED"
        messages.append("nlopt stopped on round-off; the best point found is used")
    x = np.maximum(np.asarray(x, dtype=float), lower)
    fx = float(f(x))
    if tracked.best_x is not None and tracked.best_f < fx:
        x, fx = tracked.best_x, tracked.best_f
    converged = code not in ("MAXEVAL_REACHED", "MAXTIME_REACHED")
    if not converged:
        messages.append(f"the optimizer reached its limit of {maxeval} evaluations")
    return OptSummary(
        optimizer="nlopt LN_BOBYQA", theta_init=x0, objective_init=f0, theta=x, objective=fx,
        n_evaluations=tracked.count, converged=converged, return_code=code, messages=messages,
    )


def _minimize_even(f_and_grad, x0, method: str, options: dict, canonical, scale=None, stalled: str = "") -> OptSummary:
    """scipy's ``method`` on f(x) given ``f_and_grad``, unbounded, in coordinates x·``scale``; the minimiser is
    mapped by ``canonical``.  A run whose message contains ``stalled`` (the line search stopped at rounding
    level) counts as converged; non-finite values are returned as a huge f so the line search backs off."""
    from scipy.optimize import minimize  # lazily: import cost

    x0 = np.asarray(x0, dtype=float)
    scale = np.ones_like(x0) if scale is None else np.asarray(scale, dtype=float)
    count, values = [0], []

    def fun(y):
        count[0] += 1
        val, grad = f_and_grad(y / scale)
        values.append(val)
        if not (np.isfinite(val) and np.all(np.isfinite(grad))):
            return np.finfo(float).max / 1e10, np.zeros_like(y)
        return val, grad / scale

    res = minimize(fun, x0 * scale, jac=True, method=method, options=options)
    converged = bool(res.success) or stalled in str(res.message)
    return OptSummary(
        optimizer=f"scipy {method} (analytic gradient)", theta_init=x0, objective_init=float(values[0]),
        theta=canonical(res.x / scale), objective=float(res.fun), n_evaluations=count[0], converged=converged,
        return_code=str(res.message), messages=[] if res.success else [f"{method}: {res.message}"],
    )


def lbfgsb_even(f_and_grad, x0, *, maxiter=1000, canonical=np.abs, scale=None) -> OptSummary:
    """Minimise an f with sign symmetries, given ``f_and_grad(x) -> (f, ∇f)``; ``canonical`` maps the
    minimiser to the representative with non-negative diagonal.

    With scalar random-effects terms the profiled deviance depends on θ only through θ²,
    so θ = 0 is always stationary and a bounded gradient method can stall on the bound θ ≥ 0
    short of an interior optimum.  Unbounded L-BFGS-B on the even function, then |θ|,
    solves the same problem without that trap.  For a vector term f is unchanged when a
    column of its template T changes sign (ΛΛ' is), and the same holds with ``canonical``
    flipping the columns whose diagonal is negative.  ``scale`` (per coordinate) is a
    diagonal preconditioner: the search runs in x·scale.
    """
    options = {"maxiter": maxiter, "ftol": 1e-12, "gtol": 1e-5}
    return _minimize_even(f_and_grad, x0, "L-BFGS-B", options, canonical, scale, stalled="ABNORMAL")


def bfgs_even(f_and_grad, x0, *, canonical, gtol=1e-3, maxiter=1000, hess_inv0=None) -> OptSummary:
    """BFGS on an f with the sign symmetries of :func:`lbfgsb_even` (unbounded, then ``canonical``), given
    ``f_and_grad(x) -> (f, ∇f)``; it stops at max|∇f| ≤ ``gtol``.  ``hess_inv0``: the initial inverse Hessian.

    glmer's stage 2 over (θ, β), β in units of its standard error, uses it: dense BFGS needs
    less than half of L-BFGS-B's evaluations there (VerbAgg: 21 against 49 from the same start).
    """
    options = {"maxiter": maxiter, "gtol": gtol, "hess_inv0": hess_inv0}
    return _minimize_even(f_and_grad, x0, "BFGS", options, canonical, stalled="precision loss")


def finite_difference(f, x: np.ndarray, lower: np.ndarray, h: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and Hessian of f at x by central differences (forward steps at a lower bound)."""
    n = len(x)
    f0 = f(x)
    step = np.where(x - h < lower, 0.0, h)  # 0: one-sided
    grad, hess = np.zeros(n), np.zeros((n, n))
    fp, fm = np.zeros(n), np.zeros(n)
    for i in range(n):
        e = np.zeros(n)
        e[i] = h
        fp[i] = f(x + e)
        if step[i] > 0:
            fm[i] = f(x - e)
            grad[i] = (fp[i] - fm[i]) / (2 * h)
            hess[i, i] = (fp[i] - 2 * f0 + fm[i]) / h**2
        else:
            f2 = f(x + 2 * e)
            grad[i] = (-3 * f0 + 4 * fp[i] - f2) / (2 * h)
            hess[i, i] = (f2 - 2 * fp[i] + f0) / h**2
    for i in range(n):
        for j in range(i):
            ei, ej = np.zeros(n), np.zeros(n)
            ei[i], ej[j] = h, h
            hess[i, j] = hess[j, i] = (f(x + ei + ej) - fp[i] - fp[j] + f0) / h**2
    return grad, hess


def _max_scaled_gradient(grad: np.ndarray, hess: np.ndarray, free: np.ndarray) -> float:
    """lme4's measure: max over free parameters of min(|R⁻¹g|, |g|), with H = R'R."""
    if not free.any():
        return 0.0
    g = grad[free]
    try:
        scaled = la.solve_triangular(la.cholesky(hess[np.ix_(free, free)], lower=False), g)
    except (la.LinAlgError, np.linalg.LinAlgError):
        return float(np.max(np.abs(g)))
    return float(np.max(np.minimum(np.abs(scaled), np.abs(g))))


def _gradient_hessian(f_and_grad, x: np.ndarray, g: np.ndarray, lower: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """The Hessian from forward differences of an analytic gradient (n gradient calls), symmetrised."""
    n = len(x)
    H = np.zeros((n, n))
    for i in range(n):
        e = np.zeros(n)
        e[i] = h * max(1.0, abs(x[i]))
        H[:, i] = (f_and_grad(np.maximum(x + e, lower))[1] - g) / e[i]
    return (H + H.T) / 2


def newton_finish(f_and_grad, summary: OptSummary, lower: np.ndarray, grad_tol: float = 2e-3, h: float = 1e-5) -> np.ndarray:
    """One Newton step from ``summary.theta`` on the Hessian from forward differences of the analytic gradient
    (n gradient calls), kept if it lowers f, then lme4's ``checkConv`` with that Hessian, which is returned
    (for the covariance of the estimates: a step this close changes it by far less than its own error).

    h = 1e-5·max(1, |x|): on the GLMM references the standard errors from it agree with those from
    central differences at h = 1e-3 to ≤ 5e-6 (4e-4 for a vector term), at half the calls.
    """
    x = summary.theta
    fx, g = f_and_grad(x)
    H = _gradient_hessian(f_and_grad, x, g, lower, h)
    free = ~(((x - lower) < 1e-4) & (g > 0))  # a positive slope into a bound is optimal
    try:
        step = np.zeros_like(x)
        step[free] = np.linalg.solve(H[np.ix_(free, free)], g[free])
        x_new = np.maximum(x - step, lower)
        f_new, g_new = f_and_grad(x_new)
        if f_new < fx:
            x, fx, g = x_new, f_new, g_new
            summary.messages.append("finished with a Newton step on the analytic gradient")
    except np.linalg.LinAlgError:
        pass
    summary.theta, summary.objective, summary.gradient = x, float(fx), g
    free = ~(((x - lower) < 1e-4) & (g > 0))
    _warn_if_not_converged(summary, _max_scaled_gradient(g, H, free), grad_tol)
    return H


def _polish_with_gradient(f_and_grad, summary: OptSummary, lower: np.ndarray, grad_tol: float) -> None:
    """Newton steps with the analytic gradient and its differenced Hessian, then lme4's check.

    Coordinates within 1e-4 of their bound with a positive slope into it first move onto the
    bound if that does not raise f: an unbounded search of an even f approaches θ = 0 only
    linearly (Dyestuff2: it stops at θ ≈ 1e-6 where lme4's BOBYQA lands on 0).
    """
    x = summary.theta
    fx, g = f_and_grad(x)
    near = ((x - lower) < 1e-4) & (x != lower) & (g > 0)
    if near.any():
        x_bound = np.where(near, lower, x)
        f_bound, g_bound = f_and_grad(x_bound)
        if f_bound <= fx:
            x, fx, g = x_bound, f_bound, g_bound
    for _ in range(3):
        free = ~(((x - lower) < 1e-4) & (g > 0))  # a positive slope into a bound is optimal
        if np.max(np.abs(np.where(free, g, 0.0)), initial=0.0) <= grad_tol:
            break
        H = _gradient_hessian(f_and_grad, x, g, lower)
        try:
            step = np.zeros_like(x)
            step[free] = np.linalg.solve(H[np.ix_(free, free)], g[free])
        except np.linalg.LinAlgError:
            break
        x_new = np.maximum(x - step, lower)
        f_new, g_new = f_and_grad(x_new)
        if not f_new < fx:
            break
        x, fx, g = x_new, f_new, g_new
        summary.messages.append("finished with a Newton step on the analytic gradient")
    summary.theta, summary.objective, summary.gradient = x, float(fx), g
    free = ~(((x - lower) < 1e-4) & (g > 0))
    worst = float(np.max(np.abs(np.where(free, g, 0.0)), initial=0.0))
    if worst > grad_tol:
        worst = _max_scaled_gradient(g, _gradient_hessian(f_and_grad, x, g, lower), free)
    _warn_if_not_converged(summary, worst, grad_tol)


def _warn_if_not_converged(summary: OptSummary, worst: float, grad_tol: float) -> None:
    if worst > grad_tol:
        msg = f"Model failed to converge with max|grad| = {worst:.6g} (tol = {grad_tol})"
        summary.messages.append(msg)
        summary.converged = False
        warnings.warn(msg, ConvergenceWarning, stacklevel=5)
    elif not summary.converged:
        warnings.warn(summary.messages[0], ConvergenceWarning, stacklevel=5)


def polish_and_check(f, summary: OptSummary, lower: np.ndarray, grad_tol: float = 2e-3, max_params: int = 20,
                     f_and_grad=None) -> None:
    """Finish the optimum with a Newton step, then run lme4's ``checkConv``.

    BOBYQA stops on small changes in f, which can leave a flat direction short of the
    optimum; the step is kept only if it lowers f.  The check warns when the
    Hessian-scaled gradient (ignoring slopes that push into a bound) exceeds ``grad_tol``.
    With ``f_and_grad`` the gradient is analytic and the Hessian comes from differences
    of it; otherwise both come from finite differences of f.
    """
    if f_and_grad is not None:
        _polish_with_gradient(f_and_grad, summary, lower, grad_tol)
        return
    x = summary.theta
    if len(x) > max_params:
        return
    grad, hess = finite_difference(f, x, lower)
    free = ~(((x - lower) < 1e-4) & (grad > 0))  # a positive slope into a bound is optimal
    if free.any():
        try:
            step = np.zeros_like(x)
            step[free] = np.linalg.solve(hess[np.ix_(free, free)], grad[free])
            if np.all(np.linalg.eigvalsh(hess[np.ix_(free, free)]) > 0):
                x_new = np.maximum(x - step, lower)
                f_new = f(x_new)
                if f_new < summary.objective:
                    summary.theta, summary.objective = x_new, float(f_new)
                    summary.messages.append("finished with a Newton step on finite differences")
                    grad = finite_difference(f, x_new, lower)[0]
                    free = ~(((x_new - lower) < 1e-4) & (grad > 0))
        except np.linalg.LinAlgError:
            pass
    summary.gradient = grad
    _warn_if_not_converged(summary, _max_scaled_gradient(grad, hess, free), grad_tol)
