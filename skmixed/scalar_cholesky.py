"""The blocked factor of ``A = Λ'Z'ZΛ + I`` for an LMM of scalar terms, refactored from λ alone.

With ``Z'Z = [N G'; G C]`` (N = diag(n): the first term's counts), λ = (λ₁, λ₂) and D = λ₁²N + I,

    L₂₁ = diag(λ₂) G diag(λ₁/√d),   S = L₂₂L₂₂' = I + diag(λ₂)(C − G diag(λ₁²/d) G')diag(λ₂).

The weights λ₁²/dₛ depend on s only through nₛ, which :class:`~skmixed.weighted_gram.WeightedGram` uses to form
the product by whichever of its ways costs least for this G.  The dense S has order q₂ (the other terms' levels),
up to :data:`MAX_SCALAR_DENSE`: past a few thousand it is the one large dense piece of the fit, and CHOLMOD's
factor of the same crossed A fills in to the same dense block without giving a gradient.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._cholmod import factor_flops
from .cholesky import (
    DENSE_L21_FILL,
    DENSE_L21_MAX,
    DENSE_PER_SPARSE_FLOP,
    GRADIENT_SAVING,
    MIN_DENSITY,
    SMALL_SCHUR,
    _Blocked,
)
from .weighted_gram import WeightedGram

#: the largest dense S: three q₂ × q₂ matrices of doubles (S and its factor in place, S⁻¹ and the gradient's
#: weighted Gram matrix) take 3.5 GB at this order
MAX_SCALAR_DENSE = 12_000
#: CHOLMOD's flop count comes from a numeric factor, a matter of minutes once S is large and fills in; past this
#: order a sparse S counts as filling in when its rows average at least √q₂ entries (the pattern of crossed
#: factors is random-like, and eliminating a random graph of that degree fills it in under any ordering), and as
#: CHOLMOD's otherwise (nested factors: S block diagonal)
COUNTED_UP_TO = 3000


class _DiagScaled:
    """``diag(r) G diag(c)`` applied to vectors and matrices without forming it."""

    def __init__(self, r: np.ndarray, G, c: np.ndarray):
        self.r, self.G, self.c = r, G, c

    def __matmul__(self, x: np.ndarray) -> np.ndarray:
        if x.ndim == 1:
            return self.r * (self.G @ (self.c * x))
        return self.r[:, None] * (self.G @ (self.c[:, None] * x))

    @property
    def T(self) -> _DiagScaled:
        return _DiagScaled(self.c, self.G.T, self.r)


class ScalarTermsCholesky(_Blocked):
    """``LL' = A = Λ'Z'ZΛ + I`` for scalar terms only (Λ = diag(λ)) and a fixed Z'Z (the module docstring)."""

    def __init__(self, ZtZ: sp.spmatrix, q1: int, gram_method: str | None = None):
        ZtZ = sp.csc_matrix(ZtZ)
        q = ZtZ.shape[0]
        self.q1, self.q2 = q1, q - q1
        leading = ZtZ[:q1, :q1]
        if leading.nnz != np.count_nonzero(leading.diagonal()):
            raise ValueError("the leading block is not diagonal")
        self._n = leading.diagonal()
        G = ZtZ[q1:, :q1].tocsc()
        self._G, self._G_cols = G, np.repeat(np.arange(q1), np.diff(G.indptr))
        C = sp.tril(ZtZ[q1:, q1:], format="coo")
        self._C_rows, self._C_cols, self._C_data = C.row, C.col, C.data
        size = self.q1 * self.q2
        self._dense_l21 = size <= DENSE_L21_MAX and G.nnz >= DENSE_L21_FILL * size
        self.gram = WeightedGram(G, self._n, gram_method)
        lower_c = np.count_nonzero(self._C_rows != self._C_cols)
        self.density = min(1.0, (self.gram.pattern_nnz + 2 * lower_c + self.q2) / self.q2**2)

    def refactor_lambda(self, lam: np.ndarray) -> None:
        """Factor A for Λ = diag(``lam``), ``lam`` one value per column (constant over the first term's)."""
        l1, l2 = lam[: self.q1], lam[self.q1 :]
        d = l1**2 * self._n + 1.0
        self._root = np.sqrt(d)
        self._l2, self._t2, self._weighted = l2, l1[0] ** 2, None
        if self.gram.method == "sparse":
            G = self._G
            L21 = sp.csc_matrix(
                (G.data * l2[G.indices] * (l1 / self._root)[self._G_cols], G.indices, G.indptr), shape=G.shape
            )
            S = -self._set_l21(L21)
        else:
            dk = self._t2 * self.gram.counts + 1.0
            if self.gram.method in ("per count", "sparse per count"):  # the gradient's product: the same pass
                S, self._weighted = self.gram.lower(np.vstack([self._t2 / dk, self._t2 / dk**2]))
            else:
                S = self.gram.lower(self._t2 / dk)[0]
            S *= -l2[:, None]
            S *= l2[None, :]
            self._L21 = _DiagScaled(l2, self._G, l1 / self._root)
        S[self._C_rows, self._C_cols] += self._C_data * l2[self._C_rows] * l2[self._C_cols]
        S[np.diag_indices_from(S)] += 1.0
        self._factor_schur(S)

    def inverse_traces(self) -> tuple[float, np.ndarray]:
        """tr((A⁻¹)₁₁) and diag((A⁻¹)₂₂); from G's products: L₂₁D⁻¹L₂₁' = diag(λ₂)G diag(λ₁²/d²)G' diag(λ₂)."""
        if self.gram.method == "sparse":
            return super().inverse_traces()
        if self._weighted is None:
            self._weighted = self.gram.lower(self._t2 / (self._t2 * self.gram.counts + 1.0) ** 2)[0]
        scaled = self._weighted  # its lower triangle is all the traces read (S⁻¹'s upper one is zero)
        scaled *= self._l2[:, None]
        scaled *= self._l2[None, :]
        self._weighted = None  # scaled in place: formed again if asked again
        return self._inverse_traces(scaled)


def make_scalar_cholesky(ZtZ: sp.spmatrix, q1: int) -> ScalarTermsCholesky | None:
    """The Λ-refactored blocked factor for an LMM of scalar terms, when its Schur complement is small enough
    (order at most :data:`MAX_SCALAR_DENSE`) and its dense work pays: S dense or tiny, or its q₂³ flops (a
    Cholesky and the inverse for the gradient) cheaper than CHOLMOD's factor of A with the evaluations the
    gradient saves."""
    q2 = ZtZ.shape[0] - q1
    if not (q1 >= 1 and 1 <= q2 <= MAX_SCALAR_DENSE):
        return None
    try:
        factor = ScalarTermsCholesky(ZtZ, q1)
    except ValueError:  # the leading block is not diagonal
        return None
    if factor.density >= MIN_DENSITY or q2 <= SMALL_SCHUR:
        return factor
    if q2 > COUNTED_UP_TO:
        return factor if factor.density * q2 >= np.sqrt(q2) else None
    sparse_flops = factor_flops(sp.tril(ZtZ + sp.identity(ZtZ.shape[0]), format="csc"))  # A's pattern: its fill
    return factor if float(q2) ** 3 <= DENSE_PER_SPARSE_FLOP * GRADIENT_SAVING * sparse_flops else None
