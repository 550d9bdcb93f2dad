"""The bordered PLS problem of :mod:`skmixed.dense_pls` with its first term's block factored level by level.

Order the random effects as [1 | N]: term 1 (q₁ = g·k columns, level-major) first, then the other terms' q₂
columns, X's p and y's one (together N, of order n = q₂ + p + 1).  Term 1's block of
Λ̃'ΩΛ̃ + diag(I_q, 0, 0) is block diagonal, A₁₁ = diag(Aⱼ), Aⱼ = T'Z'ⱼZⱼT + I_k for level j (each row of the data
belongs to one level), so the bordered Cholesky factor is

    L̃ = [L₁₁ 0; L_N1 L_NN],   L₁₁ = diag(chol Aⱼ),   L_N1,ⱼ = M_N1,ⱼ L_ⱼ'⁻¹,   L_NN L_NN' = M_NN − L_N1 L_N1'

with M = Λ̃'ΩΛ̃ + diag(I_q, 0, 0): g batched k × k factors, a q₁ × n² rank update and one dense Cholesky of order n
(the Schur complement of term 1), in place of the (q + p + 1)³/3 flops of the whole.  log|A|, log|RX'RX| and r²
come from the diagonals of L₁₁ and L_NN as in :mod:`skmixed.dense_pls`; [û₂; β̂] solve L_NN's leading block,
û₁ = L₁₁'⁻¹(c₁ − L_N1'[û₂; β̂]).

Gradient: the formulas of :mod:`skmixed.dense_pls`, with M its leading block of order m (q + p for REML, q for ML)
and K = (Λ̃'Ω)[:m, :q], need (M⁻¹K)[b, a] on Λ's pattern, i.e. the diagonal k × k blocks of M⁻¹K for each level of
each term.  Let N now be M's rows after term 1 (order r = m − q₁), S = L_NN L_NN' their Schur complement (the
leading r × r of L_NN), and Rⱼ = T L_ⱼ'⁻¹, so that L_N1,ⱼ = K_N1,ⱼ Rⱼ.  Block inversion gives

    M⁻¹₁₁ = L₁₁'⁻¹(I + L_N1'S⁻¹L_N1)L₁₁⁻¹,   M⁻¹_1N = −L₁₁'⁻¹L_N1'S⁻¹,   M⁻¹_NN = S⁻¹,

so with Cⱼ = K_N1,ⱼ'S⁻¹K_N1,ⱼ (k × k) and Kⱼⱼ = T'Z'ⱼZⱼ the blocks of term 1 are

    (M⁻¹K)ⱼⱼ = Aⱼ⁻¹[Kⱼⱼ + T'Cⱼ(T Aⱼ⁻¹ Kⱼⱼ − I)],

and those of a term in N, with Dⱼ = T Aⱼ⁻¹T' and Ω₁N = Z₁'Z_N,

    (M⁻¹K)_NN = S⁻¹K_NN − (S⁻¹K_N1) diag(Dⱼ) Ω₁N:

one product Q = S⁻¹K_N1 (2q₁r² flops), S⁻¹ (⅔r³) and batched k × k or k × q₁ × k products — none of the order of
M⁻¹ itself.  Nothing here needs T to be invertible: a singular fit's zero diagonal in T is an ordinary point.

Why: crossed vector terms (KB07's subjects × items, four correlated effects each) have q in the hundreds, where the
dense factor's (q + p)³ work dominates a fit, and the sparse factor has no gradient for them.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.linalg.blas import dsyrk
from scipy.linalg.lapack import dpotrf, dpotri, dtrtrs


def blocked_flops(re, p: int, reml: bool) -> float:
    """The multiply-adds of one evaluation with its gradient: the rank update q₁n², n³/3 for L_NN, and the gradient's
    q₁r² (Q, counted twice: its product and the Cⱼ) and ⅔r³ (S⁻¹); n = q₂ + p + 1, r = q₂ (+ p for REML)."""
    q1 = re.terms[0].q
    n = re.q - q1 + p + 1
    r = re.q - q1 + (p if reml else 0)
    return q1 * n * n + n**3 / 3 + 2.0 * q1 * r * r + 2 * r**3 / 3


class _Term:
    """One term's place: first column (in its part of the order), levels, k, θ's slice and T's entries (flat)."""

    def __init__(self, term, offset: int, theta_offset: int):
        self.offset, self.levels, self.k = offset, term.n_levels, term.k
        self.span = slice(offset, offset + term.q)
        self.theta = slice(theta_offset, theta_offset + term.n_theta)
        self.flat = np.array([r * term.k + c for r, c in term.tril])
        rows, cols = np.divmod(self.flat, term.k)
        self.pattern = cols * term.k + rows  # Λ's entry (r, c) is (M⁻¹K)[c, r] within a level's block

    def template(self, theta: np.ndarray) -> np.ndarray:
        T = np.zeros((self.k, self.k))
        T.flat[self.flat] = theta[self.theta]
        return T

    def scale_rows(self, matrix: np.ndarray, T: np.ndarray) -> None:
        """matrix[span] ← Λ' matrix[span], in place (Λ has T in each level's diagonal block)."""
        rows = matrix[self.span].reshape(self.levels, self.k, -1)
        rows[...] = T.T @ rows

    def scale_cols(self, matrix: np.ndarray, T: np.ndarray) -> None:
        """matrix[:, span] ← matrix[:, span] Λ, in place."""
        cols = matrix[:, self.span].reshape(len(matrix), self.levels, self.k)
        matrix[:, self.span] = (cols @ T).reshape(len(matrix), -1)

    def diagonal_blocks(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """The entries on Λ's pattern of the level-diagonal k × k blocks of left[span] @ right[:, span], entry by
        entry (each over the levels), as ``lambda_pattern`` orders them."""
        m = left.shape[1]
        lower = left[self.span].reshape(self.levels, self.k, m)
        upper = right[:, self.span].reshape(m, self.levels, self.k).transpose(1, 0, 2)
        return (lower @ upper).reshape(self.levels, -1)[:, self.pattern].T.ravel()


def _level_blocks(ZtZ: sp.spmatrix, g: int, k: int) -> np.ndarray:
    """Term 1's diagonal blocks of Z'Z, (g, k, k): its q₁ × q₁ block has no entry between levels."""
    coo = sp.coo_matrix(ZtZ)
    blocks = np.zeros((g, k, k))
    np.add.at(blocks, (coo.row // k, coo.row % k, coo.col % k), coo.data)  # duplicates, if any, summed
    return blocks


class BlockedPls:
    """The interface of :class:`~skmixed.dense_pls.DensePls` (:meth:`decompose`, :meth:`coefficients`, ``RX``,
    ``ldL2``, ``ldRX2``, ``pwrss``, :meth:`gradient`) on the blocked factor."""

    def __init__(self, ZtZ, ZtX, Zty, XtX, Xty, yty, re):
        q, p = ZtX.shape
        first = re.terms[0]
        g, k = first.n_levels, first.k
        q1 = g * k
        self.q, self.p, self.q1, self.q2 = q, p, q1, q - q1
        ZtZ = sp.csr_matrix(ZtZ)
        self._first = _Term(first, 0, 0)
        offsets = zip(re.terms[1:], re.col_offsets[1:], re.theta_offsets[1:])
        self._rest = [_Term(t, int(col) - q1, int(theta)) for t, col, theta in offsets]
        self._omega11 = _level_blocks(ZtZ[:q1, :q1], g, k)
        n = self.q2 + p + 1
        border = np.column_stack([ZtX, Zty])
        omega_1N = np.empty((q1, n))  # Ω₁N = [Z₁'Z₂ Z₁'X Z₁'y]
        omega_1N[:, : self.q2] = ZtZ[:q1, q1:].toarray()
        omega_1N[:, self.q2 :] = border[:q1]
        omega_NN = np.empty((n, n))
        omega_NN[: self.q2, : self.q2] = ZtZ[q1:, q1:].toarray()
        omega_NN[: self.q2, self.q2 :] = border[q1:]
        omega_NN[self.q2 :, : self.q2] = border[q1:].T
        omega_NN[self.q2 : -1, self.q2 : -1], omega_NN[self.q2 : -1, -1], omega_NN[-1, self.q2 : -1] = XtX, Xty, Xty
        omega_NN[-1, -1] = yty
        self._omega_1N, self._omega_NN = omega_1N, omega_NN
        self._diag_2 = np.arange(self.q2) * (n + 1)
        self._rows, self._cols, self._theta_index = re.lambda_pattern
        self._n_theta = re.n_theta

    def decompose(self, theta: np.ndarray) -> bool:
        """Factor Λ̃'ΩΛ̃ + diag(I_q, 0, 0) at θ; False where it is not positive definite (r² ≤ 0 included)."""
        first = self._first
        self._T = T = first.template(theta)
        self._templates = templates = [t.template(theta) for t in self._rest]
        self._KT1 = KT1 = self._omega_1N.copy()  # K_N1' = Ω₁N Λ̃_N
        self._K_NN = K_NN = self._omega_NN.copy()  # rows: Λ̃_N'Ω_NN
        for t, Tt in zip(self._rest, templates):
            t.scale_cols(KT1, Tt)
            t.scale_rows(K_NN, Tt)
        M_NN = K_NN.copy()
        for t, Tt in zip(self._rest, templates):
            t.scale_cols(M_NN, Tt)
        M_NN.flat[self._diag_2] += 1.0
        A = T.T @ self._omega11 @ T  # Aⱼ = T'Z'ⱼZⱼT + I
        A += np.eye(first.k)
        L1 = np.linalg.cholesky(A)  # A ≥ I: always positive definite
        self._L1inv = L1inv = np.linalg.inv(L1)
        g, k = first.levels, first.k
        R = T @ L1inv.transpose(0, 2, 1)  # Rⱼ = T Lⱼ'⁻¹
        # L_N1' by level: Rⱼ'K_N1,ⱼ', rows of a q₁ × n array
        self._LT1 = LT1 = (R.transpose(0, 2, 1) @ KT1.reshape(g, k, -1)).reshape(self.q1, -1)
        S = dsyrk(-1.0, LT1.T, beta=1.0, c=M_NN.T, lower=1, overwrite_c=1)  # lower triangle of M_NN − L_N1 L_N1'
        L, info = dpotrf(S, lower=1, clean=1, overwrite_a=1)
        self._L = L
        if info != 0:
            return False
        q2, p = self.q2, self.p
        d = np.log(np.diagonal(L))
        self.ldL2 = 2.0 * (np.log(np.diagonal(L1, axis1=1, axis2=2)).sum() + d[:q2].sum())
        self.ldRX2 = 2.0 * d[q2 : q2 + p].sum()
        self.pwrss = L[-1, -1] ** 2
        return True

    @property
    def RX(self) -> np.ndarray:
        q2, p = self.q2, self.p
        return self._L[q2 : q2 + p, q2 : q2 + p].T.copy()

    def coefficients(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(β̂, û, b̂ = Λû) at the factored θ."""
        L, first = self._L, self._first
        rest = dtrtrs(L[:-1, :-1], L[-1, :-1], lower=1, trans=1)[0]  # [û₂; β̂]
        c1 = self._LT1[:, -1] - self._LT1[:, :-1] @ rest
        g, k = first.levels, first.k
        u1 = (self._L1inv.transpose(0, 2, 1) @ c1.reshape(g, k, 1)).ravel()
        u = np.concatenate([u1, rest[: self.q2]])
        b = np.empty(self.q)
        b[: self.q1] = (u1.reshape(g, k) @ self._T.T).ravel()
        for t, Tt in zip(self._rest, self._templates):
            span = slice(self.q1 + t.offset, self.q1 + t.offset + t.levels * t.k)
            b[span] = (u[span].reshape(t.levels, t.k) @ Tt.T).ravel()
        return rest[self.q2 :], u, b

    def gradient(self, beta: np.ndarray, u: np.ndarray, b: np.ndarray, reml: bool, dof: int) -> np.ndarray:
        """∂/∂θ of the profiled deviance log|A| [+ log|RX'RX|] + dof·log r² at the factored θ."""
        first, T = self._first, self._T
        g, k, q1, q2 = first.levels, first.k, self.q1, self.q2
        r = q2 + self.p if reml else q2
        lower = dpotri(self._L[:r, :r], lower=1)[0]
        Sinv = lower + lower.T
        Sinv.flat[:: r + 1] *= 0.5
        KT1 = self._KT1[:, :r]
        QT = KT1 @ Sinv  # (S⁻¹K_N1)'
        C = QT.reshape(g, k, r) @ KT1.reshape(g, k, r).transpose(0, 2, 1)
        Ainv = self._L1inv.transpose(0, 2, 1) @ self._L1inv
        K11 = T.T @ self._omega11
        inner = T @ Ainv @ K11
        inner -= np.eye(k)
        blocks = Ainv @ (K11 + T.T @ C @ inner)
        traces = [blocks.reshape(g, -1)[:, first.pattern].T.ravel()]
        E = (T @ Ainv @ T.T @ QT.reshape(g, k, r)).reshape(q1, r)  # diag(Dⱼ) Q'
        K_N = self._K_NN[:r, :q2]
        for t in self._rest:
            traces.append(t.diagonal_blocks(Sinv, K_N) - t.diagonal_blocks(E.T, self._omega_1N[:, :q2]))
        trace_terms = np.concatenate(traces)
        w = np.concatenate([-b[q1:], -beta, [1.0]])  # [−b₂; −β̂; 1]
        b1 = b[:q1].reshape(g, k, 1)
        Ztr = np.concatenate(
            [
                (self._omega11 @ -b1).ravel() + self._omega_1N @ w,
                self._omega_NN[:q2] @ w - self._omega_1N[:, :q2].T @ b[:q1],
            ]
        )
        per_entry = 2.0 * trace_terms - (2.0 * dof / self.pwrss) * Ztr[self._rows] * u[self._cols]
        return np.bincount(self._theta_index, per_entry, minlength=self._n_theta)
