"""The optimizers a fit uses, and the record of what one did (:class:`OptSummary`).

nlopt's BOBYQA (lme4's ``nloptwrap``: the same algorithm from the same library, xtol_abs =
ftol_abs = 1e-8) where no gradient is available, scipy's L-BFGS-B or BFGS where one is.  Every
run ends in the convergence checks of :func:`skmixed.convergence.minimize`.  Every evaluation is
logged (:attr:`OptSummary.fitlog`), as MixedModels.jl's ``OptSummary`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import nlopt
import numpy as np

from .bfgs import bfgs


@dataclass
class OptSummary:
    """What the optimizer did: start, end, evaluations, bounds, tolerances, return code, checks and a log.

    ``theta`` holds every optimised parameter (θ for an LMM, (θ, β) for a GLMM's Laplace and
    quadrature fits), on the user's scale, as do ``theta_init``, the objectives and ``fitlog``
    (one ``(parameters, objective)`` pair per evaluation).  ``gradient`` and ``hessian`` are at the
    optimum in the coordinates the optimizer worked in (the standardized problem of
    :mod:`skmixed.standardize`), where the tolerances apply.
    """

    optimizer: str
    theta_init: np.ndarray
    objective_init: float
    theta: np.ndarray
    objective: float
    n_evaluations: int
    converged: bool
    return_code: str
    messages: list[str] = field(default_factory=list)
    lower: np.ndarray | None = None
    tolerances: dict = field(default_factory=dict)
    maxeval: int | None = None
    fitlog: list = field(default_factory=list, repr=False)
    gradient: np.ndarray | None = None
    hessian: np.ndarray | None = field(default=None, repr=False)

    def __str__(self) -> str:
        tol = ", ".join(f"{k} = {v:g}" for k, v in self.tolerances.items())
        lines = [
            f"optimizer: {self.optimizer} ({self.return_code}), {self.n_evaluations} evaluations"
            + (f" of at most {self.maxeval}" if self.maxeval else ""),
            f"tolerances: {tol}" if tol else "",
            f"initial: θ = {np.array2string(self.theta_init, precision=5)}, objective {self.objective_init:.6f}",
            f"final:   θ = {np.array2string(self.theta, precision=5)}, objective {self.objective:.6f}",
            f"converged: {self.converged}",
        ]
        lines += [f"message: {m}" for m in self.messages]
        return "\n".join(line for line in lines if line)

    def map(self, parameters: Callable, objective: Callable) -> None:
        """Re-express the parameters and objectives (not the derivatives) with the two maps, in place."""
        self.theta_init, self.theta = parameters(self.theta_init), parameters(self.theta)
        self.objective_init, self.objective = objective(self.objective_init), objective(self.objective)
        self.fitlog = [(parameters(x), objective(f)) for x, f in self.fitlog]

    def map_rows(self, parameters: Callable, objective: Callable | None = None) -> None:
        """:meth:`map` for maps that treat each row of a stacked array as they treat that row alone (elementwise
        arithmetic): one call for all the points, the same numbers; ``objective`` None leaves the values as they
        are."""
        points = parameters(np.array([self.theta_init, self.theta] + [x for x, _ in self.fitlog]))
        self.theta_init, self.theta = points[0], points[1]
        if objective is None:
            self.fitlog = [(x, f) for x, (_, f) in zip(points[2:], self.fitlog)]
            return
        values = objective(np.array([self.objective_init, self.objective] + [f for _, f in self.fitlog]))
        self.objective_init, self.objective = values[0], values[1]
        self.fitlog = list(zip(points[2:], values[2:]))


class _Logged:
    """f (returning a value, or a value and a gradient) that counts and logs its evaluations."""

    def __init__(self, f, log: list):
        self.f, self.log = f, log

    def __call__(self, x):
        x = np.array(x, dtype=float)
        out = self.f(x)
        value = out[0] if isinstance(out, tuple) else out
        self.log.append((x, float(value)))
        return out

    def best(self) -> tuple[np.ndarray, float]:
        finite = [(x, f) for x, f in self.log if np.isfinite(f)]
        return min(finite, key=lambda pair: pair[1]) if finite else self.log[-1]


_RETURN = {
    nlopt.SUCCESS: "SUCCESS",
    nlopt.STOPVAL_REACHED: "STOPVAL_REACHED",
    nlopt.FTOL_REACHED: "FTOL_REACHED",
    nlopt.XTOL_REACHED: "XTOL_REACHED",
    nlopt.MAXEVAL_REACHED: "MAXEVAL_REACHED",
    nlopt.MAXTIME_REACHED: "MAXTIME_REACHED",
}
_CONVERGED_CODES = ("SUCCESS", "STOPVAL_REACHED", "FTOL_REACHED", "XTOL_REACHED")


def bobyqa(f, x0, lower, *, xtol_abs=1e-8, ftol_abs=1e-8, maxeval=100_000, initial_step=None) -> OptSummary:
    """Minimise ``f`` from ``x0`` subject to ``x >= lower`` with nlopt's LN_BOBYQA (lme4's tolerances by default).

    ``initial_step`` (per coordinate) sets the first trust-region radius; nlopt's default otherwise.
    """
    x0 = np.asarray(x0, dtype=float)
    lower = np.asarray(lower, dtype=float)
    logged = _Logged(f, [])

    def objective(x, grad=None):
        value = logged(x)
        return value if np.isfinite(value) else np.finfo(float).max / 1e10

    f0 = logged(x0)
    opt = nlopt.opt(nlopt.LN_BOBYQA, len(x0))
    opt.set_min_objective(objective)
    opt.set_lower_bounds(lower)
    opt.set_xtol_abs(xtol_abs)
    opt.set_ftol_abs(ftol_abs)
    opt.set_maxeval(maxeval)
    if initial_step is not None:
        opt.set_initial_step(np.asarray(initial_step, dtype=float))
    try:
        opt.optimize(x0.copy())
        code = _RETURN.get(opt.last_optimize_result(), f"nlopt code {opt.last_optimize_result()}")
    except nlopt.RoundoffLimited:
        code = "ROUNDOFF_LIMITED"
    x, fx = logged.best()
    return OptSummary(
        optimizer="nlopt LN_BOBYQA",
        theta_init=x0,
        objective_init=float(f0),
        theta=np.maximum(x, lower),
        objective=float(fx),
        n_evaluations=len(logged.log),
        converged=code in _CONVERGED_CODES,
        return_code=code,
        lower=lower,
        tolerances={"xtol_abs": xtol_abs, "ftol_abs": ftol_abs},
        maxeval=maxeval,
        fitlog=logged.log,
    )


#: within this relative change f is flat to rounding
ROUNDING = 1e-13
#: at the optimum, L-BFGS-B's line search can spend up to 20 evaluations on points whose f equals the best one's
#: within rounding: after this many in a row the run stops at the best point, and the checks of
#: :func:`skmixed.convergence.minimize` judge it as they judge a run that scipy stopped abnormally there
STALL_EVALUATIONS = 3


class _Stalled(Exception):
    """The objective's values have stayed equal to the best within rounding for ``STALL_EVALUATIONS`` calls."""


class _StallWatch:
    """Counts the evaluations in a row whose value equals the best so far within rounding (neither lower by more
    than rounding, which resets the count, nor higher, as a line search's overshoot is, which leaves it)."""

    def __init__(self):
        self.best, self.flat = np.inf, 0

    def __call__(self, value: float) -> bool:
        tol = ROUNDING * abs(self.best) if np.isfinite(self.best) else 0.0
        if value < self.best - tol:
            self.best, self.flat = value, 0
        elif value <= self.best + tol:
            self.best, self.flat = min(self.best, value), self.flat + 1
        return self.flat >= STALL_EVALUATIONS


def _scipy_symmetric(
    f_and_grad, x0, method: str, options: dict, canonical, scale=None, stalled: str = ""
) -> OptSummary:
    """scipy's ``method`` on f(x) given ``f_and_grad``, unbounded, in coordinates x·``scale``; the minimiser is
    mapped by ``canonical``.  A run whose message contains ``stalled`` (the line search stopped at rounding
    level), or that keeps evaluating points equal to the best within rounding (:data:`STALL_EVALUATIONS`), counts as
    converged: the checks of :func:`skmixed.convergence.minimize` then judge the point; non-finite values are
    returned as a huge f so the line search backs off."""
    from scipy.optimize import minimize as scipy_minimize  # lazily: import cost

    x0 = np.asarray(x0, dtype=float)
    scale = np.ones_like(x0) if scale is None else np.asarray(scale, dtype=float)
    logged, watch = _Logged(f_and_grad, []), _StallWatch()

    def fun(y):
        val, grad = logged(y / scale)
        if not (np.isfinite(val) and np.all(np.isfinite(grad))):
            return np.finfo(float).max / 1e10, np.zeros_like(y)
        if watch(float(val)):
            raise _Stalled
        return val, grad / scale

    limit = options.get("maxfun", options.get("maxiter"))
    try:
        res = scipy_minimize(fun, x0 * scale, jac=True, method=method, options=options)
        x, fx = res.x / scale, float(res.fun)
        code = "MAXEVAL_REACHED" if res.nfev >= limit or res.nit >= options.get("maxiter", np.inf) else str(res.message)
        converged = bool(res.success) or stalled in code
    except _Stalled:
        (x, fx), converged = logged.best(), True
        code = f"stopped at the best point: {STALL_EVALUATIONS} evaluations in a row equal to it within rounding"
    tolerances = {k: v for k, v in options.items() if k in ("ftol", "gtol")}
    return OptSummary(
        optimizer=f"scipy {method} (analytic gradient)",
        theta_init=x0,
        objective_init=logged.log[0][1],
        theta=canonical(x),
        objective=fx,
        n_evaluations=len(logged.log),
        converged=converged,
        return_code=code,
        tolerances=tolerances,
        maxeval=limit,
        fitlog=logged.log,
    )


def lbfgsb_symmetric(
    f_and_grad, x0, *, maxiter=1000, maxfun=15_000, canonical=np.abs, scale=None, ftol=1e-12
) -> OptSummary:
    """Minimise an f with sign symmetries, given ``f_and_grad(x) -> (f, ∇f)``; ``canonical`` maps the
    minimiser to the representative with non-negative diagonal.

    With scalar random-effects terms the profiled deviance depends on θ only through θ²;
    unbounded L-BFGS-B on the even function, then |θ|, avoids stalling on the bound θ ≥ 0
    (the boundary probe of :func:`skmixed.convergence.minimize` covers the stationary point θ = 0 itself).  For a
    vector term f is unchanged when a column of its template T changes sign (ΛΛ' is), and the
    same holds with ``canonical`` flipping the columns whose diagonal is negative.  ``scale``
    (per coordinate) is a diagonal preconditioner: the search runs in x·scale.
    """
    options = {"maxiter": maxiter, "maxfun": maxfun, "ftol": ftol, "gtol": 1e-5}
    return _scipy_symmetric(f_and_grad, x0, "L-BFGS-B", options, canonical, scale, stalled="ABNORMAL")


def bfgs_symmetric(f_and_grad, x0, *, canonical, gtol=1e-3, maxfun=1000, hess_inv0=None) -> OptSummary:
    """BFGS on an f with the sign symmetries of :func:`lbfgsb_symmetric` (unbounded, then ``canonical``), given
    ``f_and_grad(x) -> (f, ∇f)``; it stops at max|∇f| ≤ ``gtol``.  ``hess_inv0``: the initial inverse Hessian.

    glmer's stage 2 over (θ, β), β in units of its standard error, uses it: dense BFGS needs
    less than half of L-BFGS-B's evaluations there (:mod:`skmixed.bfgs`: scipy's method without its wrapper).
    At most ``maxfun`` evaluations.
    """
    x0 = np.asarray(x0, dtype=float)
    logged = _Logged(f_and_grad, [])
    res = bfgs(logged, x0, gtol, maxfun, hess_inv0)
    code = "MAXEVAL_REACHED" if len(logged.log) >= maxfun and not res.success else res.message
    return OptSummary(
        optimizer="BFGS (analytic gradient)",
        theta_init=x0,
        objective_init=logged.log[0][1],
        theta=canonical(res.x),
        objective=float(res.fun),
        n_evaluations=len(logged.log),
        converged=res.success or "precision loss" in code,  # stalled at rounding: minimize's checks judge the point
        return_code=code,
        tolerances={"gtol": gtol},
        maxeval=maxfun,
        fitlog=logged.log,
    )
