"""A⁻¹ on the pattern of ``A = Λ'Z'ZΛ + I``, for the gradient of the profiled deviance on the sparse path.

``tr(A⁻¹ ∂A/∂θ)`` needs A⁻¹ only where A has entries.  Two structures give those entries from small dense
blocks, cheaper than the selected inverse of the sparse factor (:mod:`skmixed.selected_inverse`):

* **One grouping factor.**  A is block diagonal by level, each block of order Σᵢ kᵢ over the terms.
* **Two terms, the first's factor nested in the second's** (each level j of the first lies in one level a(j) of
  the second: pupils in classes, ``(1 + x | school:class) + (1 + x | school)``).  With ``A = [D₁ B'; B D₂]``,
  D₁ and D₂ block diagonal by level and column block j of B non-zero only in row block a(j), the Schur complement
  ``S = D₂ − B D₁⁻¹ B'`` is block diagonal by a, and

      (A⁻¹)₂₂ = S⁻¹,   (A⁻¹)₂₁ = −S⁻¹ B D₁⁻¹,   (A⁻¹)₁₁ = D₁⁻¹ + D₁⁻¹ B' S⁻¹ B D₁⁻¹,

  where each block of the right-hand sides is a product of k × k matrices (the level's own blocks).

:func:`pattern_inverse` recognises the structure from A's pattern (so data that are only partly nested fall back
to the selected inverse) and returns a :class:`PatternInverse`, or None.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .reterms import RandomEffects


@dataclass(frozen=True)
class _Blocks:
    """Where A's stored entries sit in one family of diagonal blocks (or, ``rows_from`` set, in B's blocks)."""

    entries: np.ndarray  # positions in A.data
    level: np.ndarray  # the block (level) of each
    row: np.ndarray  # local row and column within it
    col: np.ndarray


def _inverse(M: np.ndarray) -> np.ndarray:
    """Inverses of a stack of small symmetric blocks: 1 × 1 and 2 × 2 in closed form (LAPACK's per-matrix
    overhead dominates at these sizes), larger ones by LAPACK."""
    k = M.shape[-1]
    if k == 1:
        return 1.0 / M
    if k == 2:
        a, b, d = M[:, 0, 0], M[:, 1, 0], M[:, 1, 1]
        out = np.empty_like(M)
        det = a * d - b * b
        out[:, 0, 0], out[:, 1, 1] = d / det, a / det
        out[:, 0, 1] = out[:, 1, 0] = -b / det
        return out
    return np.linalg.inv(M)


class PatternInverse:
    """``values(A.data)``: A⁻¹ at A's stored (lower) entries, in A.data's order; ``weight``: 2 off the diagonal,
    1 on it (the entry's count in tr(A⁻¹ dA) over the full symmetric matrix)."""

    def __init__(self, nnz: int, weight: np.ndarray, first, sizes, second=None, coupling=None, parent=None):
        self.nnz, self.weight = nnz, weight
        self._first, self._second, self._coupling, self._parent = first, second, coupling, parent
        self._n_levels, self._k = sizes

    @staticmethod
    def _fill(blocks: _Blocks, data: np.ndarray, shape: tuple[int, int, int], symmetric: bool) -> np.ndarray:
        out = np.zeros(shape)
        out[blocks.level, blocks.row, blocks.col] = data[blocks.entries]
        if symmetric:
            out[blocks.level, blocks.col, blocks.row] = data[blocks.entries]
        return out

    def values(self, data: np.ndarray) -> np.ndarray:
        (l1, l2), (k1, k2) = self._n_levels, self._k
        first, out = self._first, np.empty(self.nnz)
        D1_inv = _inverse(self._fill(first, data, (l1, k1, k1), True))
        if self._second is None:
            out[first.entries] = D1_inv[first.level, first.row, first.col]
            return out
        second, coupling, parent = self._second, self._coupling, self._parent
        B = self._fill(coupling, data, (l1, k2, k1), False)  # B's block of column level j (in row level a(j))
        X = B @ D1_inv  # B D₁⁻¹, per j
        BDB = (X @ B.transpose(0, 2, 1)).reshape(l1, k2 * k2)
        S = self._fill(second, data, (l2, k2, k2), True).reshape(l2, k2 * k2)
        for e in range(k2 * k2):
            S[:, e] -= np.bincount(parent, BDB[:, e], minlength=l2)
        S_inv = _inverse(S.reshape(l2, k2, k2))
        Y = S_inv[parent] @ X  # S⁻¹ B D₁⁻¹, per j
        inv11 = D1_inv + X.transpose(0, 2, 1) @ Y
        out[first.entries] = inv11[first.level, first.row, first.col]
        out[coupling.entries] = -Y[coupling.level, coupling.row, coupling.col]
        out[second.entries] = S_inv[second.level, second.row, second.col]
        return out


def pattern_inverse(A: sp.csc_matrix, re: RandomEffects) -> PatternInverse | None:
    """The block structure of A's pattern, when it is one of the module's two; None otherwise."""
    q = re.q
    cols = np.repeat(np.arange(q), np.diff(A.indptr))
    rows = A.indices
    weight = np.where(rows == cols, 1.0, 2.0)
    groups = [t.group for t in re.terms]
    if len(set(groups)) == 1:  # one factor: a block per level over all the terms
        level, local = np.empty(q, dtype=np.int64), np.empty(q, dtype=np.int64)
        within = 0
        for i, t in enumerate(re.terms):
            offset = np.arange(t.q)
            level[re.col_offsets[i] : re.col_offsets[i + 1]] = offset // t.k
            local[re.col_offsets[i] : re.col_offsets[i + 1]] = within + offset % t.k
            within += t.k
        if np.any(level[rows] != level[cols]):
            return None
        first = _Blocks(np.arange(len(rows)), level[cols], local[rows], local[cols])
        return PatternInverse(len(rows), weight, first, ((re.terms[0].n_levels, 0), (within, 0)))
    if len(re.terms) != 2:
        return None
    t1, t2 = re.terms
    q1 = t1.q
    in1 = cols < q1  # lower triangle: a column of the first term, or both in the second
    both1, both2, cross = in1 & (rows < q1), ~in1, in1 & (rows >= q1)
    level1, level2 = cols[both1] // t1.k, cols[both2] - q1  # level2: the second term's column
    if np.any(rows[both1] // t1.k != level1) or np.any((rows[both2] - q1) // t2.k != level2 // t2.k):
        return None  # a term's own block is not block diagonal by level
    parent_of = np.full(t1.n_levels, -1)
    j, a = cols[cross] // t1.k, (rows[cross] - q1) // t2.k
    parent_of[j] = a
    if np.any(parent_of[j] != a) or np.any(parent_of < 0):  # a level of the first term in two of the second's
        return None
    first = _Blocks(np.flatnonzero(both1), level1, rows[both1] % t1.k, cols[both1] % t1.k)
    second = _Blocks(np.flatnonzero(both2), level2 // t2.k, (rows[both2] - q1) % t2.k, level2 % t2.k)
    coupling = _Blocks(np.flatnonzero(cross), j, (rows[cross] - q1) % t2.k, cols[cross] % t1.k)
    sizes = ((t1.n_levels, t2.n_levels), (t1.k, t2.k))
    return PatternInverse(len(rows), weight, first, sizes, second, coupling, parent_of)
