"""``G diag(w) G'`` for weights that depend on a column only through its count: the Schur complement's products.

The blocked factor of scalar terms (:class:`~skmixed.scalar_cholesky.ScalarTermsCholesky`) needs, at every
evaluation, ``G diag(λ₁²/d) G'`` for S and, for the gradient, ``G diag(λ₁²/d²) G'``, where G (q₂ × q₁) is the
block of Z'Z below the first term's diagonal and dₛ = λ₁²nₛ + 1 depends on column s only through its count nₛ.
Three ways to form them, chosen by an estimate of their cost within a memory budget (so the choice is fixed by the
model, never by a timing):

* **per count**: ``Mₖ = Σ_{nₛ = nₖ} gₛgₛ'`` formed once for each of the K distinct counts; each product is then
  ``Σₖ wₖMₖ``, one pass over K lower triangles, both products in the same pass.  When Z'Z holds counts (an
  unweighted model) the Mₖ are integers, kept exactly in the smallest unsigned type that holds them: a pass reads
  one byte per entry where a double takes eight, which is what the pass's time follows.
* **dense**: the columns of G whose sparse product costs more than their share of a dense one (cₛ² sparse
  multiply-adds against q₂² of BLAS) as a dense array, their product by BLAS's ``syrk``, and the other columns by
  the sparse product (users × films: every user rates a few percent of the films, and some rate thousands; on
  ml1m's shape a third of the users hold most of the sparse product's work).
* **sparse per count**: the same Mₖ, their lower triangles kept sparse as the columns of one matrix T with a row
  per entry of a q₂ × q₂ array, so that ``T w`` is the products' lower triangles, both products in one sparse
  product of T by the K × 2 weights: for K large and Mₖ sparse (InstEval's students answer a few dozen of 1,142
  items, in 86 distinct counts), where the dense Mₖ would take K·q₂²/2 bytes or more. T is formed once by K sparse
  products, which is the work of one product G diag(w) G'; every evaluation then reads its nonzeros once.
* **sparse**: scipy's sparse product, ``Σₛ cₛ²`` multiply-adds for cₛ nonzeros in column s, each costing far more
  than a BLAS flop.

Only the lower triangles are formed (LAPACK's Cholesky and the traces read no more).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.linalg.blas import dsyrk

from .cholesky import BLAS_NS, SPARSE_NS

#: process-time costs in nanoseconds per stored Gram entry, measured on one core (benchmarks/HISTORY.md): a pass
#: (an integer converted to a double and a multiply-add per product; a double costs three times as much, being
#: eight times the memory), and forming it once (beside the sparse products: its rows copied out by blocks)
GRAM_NS, DOUBLE_GRAM_NS, GRAM_BUILD_NS = 0.5, 1.5, 1.5
#: ... and per entry of the sparse product's output, made dense and read by the gradient's traces (its indices and
#: values written, converted, then gathered from S⁻¹: dearer per entry than a pass over the dense matrices)
SPARSE_OUTPUT_NS = 20.0
#: the per-count Gram matrices may take this much memory, G's dense columns this much
MAX_GRAM_BYTES, MAX_DENSE_G_BYTES = 5 * 1024**3, 512 * 1024**2
#: the one-off work of forming them is weighed as if spread over this many evaluations (a fit's usual count)
EVALUATIONS = 15
#: the pattern of GG' is counted exactly up to this much work, and estimated from this many sampled rows beyond
EXACT_PATTERN_WORK, PATTERN_ROWS = 5e7, 64
#: Gram entries converted to doubles at a time in a pass (1 MB: they stay in cache for the product)
CHUNK = 1 << 17
#: process-time nanoseconds per stored entry of T in the products T w of both weights (its index and value read and
#: a multiply-add into the output, twice), per entry of the q₂ × q₂ outputs (zeroed, written, stacked and read by
#: the traces), per multiply-add of forming T (the sparse products, their lower triangles, T's indices), and per
#: row of the products that form it (q₂ per count: a weighted model's counts are as many as its levels)
SPARSE_COUNT_NS, SPARSE_COUNT_PASS_NS, TABLE_BUILD_NS, TABLE_ROW_NS = 3.0, 8.0, 15.0, 100.0
#: T's entries are at most this many (0.24 GB: past it, its products no longer run from cache and forming it costs
#: more than the evaluations save: ml1m's 1.5·10⁸), and the products that form T are taken a few counts at a time,
#: at most this many multiply-adds (and output entries) and rows each
MAX_TABLE_ENTRIES, TABLE_CHUNK_WORK, TABLE_CHUNK_ROWS = 2e7, 2e7, 1 << 22


class WeightedGram:
    """``lower(weights)``: the lower triangles of ``G diag(w) G'`` for each row of ``weights`` (one weight per
    distinct count, in the order of :attr:`counts`); ``method`` (one of the module docstring's) is by default the
    cheapest that fits its memory budget.  Where a way gives them in Fortran order (LAPACK's) for free they stay so:
    the Cholesky factor then works on them in place, where a C-ordered matrix is first transposed into a copy."""

    def __init__(self, G: sp.csc_matrix, n: np.ndarray, method: str | None = None):
        self.G = G
        self.q2, self.q1 = G.shape
        self.counts, self.group = np.unique(n, return_inverse=True)
        per_column = np.diff(G.indptr).astype(float)
        self.work = float(np.sum(per_column**2))
        self.pattern_nnz = self._pattern_nnz()
        K, q2 = len(self.counts), float(self.q2)
        integral = bool(np.all(G.data >= 0) and np.all(G.data == np.round(G.data)))
        entries = K * q2 * (q2 + 1) / 2
        # process-time nanoseconds per product (a pass that gives S's and the gradient's together counts as one)
        costs = {"sparse": SPARSE_NS * self.work + SPARSE_OUTPUT_NS * self.pattern_nnz}
        if entries * (1 if integral else 8) <= MAX_GRAM_BYTES:  # integers start in bytes (see _per_count_blocks)
            costs["per count"] = (GRAM_NS if integral else DOUBLE_GRAM_NS) * entries + (
                SPARSE_NS * self.work + GRAM_BUILD_NS * entries
            ) / EVALUATIONS
        self.heavy = self._heavy_columns(per_column)
        if self.heavy.any():
            light = per_column[~self.heavy]
            costs["dense"] = BLAS_NS * q2 * q2 * np.count_nonzero(self.heavy) + (
                SPARSE_NS * float(np.sum(light**2)) + SPARSE_OUTPUT_NS * self.pattern_nnz if len(light) else 0.0
            )
        # T's entries: at most each column's pairs of entries on or below the diagonal, at most K per entry of GG'
        table_nnz = min((self.work + G.nnz) / 2, K * (self.pattern_nnz + q2) / 2)
        if table_nnz <= MAX_TABLE_ENTRIES and q2 * q2 < np.iinfo(np.int32).max:
            costs["sparse per count"] = (SPARSE_COUNT_NS * table_nnz + SPARSE_COUNT_PASS_NS * q2 * q2) / 2 + (
                TABLE_BUILD_NS * self.work + TABLE_ROW_NS * q2 * K
            ) / EVALUATIONS
        self.method = method or min(costs, key=costs.get)
        self.blocks = self._per_count_blocks(integral) if self.method == "per count" else None
        if self.method == "per count" and self.blocks is None:  # larger integers than a byte, past the budget
            costs.pop("per count", None)
            self.method = min(costs, key=costs.get)
        self.table = self._count_table() if self.method == "sparse per count" else None
        if self.method != "dense":  # the sparse way reads G as it is; the per-count ways read neither
            self.heavy[:] = False
        self.dense = self.light = None
        if self.method in ("dense", "sparse"):
            if self.heavy.any():
                self.dense = G[:, self.heavy].toarray()
            if not self.heavy.all():
                self.light = G[:, ~self.heavy] if self.heavy.any() else G

    def _heavy_columns(self, per_column: np.ndarray) -> np.ndarray:
        """The columns whose sparse product costs more than BLAS's (cₛ² against q₂² multiply-adds at their prices),
        the heaviest first up to :data:`MAX_DENSE_G_BYTES` of them as doubles."""
        heavy = SPARSE_NS * per_column**2 >= BLAS_NS * float(self.q2) ** 2
        room = MAX_DENSE_G_BYTES // (8 * self.q2)
        if np.count_nonzero(heavy) > room:
            heavy[:] = False
            heavy[np.argsort(-per_column, kind="stable")[:room]] = True
        return heavy

    def _diagonals(self) -> np.ndarray:
        """diag(Mₖ) for every k (K × q₂): Σ_{nₛ = nₖ} G[i, s]²."""
        K = len(self.counts)
        columns = np.repeat(np.arange(self.q1), np.diff(self.G.indptr))
        cells = self.group[columns] * self.q2 + self.G.indices.astype(np.int64)
        return np.bincount(cells, self.G.data**2, minlength=K * self.q2).reshape(K, self.q2)

    def _row_blocks(self):
        """Row blocks [r0, r1) of the lower triangle, each stored as the rectangle rows r0:r1 × columns 0:r1."""
        size = max(1, int(np.ceil(self.q2 / 16)))
        return [(r0, min(self.q2, r0 + size)) for r0 in range(0, self.q2, size)]

    def _per_count_blocks(self, integral: bool) -> list | None:
        """Each Mₖ's off-diagonal lower triangle by row blocks (its diagonal, large where a level has many rows,
        is kept apart in doubles); integers in bytes, widened when an entry needs it, or None when the widened
        matrices would pass the memory budget."""
        K = len(self.counts)
        types = [np.uint8, np.uint16, np.uint32] if integral else [np.float64]
        spans = self._row_blocks()
        blocks = [np.empty((K, (r1 - r0) * r1), dtype=types[0]) for r0, r1 in spans]
        order = np.argsort(self.group, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(self.group))])
        for k in range(K):
            Gk = self.G[:, order[bounds[k] : bounds[k + 1]]]
            Mk = (Gk @ Gk.T).tocsr()
            Mk.setdiag(0.0)
            while integral and Mk.data.max(initial=0.0) > np.iinfo(blocks[0].dtype).max:
                wider = types[types.index(blocks[0].dtype.type) + 1] if blocks[0].dtype.type != types[-1] else None
                if wider is None or sum(b.size for b in blocks) * np.dtype(wider).itemsize > MAX_GRAM_BYTES:
                    return None
                blocks = [b.astype(wider) for b in blocks]
            for block, (r0, r1) in zip(blocks, spans):
                block[k] = Mk[r0:r1, :r1].toarray().ravel()
        self.diagonals = self._diagonals()
        return blocks

    def _count_table(self) -> sp.csc_matrix:
        """T (q₂² × K): column k holds the lower triangle of Mₖ, entry (i ≥ j) in row j·q₂ + i (Fortran order).

        The Mₖ come from sparse products of a few counts' columns at a time: with column s of G moved down to rows
        (k(s) − k₀)·q₂ for the chunk's first count k₀ (H), HH' is block diagonal with the chunk's Mₖ as its blocks.
        A chunk holds at most about :data:`TABLE_CHUNK_WORK` multiply-adds and :data:`TABLE_CHUNK_ROWS` rows of H
        (its product's row pointers: a weighted model can have a distinct count for every level)."""
        q2, K = self.q2, len(self.counts)
        per_column = np.diff(self.G.indptr)
        work = np.bincount(self.group, per_column.astype(float) ** 2, minlength=K)
        # both bounds are non-decreasing in k, so each chunk is a run of consecutive counts
        chunk = np.maximum(np.floor(np.cumsum(work) / TABLE_CHUNK_WORK), np.arange(K) * q2 // TABLE_CHUNK_ROWS)
        order = np.argsort(self.group, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(self.group, minlength=K))])
        data, positions, sizes = [], [], np.zeros(K, dtype=np.int64)
        for c in np.unique(chunk):
            ks = np.flatnonzero(chunk == c)
            columns = order[bounds[ks[0]] : bounds[ks[-1] + 1]]
            Gc = self.G[:, columns]
            local = np.repeat(self.group[columns] - ks[0], np.diff(Gc.indptr))
            Hc = sp.csc_matrix((Gc.data, Gc.indices + local * q2, Gc.indptr), shape=(q2 * len(ks), Gc.shape[1]))
            M = (Hc @ Hc.T).tocsr()
            rows = np.repeat(np.arange(M.shape[0]), np.diff(M.indptr))
            lower = M.indices <= rows
            rows, k = rows[lower], rows[lower] // q2
            positions.append(((M.indices[lower] - k * q2) * q2 + rows - k * q2).astype(np.int32))
            data.append(M.data[lower])
            sizes += np.bincount(k + ks[0], minlength=K)
        indptr = np.concatenate([[0], np.cumsum(sizes)])
        return sp.csc_matrix((np.concatenate(data), np.concatenate(positions), indptr), shape=(q2 * q2, K))

    def lower(self, weights: np.ndarray) -> list[np.ndarray]:
        """``weights`` (m × K) → m q₂ × q₂ arrays whose lower triangles are G diag(w) G' (the rest is not
        meaningful)."""
        weights = np.atleast_2d(weights)
        if self.method == "sparse per count":  # a product per row of weights, each written in order
            return [(self.table @ w).reshape(self.q2, self.q2).T for w in weights]
        if self.method != "per count":
            return [self._by_columns(w[self.group]) for w in weights]
        out = np.zeros((len(weights), self.q2, self.q2))
        width = max(256, CHUNK // len(self.counts))
        buffer = np.empty((len(self.counts), width))
        for block, (r0, r1) in zip(self.blocks, self._row_blocks()):
            flat = np.empty((len(weights), block.shape[1]))
            for c in range(0, block.shape[1], width):
                doubles = buffer[:, : min(width, block.shape[1] - c)]
                np.copyto(doubles, block[:, c : c + width])
                flat[:, c : c + width] = weights @ doubles
            out[:, r0:r1, :r1] = flat.reshape(len(weights), r1 - r0, r1)
        diagonal = np.arange(self.q2)
        out[:, diagonal, diagonal] += weights @ self.diagonals
        return list(out)

    def _by_columns(self, column_w: np.ndarray) -> np.ndarray:
        """G diag(w) G' (w by column) in Fortran order: syrk on the dense columns (its lower triangle, as the
        weights are positive), the sparse product of the others."""
        if self.dense is not None:
            out = dsyrk(1.0, self.dense * np.sqrt(column_w[self.heavy]), lower=1)
        else:
            out = np.zeros((self.q2, self.q2), order="F")
        if self.light is not None:
            out += (self.light.multiply(column_w[~self.heavy][None, :]).tocsc() @ self.light.T).toarray(order="F")
        return out

    def _pattern_nnz(self) -> float:
        """The number of structural nonzeros of GG', exactly or (for a large product) from sampled rows."""
        B = abs(self.G).tocsr()
        if self.work <= EXACT_PATTERN_WORK:
            return float((B @ B.T).nnz)
        rows = np.random.default_rng(0).choice(self.q2, size=min(PATTERN_ROWS, self.q2), replace=False)
        return float((B[rows] @ B.T).nnz) * self.q2 / len(rows)
