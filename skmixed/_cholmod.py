"""The one module that imports scikit-sparse: a sparse Cholesky factor ``LL' = P A P'``.

scikit-sparse has no wheels; it builds against the SuiteSparse it finds, and its API
follows SuiteSparse's major version:

* 0.4.16 (SuiteSparse 5: Debian 12, Ubuntu 22.04): ``analyze(A, mode=, ordering_method=)``
  returns a ``Factor`` with ``cholesky_inplace``, ``D()``, ``apply_P``/``apply_Pt`` and
  ``solve_L(b, use_LDLt_decomposition=)``; the factor stays in the form CHOLMOD computed.
* 0.5 (SuiteSparse >= 7.4: Debian 13, Ubuntu 24.04, Homebrew, conda-forge):
  ``CholeskyFactor(A, order=, supernodal_mode=)`` with ``factorize(A, ldl=)``, ``perm`` and
  ``solve(b, system=)``, whose ``"L"``/``"Lt"`` systems do not permute; ``factorize``
  always leaves a simplicial factor (a supernodal one is converted to simplicial LL').

:class:`SparseCholesky` is all the rest of skmixed sees; ``_Factor04`` and ``_Factor05``
put the two APIs behind the same operations (factorize, diagonal, P, P', L⁻¹, L'⁻¹, A⁻¹).

CHOLMOD's simplicial factors are LDL' (``L = L₁D^½`` with L₁ unit lower triangular);
we solve with L₁ and scale by D^½ rather than have CHOLMOD convert the factor to LL' on
every solve.  Supernodal factors are LL'.  The fill-reducing ordering and the mode are chosen
from the factor's structure, never by timing (a timed choice can differ between runs, and with it
the last digits of every fit): the ordering whose factor needs the fewest flops (Σⱼ cⱼ², cⱼ the
count of column j of L), and supernodal mode where the columns are long enough for dense BLAS to
pay, by CHOLMOD's own rule (flops / nnz(L) ≥ 40: its ``supernodal_switch``).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from sksparse import cholmod

#: below this order one simplicial AMD factor is used: analysing other candidates would cost more than it saves
MEASURE_FROM = 1000
#: supernodal factors are tried only up to this order; above it their many small supernodes cost more than BLAS saves
SUPERNODAL_UP_TO = 20_000
#: CHOLMOD's ``supernodal_switch``: supernodal when flops / nnz(L) is at least this
SUPERNODAL_SWITCH = 40.0


class NotPositiveDefinite(ArithmeticError):
    """The matrix handed to :meth:`SparseCholesky.refactor` is not positive definite."""


def _candidates(q: int) -> list[tuple[str, str]]:
    if q < MEASURE_FROM:
        return [("simplicial", "amd")]
    out = [("simplicial", "amd"), ("simplicial", "metis")]
    if q <= SUPERNODAL_UP_TO:
        out += [("supernodal", "metis"), ("supernodal", "nesdis")]
    return out


class _Factor04:
    """scikit-sparse 0.4.x: the factor keeps CHOLMOD's form (simplicial LDL', supernodal LL')."""

    def __init__(self, A_lower: sp.csc_matrix, mode: str, ordering: str):
        self._f = cholmod.analyze(A_lower, mode=mode, ordering_method=ordering)
        self.is_ll = mode == "supernodal"
        self.perm = np.array(self._f.P())

    def factorize(self, A_lower: sp.csc_matrix) -> None:
        self._f.cholesky_inplace(A_lower)

    def d(self) -> np.ndarray:
        """D of LDL'; diag(L)² of LL'."""
        return self._f.D()

    def P(self, b: np.ndarray) -> np.ndarray:
        return self._f.apply_P(b)

    def Pt(self, c: np.ndarray) -> np.ndarray:
        return self._f.apply_Pt(c)

    def solve_L(self, b: np.ndarray) -> np.ndarray:
        """L⁻¹b with the stored L (L₁ of LDL'), no permutation."""
        return self._f.solve_L(b, use_LDLt_decomposition=not self.is_ll)

    def solve_Lt(self, c: np.ndarray) -> np.ndarray:
        return self._f.solve_Lt(c, use_LDLt_decomposition=not self.is_ll)

    def solve_A(self, b: np.ndarray) -> np.ndarray:
        return self._f.solve_A(b)

    def column_counts(self) -> np.ndarray:
        """The number of entries of each column of a simplicial factor's L (its diagonal included)."""
        return np.diff(self._f.LD().indptr)

    def L(self) -> sp.csc_matrix:
        """L of LL' (a converted copy: the factor keeps its form)."""
        return self._f.L()


class _Factor05:
    """scikit-sparse 0.5: ``factorize(ldl=)`` fixes the form; solves other than ``"A"`` do not permute.

    A supernodal analysis is factored supernodally (with BLAS) and then converted to a
    simplicial LL' by ``factorize`` itself; a simplicial one is kept LDL'.  CHOLMOD stores
    each simplicial column with its diagonal entry first, so the diagonal is read from the
    factor's CSC view without copying L.
    """

    def __init__(self, A_lower: sp.csc_matrix, mode: str, ordering: str):
        self._f = cholmod.CholeskyFactor(A_lower, lower=True, order=ordering, supernodal_mode=mode)
        self.is_ll = mode == "supernodal"
        self.perm = self._perm = np.array(self._f.perm)

    def factorize(self, A_lower: sp.csc_matrix) -> None:
        self._f.factorize(A_lower, ldl=not self.is_ll)

    def d(self) -> np.ndarray:
        """D of LDL'; diag(L)² of LL'."""
        L = self._f.factor
        diag = L.data[L.indptr[:-1]]
        return diag * diag if self.is_ll else diag  # fancy indexing copied it out of the view

    def P(self, b: np.ndarray) -> np.ndarray:
        return b[self._perm]

    def Pt(self, c: np.ndarray) -> np.ndarray:
        out = np.empty_like(c)
        out[self._perm] = c
        return out

    def _solve(self, b: np.ndarray, system: str) -> np.ndarray:
        # 0.5 warns when (min diag / max diag)² < n·eps, a bound on the condition number; lme4 does
        # not, and A = Λ'Z'WZΛ + I has every eigenvalue >= 1, so the solves are as accurate as A allows.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", cholmod.CholmodWarning)
            return self._f.solve(b, system=system)

    def solve_L(self, b: np.ndarray) -> np.ndarray:
        """L⁻¹b with the stored L (L₁ of LDL'), no permutation."""
        return self._solve(b, "L")

    def solve_Lt(self, c: np.ndarray) -> np.ndarray:
        return self._solve(c, "Lt")

    def solve_A(self, b: np.ndarray) -> np.ndarray:
        return self._solve(b, "A")

    def column_counts(self) -> np.ndarray:
        """The number of entries of each column of a simplicial factor's L (its diagonal included)."""
        return np.diff(self._f.factor.indptr)

    def L(self) -> sp.csc_matrix:
        """L of LL': the stored factor, or L₁D^½ from LDL' (D on L₁'s diagonal, which is first in each column)."""
        L = self._f.factor.copy()
        if not self.is_ll:
            root = np.sqrt(L.data[L.indptr[:-1]])
            L.data *= np.repeat(root, np.diff(L.indptr))
            L.data[L.indptr[:-1]] = root
        return L


#: the scikit-sparse API installed: 0.5 is the one with ``CholeskyFactor``
_Factor = _Factor05 if hasattr(cholmod, "CholeskyFactor") else _Factor04


def _factorize(factor, A_lower: sp.csc_matrix) -> np.ndarray:
    """Factor A; return D of LDL' (diag(L)² of LL').

    CHOLMOD's LL' stops at a non-positive pivot, but its LDL' only needs non-zero pivots and
    would factor an indefinite matrix; a D that is not positive is the same failure.
    """
    try:
        factor.factorize(A_lower)
    except cholmod.CholmodNotPositiveDefiniteError as e:
        raise NotPositiveDefinite(str(e)) from None
    d = factor.d()
    if not (d > 0).all():
        raise NotPositiveDefinite(f"non-positive pivot in column {int(np.argmin(d > 0))} of the LDL' factor")
    return d


def _flops(factor) -> tuple[float, float]:
    """Σⱼ cⱼ² (the work of a factorization) and Σⱼ cⱼ (the entries of L) of a simplicial factor."""
    counts = factor.column_counts().astype(float)
    return float(np.sum(counts**2)), float(counts.sum())


def factor_flops(A_lower: sp.csc_matrix) -> float:
    """The work Σⱼ cⱼ² of CHOLMOD's simplicial AMD factor of A, to weigh it against another method."""
    factor = _Factor(A_lower, "simplicial", "amd")
    _factorize(factor, A_lower)
    return _flops(factor)[0]


class SparseCholesky:
    """``LL' = P A P'`` for symmetric positive definite A given by its lower triangle (CSC).

    The permutation P and the symbolic factor come from the pattern of the first
    matrix; :meth:`refactor` only redoes the numeric factorization.
    """

    def __init__(self, A_lower: sp.csc_matrix):
        candidates = _candidates(A_lower.shape[0])
        best = None
        for ordering in dict.fromkeys(o for _, o in candidates):  # each ordering once, in the candidates' order
            try:
                factor = _Factor(A_lower, "simplicial", ordering)
            except cholmod.CholmodError:  # an ordering CHOLMOD was built without (METIS is optional)
                continue
            d = _factorize(factor, A_lower)
            flops, nnz = _flops(factor)
            if best is None or flops < best[0]:
                best = (flops, nnz, ordering, factor, d)
        #: the work of one factorization (Σⱼ cⱼ²) and the entries of L, for choices between factors
        self.flops, self.nnz, self.ordering, factor, d = best
        modes = {m for m, _ in candidates}
        wide = self.flops >= SUPERNODAL_SWITCH * self.nnz
        self.mode = "supernodal" if "supernodal" in modes and (wide or "simplicial" not in modes) else "simplicial"
        if self.mode == "supernodal":
            factor = _Factor(A_lower, self.mode, self.ordering)
            d = _factorize(factor, A_lower)
        self._factor, self._diag = factor, d

    def refactor(self, A_lower: sp.csc_matrix) -> None:
        self._diag = None  # nothing of the previous factor survives a failed one
        self._diag = _factorize(self._factor, A_lower)

    def logdet(self) -> float:
        """log |A| = Σ log D."""
        return float(np.log(self._diag).sum())

    def _root(self, ndim: int) -> np.ndarray:
        root = np.sqrt(self._diag)
        return root if ndim == 1 else root[:, None]

    def solve_L(self, b: np.ndarray) -> np.ndarray:
        """L⁻¹ P b."""
        f = self._factor
        y = f.solve_L(f.P(b))
        return y if f.is_ll else y / self._root(y.ndim)

    def solve_Lt(self, c: np.ndarray) -> np.ndarray:
        """P' L'⁻¹ c."""
        f = self._factor
        return f.Pt(f.solve_Lt(c if f.is_ll else c / self._root(c.ndim)))

    def solve(self, b: np.ndarray) -> np.ndarray:
        """A⁻¹ b."""
        return self._factor.solve_A(b)

    def factor(self) -> tuple[sp.csc_matrix, np.ndarray]:
        """L (of LL' = P A P', rows sorted within columns) and the permutation p with P A P' = A[p][:, p]."""
        L = self._factor.L()
        if not L.has_sorted_indices:
            L = L.sorted_indices()
        return L, self._factor.perm
