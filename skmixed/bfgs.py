"""Dense BFGS with a strong-Wolfe line search (Nocedal and Wright, *Numerical Optimization*, Algorithms 6.1, 3.5
and 3.6), for the small smooth problems a fit hands it: glmer's Laplace deviance over (θ, β).

It is the method of scipy's ``minimize(method="BFGS")`` — the same update, the same sufficient-decrease
and curvature constants (c₁ = 10⁻⁴, c₂ = 0.9), the first trial step 1 of a quasi-Newton direction, the
same stop at max|∇f| ≤ gtol — written out so that an iteration is a few array operations: the objective
of a small model costs tens of microseconds, less than scipy's wrapper around each evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

C1, C2 = 1e-4, 0.9  # sufficient decrease and curvature constants of the strong Wolfe conditions
MAX_LINE_EVALS = 30


@dataclass
class BfgsResult:
    x: np.ndarray
    fun: float
    grad: np.ndarray
    nit: int
    success: bool
    message: str


def _finite(f: float, g: np.ndarray) -> bool:
    return bool(np.isfinite(f) and np.isfinite(g).all())


def _interpolate(a_lo, f_lo, d_lo, a_hi, f_hi, d_hi) -> float:
    """The minimiser of the cubic through (a_lo, f_lo, d_lo) and (a_hi, f_hi, d_hi), kept inside the middle 80% of
    the bracket (else its midpoint)."""
    lo, hi = min(a_lo, a_hi), max(a_lo, a_hi)
    if np.isfinite(f_hi) and np.isfinite(d_hi):
        d1 = d_lo + d_hi - 3 * (f_lo - f_hi) / (a_lo - a_hi)
        disc = d1 * d1 - d_lo * d_hi
        if disc >= 0:
            d2 = np.copysign(np.sqrt(disc), a_hi - a_lo)
            a = a_hi - (a_hi - a_lo) * (d_hi + d2 - d1) / (d_hi - d_lo + 2 * d2)
            if np.isfinite(a) and lo + 0.1 * (hi - lo) <= a <= hi - 0.1 * (hi - lo):
                return float(a)
    return 0.5 * (lo + hi)


def _line_search(phi, f0: float, d0: float, alpha: float):
    """A step satisfying the strong Wolfe conditions along the descent direction (bracketing, then zoom);
    ``phi(a) -> (f, g, φ'(a))``.  Returns (step, f, g) or None if none is found within MAX_LINE_EVALS."""
    a_prev, f_prev, d_prev = 0.0, f0, d0
    evals = 0
    while evals < MAX_LINE_EVALS:
        f, g, d = phi(alpha)
        evals += 1
        if not np.isfinite(f) or f > f0 + C1 * alpha * d0 or (evals > 1 and f >= f_prev):
            return _zoom(phi, f0, d0, (a_prev, f_prev, d_prev), (alpha, f, d), evals)
        if abs(d) <= -C2 * d0:
            return alpha, f, g
        if d >= 0:
            return _zoom(phi, f0, d0, (alpha, f, d), (a_prev, f_prev, d_prev), evals)
        a_prev, f_prev, d_prev = alpha, f, d
        alpha *= 2.0
    return None


def _zoom(phi, f0: float, d0: float, lo, hi, evals: int):
    """Algorithm 3.6: shrink the bracket [lo, hi] (lo: the lower f satisfying sufficient decrease) to a Wolfe step."""
    (a_lo, f_lo, d_lo), (a_hi, f_hi, d_hi) = lo, hi
    while evals < MAX_LINE_EVALS:
        alpha = _interpolate(a_lo, f_lo, d_lo, a_hi, f_hi, d_hi)
        if alpha == a_lo or alpha == a_hi:  # the bracket has collapsed to rounding
            return None
        f, g, d = phi(alpha)
        evals += 1
        if not np.isfinite(f) or f > f0 + C1 * alpha * d0 or f >= f_lo:
            a_hi, f_hi, d_hi = alpha, f, d
            continue
        if abs(d) <= -C2 * d0:
            return alpha, f, g
        if d * (a_hi - a_lo) >= 0:
            a_hi, f_hi, d_hi = a_lo, f_lo, d_lo
        a_lo, f_lo, d_lo = alpha, f, d
    return None


def bfgs(f_and_grad, x0: np.ndarray, gtol: float, maxfun: int, hess_inv0: np.ndarray | None = None) -> BfgsResult:
    """Minimise f from x0 given ``f_and_grad(x) -> (f, ∇f)`` until max|∇f| ≤ ``gtol``; ``hess_inv0``: the first
    inverse Hessian (default the identity).  A failed line search (no Wolfe step: the rounding floor) ends the run
    with ``success`` False and a message saying so; so does reaching ``maxfun`` evaluations."""
    x = np.array(x0, dtype=float)
    evaluations = [0]

    def counted(z):
        evaluations[0] += 1
        return f_and_grad(z)

    f, g = counted(x)
    if not _finite(f, g):
        return BfgsResult(x, f, g, 0, False, "the objective or its gradient is not finite at the start")
    n = len(x)
    H = np.eye(n) if hess_inv0 is None else np.array(hess_inv0, dtype=float)
    it = 0
    while True:
        if np.max(np.abs(g), initial=0.0) <= gtol:
            return BfgsResult(x, f, g, it, True, "Optimization terminated successfully.")
        if evaluations[0] >= maxfun:
            return BfgsResult(x, f, g, it, False, "Maximum number of evaluations has been exceeded.")
        p = -H @ g
        d0 = float(g @ p)
        if not d0 < 0:  # not a descent direction: restart from the steepest descent
            H = np.eye(n)
            p, d0 = -g, -float(g @ g)

        def phi(a, x=x, p=p):
            fa, ga = counted(x + a * p)
            return (fa, ga, float(ga @ p)) if _finite(fa, ga) else (np.inf, ga, np.nan)

        step = _line_search(phi, f, d0, 1.0)
        if step is None:
            return BfgsResult(x, f, g, it, False, "Desired error not necessarily achieved due to precision loss.")
        alpha, f_new, g_new = step
        s, y = alpha * p, g_new - g
        x, f, g = x + s, f_new, g_new
        sy = float(s @ y)
        if sy > 0:
            rho = 1.0 / sy
            Hy = H @ y
            H = H - rho * (np.outer(s, Hy) + np.outer(Hy, s)) + (rho * rho * float(y @ Hy) + rho) * np.outer(s, s)
        it += 1
