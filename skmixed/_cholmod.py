"""The one module that imports scikit-sparse: a sparse Cholesky factor ``LL' = P A P'``.

The interface is deliberately narrow (analyse once, refactor, log-determinant,
triangular solves) so that moving to scikit-sparse 0.5's renamed API is a local change.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sksparse.cholmod import CholmodNotPositiveDefiniteError, analyze


class NotPositiveDefinite(ArithmeticError):
    """The matrix handed to :meth:`SparseCholesky.refactor` is not positive definite."""


class SparseCholesky:
    """``LL' = P A P'`` for symmetric positive definite A given by its lower triangle (CSC).

    The fill-reducing permutation P and the symbolic factor come from the pattern of
    the first matrix; :meth:`refactor` only redoes the numeric factorization.
    """

    def __init__(self, A_lower: sp.csc_matrix):
        self._factor = analyze(A_lower, mode="auto")
        self.refactor(A_lower)

    def refactor(self, A_lower: sp.csc_matrix) -> None:
        try:
            self._factor.cholesky_inplace(A_lower)
        except CholmodNotPositiveDefiniteError as e:
            raise NotPositiveDefinite(str(e)) from None

    def logdet(self) -> float:
        """log |A| = 2 Σ log diag(L)."""
        return float(self._factor.logdet())

    def solve_L(self, b: np.ndarray) -> np.ndarray:
        """L⁻¹ P b."""
        return self._factor.solve_L(self._factor.apply_P(b), use_LDLt_decomposition=False)

    def solve_Lt(self, c: np.ndarray) -> np.ndarray:
        """P' L'⁻¹ c."""
        return self._factor.apply_Pt(self._factor.solve_Lt(c, use_LDLt_decomposition=False))

    def solve(self, b: np.ndarray) -> np.ndarray:
        """A⁻¹ b."""
        return self._factor.solve_A(b)
