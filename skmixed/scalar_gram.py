"""Z'WZ of scalar random-effects terms by counting, without a general sparse product.

When every term is scalar (``(1 | g)``, ``(0 + x | g)``), row r of √W Z holds one value per term,
``zᵢ[r]`` in column ``offsetᵢ + codeᵢ[r]``, so Z'WZ has the blocks

    (i, i):  diagonal, ``Σ_{r: codeᵢ[r] = ℓ} zᵢ[r]²``,
    (i, j):  the weighted cross-tabulation ``Σ_{r: codeᵢ[r] = ℓ, codeⱼ[r] = m} zᵢ[r] zⱼ[r]``.

A general sparse product (scipy's, Gustavson's algorithm) finds the same sums by a scattered
accumulator over all q columns for every column, which on large data costs several times more
than two counting sorts.  Here a cross-tabulation takes the rows of each level ℓ of term i from
Z's compressed-column form (rows in increasing order), and a compressed-row to compressed-column
conversion (a stable counting sort by m) brings the rows of each pair (ℓ, m) together, still in
increasing order, where they are summed.  Every entry is therefore the same sum, in the same
order, of the same products as the general product's, and so the same number; and, as scipy's product
does, a sum that is exactly 0 is not stored.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def scalar_gram(Z_rows: sp.csr_matrix, Z_cols: sp.csc_matrix, offsets: np.ndarray) -> sp.csc_matrix:
    """Z'Z (q × q, compressed by columns, indices sorted) of a Z whose row r holds exactly one value per term,
    term t's in columns ``offsets[t]:offsets[t + 1]``; ``Z_rows`` and ``Z_cols`` are Z's two compressed forms
    (row entries in term order)."""
    n_terms = len(offsets) - 1
    sizes = np.diff(offsets)
    diagonal = [_squares(Z_cols, offsets[i], offsets[i + 1]) for i in range(n_terms)]
    upper = {
        (i, j): _cross_tabulation(Z_rows, Z_cols, offsets, i, j, n_terms)
        for i in range(n_terms)
        for j in range(i + 1, n_terms)
    }
    counts = []
    for j in range(n_terms):
        per_column = (diagonal[j] != 0).astype(np.int64)
        for i in range(n_terms):
            if i < j:
                per_column += np.diff(upper[i, j].indptr)
            elif i > j:
                per_column += np.bincount(upper[j, i].indices, minlength=sizes[j])
        counts.append(per_column)
    indptr = np.concatenate([[0], np.cumsum(np.concatenate(counts))])
    q, nnz = int(offsets[-1]), int(indptr[-1])
    index_type = np.int32 if max(nnz, q) < np.iinfo(np.int32).max else np.int64
    data, indices, indptr = np.empty(nnz), np.empty(nnz, dtype=index_type), indptr.astype(index_type)
    # the last term's columns first: block (i, j), i < j, is placed in its own columns before its transpose is
    # needed in those of term i, and is let go then
    for j in reversed(range(n_terms)):
        filled = indptr[offsets[j] : offsets[j + 1]].copy()  # the next free place in each column of term j
        for i in range(n_terms):
            if i == j:
                block = _diagonal(diagonal[i])
            else:  # below the diagonal, block (j, i)'s transpose, compressed by columns with its indices sorted
                block = upper[i, j] if i < j else upper.pop((j, i)).tocsr().T
            _place(block, filled, offsets[i], data, indices)
    return sp.csc_matrix((data, indices, indptr), shape=(q, q))


def _squares(Z_cols: sp.csc_matrix, start: int, stop: int) -> np.ndarray:
    """The sums of squares of Z's columns ``start:stop``, each over its rows in increasing order."""
    first, last = Z_cols.indptr[start], Z_cols.indptr[stop]
    column = np.repeat(np.arange(stop - start), np.diff(Z_cols.indptr[start : stop + 1]))
    values = Z_cols.data[first:last]
    return np.bincount(column, values * values, minlength=stop - start)


def _diagonal(values: np.ndarray) -> sp.csc_matrix:
    """The diagonal matrix of ``values`` with its zeros not stored."""
    stored = values != 0
    indptr = np.concatenate([[0], np.cumsum(stored)])
    return sp.csc_matrix((values[stored], np.flatnonzero(stored), indptr), shape=(len(values),) * 2)


def _place(block: sp.csc_matrix, filled: np.ndarray, row_offset: int, data: np.ndarray, indices: np.ndarray) -> None:
    """Copy each column's entries of ``block`` to the next free places ``filled`` of the same columns (advanced)."""
    per_column = np.diff(block.indptr).astype(filled.dtype)
    place = np.repeat(filled - block.indptr[:-1].astype(filled.dtype), per_column)
    place += np.arange(block.nnz, dtype=filled.dtype)
    data[place] = block.data
    indices[place] = block.indices + row_offset
    filled += per_column


def _cross_tabulation(Z_rows, Z_cols, offsets, i: int, j: int, n_terms: int) -> sp.csc_matrix:
    """Block (i, j) of Z'Z, i < j: ``Σ zᵢ[r] zⱼ[r]`` over the rows r of each pair of levels, r increasing."""
    start, stop = Z_cols.indptr[offsets[i]], Z_cols.indptr[offsets[i + 1]]
    rows = Z_cols.indices[start:stop]  # by level of term i, rows increasing within each
    slot = rows.astype(np.int64) * n_terms + j
    products = Z_cols.data[start:stop] * Z_rows.data[slot]
    by_level = sp.csr_matrix(
        (products, Z_rows.indices[slot] - offsets[j], Z_cols.indptr[offsets[i] : offsets[i + 1] + 1] - start),
        shape=(offsets[i + 1] - offsets[i], offsets[j + 1] - offsets[j]),
    )
    block = by_level.tocsc()  # stable: each pair's products adjacent, rows still increasing
    block.sum_duplicates()  # indices are sorted (with repeats), so this only adds each run in order
    block.eliminate_zeros()
    return block
