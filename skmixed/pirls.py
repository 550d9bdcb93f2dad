"""Penalized IRLS for a GLMM's conditional modes (PIRLS).

Model: ``η = Xβ + ZΛu + offset``, ``μ = g⁻¹(η)``, y | u from the family, ``u ~ N(0, I)``
(so ``b = Λu``).  For given (θ, β), PIRLS finds the conditional mode
``û = argmin pdev(u)``, ``pdev(u) = Σ d_i(y_i, μ_i) + ‖u‖²`` (deviance residuals d_i).
Each iteration solves the penalized weighted least-squares problem of the working
response ``z = η − offset + (y − μ)/μ'(η)`` with weights ``W = w μ'(η)²/V(μ)`` and
halves the step while pdev does not decrease (lme4, MixedModels.jl).  With nAGQ = 0,
β is found in the same iterations (the PLS solve of :mod:`skmixed.pls`).

Z'WZ changes with W but not its sparsity pattern: the rows contributing to each
entry are enumerated once, so an update is one ``bincount``, and CHOLMOD's symbolic
analysis (done once, in :class:`~skmixed.pls.PenalizedCholesky`) is reused throughout.

The deviances of a mode (Laplace, adaptive Gauss–Hermite) are in :mod:`skmixed.laplace`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from .families import Family
from .pirls_scalar import ScalarTerm, has_scalar_term
from .pls import CrossProducts, LambdaMap, PenalizedCholesky, PlsSolution, unique_inverse
from .reterms import RandomEffects

MAX_ITER = 100
MAX_HALVINGS = 20
STEP_TOL = 1e-10  # max |Δu|, |Δη|/(1 + |η|) at convergence
#: a full Newton step this small leaves an error ~C·step², far below STEP_TOL for any ratio C of third to second
#: derivatives below 10⁴ (the sequences of steps on the references show C < 1)
SMALL_NEWTON_STEP = 1e-7


@dataclass
class Mode:
    """The PIRLS result at one (θ, β): conditional mode u, linear predictor, means and ``ldL2 = log|LL'|``."""

    theta: np.ndarray
    beta: np.ndarray
    u: np.ndarray
    eta: np.ndarray
    mu: np.ndarray
    ldL2: float
    pdev: float  # Σ d_i + ‖u‖²
    converged: bool
    iterations: int
    message: str = ""

    @property
    def usq(self) -> float:
        return float(self.u @ self.u)


class Pirls:
    """For fixed data and family: the conditional modes by PIRLS, at fixed (θ, β) or jointly in β (nAGQ = 0).

    With one scalar random-effects term H is diagonal: :attr:`scalar` (a :class:`~skmixed.pirls_scalar.ScalarTerm`)
    then runs PIRLS over u and the Laplace gradient elementwise; otherwise it is None."""

    scalar: ScalarTerm | None = None
    _mu_eta_is_variance = False  # set with the family
    _last_mode: tuple[tuple[np.ndarray, np.ndarray], Mode] | None = None  # ((θ, β), the last converged mode of mode())

    def __init__(self, y, X, re: RandomEffects, family: Family, weights, offset, trials=None):
        self.y, self.X, self.re = y, X, re
        self.wt, self.offset = weights, offset
        self.trials = np.ones_like(y) if trials is None else trials
        self.family = family
        self.n, self.p = X.shape
        self.q = re.q
        self.lam_map = LambdaMap(re)
        self.eta_start = family.linkfun(family.mustart(y, weights))
        self._joint_start: tuple[np.ndarray, np.ndarray] | None = None
        self._u_start: np.ndarray | None = None
        if has_scalar_term(re):
            self.scalar = ScalarTerm(re, self.p)

    @property
    def reason(self) -> str:
        """How the modes and the Laplace gradient are computed, and why (as a backend's ``reason`` says it)."""
        if self.scalar is not None:
            return (
                "one scalar random-effects term: Λ'Z'WZΛ + I is diagonal, so PIRLS and the Laplace gradient are "
                "elementwise (skmixed.pirls_scalar)"
            )
        return f"Λ'Z'WZΛ + I on Z'Z's pattern, factored by {type(self.penalized.chol).__name__}"

    # the sparse pieces are built when first needed: with one scalar term, only for the result's working model
    @cached_property
    def Z(self) -> sp.csc_matrix:
        return self.re.Z.tocsc()

    @cached_property
    def Zt(self) -> sp.csr_matrix:
        return self.re.Z.T.tocsr()

    @cached_property
    def penalized(self) -> PenalizedCholesky:
        """Λ'Z'WZΛ + I on Z'Z's pattern and its factor, analysed once at the prior weights."""
        return PenalizedCholesky(self._cross_products(self.wt, np.zeros(self.n)).ZtZ, self.re)

    @property
    def family(self) -> Family:
        return self._family

    @family.setter
    def family(self, family: Family) -> None:
        """Set the family (glmer.nb changes θ between fits) and what depends on it and y only."""
        self._family = family
        self._last_mode = None
        self._dev = family.deviance(self.y, self.wt)
        self._dev_sum = family.deviance_sum(self.y, self.wt)
        self._mu_eta_is_variance = family.mu_eta_is_variance
        self._constant = family.aic_minus_deviance(self.y, self.trials, self.wt)  # μ-free aic − Σd_i, or None

    @property
    def aic_constant(self) -> float | None:
        """``aic − Σd_i`` when it is free of μ (then the Laplace deviance is ldL2 + pdev + it), else None."""
        return self._constant

    def deviance_residuals(self, mu: np.ndarray) -> np.ndarray:
        return self._dev(mu)

    # --- Z'WZ on a fixed pattern ----------------------------------------------
    @cached_property
    def z_cols(self) -> np.ndarray:
        """Row r of Z has its values ``z_vals[r]`` in the columns ``z_cols[r]`` (one per term and effect)."""
        re = self.re
        return np.hstack(
            [t.factor.codes[:, None] * t.k + np.arange(t.k) + re.col_offsets[i] for i, t in enumerate(re.terms)]
        )

    @cached_property
    def z_vals(self) -> np.ndarray:
        return np.hstack([t.values for t in self.re.terms])

    @cached_property
    def _gram_map(self) -> tuple[np.ndarray, np.ndarray, sp.csc_matrix]:
        """Enumerate (row, Z'Z entry) pairs: entry (c, d) gets ``Σ_r W_r Z[r,c] Z[r,d]``.  Returns the K² × n
        products of each row's values, where each goes in Z'Z's CSC data, and Z'Z's pattern (its data is set with W).

        Stored pair by pair (K² × n), so weighting them is K² passes over n rows; each entry of Z'Z comes from one
        pair of a row's columns (a column belongs to one term and effect), so its sum is in row order either way."""
        C, V = self.z_cols, self.z_vals
        K = C.shape[1]
        a, b = np.repeat(np.arange(K), K), np.tile(np.arange(K), K)
        keys = (C[:, b] * self.q + C[:, a]).T.ravel()  # column d = C[:, b], row c = C[:, a]: CSC order
        uniq, target = unique_inverse(keys, self.q * self.q)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(uniq // self.q, minlength=self.q))])
        ztz = sp.csc_matrix((np.zeros(len(uniq)), uniq % self.q, indptr), shape=(self.q, self.q))
        return target, np.ascontiguousarray((V[:, a] * V[:, b]).T), ztz  # C order, as the targets

    def _ztwz(self, W: np.ndarray) -> np.ndarray:
        target, products, ztz = self._gram_map
        return np.bincount(target, (products * W).ravel(), minlength=ztz.nnz)

    def _cross_products(self, W: np.ndarray, zr: np.ndarray) -> CrossProducts:
        """Cross-products of Z, X and the working response zr (offset removed) with weights W."""
        if self.scalar is not None:
            return self.scalar.cross_products(self.X, W, zr)
        ztz = self._gram_map[2]
        ztz.data = self._ztwz(W)
        WX = self.X * W[:, None]
        Wz = W * zr
        return CrossProducts(
            ZtZ=ztz,
            ZtX=np.asarray(self.Zt @ WX),
            Zty=self.Zt @ Wz,
            XtX=self.X.T @ WX,
            Xty=self.X.T @ Wz,
            yty=float(zr @ Wz),
            n=self.n,
            log_det_w=0.0,
        )

    # --- family pieces ------------------------------------------------------------
    def _mu(self, eta: np.ndarray) -> np.ndarray:
        return self.family.linkinv(eta)

    def _pdev(self, mu: np.ndarray, u: np.ndarray) -> float:
        if not self.family.valid_mu(mu):
            return np.inf
        val = self._dev_sum(mu) + float(u @ u)
        return val if np.isfinite(val) else np.inf

    def _working(self, eta: np.ndarray, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """IRLS weights W = w μ'²/V(μ) and working residuals (y − μ)/μ'."""
        if self._mu_eta_is_variance:
            v = self.family.variance(mu)
            return self.wt * v, (self.y - mu) / v
        d = self.family.mu_eta(eta)
        return self.wt * d**2 / self.family.variance(mu), (self.y - mu) / d

    def working_weights(self, mode: Mode) -> np.ndarray:
        return self._working(mode.eta, mode.mu)[0]

    def _random_part(self, lam: np.ndarray, u: np.ndarray) -> np.ndarray:
        """ZΛu."""
        if self.scalar is not None:
            return self.scalar.random_part(lam[0], u)
        return self._Z_rows @ self.lam_map.dot(lam, u)

    @cached_property
    def _Z_rows(self) -> sp.csr_matrix:
        """Z by rows: Zb is one sparse product (a gather of b at each row's columns costs several times more)."""
        return self.re.Z.tocsr()

    def _zt_dot(self, r: np.ndarray) -> np.ndarray:
        """Z'r."""
        return self.Zt @ r

    def _step_size(self, du: np.ndarray, deta: np.ndarray, eta: np.ndarray) -> float:
        return max(float(np.abs(du).max(initial=0.0)), float(np.abs(deta).max() / (1 + np.abs(eta).max())))

    @staticmethod
    def _converged(step: float, previous: float, newton: bool) -> bool:
        """Steps below STEP_TOL; a full Newton step after which the next, at the quadratic rate seen so far
        (step·(step/previous)²), would be below it, or below ``SMALL_NEWTON_STEP`` (this saves the last
        iteration, and a warm start's second); or small steps that stopped shrinking
        (the round-off floor)."""
        quadratic = newton and (step < SMALL_NEWTON_STEP or (previous < np.inf and step**3 < STEP_TOL * previous**2))
        return step < STEP_TOL or quadratic or (step < 1e-8 and step > 0.5 * previous)

    def _final_ldL2(self, ldL2: float, step: float, lam, eta, mu) -> float:
        """The last factor's log-determinant (of W's matrix) if the last step left W unchanged to round-off, else a
        fresh one."""
        return ldL2 if step < 1e-13 and np.isfinite(ldL2) else self._ldL2_at(lam, eta, mu)

    def _ldL2_at(self, lam: np.ndarray, eta: np.ndarray, mu: np.ndarray) -> float:
        """log|Λ'Z'WZΛ + I| with W at (η, μ): the Laplace determinant at the mode itself, so the deviance is smooth."""
        if self.scalar is not None:
            return self.scalar.ldL2(lam[0] ** 2, self._working(eta, mu)[0])
        return self.penalized.chol.logdet() if self.refactor(lam, self._working(eta, mu)[0]) else np.nan

    # --- PIRLS --------------------------------------------------------------------
    def mode(self, theta: np.ndarray, beta: np.ndarray, u0: np.ndarray | None = None) -> Mode:
        """The conditional mode û at fixed (θ, β), started at ``u0`` (default: the last mode found, which is returned
        as it is if it was found at this (θ, β): the fit and its result both ask for the mode at the optimum)."""
        theta, beta = np.asarray(theta, dtype=float), np.asarray(beta, dtype=float)
        if u0 is None and self._last_mode is not None:
            (theta_last, beta_last), last = self._last_mode
            if np.array_equal(theta_last, theta) and np.array_equal(beta_last, beta):
                return last
        start = u0 if u0 is not None else self._u_start
        mode = self._pirls_u(theta, beta, np.zeros(self.q) if start is None else start)
        if not mode.converged and start is not None:
            mode = self._pirls_u(theta, beta, np.zeros(self.q))
        if mode.converged:
            self._u_start, self._last_mode = mode.u, ((theta.copy(), beta.copy()), mode)  # its (θ, β) as they were
        return mode

    def refactor(self, lam: np.ndarray, W: np.ndarray) -> bool:
        """Factor Λ'Z'WZΛ + I; False if it is not positive definite."""
        return self.penalized.refactor(lam, self._ztwz(W))

    def _pirls_u(self, theta, beta, u) -> Mode:
        """PIRLS over u at fixed β.  The step is u + H⁻¹(Λ'Z's − u), s = w μ'(y − μ)/V the score, with
        H = Λ'Z'WZΛ + I for the IRLS weights W, or for the observed information when the link is not canonical
        (then Newton converges quadratically where IRLS is linear; the Laplace determinant keeps W, as lme4)."""
        if self.scalar is not None:
            return self.scalar.pirls_u(self, theta, beta, u)
        lam = self.lam_map.values(theta)
        fixed = self.X @ beta + self.offset
        eta = fixed + self._random_part(lam, u)
        mu = self._mu(eta)
        pdev = self._pdev(mu, u)
        ldL2, previous = np.nan, np.inf

        def failure(it, message, ldL2=np.nan):
            return Mode(theta, beta, u, eta, mu, ldL2, pdev, False, it, message)

        for it in range(1, MAX_ITER + 1):
            if not np.isfinite(pdev):
                return failure(it, "the linear predictor gives invalid means")
            W, resid = self._working(eta, mu)
            newton = not self.family.is_canonical and self.refactor(
                lam, self.family.observed_weights(self.y, mu, eta, self.wt)
            )
            if not newton and not self.refactor(lam, W):
                return failure(it, "Λ'Z'WZΛ + I is not positive definite")
            ldL2 = np.nan if newton else self.penalized.chol.logdet()
            target = u + self.penalized.chol.solve(self.lam_map.t_dot(lam, self._zt_dot(W * resid)) - u)
            new = self._halve(pdev, u, target, lambda v: fixed + self._random_part(lam, v))
            if new is None:
                return failure(it, "step-halving failed to reduce the penalized deviance")
            u_new, eta_new, mu_new, pdev_new, full = new
            step = self._step_size(u_new - u, eta_new - eta, eta_new)
            u, eta, mu, pdev = u_new, eta_new, mu_new, pdev_new
            if self._converged(step, previous, full and (newton or self.family.is_canonical)):
                return Mode(theta, beta, u, eta, mu, self._final_ldL2(ldL2, step, lam, eta, mu), pdev, True, it)
            previous = step
        return failure(MAX_ITER, f"no convergence in {MAX_ITER} iterations", self._ldL2_at(lam, eta, mu))

    def _halve(self, pdev, x, target, linear_predictor):
        """Move from x toward target, halving the step until pdev does not increase; None if it always does.
        Returns the point, its η, μ and pdev, and whether the full step was taken."""
        step = target - x
        slack = 1e-13 * abs(pdev) if np.isfinite(pdev) else np.inf  # round-off near the minimum
        for halvings in range(MAX_HALVINGS + 1):
            cand = x + step
            eta = linear_predictor(cand)
            mu = self._mu(eta)
            val = self._pdev(mu, cand[len(cand) - self.q :])
            if np.isfinite(val) and val <= pdev + slack:
                return cand, eta, mu, val, halvings == 0
            step = step / 2
        return None

    def joint_mode(self, theta: np.ndarray) -> Mode:
        """(β, û) minimising pdev jointly at θ (nAGQ = 0), started at the last joint mode (or from μ's start)."""
        theta = np.asarray(theta, dtype=float)
        mode = None
        if self._joint_start is not None:
            mode = self._pirls_joint(theta, *self._joint_start)
        if mode is None or not mode.converged:
            mode = self._pirls_joint(theta, None, None)
        if mode.converged:
            self._joint_start = (mode.beta, mode.u)
        return mode

    def _pirls_joint(self, theta, beta, u) -> Mode:
        """PIRLS over x = (β, u): each iteration is the PLS solve of :mod:`skmixed.pls` for the working response
        (from μ's start when ``beta`` is None)."""
        lam = self.lam_map.values(theta)
        q = self.q

        def linear_predictor(x):
            return self.X @ x[:-q] + self._random_part(lam, x[-q:]) + self.offset

        if beta is None:
            x = None
            eta = self.eta_start
            pdev = np.inf
        else:
            x = np.concatenate([beta, u])
            eta = linear_predictor(x)
            pdev = self._pdev(self._mu(eta), u)
        mu = self._mu(eta)
        previous = np.inf
        for it in range(1, MAX_ITER + 1):
            W, resid = self._working(eta, mu)
            if self.scalar is not None:
                sol = self.scalar.joint_solve(lam[0], self.X, W, eta - self.offset + resid)
            else:
                sol = self.penalized.solve(self._cross_products(W, eta - self.offset + resid), theta)[0]
            if sol is None:
                return self._joint_failure(theta, x, eta, mu, it, "the penalized least-squares system is singular")
            ldL2 = sol.ldL2
            target = np.concatenate([sol.beta, sol.u])
            start = target if x is None else x
            new = self._halve(pdev, start, target, linear_predictor)
            if new is None:
                return self._joint_failure(
                    theta, x, eta, mu, it, "step-halving failed to reduce the penalized deviance"
                )
            x_new, eta_new, mu_new, pdev_new, full = new
            step = self._step_size(x_new[-q:] - (x[-q:] if x is not None else 0), eta_new - eta, eta_new)
            x, eta, mu, pdev = x_new, eta_new, mu_new, pdev_new
            if self._converged(step, previous, full and self.family.is_canonical):
                return Mode(theta, x[:-q], x[-q:], eta, mu, self._final_ldL2(ldL2, step, lam, eta, mu), pdev, True, it)
            previous = step
        message = f"no convergence in {MAX_ITER} iterations"
        return Mode(theta, x[:-q], x[-q:], eta, mu, self._ldL2_at(lam, eta, mu), pdev, False, MAX_ITER, message)

    def _joint_failure(self, theta, x, eta, mu, it, message) -> Mode:
        q = self.q
        beta = np.full(self.p, np.nan) if x is None else x[:-q]
        u = np.zeros(q) if x is None else x[-q:]
        return Mode(theta, beta, u, eta, mu, np.nan, np.inf, False, it, message)

    # --- at the optimum -------------------------------------------------------------
    def working_cross_products(self, mode: Mode) -> CrossProducts:
        """Cross-products of the working response at the mode (a copy): the PLS problem whose solution it is."""
        W, resid = self._working(mode.eta, mode.mu)
        cp = self._cross_products(W, mode.eta - self.offset + resid)
        if self.scalar is None:  # the pattern's matrix is reused
            cp.ZtZ = cp.ZtZ.copy()
        return cp

    def working_solution(self, mode: Mode) -> PlsSolution | None:
        """The PLS solution of the working linear model at the mode (its RX'RX is the information on β)."""
        return self.penalized.solve(self.working_cross_products(mode), mode.theta)[0]

    def fixed_rx(self, mode: Mode) -> np.ndarray | None:
        """RX at the mode, or None if singular."""
        if self.scalar is not None:
            working = self.scalar.rx(float(mode.theta[0]), self.X, self.working_weights(mode))
            return None if working is None or not self.p else working.RX
        sol = self.working_solution(mode)
        return None if sol is None or not self.p else sol.RX

    def fixed_scales(self, mode: Mode) -> np.ndarray:
        """Approximate standard errors of β from RX at the mode (see :func:`rx_scales`)."""
        return rx_scales(self.fixed_rx(mode), self.p)


def rx_scales(RX: np.ndarray | None, p: int) -> np.ndarray:
    """√diag((RX'RX)⁻¹), with 1 where it is not a positive number (or RX is None)."""
    if RX is None:
        return np.ones(p)
    RXinv = np.linalg.inv(RX)
    scale = np.sqrt(np.sum(RXinv**2, axis=1))
    return np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
