"""A⁻¹ on the pattern of the sparse factor L (a selected inverse), for the gradient on CHOLMOD's path.

With ``PAP' = LL'`` the entries of Σ = (PAP')⁻¹ on the pattern of L follow from L alone, backwards over the
columns (Takahashi, Fagan and Chin, "Formation of a sparse bus impedance matrix and its application to short
circuit study"; Erisman and Tinney, "On computing certain elements of the inverse of a sparse matrix").  Taken a
supernode J at a time — columns whose structures nest, so that below their dense diagonal block L_JJ they share
one row set R (Lin, Yang, Meza, Lu, Ying and E, "SelInv: an algorithm for selected inversion of a sparse symmetric
matrix") —

    U = L_RJ L_JJ⁻¹,   Σ_RJ = −Σ_RR U,   Σ_JJ = L_JJ'⁻¹L_JJ⁻¹ − U'Σ_RJ.

R is a clique of the filled graph and every column of R belongs to a supernode after J (an ancestor in the
supernodal elimination tree), so Σ_RR is read from entries already computed, and Σ is found on L's pattern, which
holds the permuted pattern of A.  That is all ``tr(A⁻¹ ∂A/∂θ)`` needs of A⁻¹.

In numpy the recurrence is batched: supernodes at the same depth of the elimination tree do not depend on one
another, so those of a width and of similar row counts go through as one stack of small matrices (rows padded
with zeros, which change nothing: a zero row of L_RJ gives a zero row of U and Σ_RJ).  L's pattern is fixed for
a model, so every gather and scatter index is computed once (:class:`SupernodalPattern`) and reused each
evaluation.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.linalg import solve_triangular
from scipy.linalg.lapack import dpotri

from ._cholmod import SparseCholesky

#: the supernodes of one depth are stacked with row sets at most this factor apart (zero padding costs flops)
ROW_RATIO = 1.5
#: a supernode this wide is handled alone by LAPACK (a stacked inverse by LU would cost more than a triangular one)
WIDE = 32
#: the gather indices of Σ_RR over all supernodes (Σ r², 4 bytes each) are held up to this many entries (400 MB,
#: where the factor itself takes minutes per fit); beyond it the selected inverse is not offered and the sparse path
#: has no gradient
MAX_GATHER = 100_000_000


def supernodes(indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The first column of each supernode of a Cholesky factor's pattern (CSC, rows sorted, diagonal first), and
    n at the end: column j + 1 joins j's supernode when j's structure below its diagonal is j + 1's (its first
    sub-diagonal row is j + 1 and it has one entry more; the structure of a factor's column below the diagonal is
    contained in its parent's)."""
    counts = np.diff(indptr)
    n = len(counts)
    j = np.arange(n - 1)
    has_sub = counts[:-1] > 1
    first_sub = np.where(has_sub, indices[np.minimum(indptr[:-2] + 1, len(indices) - 1)], -1)
    joins = has_sub & (first_sub == j + 1) & (counts[:-1] == counts[1:] + 1)
    return np.concatenate([[0], np.flatnonzero(~joins) + 1, [n]])


class _Group:
    """Supernodes of one depth, one width and similar row counts, stacked as (m, w + r, w) panels.

    Indices point into arrays of nnz + 1 entries whose last one is a zero (the padding)."""

    def __init__(self, w: int, r: int, panel: np.ndarray, rr: np.ndarray, valid: np.ndarray):
        self.w, self.r = w, r
        self.panel = panel  # (m, w + r, w): positions in L.data
        self.rr = rr  # (m, r, r): positions in Σ of Σ_RR (both triangles: one gather, no symmetrization)
        self.out_at = np.flatnonzero(valid)  # where the panel's computed entries go: Σ[target] = out.flat[out_at]
        self.target = panel.ravel()[self.out_at]


class SupernodalPattern:
    """The symbolic part of the selected inverse for L's pattern: supernodes, depths, gather and scatter indices."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray):
        self.indptr, self.indices = indptr.astype(np.int64), indices.astype(np.int64)
        indptr, indices = self.indptr, self.indices
        n = len(indptr) - 1
        self.n, self.nnz = n, len(indices)
        self.index_type = np.int32 if self.nnz < np.iinfo(np.int32).max else np.int64
        cols = np.repeat(np.arange(n), np.diff(indptr))
        self._keys = cols * n + indices  # sorted: column-major with sorted rows
        if np.any(np.diff(self._keys) <= 0) or np.any(indices[indptr[:-1]] != np.arange(n)):
            raise ValueError("L's rows are not sorted within columns, diagonal first")
        first = supernodes(indptr, indices)
        width = np.diff(first)
        snode = np.repeat(np.arange(len(width)), width)  # the supernode of each column
        last = first[1:] - 1
        r_count = np.diff(indptr)[last] - 1  # rows below the supernode's diagonal block
        if np.sum(r_count.astype(float) ** 2) > MAX_GATHER:
            raise MemoryError("the selected inverse's gather indices would exceed MAX_GATHER entries")
        parent = np.full(len(width), -1)
        has_r = r_count > 0
        parent[has_r] = snode[indices[indptr[last[has_r]] + 1]]
        depth = np.zeros(len(width), dtype=np.int64)
        for s in range(len(width) - 1, -1, -1):  # a parent comes after its children
            if parent[s] >= 0:
                depth[s] = depth[parent[s]] + 1
        self.n_supernodes = len(width)
        self.groups = self._groups(first, width, r_count, depth)

    def position(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Positions in L.data of entries (rows ≥ cols) of L's pattern; an entry outside it is an error."""
        keys = cols * self.n + rows
        pos = np.minimum(np.searchsorted(self._keys, keys), self.nnz - 1)
        if np.any(self._keys[pos] != keys):
            raise ValueError("L's pattern is not closed: a supernode's row set is not a clique")
        return pos

    def _groups(self, first, width, r_count, depth) -> list[_Group]:
        """Supernodes by depth (the root's first), then width, then row count within ROW_RATIO; wide ones alone."""
        bucket = np.floor(np.log(r_count + 1.0) / np.log(ROW_RATIO)).astype(np.int64)
        alone = np.where(width >= WIDE, np.arange(len(width)), -1)
        order = np.lexsort((alone, bucket, width, depth))
        stamp = np.stack([depth, width, bucket, alone], axis=1)[order]
        breaks = np.flatnonzero(np.any(np.diff(stamp, axis=0) != 0, axis=1)) + 1
        return [
            self._group(first[members], int(width[members[0]]), r_count[members]) for members in np.split(order, breaks)
        ]

    def _group(self, f: np.ndarray, w: int, r_count: np.ndarray) -> _Group:
        indptr, indices, pad = self.indptr, self.indices, self.nnz
        m, r = len(f), int(r_count.max())
        # column f + c holds rows f + c … f + w − 1, then R, from indptr[f + c]
        start = indptr[f[:, None] + np.arange(w)[None, :]][:, None, :]  # (m, 1, w)
        i, c = np.arange(w + r)[None, :, None], np.arange(w)[None, None, :]
        valid = (i >= c) & (i < w + r_count[:, None, None])
        panel = np.where(valid, start + i - c, pad).astype(self.index_type)
        k = np.arange(r)[None, :]
        in_r = k < r_count[:, None]
        R = np.where(in_r, indices[np.minimum(indptr[f + w - 1][:, None] + 1 + k, pad - 1)], -1)
        a, b = np.tril_indices(r)
        rr = np.full((m, r, r), pad, dtype=self.index_type)
        g, e = np.nonzero(in_r[:, a] & in_r[:, b])
        rr[g, a[e], b[e]] = rr[g, b[e], a[e]] = self.position(R[g, a[e]], R[g, b[e]])
        return _Group(w, r, panel, rr, valid.ravel())


def selected_inverse(pattern: SupernodalPattern, data: np.ndarray) -> np.ndarray:
    """Σ = (LL')⁻¹ on L's pattern, aligned with L.data (``data``: L's values, LL' form)."""
    data = np.append(data, 0.0)
    sigma = np.zeros(pattern.nnz + 1)
    for g in pattern.groups:
        P = data[g.panel]  # (m, w + r, w)
        w = g.w
        LJJ, LRJ = P[:, :w, :], P[:, w:, :]
        if len(P) == 1 and w >= WIDE:
            out = _wide(LJJ[0], LRJ[0], sigma[g.rr[0]])[None]
        else:
            Linv = _triangular_inverse(LJJ)
            U = LRJ @ Linv
            Srj = -(sigma[g.rr] @ U)
            Sjj = Linv.transpose(0, 2, 1) @ Linv - U.transpose(0, 2, 1) @ Srj
            out = np.concatenate([Sjj, Srj], axis=1)
        sigma[g.target] = out.ravel()[g.out_at]
    return sigma[:-1]


def _triangular_inverse(L: np.ndarray) -> np.ndarray:
    """Inverses of a stack of lower triangular blocks: 1 × 1 and 2 × 2 in closed form (most supernodes of a model
    with one or two effects per level; LAPACK's per-matrix overhead dominates at these sizes), larger ones by LU."""
    w = L.shape[-1]
    if w == 1:
        return 1.0 / L
    if w == 2:
        out = np.zeros_like(L)
        out[:, 0, 0], out[:, 1, 1] = 1.0 / L[:, 0, 0], 1.0 / L[:, 1, 1]
        out[:, 1, 0] = -L[:, 1, 0] * out[:, 0, 0] * out[:, 1, 1]
        return out
    return np.tril(np.linalg.inv(L))


def _wide(LJJ: np.ndarray, LRJ: np.ndarray, Srr: np.ndarray) -> np.ndarray:
    """One wide supernode by LAPACK: Σ_JJ from ``dpotri`` (L_JJ'⁻¹L_JJ⁻¹), U by a triangular solve."""
    Sjj, info = dpotri(LJJ, lower=1)
    if info != 0:
        raise ArithmeticError(f"cannot invert a supernode's diagonal block (LAPACK info {info})")
    Sjj = np.tril(Sjj) + np.tril(Sjj, -1).T
    if not len(LRJ):
        return Sjj
    U = solve_triangular(LJJ, LRJ.T, lower=True, trans="T").T  # L_RJ L_JJ⁻¹
    Srj = -(Srr @ U)
    Sjj -= U.T @ Srj
    return np.concatenate([Sjj, Srj])


class SelectedInverse:
    """A⁻¹ at A's stored (lower) entries from a CHOLMOD factor ``LL' = PAP'``, read after each refactorization.

    ``values()`` is in A.data's order; ``weight`` is 2 off the diagonal and 1 on it (the entry's count in
    tr(A⁻¹ dA) over the full symmetric matrix), as :class:`~skmixed.pattern_inverse.PatternInverse`'s.
    """

    def __init__(self, chol, A_lower: sp.csc_matrix):
        self._chol = chol
        L, perm = chol.factor()
        self._pattern = SupernodalPattern(L.indptr, L.indices)
        self.n_supernodes = self._pattern.n_supernodes
        q = A_lower.shape[0]
        cols = np.repeat(np.arange(q), np.diff(A_lower.indptr))
        rows = A_lower.indices
        self.weight = np.where(rows == cols, 1.0, 2.0)
        where = np.empty(q, dtype=np.int64)
        where[perm] = np.arange(q)  # A's index i is row where[i] of PAP'
        pi, pj = where[rows], where[cols]
        self._at = self._pattern.position(np.maximum(pi, pj), np.minimum(pi, pj))

    def values(self) -> np.ndarray:
        L, _ = self._chol.factor()
        if len(L.data) != self._pattern.nnz:
            raise ValueError("the factor's pattern changed since its analysis")
        return selected_inverse(self._pattern, L.data)[self._at]


def make_selected_inverse(chol, A_lower: sp.csc_matrix) -> SelectedInverse | None:
    """The selected inverse for a CHOLMOD factor of A, or None: for another factor (blocked, diagonal), where its
    gather indices would exceed MAX_GATHER, or for a factor whose pattern is not a Cholesky factor's (the fit then
    goes without a gradient rather than fail)."""
    if not isinstance(chol, SparseCholesky):
        return None
    try:
        return SelectedInverse(chol, A_lower)
    except (MemoryError, ValueError):
        return None
