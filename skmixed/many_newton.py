"""Newton's method for many profiled deviances at once, each response at its own θ (lmer_many's optimizer).

Each response's deviance f(θ) is evaluated by :class:`skmixed.many_pls.BatchedResponses`, which takes
one θ per response; every step below is one such batched call over the responses still iterating.
The derivatives come from central differences on a stencil of 2k + k(k−1)/2 points around θ
(k parameters; f is cheap and smooth, and k small), in the coordinates x = θ·scale of
:func:`~skmixed.pls.theta_scale`, where the parameters are on one footing.  A step is Newton's on
the Hessian with its eigenvalues replaced by their absolute values (a descent direction at a
saddle), halved until f falls.  As for ``lmer``'s L-BFGS-B, θ is unconstrained and mapped to its
canonical representative at the end (f is even in a scalar term's θ and unchanged by a sign
change of a column of a vector term's T), then the finish of
:func:`skmixed.convergence.minimize` runs vectorised: components within ``BOUNDARY_TOL`` of their
bound move onto it where f does not rise, a component on its bound is probed as there, and lme4's
gradient and Hessian checks are made.  Responses that fail any of these, or take more than
``MAX_ITERATIONS``, are flagged for ``lmer``'s own optimizer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .convergence import BOUNDARY_TOL, HESS_TOL, PROBE_GAIN, PROBE_STEPS, SINGULAR_TOL
from .reterms import RandomEffects

#: difference step in x = θ·scale (parameters of order one) of the Hessian's stencil
STEP = 1e-4
#: a Newton step this small (in x) ends the iterations; one more step on a gradient of fourth order follows
X_TOL = 1e-5
#: difference step of that gradient: its error, h⁴f⁽⁵⁾/30 + (f's rounding)/h, is some 1e-9, where the stencil's,
#: h²f'''/6 + (f's rounding)/h, is some 1e-7 and would leave θ that far from the optimum
POLISH_STEP = 1e-3
MAX_ITERATIONS = 50
MAX_HALVINGS = 30


@dataclass
class BatchedOptimum:
    """Per response: θ of the standardized problem, its deviance, evaluations spent, and whether lme4's checks
    passed (those that did not are for ``lmer``'s optimizer)."""

    theta: np.ndarray
    objective: np.ndarray
    objective_init: np.ndarray
    n_evaluations: np.ndarray
    converged: np.ndarray


class BatchedNewton:
    """Minimise ``f(theta, which)`` (θ rows of the standardized problem for responses ``which``) for every response;
    ``f_stencil(theta, offsets, which)`` gives f at θ + each offset."""

    def __init__(self, f, f_stencil, re: RandomEffects, scale: np.ndarray):
        self.f, self.f_stencil, self.re, self.scale = f, f_stencil, re, scale
        self.k = len(scale)
        self.lower = re.theta_lower
        eye = np.eye(self.k)
        pairs = [(i, j) for i in range(self.k) for j in range(i)]
        self._pairs = pairs
        self._stencil = np.vstack([eye, -eye] + [eye[i] + eye[j] for i, j in pairs]) * STEP

    def _eval(self, x: np.ndarray, which: np.ndarray) -> np.ndarray:
        self.evaluations[which] += 1
        return self.f(x / self.scale, which)

    def _derivatives(self, x: np.ndarray, f0: np.ndarray, which: np.ndarray):
        """Gradient and Hessian in x from the stencil around each row of x (one batched call)."""
        m, k, h = len(which), self.k, STEP
        values = self.f_stencil(x / self.scale, self._stencil / self.scale, which)
        self.evaluations[which] += len(self._stencil)
        plus, minus = values[:, :k], values[:, k : 2 * k]
        g = (plus - minus) / (2 * h)
        H = np.zeros((m, k, k))
        idx = np.arange(k)
        H[:, idx, idx] = (plus - 2 * f0[:, None] + minus) / h**2
        for c, (i, j) in enumerate(self._pairs):
            H[:, i, j] = H[:, j, i] = (values[:, 2 * k + c] - plus[:, i] - plus[:, j] + f0) / h**2
        return g, H

    def _gradient(self, x: np.ndarray, which: np.ndarray) -> np.ndarray:
        """The gradient in x by fourth-order central differences, (8(f₁ − f₋₁) − (f₂ − f₋₂)) / 12h."""
        eye = np.eye(self.k) * POLISH_STEP
        offsets = np.vstack([eye, -eye, 2 * eye, -2 * eye])
        values = self.f_stencil(x / self.scale, offsets / self.scale, which)
        self.evaluations[which] += len(offsets)
        f1, fm1, f2, fm2 = np.split(values, 4, axis=1)
        return (8 * (f1 - fm1) - (f2 - fm2)) / (12 * POLISH_STEP)

    def minimize(self, theta0: np.ndarray) -> BatchedOptimum:
        m = len(theta0)
        self.evaluations = np.zeros(m, dtype=int)
        x = theta0 * self.scale
        everyone = np.arange(m)
        fx = self._eval(x, everyone)
        f_init = fx.copy()
        done = np.zeros(m, dtype=bool)
        failed = ~np.isfinite(fx)
        H_last = np.zeros((m, self.k, self.k))
        for _ in range(MAX_ITERATIONS):
            act = np.flatnonzero(~done & ~failed)
            if not len(act):
                break
            g, H = self._derivatives(x[act], fx[act], act)
            H_last[act] = H
            step = _modified_newton_step(g, H)
            size = np.max(np.abs(step), axis=1)
            small = size <= X_TOL
            x[act[small]] += step[small]
            done[act[small]] = True
            moving = ~small
            if moving.any():
                ok = self._line_search(x, fx, act[moving], step[moving])
                stalled = act[moving][~ok]  # f flat to rounding along a short step: the polish decides
                short = size[moving][~ok] <= 100 * X_TOL
                done[stalled[short]], failed[stalled[~short]] = True, True
        polished = np.flatnonzero(done & ~failed)
        if len(polished):
            step = _modified_newton_step(self._gradient(x[polished], polished), H_last[polished])
            fine = np.max(np.abs(step), axis=1) <= X_TOL
            x[polished[fine]] += step[fine]
            failed[polished[~fine]] = True
        # the rest of the finish on the canonical θ̃
        theta = _canonical(self.re, x / self.scale)
        fx[done] = self._eval(theta[done] * self.scale, np.flatnonzero(done))
        converged = done & ~failed
        converged &= self._snap_and_probe(theta, fx, converged)
        converged &= _lme4_checks(H_last, theta, self.lower, converged)
        return BatchedOptimum(
            theta=theta, objective=fx, objective_init=f_init, n_evaluations=self.evaluations, converged=converged
        )

    def _line_search(self, x, fx, which: np.ndarray, step: np.ndarray) -> np.ndarray:
        """x ← x + t·step with t = 1, ½, ¼, ... until f falls (in place); False where no t did."""
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

    def _snap_and_probe(self, theta: np.ndarray, fx: np.ndarray, active: np.ndarray) -> np.ndarray:
        """lme4's check.boundary and the probe of :func:`skmixed.convergence.minimize`, in place on θ̃ and f;
        False for responses where moving a component off its bound lowers f (the fit needs lmer's optimizer)."""
        bounded = np.isfinite(self.lower)
        near = bounded & (theta != self.lower) & (theta - self.lower < BOUNDARY_TOL) & active[:, None]
        rows = np.flatnonzero(near.any(axis=1))
        if len(rows):
            snapped = np.where(near[rows], self.lower, theta[rows])
            value = self._eval(snapped * self.scale, rows)
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
                value = self._eval(trial * self.scale, rows)
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
