"""Newton's method for many profiled deviances at once, each response at its own θ (lmer_many's optimizer).

Each response's deviance f(θ) is evaluated by :class:`skmixed.many_pls.BatchedResponses`, which takes
one θ per response; every step below is one batched call over the responses still iterating.  The
iteration runs in u = asinh(θ·scale), with the scale of :func:`~skmixed.pls.theta_scale` (θ·scale is
θ times the root mean square of its Z column): f behaves like a quadratic in θ near θ = 0 and like
one in log θ for large θ (there log(θ²n + 1) ≈ 2 log θ + log n), and asinh is linear in the first
region and logarithmic in the second, so Newton's steps need fewer iterations than in θ·scale
(measured: 32 instead of 34 evaluations per response for two crossed intercepts, 75 instead of 104 for a
correlated random slope).  asinh is odd, so f stays even in a scalar term's u.

The derivatives come from central differences on a stencil of 2k + k(k−1)/2 points (k parameters;
f is cheap and smooth, and k small); the last step's gradient is of fourth order, from 2k more.  A
step is Newton's on the Hessian with its eigenvalues replaced by their absolute values (a descent
direction at a saddle), halved until f falls.  As for ``lmer``'s L-BFGS-B, θ is unconstrained and
mapped to its canonical representative at the end (f is even in a scalar term's θ and unchanged by
a sign change of a column of a vector term's T), then the finish of
:func:`skmixed.convergence.minimize` runs vectorised: components within ``BOUNDARY_TOL`` of their
bound move onto it where f does not rise, a component on its bound is probed as there, and lme4's
Hessian check is made.  Responses that fail any of these, or take more than ``MAX_ITERATIONS``,
are flagged for ``lmer``'s own optimizer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .convergence import BOUNDARY_TOL, HESS_TOL, PROBE_GAIN, PROBE_STEPS, SINGULAR_TOL
from .reterms import RandomEffects

#: difference step in u = asinh(θ·scale) (parameters of order one).  The stencil's central differences err by
#: h²f'''/6 + (f's rounding)/h, some 1e-7, and would leave θ that far from the optimum; the last step uses the
#: fourth-order gradient from x ± h and x ± 2h instead, whose error, h⁴f⁽⁵⁾/30 + (f's rounding)/h, is some 1e-9
STEP = 1e-4
#: a Newton step this small (in u) ends the iterations, after the step on the fourth-order gradient
X_TOL = 1e-5
MAX_ITERATIONS = 50
MAX_HALVINGS = 30


@dataclass
class BatchedOptimum:
    """Per response: θ of the standardized problem, the deviance at the start, evaluations spent, and whether
    lme4's checks passed (those that did not are for ``lmer``'s optimizer)."""

    theta: np.ndarray
    objective_init: np.ndarray
    n_evaluations: np.ndarray
    converged: np.ndarray


class BatchedNewton:
    """Minimise ``f(theta, which)`` (θ rows of the standardized problem for responses ``which``) for every response;
    ``f_points(points, which)`` gives f at each of the points (m × P × k) around each response's θ."""

    def __init__(self, f, f_points, re: RandomEffects, scale: np.ndarray):
        self.f, self.f_points, self.re, self.scale = f, f_points, re, scale
        self.k = len(scale)
        self.lower = re.theta_lower
        eye = np.eye(self.k)
        pairs = [(i, j) for i in range(self.k) for j in range(i)]
        self._pairs = pairs
        self._stencil = np.vstack([eye, -eye] + [eye[i] + eye[j] for i, j in pairs]) * STEP

    def theta(self, u: np.ndarray) -> np.ndarray:
        return np.sinh(u) / self.scale

    def _eval(self, u: np.ndarray, which: np.ndarray) -> np.ndarray:
        self.evaluations[which] += 1
        return self.f(self.theta(u), which)

    def _eval_points(self, u: np.ndarray, offsets: np.ndarray, which: np.ndarray) -> np.ndarray:
        self.evaluations[which] += len(offsets)
        return self.f_points(self.theta(u[:, None, :] + offsets[None]), which)

    def _derivatives(self, u: np.ndarray, f0: np.ndarray, which: np.ndarray):
        """Gradient and Hessian in u from the stencil around each row of u (one batched call), and f(u+h) − f(u−h)."""
        m, k, h = len(which), self.k, STEP
        values = self._eval_points(u, self._stencil, which)
        plus, minus = values[:, :k], values[:, k : 2 * k]
        g = (plus - minus) / (2 * h)
        H = np.zeros((m, k, k))
        idx = np.arange(k)
        H[:, idx, idx] = (plus - 2 * f0[:, None] + minus) / h**2
        for c, (i, j) in enumerate(self._pairs):
            H[:, i, j] = H[:, j, i] = (values[:, 2 * k + c] - plus[:, i] - plus[:, j] + f0) / h**2
        return g, H, plus - minus

    def _polished_step(self, u: np.ndarray, which: np.ndarray, difference: np.ndarray, H: np.ndarray) -> np.ndarray:
        """The Newton step on the gradient by fourth-order central differences, (8(f₁ − f₋₁) − (f₂ − f₋₂)) / 12h,
        given f₁ − f₋₁ (``difference``) from the stencil and f at u ± 2h."""
        eye = np.eye(self.k) * (2 * STEP)
        values = self._eval_points(u, np.vstack([eye, -eye]), which)
        g = (8 * difference - (values[:, : self.k] - values[:, self.k :])) / (12 * STEP)
        return _modified_newton_step(g, H)

    def minimize(self, theta0: np.ndarray) -> BatchedOptimum:
        m = len(theta0)
        self.evaluations = np.zeros(m, dtype=int)
        u = np.arcsinh(theta0 * self.scale)
        fu = self._eval(u, np.arange(m))
        f_init = fu.copy()
        done = np.zeros(m, dtype=bool)
        failed = ~np.isfinite(fu)
        H_last = np.zeros((m, self.k, self.k))
        for _ in range(MAX_ITERATIONS):
            act = np.flatnonzero(~done & ~failed)
            if not len(act):
                break
            g, H, difference = self._derivatives(u[act], fu[act], act)
            finite = np.isfinite(g).all(axis=1) & np.isfinite(H).all(axis=(1, 2))  # a stencil point off the domain
            failed[act[~finite]] = True
            act, g, H, difference = act[finite], g[finite], H[finite], difference[finite]
            H_last[act] = H
            step = _modified_newton_step(g, H)
            size = np.max(np.abs(step), axis=1)
            finish = size <= X_TOL
            moving = np.flatnonzero(~finish)
            if len(moving):
                ok = self._line_search(u, fu, act[moving], step[moving])
                short = size[moving] <= 100 * X_TOL  # f flat to rounding along a short step: the polish decides
                finish[moving[~ok & short]] = True
                failed[act[moving[~ok & ~short]]] = True
            rows = np.flatnonzero(finish)
            if len(rows):
                polished = self._polished_step(u[act[rows]], act[rows], difference[rows], H[rows])
                fine = np.max(np.abs(polished), axis=1) <= X_TOL
                u[act[rows[fine]]] += polished[fine]
                done[act[rows[fine]]], failed[act[rows[~fine]]] = True, True
        theta = _canonical(self.re, self.theta(u))  # f is the same there
        converged = done & ~failed
        converged &= self._snap_and_probe(theta, converged)
        jacobian = np.cosh(u)  # dx/du: at a stationary point H_x = J⁻¹ H_u J⁻¹
        H_x = H_last / (jacobian[:, :, None] * jacobian[:, None, :])
        converged &= _lme4_checks(H_x, theta, self.lower, converged)
        return BatchedOptimum(theta=theta, objective_init=f_init, n_evaluations=self.evaluations, converged=converged)

    def _line_search(self, x, fx, which: np.ndarray, step: np.ndarray) -> np.ndarray:
        """u ← u + t·step with t = 1, ½, ¼, ... until f falls (in place); False where no t did."""
        t = np.ones(len(which))
        pending = np.arange(len(which))
        for _ in range(MAX_HALVINGS):
            trial = x[which[pending]] + t[pending, None] * step[pending]
            value = self._eval(trial, which[pending])
            better = value < fx[which[pending]]
            accepted = which[pending[better]]
            x[accepted], fx[accepted] = trial[better], value[better]
            pending = pending[~better]
            if not len(pending):
                break
            t[pending] /= 2
        ok = np.ones(len(which), dtype=bool)
        ok[pending] = False
        return ok

    def _snap_and_probe(self, theta: np.ndarray, active: np.ndarray) -> np.ndarray:
        """lme4's check.boundary and the probe of :func:`skmixed.convergence.minimize`, in place on θ̃;
        False for responses where moving a component off its bound lowers f (the fit needs lmer's optimizer)."""
        bounded = np.isfinite(self.lower)
        near = bounded & (theta != self.lower) & (theta - self.lower < BOUNDARY_TOL) & active[:, None]
        on_bound = active & np.any(bounded & (theta - self.lower < SINGULAR_TOL), axis=1)
        fx = np.full(len(theta), np.nan)
        rows = np.flatnonzero(near.any(axis=1) | on_bound)
        fx[rows] = self.f(theta[rows], rows)
        rows = np.flatnonzero(near.any(axis=1))
        if len(rows):
            snapped = np.where(near[rows], self.lower, theta[rows])
            value = self.f(snapped, rows)
            keep = value <= fx[rows]
            theta[rows[keep]], fx[rows[keep]] = snapped[keep], value[keep]
        ok = np.ones(len(theta), dtype=bool)
        for i in np.flatnonzero(bounded):
            rows = np.flatnonzero(active & (theta[:, i] - self.lower[i] < SINGULAR_TOL))
            for step in PROBE_STEPS:
                if not len(rows):
                    break
                trial = theta[rows].copy()
                trial[:, i] = self.lower[i] + step / self.scale[i]
                value = self.f(trial, rows)
                ok[rows[value < fx[rows] - PROBE_GAIN]] = False
        return ok


def _modified_newton_step(g: np.ndarray, H: np.ndarray) -> np.ndarray:
    """−H⁻¹g with H's eigenvalues replaced by their absolute values (bounded away from 0), at most 1 per
    coordinate (x is of order one); a descent direction wherever g ≠ 0."""
    values, vectors = np.linalg.eigh(H)
    size = np.abs(values)
    floor = np.maximum(1e-8 * size.max(axis=1, keepdims=True), 1e-12)
    coef = np.einsum("mji,mj->mi", vectors, g) / np.maximum(size, floor)
    step = -np.einsum("mij,mj->mi", vectors, coef)
    longest = np.max(np.abs(step), axis=1, keepdims=True)
    return step / np.maximum(longest, 1.0)


def _canonical(re: RandomEffects, theta: np.ndarray) -> np.ndarray:
    """Each row's canonical θ (:meth:`~skmixed.reterms.RandomEffects.canonical_theta`), vectorised."""
    theta = theta.copy()
    for i, t in enumerate(re.terms):
        start = re.theta_offsets[i]
        for j in range(t.k):
            column = slice(start, start + t.k - j)
            theta[:, column] *= np.where(theta[:, start] < 0, -1.0, 1.0)[:, None]
            start += t.k - j
    return theta


def _lme4_checks(H: np.ndarray, theta: np.ndarray, lower: np.ndarray, active: np.ndarray) -> np.ndarray:
    """lme4's Hessian check on the components of θ̃ off their bounds, with H in x (where each parameter's typical
    size is 1, as the check of :mod:`skmixed.convergence` scales it): eigenvalues not below ``HESS_TOL`` of the
    largest.  The gradient check passes by construction: the gradient is H times the last Newton step, under
    ``X_TOL``, far below lme4's tolerance."""
    ok = np.ones(len(theta), dtype=bool)
    free = ~(np.isfinite(lower) & (theta - lower < SINGULAR_TOL))
    for pattern in np.unique(free[active], axis=0):
        rows = np.flatnonzero(active & np.all(free == pattern, axis=1))
        if not pattern.any():
            continue
        sub = H[rows][:, pattern][:, :, pattern]
        ev = np.linalg.eigvalsh(sub)
        top = np.maximum(np.abs(ev).max(axis=1), np.finfo(float).tiny)
        ok[rows] = ev.min(axis=1) >= HESS_TOL * top
    return ok
