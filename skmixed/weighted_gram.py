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
* **dense**: G as a dense array and each product by BLAS's ``syrk`` (q₂²q₁ multiply-adds), for a G that is small
  and not very sparse (users × films: every user rates a few percent of the films, and some rate thousands).
* **sparse**: scipy's sparse product, ``Σₛ cₛ²`` multiply-adds for cₛ nonzeros in column s, each costing far more
  than a BLAS flop.

Only the lower triangles are formed (LAPACK's Cholesky and the traces read no more).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.linalg.blas import dsyrk

from .cholesky import BLAS_NS, SPARSE_NS

#: process-time costs in nanoseconds of a pass over a stored Gram entry, measured on one core
#: (benchmarks/HISTORY.md): an integer converted to a double and a multiply-add per product; a double costs about
#: three times as much, being eight times the memory (a BLAS flop and a sparse multiply-add: cholesky's constants)
GRAM_NS, DOUBLE_GRAM_NS = 0.75, 2.2
#: the per-count Gram matrices may take this much memory, G dense this much
MAX_GRAM_BYTES, MAX_DENSE_G_BYTES = 5 * 1024**3, 512 * 1024**2
#: the one-off work of forming them is weighed as if spread over this many evaluations (a fit's usual count)
EVALUATIONS = 15
#: the pattern of GG' is counted exactly up to this much work, and estimated from this many sampled rows beyond
EXACT_PATTERN_WORK, PATTERN_ROWS = 5e7, 64
#: entries per chunk of a pass over the integer Gram matrices (their doubles then stay in cache)
CHUNK = 1 << 14


def _unsigned_type(maximum: float):
    for dtype in (np.uint8, np.uint16, np.uint32):
        if maximum <= np.iinfo(dtype).max:
            return dtype
    return np.float64


class WeightedGram:
    """``lower(weights)``: the lower triangles of ``G diag(w) G'`` for each row of ``weights`` (one weight per
    distinct count, in the order of :attr:`counts`); ``method`` (one of the module docstring's) is by default the
    cheapest that fits its memory budget."""

    def __init__(self, G: sp.csc_matrix, n: np.ndarray, method: str | None = None):
        self.G = G
        self.q2, self.q1 = G.shape
        self.counts, self.group = np.unique(n, return_inverse=True)
        per_column = np.diff(G.indptr).astype(float)
        self.work = float(np.sum(per_column**2))
        K, q2, q1 = len(self.counts), float(self.q2), float(self.q1)
        integral = bool(np.all(G.data >= 0) and np.all(G.data == np.round(G.data)))
        entries = K * q2 * (q2 + 1) / 2
        itemsize = np.dtype(_unsigned_type(self._entry_bound()) if integral else np.float64).itemsize
        costs = {"sparse": SPARSE_NS * self.work}
        if entries * itemsize <= MAX_GRAM_BYTES:
            pass_ns = GRAM_NS if itemsize < 8 else DOUBLE_GRAM_NS
            costs["per count"] = pass_ns * entries + SPARSE_NS * self.work / EVALUATIONS
        if q2 * q1 * 8 <= MAX_DENSE_G_BYTES:
            costs["dense"] = BLAS_NS * q2 * q2 * q1
        self.method = method or min(costs, key=costs.get)
        self.dense = G.toarray() if self.method == "dense" else None
        self.blocks = self._per_count_blocks(itemsize) if self.method == "per count" else None

    def _entry_bound(self) -> float:
        """A bound on the entries of every Mₖ without forming them: by Cauchy–Schwarz, |Mₖ[i, j]| is at most the
        largest of Mₖ's diagonal entries Σ_{nₛ = nₖ} G[i, s]²."""
        K = len(self.counts)
        columns = np.repeat(np.arange(self.q1), np.diff(self.G.indptr))
        diagonal = np.bincount(
            self.G.indices.astype(np.int64) * K + self.group[columns], self.G.data**2, minlength=self.q2 * K
        )
        return float(diagonal.max(initial=0.0))

    def _row_blocks(self):
        """Row blocks [r0, r1) of the lower triangle, each stored as the rectangle rows r0:r1 × columns 0:r1."""
        size = max(1, int(np.ceil(self.q2 / 16)))
        return [(r0, min(self.q2, r0 + size)) for r0 in range(0, self.q2, size)]

    def _per_count_blocks(self, itemsize: int) -> list:
        dtype = {1: np.uint8, 2: np.uint16, 4: np.uint32}.get(itemsize, np.float64)
        spans = self._row_blocks()
        blocks = [np.empty((len(self.counts), (r1 - r0) * r1), dtype=dtype) for r0, r1 in spans]
        order = np.argsort(self.group, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(self.group))])
        for k in range(len(self.counts)):
            Gk = self.G[:, order[bounds[k] : bounds[k + 1]]]
            Mk = (Gk @ Gk.T).tocsr()
            for block, (r0, r1) in zip(blocks, spans):
                block[k] = Mk[r0:r1, :r1].toarray().ravel()
        return blocks

    def lower(self, weights: np.ndarray) -> np.ndarray:
        """``weights`` (m × K) → (m, q₂, q₂) whose lower triangles are G diag(w) G' (the rest is not meaningful)."""
        weights = np.atleast_2d(weights)
        out = np.zeros((len(weights), self.q2, self.q2))
        if self.method == "per count":
            for block, (r0, r1) in zip(self.blocks, self._row_blocks()):
                flat = np.empty((len(weights), block.shape[1]))
                for c in range(0, block.shape[1], CHUNK):
                    flat[:, c : c + CHUNK] = weights @ block[:, c : c + CHUNK].astype(np.float64)
                out[:, r0:r1, :r1] = flat.reshape(len(weights), r1 - r0, r1)
            return out
        for i, w in enumerate(weights):
            column_w = w[self.group]
            if self.method == "dense":  # syrk writes the lower triangle of (G√w)(G√w)' (weights are positive)
                out[i] = dsyrk(1.0, self.dense * np.sqrt(column_w), lower=1)
            else:
                out[i] = (self.G.multiply(column_w[None, :]).tocsc() @ self.G.T).toarray()
        return out

    def pattern_nnz(self) -> float:
        """The number of structural nonzeros of GG', exactly or (for a large product) from sampled rows."""
        if self.method == "per count":
            return float(
                sum(
                    np.count_nonzero(np.any(block != 0, axis=0).reshape(r1 - r0, r1)[:, :r0]) * 2
                    + np.count_nonzero(np.any(block != 0, axis=0).reshape(r1 - r0, r1)[:, r0:])
                    for block, (r0, r1) in zip(self.blocks, self._row_blocks())
                )
            )
        B = abs(self.G).tocsr()
        if self.work <= EXACT_PATTERN_WORK:
            return float((B @ B.T).nnz)
        rows = np.random.default_rng(0).choice(self.q2, size=min(PATTERN_ROWS, self.q2), replace=False)
        return float((B[rows] @ B.T).nnz) * self.q2 / len(rows)
