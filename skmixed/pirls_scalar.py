"""PIRLS and the Laplace gradient for a GLMM with one scalar random-effects term, ``(1 | g)`` or ``(0 + x | g)``.

Notation of :mod:`skmixed.pirls` and :mod:`skmixed.laplace_gradient`.  With one scalar term, row r of
Z has the single value ``v_r`` in the column of its level ``c_r``, and Λ = θI.  Then

    H = Λ'Z'WZΛ + I = diag(h_j),   h_j = 1 + θ² Σ_{r: c_r = j} W_r v_r²,

so every solve with H is a division by h, ``log|H| = Σ log h_j``, ``ZΛu = θ v ⊙ u[c]`` and
``Λ'Z'x = θ · (Σ_{r: c_r = j} v_r x_r)_j``: a PIRLS iteration and the Laplace gradient are
elementwise arithmetic and ``bincount`` sums over the levels, with no factor object and no
sparse product.  The iterations, step-halving and stopping rule are those of
:meth:`skmixed.pirls.Pirls._pirls_u`; the gradient is :meth:`skmixed.laplace_gradient.LaplaceGradient.gradient`
with H⁻¹ = diag(1/h) (its selected inverse is the diagonal itself).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from .pls import CrossProducts
from .reterms import RandomEffects


def has_scalar_term(re: RandomEffects) -> bool:
    """Whether the random effects are one scalar term (H is diagonal)."""
    return len(re.terms) == 1 and re.terms[0].k == 1


class JointSolution(NamedTuple):
    """The solution of one PLS step over (β, u) and log|H| (the fields of a PLS solution the joint PIRLS reads)."""

    beta: np.ndarray
    u: np.ndarray
    ldL2: float


class WorkingRX(NamedTuple):
    """RX of the working linear model at a mode and log|RX'RX| (what a GLMM's result reads of its PLS solution)."""

    RX: np.ndarray
    ldRX2: float


class ScalarTerm:
    """The level codes c and values v of a single scalar term, and the elementwise PIRLS and gradient on them."""

    def __init__(self, re: RandomEffects, p: int):
        term = re.terms[0]
        self.codes = np.ascontiguousarray(term.factor.codes, dtype=np.intp)
        self.v = np.ascontiguousarray(term.values[:, 0], dtype=float)
        self.v2 = self.v * self.v
        self.q = term.n_levels
        m = p + 2  # the gradient's right-hand sides: a, ZE û and the p columns of X
        self._flat = (self.codes[:, None] * m + np.arange(m)).ravel()  # (level, column) of each entry, row-major
        self._m = m
        self._flat_joint = (self.codes[:, None] * (p + 1) + np.arange(p + 1)).ravel()  # for [z, X]

    def random_part(self, lam: float, u: np.ndarray) -> np.ndarray:
        """ZΛu = θ v ⊙ u[c]."""
        return lam * self.v * u[self.codes]

    def joint_solve(self, theta: float, X: np.ndarray, W: np.ndarray, z: np.ndarray) -> JointSolution | None:
        """(β, u) minimising ‖W^½(z − Xβ − ZΛu)‖² + ‖u‖² (the PLS step of nAGQ = 0's joint PIRLS), and log|H|.

        The normal equations [H, G; G', X'WX][u; β] = [ΛZ'Wz; X'Wz], G = ΛZ'WX, with H = diag(h): β from the
        Schur complement X'WX − G'H⁻¹G (a p × p Cholesky factor; None where it is not positive definite), then
        u = H⁻¹(ΛZ'Wz − Gβ)."""
        schur = self._schur(theta, X, W, W * z)
        if schur is None:
            return None
        _, S, h, c, G, Gh, Xtz = schur
        beta = np.linalg.solve(S, Xtz - Gh.T @ c)
        return JointSolution(beta, (c - G @ beta) / h, float(np.log(h).sum()))

    def rx(self, theta: float, X: np.ndarray, W: np.ndarray) -> WorkingRX | None:
        """RX (upper triangular, RX'RX = X'WX − G'H⁻¹G: the information on β of the working linear model) and
        log|RX'RX|, or None where it is not positive definite."""
        if not X.shape[1]:
            return WorkingRX(np.zeros((0, 0)), 0.0)
        schur = self._schur(theta, X, W, W)
        if schur is None:
            return None
        RX = schur[0].T
        return WorkingRX(RX, 2.0 * float(np.log(np.diag(RX)).sum()))

    def cross_products(self, X: np.ndarray, W: np.ndarray, zr: np.ndarray) -> CrossProducts:
        """The cross-products of Z, X and zr with weights W (:meth:`skmixed.pirls.Pirls._cross_products`); Z'WZ is
        diagonal."""
        WX, Wz = X * W[:, None], W * zr
        rows = np.empty((len(zr), X.shape[1] + 1))
        rows[:, 0] = Wz
        rows[:, 1:] = WX
        rows *= self.v[:, None]
        sums = np.bincount(self._flat_joint, rows.ravel(), minlength=self.q * len(rows[0])).reshape(self.q, -1)
        q = self.q
        ztz_diagonal = np.bincount(self.codes, W * self.v2, minlength=q)
        ztz = sp.csc_matrix((ztz_diagonal, np.arange(q), np.arange(q + 1)), shape=(q, q))
        return CrossProducts(
            ZtZ=ztz, ZtX=sums[:, 1:], Zty=sums[:, 0], XtX=X.T @ WX, Xty=X.T @ Wz, yty=float(zr @ Wz), n=len(zr),
            log_det_w=0.0,
        )  # fmt: skip

    def _schur(self, theta: float, X: np.ndarray, W: np.ndarray, Wz: np.ndarray):
        """The Schur complement S = X'WX − G'H⁻¹G and its lower Cholesky factor, h, ΛZ'Wz, G = ΛZ'WX, H⁻¹G and
        X'Wz; None where H or S is not positive definite."""
        p = X.shape[1]
        h = self.diagonal(theta * theta, W)
        if not (h > 0).all():
            return None
        WX = W[:, None] * X
        rows = np.empty((len(Wz), p + 1))
        rows[:, 0] = Wz
        rows[:, 1:] = WX
        rows *= (theta * self.v)[:, None]
        sums = np.bincount(self._flat_joint, rows.ravel(), minlength=self.q * (p + 1)).reshape(self.q, p + 1)
        c, G = sums[:, 0], sums[:, 1:]
        Gh = G / h[:, None]
        S = X.T @ WX - G.T @ Gh
        try:
            R = np.linalg.cholesky(S)
        except np.linalg.LinAlgError:
            return None
        return R, S, h, c, G, Gh, X.T @ Wz

    def level_sums(self, x: np.ndarray) -> np.ndarray:
        """Z'x for the term's column values v: ``Σ_{r: c_r = j} v_r x_r``."""
        return np.bincount(self.codes, self.v * x, minlength=self.q)

    def diagonal(self, theta2: float, W: np.ndarray) -> np.ndarray:
        """h = 1 + θ² Σ_level W v² (the diagonal of H for weights W)."""
        return 1.0 + theta2 * np.bincount(self.codes, W * self.v2, minlength=self.q)

    def ldL2(self, theta2: float, W: np.ndarray) -> float:
        """log|H| for weights W, NaN if H is not positive definite."""
        h = self.diagonal(theta2, W)
        return float(np.log(h).sum()) if (h > 0).all() else np.nan

    # --- PIRLS over u at fixed (θ, β) ----------------------------------------------------
    def pirls_u(self, pirls, theta: np.ndarray, beta: np.ndarray, u: np.ndarray):
        """:meth:`skmixed.pirls.Pirls._pirls_u` with H = diag(h)."""
        from .pirls import MAX_ITER, Mode

        lam = float(theta[0])
        theta2, c = lam * lam, self.codes
        lv = lam * self.v
        fixed = pirls.X @ beta + pirls.offset
        family = pirls.family
        canonical = family.is_canonical

        def linear_predictor(x):
            return fixed + lv * x[c]

        def failure(it, message):
            return Mode(theta, beta, u, eta, mu, np.nan, pdev, False, it, message)

        eta = linear_predictor(u)
        mu = pirls._mu(eta)
        pdev = pirls._pdev(mu, u)
        h_last, previous = None, np.inf  # the last iteration's h where it is W's (for log|H| = Σ log h at the mode)
        for it in range(1, MAX_ITER + 1):
            if not np.isfinite(pdev):
                return failure(it, "the linear predictor gives invalid means")
            W, resid = pirls._working(eta, mu)
            h = None
            if not canonical:  # Newton on the observed information (see Pirls._pirls_u)
                h = self.diagonal(theta2, family.observed_weights(pirls.y, mu, eta, pirls.wt))
                h = h if (h > 0).all() else None
            newton = h is not None
            if not newton:
                h = self.diagonal(theta2, W)
                if not (h > 0).all():
                    return failure(it, "Λ'Z'WZΛ + I is not positive definite")
            h_last = None if newton else h
            target = u + (lam * self.level_sums(W * resid) - u) / h
            new = pirls._halve(pdev, u, target, linear_predictor)
            if new is None:
                return failure(it, "step-halving failed to reduce the penalized deviance")
            u_new, eta_new, mu_new, pdev_new, full = new
            step = pirls._step_size(u_new - u, eta_new - eta, eta_new)
            u, eta, mu, pdev = u_new, eta_new, mu_new, pdev_new
            if pirls._converged(step, previous, full and (newton or canonical)):
                ldL2 = float(np.log(h_last).sum()) if step < 1e-13 and h_last is not None else np.nan
                if not np.isfinite(ldL2):  # W moved since the last factor (or h was Newton's): log|H| at the mode
                    ldL2 = self.ldL2(theta2, pirls._working(eta, mu)[0])
                return Mode(theta, beta, u, eta, mu, ldL2, pdev, True, it)
            previous = step
        ldL2 = self.ldL2(theta2, pirls._working(eta, mu)[0])
        return Mode(theta, beta, u, eta, mu, ldL2, pdev, False, MAX_ITER, f"no convergence in {MAX_ITER} iterations")

    def em_step(self, pirls, mode) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`skmixed.laplace_gradient.LaplaceGradient.em_step` for one scalar term: with u ~ N(û, H⁻¹),
        θ' = |θ|·√((‖û‖² + Σ 1/h_j)/q) and u' = θû/θ' (the same b = θû); θ and û kept where θ' is not positive."""
        lam = float(mode.theta[0])
        h = self.diagonal(lam * lam, pirls.working_weights(mode))
        new = abs(lam) * np.sqrt((mode.u @ mode.u + np.sum(1.0 / h)) / self.q) if (h > 0).all() else np.nan
        if not (np.isfinite(new) and new > 0):
            return mode.theta.copy(), mode.u.copy()
        return np.array([new]), lam * mode.u / new

    # --- the Laplace gradient --------------------------------------------------------------
    def gradient(self, pirls, mode) -> tuple[np.ndarray, np.ndarray | None]:
        """∇D and dû/d(θ, β) at a converged mode: :meth:`skmixed.laplace_gradient.LaplaceGradient.gradient` with
        H⁻¹ = diag(1/h), ZΛ = θv and E = I (the one θ's template entry)."""
        fam, X = pirls.family, pirls.X
        y, wt, eta, mu, u = pirls.y, pirls.wt, mode.eta, mode.mu, mode.u
        c, v = self.codes, self.v
        lam = float(mode.theta[0])
        theta2 = lam * lam
        d, W, r = fam.irls_terms(y, mu, eta, wt)
        h = self.diagonal(theta2, W)
        if not (h > 0).all():
            return np.full(1 + pirls.p, np.nan), None
        hinv_r = 1.0 / h[c]
        lv = lam * v
        trace = float(np.sum(W * v * lv * hinv_r))  # tr(H⁻¹Λ'Z'WZ)
        a = fam.weights_deriv(mu, eta, wt) * (lv * lv * hinv_r)  # W' ⊙ diag(ZΛH⁻¹Λ'Z')
        if pirls.aic_constant is None:
            dev = float(np.sum(pirls.deviance_residuals(mu)))
            a += (fam.aic_deriv(y, pirls.trials, mu, wt, dev) - fam.dev_resids_deriv(y, mu, wt)) * d
        if fam.is_canonical:
            W_obs, h_obs = W, h
        else:
            W_obs = fam.observed_weights(y, mu, eta, wt)
            h_obs = self.diagonal(theta2, W_obs)
            if not (h_obs > 0).all():
                return np.full(1 + pirls.p, np.nan), None
        columns = np.empty((len(c), self._m))
        columns[:, 0] = a
        columns[:, 1] = -W_obs * v * u[c]
        columns[:, 2:] = -W_obs[:, None] * X
        columns *= lv[:, None]  # Λ'Z' as per-level sums of θv_r times each row
        rhs = np.bincount(self._flat, columns.ravel(), minlength=self.q * self._m).reshape(self.q, self._m)
        Ztr = self.level_sums(r)
        rhs[:, 1] += Ztr  # E'Z'r
        solved = rhs / h_obs[:, None]
        adj, du_dx = solved[:, 0], solved[:, 1:]
        e = -2 * r + a - W_obs * lv * adj[c]
        g_theta = self.level_sums(e) @ u + Ztr @ adj + 2 * trace
        return np.concatenate([[g_theta], X.T @ e]), du_dx
