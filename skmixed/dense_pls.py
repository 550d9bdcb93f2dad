"""The PLS problem for small q as one dense Cholesky of the bordered cross-products (Bates' method).

With Ω the weighted cross-products of [Z X y] (formed once) and Λ̃ = diag(Λ, I_p, 1),

    Λ̃'ΩΛ̃ + diag(I_q, 0, 0) = L̃L̃',   L̃ = [L 0 0; RZX' RX' 0; cu' cβ' r],

so one Cholesky of order q + p + 1 gives log|A| = 2 Σ log diag L, log|RX'RX| = 2 Σ log diag RX
and the penalized RSS r² = r·r; [û; β̂] solve the leading block of L̃' against [cu; cβ].

Gradient: let M be the leading block of order q + p for REML (A and RZX, RX) and of order q
(M = A) for ML, L₁ its factor, and K = [Λ'Z'Z; X'Z] the matching rows of Λ̃'Ω, first q columns.
With E_m = ∂Λ/∂θ_m, dM = [dA E'Z'X; X'ZE 0] and dA = E'Z'ZΛ + Λ'Z'ZE, so

    ∂(log|A| [+ log|RX'RX|])/∂θ_m = tr(M⁻¹ ∂M/∂θ_m) = 2 Σ_{(a,b) ∈ E_m} (M⁻¹K)[b, a]
    ∂r²/∂θ_m = −2 Σ_{(a,b) ∈ E_m} (Z'r)_a û_b,   Z'r = Z'y − Z'Xβ̂ − Z'ZΛû  (envelope theorem)

(|M| = |A|·|RX'RX|: RX'RX is A's Schur complement in M).  M⁻¹K is one LAPACK solve.

Why: for a few dozen random effects the sparse path's cost is call
overhead (CHOLMOD, scipy.sparse, some 25 numpy calls), while this is a dozen calls on
matrices of order q + p + 1; the O((q + p)³) work overtakes that overhead near q ≈ 100
(see :data:`skmixed.backends.MAX_DENSE_Q`).  It also gives every such model, vector terms included, an analytic
gradient, which the sparse path has only for scalar terms on the blocked factor.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.linalg.lapack import dpotrf, dpotrs, dtrtrs


class DensePls:
    """One profiled-deviance evaluation at a time: :meth:`factor` at θ, then the quantities it leaves."""

    def __init__(
        self,
        ZtZ: sp.spmatrix,
        ZtX: np.ndarray,
        Zty: np.ndarray,
        XtX: np.ndarray,
        Xty: np.ndarray,
        yty: float,
        lambda_pattern: tuple[np.ndarray, np.ndarray, np.ndarray],
    ):
        q, p = ZtX.shape
        self.q, self.p = q, p
        n = q + p + 1
        omega = np.empty((n, n))
        omega[:q, :q] = ZtZ.toarray()
        omega[:q, q : q + p], omega[:q, -1] = ZtX, Zty
        omega[q : q + p, :q], omega[-1, :q] = ZtX.T, Zty
        omega[q : q + p, q : q + p], omega[q : q + p, -1], omega[-1, q : q + p] = XtX, Xty, Xty
        omega[-1, -1] = yty
        self._omega = omega
        self._rows, self._cols, self._theta_index = lambda_pattern
        self._n_theta = int(self._theta_index.max()) + 1
        self._lam_flat = self._rows * n + self._cols  # Λ̃[rows, cols] in a C-ordered n × n array
        self._lam = np.eye(n)
        self._diag_q = np.arange(q) * (n + 1)
        self._L = None

    def decompose(self, theta: np.ndarray) -> bool:
        """Factor Λ̃'ΩΛ̃ + diag(I_q, 0, 0) at θ; False where it is not positive definite (r² ≤ 0 included)."""
        lam = self._lam
        lam.flat[self._lam_flat] = theta[self._theta_index]
        self._lam_omega = lam.T @ self._omega
        M = self._lam_omega @ lam
        M.flat[self._diag_q] += 1.0
        L, info = dpotrf(M.T, lower=1, clean=1, overwrite_a=1)  # M is symmetric: its transpose is Fortran-ordered
        self._L = L
        if info != 0:
            return False
        d = np.log(np.diagonal(L))
        q, p = self.q, self.p
        self.ldL2, self.ldRX2 = 2.0 * d[:q].sum(), 2.0 * d[q : q + p].sum()
        self.pwrss = L[-1, -1] ** 2
        return True

    @property
    def RX(self) -> np.ndarray:
        q, p = self.q, self.p
        return self._L[q : q + p, q : q + p].T.copy()  # upper triangular: dpotrf cleaned L's upper part

    def coefficients(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(β̂, û, b̂ = Λû) at the factored θ."""
        q = self.q
        sol = dtrtrs(self._L[:-1, :-1], self._L[-1, :-1], lower=1, trans=1)[0]  # L̃₁'[u; β] = [cu; cβ]
        u = sol[:q]
        return sol[q:], u, self._lam[:q, :q] @ u

    def gradient(self, beta: np.ndarray, u: np.ndarray, b: np.ndarray, reml: bool, dof: int) -> np.ndarray:
        """∂/∂θ of the profiled deviance log|A| [+ log|RX'RX|] + dof·log r² at the factored θ."""
        q = self.q
        m = q + self.p if reml else q
        K = self._lam_omega[:m, :q]
        P = dpotrs(self._L[:m, :m], K, lower=1)[0]  # M⁻¹K; rows q.. are not needed
        Ztr = self._omega[:q] @ np.concatenate([-b, -beta, [1.0]])
        rows, cols = self._rows, self._cols
        per_entry = 2.0 * P[cols, rows] - (2.0 * dof / self.pwrss) * Ztr[rows] * u[cols]
        return np.bincount(self._theta_index, per_entry, minlength=self._n_theta)
