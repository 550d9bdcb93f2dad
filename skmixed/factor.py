"""The Cholesky factor of ``A = Λ'Z'ZΛ + I`` for the PLS solve: blocked where that pays, CHOLMOD otherwise.

When the first random-effects term is scalar (lme4 puts the factor with the most
levels first) its block of A is diagonal, ``A = [D B'; B C]``, and

    L = [D^½ 0; B D^-½ L₂₂],  L₂₂L₂₂' = S = C − B D⁻¹ B'  (dense, order q − q₁),

so the only real factorization is a small dense one (InstEval: 1142², Dallas-shaped:
887²) and no fill-reducing ordering is needed.  It is chosen from the structure, not by
timing (timings swing with machine load): when S is small and dense (crossed factors:
InstEval's S is 22% full, Dallas' 15%).  A nested model's S is sparse and stays with CHOLMOD.
"""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import scipy.sparse as sp
from scipy.linalg.lapack import dpotrf, dpotri, dtrtrs

from ._cholmod import NotPositiveDefinite, SparseCholesky

#: the dense Schur complement is used up to this order (a 3000² Cholesky is ~10 GFlop/3)
MAX_DENSE = 3000
#: ... when at least this fraction of it is structurally nonzero
MIN_DENSITY = 0.1
#: L₂₁L₂₁' by dense BLAS when L₂₁ is at least this full (VerbAgg: every person answers every item) and small
DENSE_L21_FILL, DENSE_L21_MAX = 0.25, 4_000_000


class BlockedCholesky:
    """``LL' = A`` with A's leading q₁ × q₁ block diagonal; P is the identity."""

    def __init__(self, A_lower: sp.csc_matrix, q1: int):
        A = A_lower.tocsc()
        q = A.shape[0]
        self.q1, self.q2 = q1, q - q1
        cols = np.repeat(np.arange(q), np.diff(A.indptr))
        rows = A.indices
        first = cols < q1
        if np.any(first & (rows != cols) & (rows < q1)):
            raise ValueError("the leading block is not diagonal")
        self._diag = np.flatnonzero(first & (rows == cols))
        if len(self._diag) != q1:
            raise ValueError("the leading block has structural zeros on its diagonal")
        off = np.flatnonzero(first & (rows >= q1))  # B (q₂ × q₁), CSC in A's storage order
        self._off = off
        self._B = sp.csc_matrix(
            (np.zeros(len(off)), rows[off] - q1, np.concatenate([[0], np.cumsum(np.bincount(cols[off], minlength=q1))])),
            shape=(self.q2, q1),
        )
        self._B_cols = cols[off]
        low = np.flatnonzero(~first)
        self._low, self._low_rows, self._low_cols = low, rows[low] - q1, cols[low] - q1
        size = self.q1 * self.q2
        self._dense_l21 = size <= DENSE_L21_MAX and len(off) >= DENSE_L21_FILL * size
        self.refactor(A)
        pattern = abs(self._L21) @ abs(self._L21).T + sp.csc_matrix(
            (np.ones(len(low)), (self._low_rows, self._low_cols)), shape=(self.q2, self.q2))
        self.density = (pattern + pattern.T).nnz / self.q2**2

    def refactor(self, A_lower: sp.csc_matrix) -> None:
        data = A_lower.data
        d = data[self._diag]
        if np.any(d <= 0):
            raise NotPositiveDefinite("non-positive diagonal in the leading block")
        self._root = np.sqrt(d)
        L21 = self._B
        L21.data = data[self._off] / self._root[self._B_cols]
        S = np.zeros((self.q2, self.q2))
        S[self._low_rows, self._low_cols] = data[self._low]
        if self._dense_l21:
            dense = L21.toarray()
            S -= dense @ dense.T
        else:
            S -= (L21 @ L21.T).toarray()
        L22, info = dpotrf(S, lower=1, clean=1, overwrite_a=1)
        if info != 0:
            raise NotPositiveDefinite(f"the Schur complement is not positive definite (LAPACK info {info})")
        self._L21, self._L22 = L21, L22

    def logdet(self) -> float:
        """log |A| = Σ log D + 2 Σ log diag L₂₂."""
        return float(2.0 * np.log(self._root).sum() + 2.0 * np.log(np.diag(self._L22)).sum())

    def _split(self, b: np.ndarray):
        return b[: self.q1], b[self.q1 :]

    def solve_L(self, b: np.ndarray) -> np.ndarray:
        """L⁻¹ b: x₁ = D^-½ b₁, x₂ = L₂₂⁻¹(b₂ − L₂₁x₁)."""
        b1, b2 = self._split(b)
        x1 = b1 / (self._root if b.ndim == 1 else self._root[:, None])
        x2 = dtrtrs(self._L22, b2 - self._L21 @ x1, lower=1)[0]
        return np.concatenate([x1, x2])

    def solve_Lt(self, c: np.ndarray) -> np.ndarray:
        """L'⁻¹ c: x₂ = L₂₂'⁻¹c₂, x₁ = D^-½(c₁ − L₂₁'x₂)."""
        c1, c2 = self._split(c)
        x2 = dtrtrs(self._L22, c2, lower=1, trans=1)[0]
        x1 = (c1 - self._L21.T @ x2) / (self._root if c.ndim == 1 else self._root[:, None])
        return np.concatenate([x1, x2])

    def solve(self, b: np.ndarray) -> np.ndarray:
        """A⁻¹ b."""
        return self.solve_Lt(self.solve_L(b))

    def inverse_traces(self) -> tuple[float, np.ndarray]:
        """tr((A⁻¹)₁₁) and diag((A⁻¹)₂₂) = diag(S⁻¹).

        (A⁻¹)₁₁ = D⁻¹ + D⁻¹B'S⁻¹BD⁻¹, so its trace is Σ 1/dₛ + ⟨S⁻¹, L₂₁D⁻¹L₂₁'⟩ (Frobenius).
        """
        Sinv, info = dpotri(self._L22, lower=1)  # lower triangle of S⁻¹
        if info != 0:
            raise ArithmeticError(f"cannot invert the Schur complement (LAPACK info {info})")
        inv_d = 1.0 / self._root**2
        scaled = self._L21.multiply(inv_d[None, :]).tocsc()  # L₂₁D⁻¹
        M = (scaled @ self._L21.T).tocoo()
        lower = M.row >= M.col  # dpotri fills the lower triangle of S⁻¹; M is symmetric
        weight = np.where(M.row[lower] > M.col[lower], 2.0, 1.0)
        quad = (weight * M.data[lower] * Sinv[M.row[lower], M.col[lower]]).sum()
        return float(inv_d.sum() + quad), np.diag(Sinv).copy()


def make_factor(A_lower: sp.csc_matrix, diagonal_block: int = 0):
    """A Cholesky factor of A: blocked when the leading ``diagonal_block`` columns form a diagonal
    block and the Schur complement is small and dense; CHOLMOD's otherwise."""
    q2 = A_lower.shape[0] - diagonal_block
    if diagonal_block >= 1 and 1 <= q2 <= MAX_DENSE:
        try:
            blocked = BlockedCholesky(A_lower, diagonal_block)
        except ValueError:  # the leading block is not diagonal
            blocked = None
        if blocked is not None and blocked.density >= MIN_DENSITY:
            return blocked
    return SparseCholesky(A_lower)


def blas_threads(factor):
    """Run the dense work of a blocked factor on one BLAS thread.

    The dense matrices here are at most a few thousand square, where a second thread gains
    little on an idle machine and loses badly on a busy one (measured on the 2-core
    machine: InstEval 4.1 s with two threads against 3.5 s with one; Dallas-shaped 8.4 s
    against 3.0 s), and inside GridSearchCV(n_jobs=...) threads would be oversubscribed.
    """
    if not isinstance(factor, BlockedCholesky):
        return nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")
