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

(|M| = |A|·|RX'RX|: RX'RX is A's Schur complement in M).  The entries of M⁻¹K on Λ's pattern come from M⁻¹
(⅔m³ flops) where that is cheaper than the whole of M⁻¹K (one solve, 2m²q).

Why: for a few dozen random effects the sparse path's cost is call
overhead (CHOLMOD, scipy.sparse, some 25 numpy calls), while this is a dozen calls on
matrices of order q + p + 1; the O((q + p)³) work overtakes that overhead near q ≈ 100
(see :data:`skmixed.backends.MAX_DENSE_Q`).  It also gives every such model, vector terms included, an analytic
gradient, which the sparse path has only for scalar terms on the blocked factor.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.linalg.lapack import dpotrf, dpotri, dpotrs, dtrtrs

#: up to this order M⁻¹K is one solve whatever its flops: at this size the calls, not the arithmetic, cost
SMALL_M = 64


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
        re,
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
        self._rows, self._cols, self._theta_index = re.lambda_pattern
        self._n_theta = int(self._theta_index.max()) + 1
        #: per term: its columns (level-major: level j's k effects are adjacent), levels, k, and where its θ goes in
        #: the k × k template T (flat, C order)
        self._blocks = []
        for i, t in enumerate(re.terms):
            start = int(re.theta_offsets[i])
            flat = np.array([r * t.k + c for r, c in t.tril])
            self._blocks.append((int(re.col_offsets[i]), t.n_levels, t.k, slice(start, start + t.n_theta), flat))
        self._diag_q = np.arange(q) * (n + 1)
        self._L = None

    def decompose(self, theta: np.ndarray) -> bool:
        """Factor Λ̃'ΩΛ̃ + diag(I_q, 0, 0) at θ; False where it is not positive definite (r² ≤ 0 included)."""
        self._templates = templates = []
        for _, _, k, where, flat in self._blocks:
            T = np.zeros((k, k))
            T.flat[flat] = theta[where]
            templates.append(T)
        self._lam_omega = lam_omega = self._omega.copy()
        for (offset, levels, k, _, _), T in zip(self._blocks, templates):  # rows: Λ'Ω, Λ block diagonal by level
            rows = lam_omega[offset : offset + levels * k].reshape(levels, k, -1)
            rows[...] = T.T @ rows
        M = lam_omega.copy()
        for (offset, levels, k, _, _), T in zip(self._blocks, templates):  # columns: (Λ'Ω)Λ
            cols = M[:, offset : offset + levels * k].reshape(len(M), levels, k)
            M[:, offset : offset + levels * k] = (cols @ T).reshape(len(M), -1)
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
        b = np.empty(q)
        for (offset, levels, k, _, _), T in zip(self._blocks, self._templates):
            b[offset : offset + levels * k] = (u[offset : offset + levels * k].reshape(levels, k) @ T.T).ravel()
        return sol[q:], u, b

    def _block_products(self, Minv: np.ndarray, K: np.ndarray, m: int) -> np.ndarray:
        """(M⁻¹K)[b, a] for Λ's entries (a, b), in ``lambda_pattern``'s order: Λ's entries lie in its per-level
        k × k blocks, so these are the diagonal blocks of M⁻¹K, one batched product per term."""
        out = []
        for offset, levels, k, _, flat in self._blocks:
            span = slice(offset, offset + levels * k)
            left = Minv[span].reshape(levels, k, m)
            right = K[:, span].reshape(m, levels, k).transpose(1, 0, 2)
            blocks = (left @ right).reshape(levels, k * k)  # [level, b·k + a] = (M⁻¹K)[b, a] within the level
            rows, cols = np.divmod(flat, k)  # Λ's template entry (r, c) at r·k + c
            out.append(blocks[:, cols * k + rows].T.ravel())  # entry by entry, each over the levels
        return np.concatenate(out)

    def gradient(self, beta: np.ndarray, u: np.ndarray, b: np.ndarray, reml: bool, dof: int) -> np.ndarray:
        """∂/∂θ of the profiled deviance log|A| [+ log|RX'RX|] + dof·log r² at the factored θ."""
        q = self.q
        m = q + self.p if reml else q
        K = self._lam_omega[:m, :q]
        rows, cols = self._rows, self._cols
        if m > SMALL_M and len(rows) < q * m:  # (M⁻¹K)[b, a] = (M⁻¹)[b, :]·K[:, a] on Λ's pattern: M⁻¹ costs ⅔m³
            lower = dpotri(self._L[:m, :m], lower=1)[0]  # M⁻¹'s lower triangle; the upper is L's: zeros
            Minv = lower + lower.T
            Minv.flat[:: m + 1] *= 0.5
            trace_terms = self._block_products(Minv, K, m)
        else:  # M⁻¹K itself (2m²q)
            trace_terms = dpotrs(self._L[:m, :m], K, lower=1)[0][cols, rows]
        Ztr = self._omega[:q] @ np.concatenate([-b, -beta, [1.0]])
        per_entry = 2.0 * trace_terms - (2.0 * dof / self.pwrss) * Ztr[rows] * u[cols]
        return np.bincount(self._theta_index, per_entry, minlength=self._n_theta)
