"""Newton's method with bounds from a good start: the refits inside profiles and parametric bootstraps.

Each point of a profile and each bootstrap replicate is a fit of a problem close to one already
solved: the start is near its optimum and the Hessian there is nearly the one at hand.  A
quasi-Newton method started with that Hessian (BFGS updates; Nocedal and Wright, *Numerical
Optimization*, ch. 6) then needs a handful of evaluations, where an optimizer that starts from the
identity (scipy's L-BFGS-B) needs ten or more.  Bounds — a standard deviation ≥ 0, a correlation in
[−1, 1], θ's diagonal ≥ 0 — are kept by projection with an active set, as in Bertsekas' projected
Newton method ("Projected Newton methods for optimization problems with simple constraints"): a
component on its bound whose gradient points outwards stays there for the step.
"""

from __future__ import annotations

import numpy as np

from .optimizers import OptSummary

#: Armijo's sufficient-decrease constant of the backtracking line search
_ARMIJO = 1e-4


def _positive_definite(B: np.ndarray) -> np.ndarray:
    """B with its eigenvalues raised to at least 1e-8 of the largest (a Newton direction must descend)."""
    values, vectors = np.linalg.eigh((B + B.T) / 2)
    top = max(float(np.max(np.abs(values))), 1e-12)
    return (vectors * np.maximum(values, 1e-8 * top)) @ vectors.T


def _inverse(B: np.ndarray) -> np.ndarray:
    """B⁻¹ of a Hessian guess, made positive definite first where it is not (a Newton direction must descend)."""
    try:
        np.linalg.cholesky(B)
    except np.linalg.LinAlgError:
        B = _positive_definite(B)
    return np.linalg.inv(B)


def _step(H: np.ndarray, g: np.ndarray, free: np.ndarray | None) -> np.ndarray:
    """The Newton step −B_FF⁻¹g_F on the free components F, from H = B⁻¹: B_FF⁻¹ is the Schur complement of H's
    held block, H_FF − H_FA H_AA⁻¹ H_AF."""
    if free is None:
        return -H @ g
    step = np.zeros(len(g))
    if free.any():
        held = ~free
        H_free = H[np.ix_(free, free)] - H[np.ix_(free, held)] @ np.linalg.solve(
            H[np.ix_(held, held)], H[np.ix_(held, free)]
        )
        step[free] = -H_free @ g[free]
    return step


def minimize_box(f_and_grad, x0, lower, upper, hessian, *, tol: float = 1e-9, maxiter: int = 200) -> OptSummary:
    """Minimise f over the box [lower, upper] from x0, given ``f_and_grad(x) -> (f, ∇f)`` and a Hessian guess.

    Stops when the Newton decrement g'B⁻¹g (twice the predicted decrease of f) on the free components is below
    ``tol``, or when no step lowers f any more at rounding level; ``converged`` is False after ``maxiter``
    iterations or where f is not finite at the start.  BFGS updates the inverse H = B⁻¹, so that a step is a
    product with H rather than a solve.
    """
    n = len(x0)
    lower = np.broadcast_to(np.asarray(lower, dtype=float), (n,))
    upper = np.broadcast_to(np.asarray(upper, dtype=float), (n,))
    bounded = bool(np.isfinite(lower).any() or np.isfinite(upper).any())
    x = np.clip(np.asarray(x0, dtype=float), lower, upper)
    H = _inverse(np.asarray(hessian, dtype=float))
    f, g = f_and_grad(x)
    log = [(x, float(f))]
    f_init, code = float(f), "MAXITER_REACHED"
    for _ in range(maxiter):
        if not (np.isfinite(f) and np.all(np.isfinite(g))):
            code = "NONFINITE"
            break
        free = None
        if bounded:
            width = 1e-10 * np.maximum(1.0, np.abs(x))
            held = ((x <= lower + width) & (g > 0)) | ((x >= upper - width) & (g < 0))
            free = ~held if held.any() else None
        step = _step(H, g, free)
        decrement = -float(g @ step)
        if decrement < tol:
            code = "SUCCESS"
            break
        t, accepted = 1.0, None
        while t > 1e-12:
            x_new = np.clip(x + t * step, lower, upper) if bounded else x + t * step
            f_new, g_new = f_and_grad(x_new)
            log.append((x_new, float(f_new)))
            if f_new <= f + _ARMIJO * float(g @ (x_new - x)):  # False for NaN
                accepted = (x_new, f_new, g_new)
                break
            t /= 4
        if accepted is None:  # no decrease along the Newton direction: f is flat here to rounding
            code = "SUCCESS" if decrement < 1e-9 * max(1.0, abs(f)) else "LINE_SEARCH_FAILED"
            break
        x_new, f_new, g_new = accepted
        s, y = x_new - x, g_new - g
        sy = float(s @ y)
        if sy > 1e-12 * np.sqrt(float(s @ s) * float(y @ y)):
            rho, Hy = 1.0 / sy, H @ y
            H = H - rho * (np.outer(s, Hy) + np.outer(Hy, s)) + (rho * rho * float(y @ Hy) + rho) * np.outer(s, s)
        x, f, g = x_new, f_new, g_new
    summary = OptSummary(
        optimizer="quasi-Newton from the fit's Hessian (skmixed.quasi_newton)",
        theta_init=np.asarray(x0, dtype=float),
        objective_init=f_init,
        theta=x,
        objective=float(f),
        n_evaluations=len(log),
        converged=code == "SUCCESS",
        return_code=code,
        lower=lower,
        tolerances={"decrement": tol},
        maxeval=maxiter,
        fitlog=log,
    )
    summary.gradient = g
    summary.hessian = np.linalg.inv(H)
    return summary
