"""The Cholesky factor of ``A = Λ'Z'WZΛ + I`` for two nested terms, as batched small dense algebra.

Two terms whose grouping factors are nested (each level j of the *inner* term lies in one level a(j) of the
*outer* one: ``(1 + x | school) + (1 + x | school:class)``, ``(1 | a/b)``) give, with the inner term's columns
first, the two-level block arrow

    A = [D  C']   D = blockdiag(D_j) (k₁ × k₁ per inner level), E = blockdiag(E_a) (k₂ × k₂ per outer level),
        [C  E ]   C: block (a(j), j) only (k₂ × k₁),

whose Cholesky factor has no fill outside A's blocks:

    L_j = chol(D_j),   M_j = C_j L_j⁻ᵀ,   S_a = E_a − Σ_{j∈a} M_j M_j',   R_a = chol(S_a),
    log|A| = 2 Σ log diag L_j + 2 Σ log diag R_a.

Every block of A is a product of the term's k × k template T with a block of Z'WZ (``D_j = T₁'(Z'WZ)_jj T₁ + I``,
``C_j = T₂'(Z'WZ)_{a(j)j} T₁``), so a refactorisation is a handful of batched k × k products, Cholesky factors
and segment sums over the outer levels: O(levels · k³) work with no sparse machinery and no symbolic analysis.

The gradient of the profiled deviance needs A⁻¹ only on A's blocks (Takahashi's recursions for this arrow):

    (A⁻¹)_aa = S_a⁻¹,   (A⁻¹)_{a(j)j} = −S_a⁻¹ M_j L_j⁻¹,   (A⁻¹)_jj = D_j⁻¹ − (M_j L_j⁻¹)'(A⁻¹)_{a(j)j}.

Vectors are kept in the factor's order P (inner levels sorted by their outer level, so that Σ_{j∈a} is one
``np.add.reduceat``; then the outer levels); ``solve_L`` returns ``L⁻¹Pb`` and ``solve_Lt`` returns ``P'L'⁻ᵀc``,
as the other factors do (:mod:`skmixed.cholesky`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._cholmod import NotPositiveDefinite
from .reterms import RandomEffects


def inverse_cholesky(A: np.ndarray) -> tuple[np.ndarray, float]:
    """For a stack of symmetric k × k blocks (k × k × ℓ): L⁻¹ (lower triangular, ``LL' = A``) and Σ log diag L over
    the stack, in closed form for k ≤ 2; NotPositiveDefinite if a block is not positive definite."""
    k = A.shape[0]
    if k == 1:
        d = A[0, 0]
        if not np.all(d > 0):
            raise NotPositiveDefinite("a 1 × 1 block is not positive")
        return (1.0 / np.sqrt(d))[None, None], 0.5 * float(np.log(d).sum())
    if k == 2:
        a, b, d = A[0, 0], A[1, 0], A[1, 1]
        if not np.all(a > 0):
            raise NotPositiveDefinite("a 2 × 2 block is not positive definite")
        l00 = np.sqrt(a)
        l10 = b / l00
        s = d - l10 * l10  # l11²
        if not np.all(s > 0):
            raise NotPositiveDefinite("a 2 × 2 block is not positive definite")
        out = np.empty_like(A)
        out[0, 0] = 1.0 / l00
        out[1, 1] = 1.0 / np.sqrt(s)
        out[0, 1] = 0.0
        out[1, 0] = -l10 * out[0, 0] * out[1, 1]
        return out, 0.5 * float(np.log(a * s).sum())  # |A_l| = a·l11²
    try:
        L = np.linalg.cholesky(A.transpose(2, 0, 1))
    except np.linalg.LinAlgError as err:
        raise NotPositiveDefinite(str(err)) from None
    return np.linalg.inv(L).transpose(1, 2, 0), float(np.log(np.diagonal(L, axis1=1, axis2=2)).sum())


def mm(P: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """The products P_l Q_l of two stacks of blocks, each stored component-major (i × a × ℓ and a × m × ℓ: block l
    is P[:, :, l]), so that numpy's loops run over the levels; a matmul over a stack of tiny matrices is several
    times slower (and numpy's loops are only fast on contiguous operands)."""
    return np.einsum("ial,aml->iml", np.ascontiguousarray(P), np.ascontiguousarray(Q))


def tr(P: np.ndarray) -> np.ndarray:
    """The stack of transposed blocks."""
    return P.transpose(1, 0, 2)


def left(T: np.ndarray, P: np.ndarray) -> np.ndarray:
    """T P_l for one small matrix T and every block of a stack (one BLAS product)."""
    return (T @ P.reshape(P.shape[0], -1)).reshape(T.shape[0], *P.shape[1:])


def quadratic(T: np.ndarray, U: np.ndarray, P: np.ndarray) -> np.ndarray:
    """T'P_l U for every block of a stack: with P's blocks as columns of a k² × ℓ matrix, one product by
    (T ⊗ U)' (whose entry [(a, b), (c, d)] is T[a, c] U[b, d])."""
    return (np.kron(T, U).T @ P.reshape(-1, P.shape[2])).reshape(T.shape[1], U.shape[1], P.shape[2])


def pairs(P: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """Σ_l P_l[x, y] Q_l[z, w] over two stacks, as an array [x, y, z, w] (one product over the levels)."""
    return (P.reshape(-1, P.shape[2]) @ Q.reshape(-1, Q.shape[2]).T).reshape(*P.shape[:2], *Q.shape[:2])


def contract(P: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """Σ_l P_l Q_l' over two stacks i × m × ℓ and a × m × ℓ (one BLAS product)."""
    return P.reshape(P.shape[0], -1) @ Q.reshape(Q.shape[0], -1).T


class NestedStructure:
    """Which term is inner, the outer level of each inner level (``parent``), the factor's order P, and the blocks of
    Z'WZ as stacks: ``D`` (inner × inner), ``C`` (outer row block a(j) × inner column block j) and ``E`` (outer ×
    outer) — A's blocks before Λ and the identity."""

    def __init__(self, coo: sp.coo_matrix, re: RandomEffects, inner: int, parent: np.ndarray):
        outer = 1 - inner
        t1, t2 = re.terms[inner], re.terms[outer]
        self.inner, self.k1, self.k2, self.l1, self.l2 = inner, t1.k, t2.k, t1.n_levels, t2.n_levels
        order = np.argsort(parent, kind="stable")  # inner levels grouped by outer level
        rank = np.empty_like(order)
        rank[order] = np.arange(self.l1)
        self.rank = rank  # each inner level's place in the factor's order
        self.parent = parent[order]
        starts = np.searchsorted(self.parent, np.arange(self.l2))
        # outer levels that meet no inner level (their columns of Z'Z hold no coupling: exact zeros are not stored)
        self.has_inner = np.diff(np.append(starts, self.l1)) > 0
        self.starts = starts[self.has_inner]  # strictly increasing: each the start of its segment, to the next
        # the factor's order: position of each of A's columns
        off1, off2 = re.col_offsets[inner], re.col_offsets[outer]
        position = np.empty(re.q, dtype=np.int64)
        position[off1 : off1 + t1.q] = (rank[:, None] * t1.k + np.arange(t1.k)).ravel()
        position[off2 : off2 + t2.q] = t1.q + np.arange(t2.q)
        self.q1 = t1.q
        self.order = np.argsort(position)  # b[order] is Pb
        self.identity = bool(np.array_equal(self.order, np.arange(re.q)))
        r, c, v = position[coo.row], position[coo.col], coo.data
        # stacks of blocks are stored component-major: block l of a stack P is P[:, :, l]
        self.D = np.zeros((self.k1, self.k1, self.l1))
        self.C = np.zeros((self.k2, self.k1, self.l1))  # C_j: outer row block a(j), inner column block j
        self.E = np.zeros((self.k2, self.k2, self.l2))
        inner_r, inner_c = r < self.q1, c < self.q1
        both = inner_r & inner_c
        self.D[r[both] % self.k1, c[both] % self.k1, c[both] // self.k1] = v[both]
        cross = ~inner_r & inner_c
        j = c[cross] // self.k1
        self.C[(r[cross] - self.q1) % self.k2, c[cross] % self.k1, j] = v[cross]
        outer_both = ~inner_r & ~inner_c
        r2, c2 = r[outer_both] - self.q1, c[outer_both] - self.q1
        self.E[r2 % self.k2, c2 % self.k2, c2 // self.k2] = v[outer_both]
        self.Ct = np.ascontiguousarray(tr(self.C))

    def segment_sum(self, X: np.ndarray) -> np.ndarray:
        """Σ_{j∈a} X_j for each outer level a (X's last axis the inner levels in the factor's order)."""
        out = np.add.reduceat(X, self.starts, axis=-1)
        if len(self.starts) == self.l2:
            return out
        full = np.zeros(X.shape[:-1] + (self.l2,))
        full[..., self.has_inner] = out
        return full

    def to_factor(self, b: np.ndarray) -> np.ndarray:
        """Pb."""
        return b if self.identity else b[self.order]

    def from_factor(self, c: np.ndarray) -> np.ndarray:
        """P'c."""
        if self.identity:
            return c
        out = np.empty_like(c)
        out[self.order] = c
        return out


def nested_structure(ZtZ: sp.spmatrix, re: RandomEffects) -> NestedStructure | None:
    """The structure of two terms on distinct grouping factors one of which is nested in the other, read from Z'Z's
    pattern (every level of the inner term meets one level of the outer; the first term is inner if each is in the
    other); None for other models."""
    if len(re.terms) != 2 or re.terms[0].group == re.terms[1].group:
        return None
    A = sp.csc_matrix(ZtZ)
    offsets = re.col_offsets
    for inner in (0, 1):
        outer = 1 - inner
        t1, t2 = re.terms[inner], re.terms[outer]
        first, last = A.indptr[offsets[inner]], A.indptr[offsets[inner + 1]]  # the inner term's columns
        rows = A.indices[first:last]
        cross = (rows >= offsets[outer]) & (rows < offsets[outer + 1])
        if np.count_nonzero(cross) > t1.q * t2.k:  # some inner column meets more than one outer level: crossed
            continue
        columns = np.repeat(
            np.arange(offsets[inner], offsets[inner + 1]), np.diff(A.indptr[offsets[inner] : offsets[inner + 1] + 1])
        )
        level = (columns[cross] - offsets[inner]) // t1.k
        parent_level = (rows[cross] - offsets[outer]) // t2.k
        parent = np.zeros(t1.n_levels, dtype=np.int64)  # a level that meets none: any parent, its C_j is 0
        parent[level] = parent_level
        if np.array_equal(parent[level], parent_level):
            return NestedStructure(ZtZ.tocoo(), re, inner, parent)
    return None


class NestedCholesky:
    """The factor of A for the term templates T₁ (inner) and T₂ (outer); see the module docstring.

    The solves come in two forms: on stacks (``solve_L_blocks``: an inner part k₁ × m × ℓ₁ and an outer part
    k₂ × m × ℓ₂, the PLS solve's own layout) and on vectors or matrices in A's column order (the interface of the
    other factors, for conditional variances and prediction).
    """

    def __init__(self, structure: NestedStructure):
        self.s = structure

    def refactor(self, T1: np.ndarray, T2: np.ndarray) -> None:
        """Factor A at Λ = blockdiag(T₁ per inner level, T₂ per outer level); NotPositiveDefinite if it is not."""
        s = self.s
        self.T1, self.T2 = T1, T2
        D = quadratic(T1, T1, s.D)
        D[np.arange(s.k1), np.arange(s.k1)] += 1.0
        self.Linv, logL = inverse_cholesky(D)
        self.LinvT = np.ascontiguousarray(tr(self.Linv))  # the transposed stacks, used several times each
        self.M = mm(quadratic(T2, T1, s.C), self.LinvT)  # M_j = C_j L_j⁻ᵀ
        self.MT = np.ascontiguousarray(tr(self.M))
        S = quadratic(T2, T2, s.E) - s.segment_sum(mm(self.M, self.MT))
        S[np.arange(s.k2), np.arange(s.k2)] += 1.0
        self.Rinv, logR = inverse_cholesky(S)
        self.RinvT = np.ascontiguousarray(tr(self.Rinv))
        self._logdet = 2.0 * (logL + logR)

    def logdet(self) -> float:
        return float(self._logdet)

    def solve_L_blocks(self, b1: np.ndarray, b2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """L⁻¹ of the stacked right-hand sides."""
        x1 = mm(self.Linv, b1)
        return x1, mm(self.Rinv, b2 - self.s.segment_sum(mm(self.M, x1)))

    def solve_Lt_blocks(self, c1: np.ndarray, c2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """L'⁻¹ of the stacked right-hand sides."""
        y2 = mm(self.RinvT, c2)
        return mm(self.LinvT, c1 - mm(self.MT, y2[..., self.s.parent])), y2

    def split(self, b: np.ndarray):
        """A vector or matrix in the factor's order as its inner and outer stacks (k × m × ℓ views)."""
        s, m = self.s, (b.shape[1] if b.ndim == 2 else 1)
        return b[: s.q1].reshape(s.l1, s.k1, m).transpose(1, 2, 0), b[s.q1 :].reshape(s.l2, s.k2, m).transpose(1, 2, 0)

    @staticmethod
    def join(x1: np.ndarray, x2: np.ndarray, shape) -> np.ndarray:
        """The inverse of :meth:`split`: the stacks as one array of ``shape`` in the factor's order."""
        flat = [x.transpose(2, 0, 1).reshape(-1, *shape[1:]) for x in (x1, x2)]
        return np.concatenate(flat)

    def solve_L(self, b: np.ndarray) -> np.ndarray:
        """L⁻¹Pb (b a vector or the columns of a matrix)."""
        return self.join(*self.solve_L_blocks(*self.split(self.s.to_factor(b))), b.shape)

    def solve_Lt(self, c: np.ndarray) -> np.ndarray:
        """P'L'⁻¹c."""
        return self.s.from_factor(self.join(*self.solve_Lt_blocks(*self.split(c)), c.shape))

    def solve(self, b: np.ndarray) -> np.ndarray:
        """A⁻¹b."""
        return self.solve_Lt(self.solve_L(b))

    def _inverse_blocks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A⁻¹ on A's blocks, as stacks in the factor's order: (A⁻¹)_aa, (A⁻¹)_{a(j)j} and (A⁻¹)_jj."""
        Sinv = mm(self.RinvT, self.Rinv)
        X = mm(self.M, self.Linv)  # C_j D_j⁻¹ = M_j L_j⁻¹
        inv21 = -mm(Sinv[..., self.s.parent], X)
        return Sinv, inv21, mm(self.LinvT, self.Linv) - mm(tr(X), inv21)

    def inverse_diagonal_blocks(self) -> list[np.ndarray]:
        """The diagonal blocks of A⁻¹, per term in the terms' order, each ℓ × k × k in the order of its levels (the
        conditional variances need no more; solving for the columns of L⁻¹PΛ' would cost O(q²))."""
        Sinv, _, inv11 = self._inverse_blocks()
        blocks = [inv11[..., self.s.rank].transpose(2, 0, 1), Sinv.transpose(2, 0, 1)]
        return blocks if self.s.inner == 0 else blocks[::-1]

    def logdet_gradient(self) -> tuple[np.ndarray, np.ndarray]:
        """∂log|A|/∂T₁ and ∂log|A|/∂T₂ (k × k; only the lower triangles are parameters).

        ∂log|A|/∂T[r, c] = 2 tr(A⁻¹Λ'(Z'WZ) E) with E Λ's pattern of the entry: summed over the term's levels,
        2 Σ_level (Σ_s (A⁻¹)_{level,s} Λ_s'(Z'WZ)_{s,level})[c, r], which reaches A⁻¹ only on A's blocks.
        """
        s = self.s
        Sinv, inv21, inv11 = self._inverse_blocks()
        # Σ_l P_l T' Q_l[c, r] = Σ_{a,b} T[b, a] (Σ_l P_l[c, a] Q_l[b, r]): one product over the levels, then T
        K21 = pairs(inv21, s.C)  # [x, y, z, w] = Σ_j (A⁻¹)_{a(j)j}[x, y] C_j[z, w]
        M1 = np.einsum("cabr,ba->cr", pairs(inv11, s.D), self.T1) + np.einsum("acbr,ba->cr", K21, self.T2)
        M2 = np.einsum("carb,ba->cr", K21, self.T1) + np.einsum("cabr,ba->cr", pairs(Sinv, s.E), self.T2)
        return 2.0 * M1.T, 2.0 * M2.T
