"""The profiled deviance of an LMM with residual covariance σ²R_i(φ) per subject (:mod:`skmixed.residual`).

Model: y_i = X_iβ + Z_ib + ε_i, ε_i ~ N(0, σ²R_i(φ)), b ~ N(0, σ²ΛΛ').  Whitening each subject's rows by the
Cholesky factor R_i = L_iL_i' (ỹ_i = L_i⁻¹y_i, X̃_i = L_i⁻¹X_i, Z̃_i = L_i⁻¹Z_i) turns it into the ordinary
problem with σ²I residuals, whose profiled deviance (β and σ² profiled out, as lme4 does) is Bates' PLS one;
the whitening's Jacobian adds Σ_i log|R_i|:

    ML:   Σ log|R_i| + log|A| + n(1 + log(2πr²/n))
    REML: Σ log|R_i| + log|A| + log|RX'RX| + (n−p)(1 + log(2πr²/(n−p)))

:class:`GlsDeviance` (no random effects: nlme's ``gls``, mmrm's model).  Per visit pattern P and visit pair
(t, s) the sums A_ts = Σ_{i∈P} x_it x_is', B_ts = Σ x_it y_is, C_ts = Σ y_it y_is are formed once, so

    X'R⁻¹X = Σ_P Σ_ts (R_P⁻¹)_ts A_ts,   X'R⁻¹y = Σ_P Σ_ts (R_P⁻¹)_ts B_ts,   y'R⁻¹y = Σ_P Σ_ts (R_P⁻¹)_ts C_ts

and an evaluation costs O(#patterns · T²p²), nothing that grows with the number of subjects.  Its gradient:
with β̂ (envelope theorem), r², M = (X'R⁻¹X)⁻¹, E_P = Σ_{i∈P} e_ie_i' (residuals e = y − Xβ̂) and
H_P = Σ_{i∈P} X_iMX_i' (both from A, B, C), d = dof·log r² + Σ log|R_i| [+ log|X'R⁻¹X|] has

    ∂d/∂R_P = m_P R_P⁻¹ − (dof/r²) R_P⁻¹E_PR_P⁻¹ [− R_P⁻¹H_PR_P⁻¹],

summed into a T × T matrix G over the patterns' visits, and ∂d/∂φₖ = Σ_ts G_ts ∂R_ts/∂φₖ
(:meth:`~skmixed.covstruct.Structure.chain`).

:class:`WhitenedDeviance` (with random effects): for each φ the whitened cross-products are formed (O(n)) and
the PLS backends of :mod:`skmixed.backends` evaluate θ; the optimizer works on (θ, φ) without a gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.linalg import cho_factor, cho_solve, solve_triangular

from .backends import choose_backend
from .pls import PlsSolution, cross_products
from .residual import ResidualDesign
from .reterms import RandomEffects


@dataclass
class GlsSolution:
    """The solution at φ: β̂, r², the log-determinants, (X'R⁻¹X)⁻¹, the deviance and σ̂."""

    phi: np.ndarray
    beta: np.ndarray
    pwrss: float
    log_det_r: float
    log_det_xrx: float
    xrx_inverse: np.ndarray
    deviance: float
    sigma: float


def _profiled(log_det_r, log_det_xrx, pwrss, n, p, reml) -> tuple[float, float]:
    dof = n - p if reml else n
    deviance = log_det_r + dof * (1.0 + np.log(2.0 * np.pi * pwrss / dof)) + (log_det_xrx if reml else 0.0)
    return float(deviance), float(np.sqrt(pwrss / dof))


class GlsDeviance:
    """φ ↦ the profiled ML or REML deviance of a model without random effects, and its gradient."""

    def __init__(self, design: ResidualDesign, X: np.ndarray, y: np.ndarray, reml: bool):
        self.design, self.reml = design, reml
        self.n, self.p = X.shape
        self.blocks = []
        for pat in design.patterns:
            T_P, p = pat.rows.shape[1], self.p
            Xp, yp = X[pat.rows].reshape(len(pat.rows), T_P * p), y[pat.rows]  # one row per subject
            A = (Xp.T @ Xp).reshape(T_P, p, T_P, p).transpose(0, 2, 1, 3)  # [t, s, j, k]: one BLAS product
            B = (Xp.T @ yp).reshape(T_P, p, T_P).transpose(0, 2, 1)  # [t, s, j]
            C = yp.T @ yp
            self.blocks.append((pat.visits, len(pat.rows), A, B, C))

    def _pattern_inverses(self, phi):
        R = self.design.structure.matrix(np.asarray(phi, dtype=float))
        out, log_det = [], 0.0
        for visits, m, *_ in self.blocks:
            try:
                factor = cho_factor(R[np.ix_(visits, visits)], lower=True)
            except np.linalg.LinAlgError:
                return None, None
            out.append(cho_solve(factor, np.eye(len(visits))))
            log_det += m * 2.0 * np.log(np.diag(factor[0])).sum()
        return out, log_det

    def solve(self, phi) -> GlsSolution | None:
        """The solution at φ, or None where R or X'R⁻¹X is not positive definite."""
        inverses, log_det_r = self._pattern_inverses(phi)
        if inverses is None or not np.isfinite(log_det_r):
            return None
        p = self.p
        xrx, xry, yry = np.zeros((p, p)), np.zeros(p), 0.0
        for Rinv, (_, _, A, B, C) in zip(inverses, self.blocks):
            xrx += np.tensordot(Rinv, A, axes=([0, 1], [0, 1]))
            xry += np.tensordot(Rinv, B, axes=([0, 1], [0, 1]))
            yry += float(np.sum(Rinv * C))
        try:
            factor = cho_factor(xrx, lower=True)
        except np.linalg.LinAlgError:
            return None
        beta = cho_solve(factor, xry)
        pwrss = yry - beta @ xry
        if not pwrss > 0:
            return None
        log_det_xrx = 2.0 * np.log(np.diag(factor[0])).sum()
        deviance, sigma = _profiled(log_det_r, log_det_xrx, pwrss, self.n, p, self.reml)
        inverse = cho_solve(factor, np.eye(p))
        return GlsSolution(np.array(phi, dtype=float), beta, pwrss, log_det_r, log_det_xrx, inverse, deviance, sigma)

    def __call__(self, phi) -> float:
        sol = self.solve(phi)
        return np.inf if sol is None else sol.deviance

    def value_and_gradient(self, phi) -> tuple[float, np.ndarray]:
        """The deviance and its gradient in φ (the module docstring's formulas); (inf, 0) outside the domain."""
        phi = np.asarray(phi, dtype=float)
        sol = self.solve(phi)
        if sol is None:
            return np.inf, np.zeros_like(phi)
        inverses, _ = self._pattern_inverses(phi)
        T = self.design.structure.T
        dof = self.n - self.p if self.reml else self.n
        beta, M = sol.beta, sol.xrx_inverse
        G = np.zeros((T, T))
        for Rinv, (visits, m, A, B, C) in zip(inverses, self.blocks):
            fitted_y = B @ beta  # [t, s] = Σ_i (x_it'β) y_is
            E = C - fitted_y - fitted_y.T + np.einsum("tsjk,j,k->ts", A, beta, beta)
            grad = m * Rinv - (dof / sol.pwrss) * Rinv @ E @ Rinv
            if self.reml:
                H = np.einsum("tsjk,jk->ts", A, M)
                grad -= Rinv @ H @ Rinv
            G[np.ix_(visits, visits)] += grad
        return sol.deviance, self.design.structure.chain(phi, G)


class WhitenedDeviance:
    """(θ, φ) ↦ the profiled deviance of a model with random effects and a residual structure.

    The whitening W(φ) = blockdiag(L_i⁻¹) is a sparse matrix on a pattern fixed at construction; for each new φ
    the whitened cross-products and a PLS backend are made once and reused for every θ at that φ.
    """

    def __init__(self, design: ResidualDesign, X: np.ndarray, y: np.ndarray, re: RandomEffects, reml: bool):
        self.design, self.X, self.y, self.re, self.reml = design, X, y, re, reml
        self.n_theta = re.n_theta
        self.Z = re.Z.tocsr()
        rows, cols, which = [], [], []
        for k, pat in enumerate(design.patterns):
            a, b = np.tril_indices(len(pat.visits))
            rows.append(pat.rows[:, a].ravel())
            cols.append(pat.rows[:, b].ravel())
            which.append((k, a, b, len(pat.rows)))
        self._rows, self._cols, self._which = np.concatenate(rows), np.concatenate(cols), which
        self._phi: bytes | None = None

    def _whiten(self, phi: np.ndarray) -> bool:
        key = phi.tobytes()
        if key == self._phi:
            return self._backend is not None
        self._phi = key
        self._backend = None
        R = self.design.structure.matrix(phi)
        values, log_det = [], 0.0
        for k, a, b, m in self._which:
            visits = self.design.patterns[k].visits
            try:
                L = np.linalg.cholesky(R[np.ix_(visits, visits)])
            except np.linalg.LinAlgError:
                return False
            Linv = solve_triangular(L, np.eye(len(visits)), lower=True)
            values.append(np.tile(Linv[a, b], m))
            log_det += m * 2.0 * np.log(np.diag(L)).sum()
        n = len(self.y)
        W = sp.csr_matrix((np.concatenate(values), (self._rows, self._cols)), shape=(n, n))
        Xw, yw, Zw = W @ self.X, W @ self.y, (W @ self.Z).tocsc()
        self.cp = cross_products(Zw, Xw, yw, np.ones(n))
        self._backend = choose_backend(self.cp, self.re, self.reml)
        self.log_det_r = log_det
        return True

    def solve(self, x) -> PlsSolution | None:
        """The PLS solution at (θ, φ) = x, its deviance including Σ log|R_i|; None outside the domain."""
        x = np.asarray(x, dtype=float)
        theta, phi = x[: self.n_theta], x[self.n_theta :]
        if not self._whiten(phi):
            return None
        sol = self._backend.solve(theta)
        if sol is None:
            return None
        sol.deviance += self.log_det_r
        return sol

    def __call__(self, x) -> float:
        sol = self.solve(x)
        return np.inf if sol is None else sol.deviance

    def cholesky_at(self, x):
        """A factor of A at (θ, φ) (for the conditional variances of the random effects)."""
        x = np.asarray(x, dtype=float)
        self._whiten(x[self.n_theta :])
        return self._backend.cholesky_at(x[: self.n_theta])
