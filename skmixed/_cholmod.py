"""The one module that imports scikit-sparse: a sparse Cholesky factor ``LL' = P A P'``.

The interface is deliberately narrow (analyse once, refactor, log-determinant,
triangular solves) so that moving to scikit-sparse 0.5's renamed API is a local change.

CHOLMOD's simplicial factors are LDL' (``L = L₁D^½`` with L₁ unit lower triangular);
we solve with L₁ and scale by D^½ rather than let CHOLMOD convert the factor to LL' on
every solve.  Supernodal factors are LL'.  Which mode and fill-reducing ordering is
fastest depends on the model (a dense Schur block favours supernodal, a hundred thousand
tiny columns favour simplicial), so for larger
matrices the candidates are timed once at analysis and the fastest is kept.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
from sksparse.cholmod import CholmodNotPositiveDefiniteError, analyze

#: below this order one simplicial AMD factor is used: timing candidates would cost more than it saves
MEASURE_FROM = 1000
#: supernodal factors are tried only up to this order; above it their many small supernodes cost more than BLAS saves
SUPERNODAL_UP_TO = 20_000


class NotPositiveDefinite(ArithmeticError):
    """The matrix handed to :meth:`SparseCholesky.refactor` is not positive definite."""


def _candidates(q: int) -> list[tuple[str, str]]:
    if q < MEASURE_FROM:
        return [("simplicial", "amd")]
    out = [("simplicial", "amd"), ("simplicial", "metis")]
    if q <= SUPERNODAL_UP_TO:
        out += [("supernodal", "metis"), ("supernodal", "nesdis")]
    return out


class SparseCholesky:
    """``LL' = P A P'`` for symmetric positive definite A given by its lower triangle (CSC).

    The permutation P and the symbolic factor come from the pattern of the first
    matrix; :meth:`refactor` only redoes the numeric factorization.
    """

    def __init__(self, A_lower: sp.csc_matrix):
        best = None
        for mode, ordering in _candidates(A_lower.shape[0]):
            try:
                factor = analyze(A_lower, mode=mode, ordering_method=ordering)
            except Exception:  # an ordering CHOLMOD was built without (METIS is optional)
                continue
            start = time.perf_counter()
            try:
                factor.cholesky_inplace(A_lower)
            except CholmodNotPositiveDefiniteError as e:
                raise NotPositiveDefinite(str(e)) from None
            seconds = time.perf_counter() - start
            if best is None or seconds < best[0]:
                best = (seconds, factor, mode, ordering)
        _, self._factor, mode, self.ordering = best
        self.mode = mode
        self._ll = mode == "supernodal"
        self._d = None

    def refactor(self, A_lower: sp.csc_matrix) -> None:
        self._d = None
        try:
            self._factor.cholesky_inplace(A_lower)
        except CholmodNotPositiveDefiniteError as e:
            raise NotPositiveDefinite(str(e)) from None

    @property
    def _diag(self) -> np.ndarray:
        """D of LDL' (for an LL' factor, diag(L)²)."""
        if self._d is None:
            self._d = self._factor.D()
        return self._d

    def logdet(self) -> float:
        """log |A| = Σ log D."""
        return float(np.log(self._diag).sum())

    def solve_L(self, b: np.ndarray) -> np.ndarray:
        """L⁻¹ P b."""
        f = self._factor
        if self._ll:
            return f.solve_L(f.apply_P(b), use_LDLt_decomposition=False)
        y = f.solve_L(f.apply_P(b), use_LDLt_decomposition=True)
        root = np.sqrt(self._diag)
        return y / (root if y.ndim == 1 else root[:, None])

    def solve_Lt(self, c: np.ndarray) -> np.ndarray:
        """P' L'⁻¹ c."""
        f = self._factor
        if self._ll:
            return f.apply_Pt(f.solve_Lt(c, use_LDLt_decomposition=False))
        root = np.sqrt(self._diag)
        return f.apply_Pt(f.solve_Lt(c / (root if c.ndim == 1 else root[:, None]), use_LDLt_decomposition=True))

    def solve(self, b: np.ndarray) -> np.ndarray:
        """A⁻¹ b."""
        return self._factor.solve_A(b)
