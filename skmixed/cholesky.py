"""The Cholesky factor of ``A = Λ'Z'ZΛ + I`` for the PLS solve: blocked where that pays, CHOLMOD otherwise.

When the first random-effects term is scalar (lme4 puts the factor with the most
levels first) its block of A is diagonal, ``A = [D B'; B C]``, and

    L = [D^½ 0; B D^-½ L₂₂],  L₂₂L₂₂' = S = C − B D⁻¹ B'  (dense, order q − q₁),

so the only real factorization is a small dense one (of order q − q₁: a thousand or so for
crossed models) and no fill-reducing ordering is needed.  It is chosen from the structure:
when S is small, and dense (crossed factors) or so small that a dense Cholesky costs less
than CHOLMOD's overhead.  A large nested model's S is sparse and stays with CHOLMOD, whose
mode and ordering :mod:`skmixed._cholmod` picks.

:class:`BlockedCholesky` is refactored from A's values (any weights: the GLMM's PIRLS);
:class:`~skmixed.scalar_cholesky.ScalarTermsCholesky` from Λ alone, for an LMM whose terms are all scalar.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import scipy.sparse as sp
from scipy.linalg.lapack import dpotrf, dpotri, dtrtri, dtrtrs

from ._cholmod import NotPositiveDefinite, SparseCholesky

#: the dense Schur complement is used up to this order (a 3000² Cholesky is ~10 GFlop/3)
MAX_DENSE = 3000
#: ... when at least this fraction of it is structurally nonzero, or it is this small whatever its fill (a nested
#: model's S is sparse; at order 256 a dense Cholesky is ~6 MFlop, less than CHOLMOD's call overhead)
MIN_DENSITY, SMALL_SCHUR = 0.1, 256
#: otherwise by cost: LAPACK's blocked Cholesky does this many flops in the time CHOLMOD's simplicial factor does
#: one unit of its Σⱼcⱼ² (a sparse S of crossed factors fills in: 1,000 × 1,977 levels at 10,000 rows gives a
#: CHOLMOD factor of 1.7·10⁸ units, slower than the dense complement's 10⁹ flops)
DENSE_PER_SPARSE_FLOP = 10.0
#: ... and a fit with the gradient that only the blocked factor of scalar terms gives needs about this many times
#: fewer evaluations than BOBYQA's without it
GRADIENT_SAVING = 3.0
#: L₂₁L₂₁' by dense BLAS when L₂₁ is at least this full (every person answers every item, say) and small
DENSE_L21_FILL, DENSE_L21_MAX = 0.25, 4_000_000
#: the gradient's traces from L₂₂⁻¹R (a dense q₂ × q₁ product) up to this many entries, from S⁻¹ beyond; and where
#: it costs less, in process-time nanoseconds (benchmarks/HISTORY.md): a BLAS flop, a multiply-add of scipy's
#: sparse × dense product, a pass over an entry of the dense result, and a multiply-add of scipy's sparse product
#: (4–5 ns on InstEval's and ml1m's shapes, with their two passes and output; up to 14 where the output is large)
MAX_TRIANGULAR_PRODUCT = 20_000_000
#: ... the traces read a sparse L₂₁D⁻¹L₂₁' at its entries in S⁻¹ up to this fraction of q₂², as a dense matrix beyond
DENSE_GATHER = 0.1
BLAS_NS, SPARSE_DENSE_NS, DENSE_PASS_NS, SPARSE_NS = 0.025, 2.0, 1.0, 5.0


class _Blocked:
    """Solves with ``L = [D^½ 0; L₂₁ L₂₂]`` (P the identity) from ``_root`` = D^½, ``_L21`` and the dense ``_L22``."""

    q1: int
    q2: int

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

    def _factor_schur(self, S: np.ndarray) -> None:
        """L₂₂ = chol(S), overwriting S where it is in Fortran order (a C-ordered S is copied first)."""
        L22, info = dpotrf(S, lower=1, clean=1, overwrite_a=1)
        if info != 0:
            raise NotPositiveDefinite(f"the Schur complement is not positive definite (LAPACK info {info})")
        self._L22 = L22

    def _set_l21(self, L21: sp.csc_matrix) -> np.ndarray:
        """Keep L₂₁, as a dense array when it is small and full (its solves are then BLAS calls), and return
        L₂₁L₂₁' (dense)."""
        if self._dense_l21:
            self._L21 = L21.toarray()
            return self._L21 @ self._L21.T
        self._L21 = L21
        return (L21 @ L21.T).toarray(order="F")

    def trailing_inverse(self) -> tuple[np.ndarray, np.ndarray]:
        """A⁻¹'s last q₂ columns and the diagonal of its leading block, from the factor alone:

            A⁻¹[:, q₁:] = [−D^-½ L₂₁'S⁻¹; S⁻¹],   diag((A⁻¹)₁₁) = (1 + diag(L₂₁'S⁻¹L₂₁)) / d

        (S⁻¹ = L₂₂'⁻¹L₂₂⁻¹ by LAPACK's ``dpotri``; (A⁻¹)₁₁ = D⁻¹ + D^-½L₂₁'S⁻¹L₂₁D^-½): what the Laplace
        gradient's selected inverse needs of A⁻¹ when the leading block is diagonal."""
        Sinv, info = dpotri(self._L22, lower=1)  # the lower triangle (L₂₂'s upper triangle is clean: zeros)
        if info != 0:
            raise ArithmeticError(f"cannot invert the Schur complement (LAPACK info {info})")
        Sinv = Sinv + np.tril(Sinv, -1).T
        P = np.asarray(self._L21.T @ Sinv)  # L₂₁'S⁻¹, q₁ × q₂
        if isinstance(self._L21, np.ndarray):
            quad = np.einsum("ca,ac->c", P, self._L21)
        else:
            quad = np.asarray(self._L21.multiply(P.T).sum(axis=0)).ravel()
        return np.vstack([-P / self._root[:, None], Sinv]), (1.0 + quad) / self._root**2

    def inverse_traces(self) -> tuple[float, np.ndarray]:
        """tr((A⁻¹)₁₁) and diag((A⁻¹)₂₂) from L₂₁: see :meth:`_inverse_traces`, or, for a sparse L₂₁ that
        is cheap to multiply, from L₂₂⁻¹ alone: with R = L₂₁D^-½ and S⁻¹ = L₂₂'⁻¹L₂₂⁻¹,
        ⟨S⁻¹, RR'⟩ = ‖L₂₂⁻¹R‖²_F and diag(S⁻¹) the squared column norms of L₂₂⁻¹ (a triangular inverse,
        q₂³/3 flops, where S⁻¹ itself costs twice that)."""
        inv_d = 1.0 / self._root**2
        if isinstance(self._L21, np.ndarray):
            return self._inverse_traces((self._L21 * inv_d) @ self._L21.T)
        q1, q2 = self.q1, self.q2
        triangular = BLAS_NS * q2**3 / 3 + SPARSE_DENSE_NS * self._L21.nnz * q2 + DENSE_PASS_NS * q1 * q2
        by_inverse = BLAS_NS * 2 * q2**3 / 3 + SPARSE_NS * float(np.sum(np.diff(self._L21.indptr).astype(float) ** 2))
        if triangular <= by_inverse and q2 * q1 <= MAX_TRIANGULAR_PRODUCT:
            L_inv, info = dtrtri(self._L22, lower=1)
            if info != 0:
                raise ArithmeticError(f"cannot invert the Schur complement's factor (LAPACK info {info})")
            R = self._L21.multiply(np.sqrt(inv_d)[None, :]).tocsr()
            quad = float(np.sum((R.T @ L_inv.T) ** 2))  # ‖L₂₂⁻¹R‖², as (R'L₂₂'⁻¹)
            return float(np.sum(inv_d) + quad), np.einsum("ij,ij->j", L_inv, L_inv)
        return self._inverse_traces(self._L21.multiply(inv_d[None, :]).tocsc() @ self._L21.T)

    def _inverse_traces(self, scaled_product) -> tuple[float, np.ndarray]:
        """tr((A⁻¹)₁₁) and diag((A⁻¹)₂₂) = diag(S⁻¹), given ``scaled_product`` = L₂₁D⁻¹L₂₁' (sparse or dense).

        (A⁻¹)₁₁ = D⁻¹ + D⁻¹B'S⁻¹BD⁻¹, so its trace is Σ 1/dₛ + ⟨S⁻¹, L₂₁D⁻¹L₂₁'⟩ (Frobenius).
        """
        Sinv, info = dpotri(self._L22, lower=1)  # lower triangle of S⁻¹ (L₂₂'s upper triangle is clean: zeros)
        if info != 0:
            raise ArithmeticError(f"cannot invert the Schur complement (LAPACK info {info})")
        if sp.issparse(scaled_product) and scaled_product.nnz > DENSE_GATHER * self.q2**2:
            scaled_product = scaled_product.toarray()  # nearly full: a pass over it beats gathering S⁻¹ at random
        if sp.issparse(scaled_product):
            M = scaled_product.tocoo()
            lower = M.row >= M.col  # M is symmetric
            weight = np.where(M.row[lower] > M.col[lower], 2.0, 1.0)
            quad = (weight * M.data[lower] * Sinv[M.row[lower], M.col[lower]]).sum()
        else:
            if scaled_product.flags.f_contiguous:  # as S⁻¹ is (LAPACK's): both read in memory order, no copies
                quad = 2.0 * np.vdot(Sinv.T, scaled_product.T)
            else:
                quad = 2.0 * np.vdot(Sinv, scaled_product)
            quad -= np.diag(Sinv) @ np.diag(scaled_product)
        return float(np.sum(1.0 / self._root**2) + quad), np.diag(Sinv).copy()


class BlockedCholesky(_Blocked):
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
            (
                np.zeros(len(off)),
                rows[off] - q1,
                np.concatenate([[0], np.cumsum(np.bincount(cols[off], minlength=q1))]),
            ),
            shape=(self.q2, q1),
        )
        self._B_cols = cols[off]
        low = np.flatnonzero(~first)
        self._low, self._low_rows, self._low_cols = low, rows[low] - q1, cols[low] - q1
        size = self.q1 * self.q2
        self._dense_l21 = size <= DENSE_L21_MAX and len(off) >= DENSE_L21_FILL * size
        self.refactor(A)

    @cached_property
    def density(self) -> float:
        """The fraction of S's entries that are structurally nonzero: those of C and of BB' (computed when asked:
        a small S is factored densely whatever its fill)."""
        B = self._B.copy()
        B.data = np.ones(B.nnz)
        pattern = B @ B.T + sp.csc_matrix(
            (np.ones(len(self._low)), (self._low_rows, self._low_cols)), shape=(self.q2, self.q2)
        )
        return (pattern + pattern.T).nnz / self.q2**2

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
        S -= self._set_l21(L21)
        self._factor_schur(S)

    def bind_scaled(self, z: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
        """Prepare :meth:`refactor_scaled`: A's k-th stored entry is ``λ[rows[k]]·ztz[z[k]]·λ[cols[k]]`` (+ 1 on
        the diagonal) for a diagonal Λ (:class:`~skmixed.pls.ScaledGram` of scalar terms)."""
        self._diag_z = z[self._diag]
        self._off_z, self._off_rows = z[self._off], rows[self._off]
        self._low_z, self._low_l1, self._low_l2 = z[self._low], rows[self._low], cols[self._low]
        self._l21_flat = self._B_cols * self.q2 + self._B.indices  # B's entries in L₂₁' (q₁ × q₂, row-major)
        self._l21_full = len(self._l21_flat) == self.q1 * self.q2  # then in order: every entry, column by column

    def refactor_scaled(self, lam: np.ndarray, ztz: np.ndarray) -> None:
        """Refactor for a diagonal Λ with values ``lam`` and Z'WZ's values ``ztz`` without assembling A:

            D = λ₁ (Z'WZ)₁₁ λ₁ + I,   L₂₁ = λ₂ (Z'WZ)₂₁ λ₁ D^-½,   S = λ₂ (Z'WZ)₂₂ λ₂ + I − L₂₁L₂₁',

        each product in the order :class:`~skmixed.pls.ScaledGram` forms A's entries, so D and L₂₁ are those
        :meth:`refactor` computes from that A to the last bit (and S up to the order of BLAS's sums)."""
        q1 = self.q1
        lam1 = lam[:q1]
        d = lam1 * ztz[self._diag_z] * lam1 + 1.0
        if np.any(d <= 0):
            raise NotPositiveDefinite("non-positive diagonal in the leading block")
        self._root = root = np.sqrt(d)
        S = np.zeros((self.q2, self.q2))
        S[self._low_rows, self._low_cols] = lam[self._low_l1] * ztz[self._low_z] * lam[self._low_l2]
        S[np.arange(self.q2), np.arange(self.q2)] += 1.0
        if self._dense_l21:  # L₂₁' scaled as a dense array (broadcasts, not gathers), filled in B's CSC order
            if self._l21_full:
                L21t = ztz[self._off_z]
            else:
                L21t = np.zeros(q1 * self.q2)
                L21t[self._l21_flat] = ztz[self._off_z]
            L21t = L21t.reshape(q1, self.q2)
            L21t *= lam[q1:]
            L21t *= lam1[:, None]
            L21t /= root[:, None]
            self._L21 = L21t.T
            S -= L21t.T @ L21t
        else:
            self._B.data = lam[self._off_rows] * ztz[self._off_z] * lam[self._B_cols] / root[self._B_cols]
            S -= self._set_l21(self._B)
        self._factor_schur(S)


class DiagonalCholesky:
    """``LL' = A`` for a diagonal A (one scalar random-effects term: a random intercept): L = diag(√a), P = I.

    CHOLMOD would do the same arithmetic behind a call and a permutation; for the GLMMs' many refactorings of a
    random-intercept model that overhead is most of the work.
    """

    def __init__(self, A_lower: sp.csc_matrix):
        self.refactor(A_lower)

    def refactor(self, A_lower: sp.csc_matrix) -> None:
        d = A_lower.data
        if not np.all(d > 0):
            raise NotPositiveDefinite("non-positive diagonal entry")
        self._d, self._root = d.copy(), np.sqrt(d)

    def logdet(self) -> float:
        return float(np.log(self._d).sum())

    def _scale(self, b: np.ndarray, by: np.ndarray) -> np.ndarray:
        return b / (by if b.ndim == 1 else by[:, None])

    def solve_L(self, b: np.ndarray) -> np.ndarray:
        return self._scale(b, self._root)

    def solve_Lt(self, c: np.ndarray) -> np.ndarray:
        return self._scale(c, self._root)

    def solve(self, b: np.ndarray) -> np.ndarray:
        return self._scale(b, self._d)


def _is_diagonal(A_lower: sp.csc_matrix) -> bool:
    q = A_lower.shape[0]
    return (
        A_lower.nnz == q
        and np.array_equal(A_lower.indices, np.arange(q))
        and np.array_equal(A_lower.indptr, np.arange(q + 1))
    )


def make_cholesky(A_lower: sp.csc_matrix, diagonal_block: int = 0):
    """A Cholesky factor of A: blocked when the leading ``diagonal_block`` columns form a diagonal block and the
    Schur complement is small and pays (dense or tiny, or its q₂³/3 flops cheaper than CHOLMOD's factor); CHOLMOD's
    otherwise."""
    if _is_diagonal(A_lower):
        return DiagonalCholesky(A_lower)
    q2 = A_lower.shape[0] - diagonal_block
    blocked = None
    if diagonal_block >= 1 and 1 <= q2 <= MAX_DENSE:
        try:
            blocked = BlockedCholesky(A_lower, diagonal_block)
        except ValueError:  # the leading block is not diagonal
            blocked = None
        if blocked is not None and (q2 <= SMALL_SCHUR or blocked.density >= MIN_DENSITY):
            return blocked
    sparse = SparseCholesky(A_lower)
    if blocked is not None and float(q2) ** 3 / 3 <= DENSE_PER_SPARSE_FLOP * sparse.flops:
        return blocked
    return sparse
