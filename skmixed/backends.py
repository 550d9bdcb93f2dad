"""Five ways to evaluate an LMM's profiled deviance, and the one place that chooses between them.

Each backend takes θ (of the standardized problem, :mod:`skmixed.standardize`) and gives the
PLS solution (:class:`~skmixed.pls.PlsSolution`: β̂, û, r², log-determinants, the deviance) and,
where it has one, the analytic gradient:

* :class:`DenseBackend`: one dense Cholesky of the bordered cross-products of [Z X y]
  (:mod:`skmixed.dense_pls`); a gradient for any terms.  For few random effects the sparse
  machinery costs more in call overhead than this dense work.
* :class:`BlockedDenseBackend`: the same bordered factor with the first term's block (block diagonal by level)
  factored level by level and only the Schur complement of the rest dense (:mod:`skmixed.blocked_pls`): the
  gradient for vector terms on several grouping factors at a fraction of the dense work.
* :class:`NestedBackend`: two terms on nested grouping factors, any number of effects each
  (:mod:`skmixed.nested_pls`): A is a two-level block arrow whose factor has no fill, refactored
  level by level as batched k × k algebra; a gradient from A⁻¹ on A's blocks.  Its work is that
  of CHOLMOD's factor of the same blocks without the assembly of A, the sparse calls or a
  selected inverse, so it is taken for every such model beyond the dense path's size.
* :class:`ScalarTermsBackend`: scalar terms only (random intercepts, crossed or partly nested), the
  blocked factor refactored from Λ alone (:class:`~skmixed.scalar_cholesky.ScalarTermsCholesky`);
  a gradient from the traces of A⁻¹ that the blocked factor gives cheaply.
* :class:`SparseBackend`: A = Λ'Z'ZΛ + I assembled on its fixed pattern and factored by the
  blocked factor or CHOLMOD (:func:`~skmixed.cholesky.make_cholesky`); a gradient from A⁻¹ on A's
  pattern, from small dense blocks (:mod:`skmixed.pattern_inverse`: one grouping factor, or two
  terms whose factors are nested, which :class:`NestedBackend` takes first) or from CHOLMOD's factor
  (:mod:`skmixed.selected_inverse`: crossed vector terms too large for the dense paths, three or
  more factors, ...).  Only with the blocked factor (a scalar first term) does it go without a
  gradient (BOBYQA).

:func:`choose_backend` makes the choice and records why (``backend.reason``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.linalg.lapack import dtrtrs

from ._cholmod import NotPositiveDefinite, factor_flops
from .blocked_pls import BlockedPls, blocked_flops
from .cholesky import DENSE_PER_SPARSE_FLOP, GRADIENT_SAVING, MAX_DENSE
from .dense_pls import DensePls
from .nested_cholesky import nested_structure
from .nested_pls import NestedPls
from .pattern_inverse import pattern_inverse
from .pls import CrossProducts, LambdaMap, PenalizedCholesky, PlsSolution, profiled_solution, solve_on_factor
from .reterms import RandomEffects
from .scalar_cholesky import make_scalar_cholesky
from .selected_inverse import make_selected_inverse

#: the dense backend up to this many random effects: whole fits were faster than on the sparse path up to
#: about here (q = 54: 2×; q = 65: even; q = 130 and above: slower), as the dense work grows as (q + p)³
MAX_DENSE_Q = 100
#: vector terms on several grouping factors have a gradient only on the dense path: up to this order it is chosen
#: when its work (a Cholesky and the gradient's solve: about this many times (q + p + 1)³ flops) costs less than
#: CHOLMOD's factor of A with the evaluations the gradient saves (:mod:`skmixed.cholesky`'s weights)
MAX_DENSE_GRADIENT_Q, DENSE_WORK = 3000, 2.5
#: ... and with the first term's block factored by level (:mod:`skmixed.blocked_pls`) when this many times its
#: multiply-adds (:func:`~skmixed.blocked_pls.blocked_flops`) cost less than either, in the units of DENSE_WORK:
#: its smaller BLAS calls and batched k × k products run at about half the rate of one large factor's.  It holds a
#: few q₁ × (q₂ + p + 1) arrays: up to MAX_BLOCKED_BORDER entries each (the dense path's at q = 3,000), with a
#: complement of order at most MAX_DENSE_GRADIENT_Q, whatever q
BLOCKED_WORK, MAX_BLOCKED_BORDER = 2.0, 10_000_000
#: with vector terms BOBYQA needed 6.7 to 29 times the evaluations of L-BFGS-B with the gradient (benchmarks/HISTORY.md,
#: kb07_like), where scalar terms' GRADIENT_SAVING is 3
VECTOR_GRADIENT_SAVING = 6.0
#: where the sparse path has a gradient (CHOLMOD's factor and its selected inverse, :mod:`skmixed.selected_inverse`:
#: the first term is a vector one, or the rest too large for the blocked factor) an evaluation with it costs about this
#: many times the factor's Σⱼcⱼ², plus this much per column of A for the passes over A's and L's entries and the
#: calls per group of supernodes, in the same units (fitted to 4 crossed shapes: 4,400 to 17,000 per column)
SELECTED_INVERSE_WORK, SELECTED_INVERSE_PER_COLUMN = 2.0, 10_000.0


class _Backend:
    """What every backend shares: the problem (cross-products, terms, REML) and Λ's map."""

    name = ""
    has_gradient = False
    #: L-BFGS-B stops when a step lowers the deviance by less than this fraction of it
    ftol = 1e-12

    def __init__(self, cp: CrossProducts, re: RandomEffects, reml: bool, reason: str):
        self.cp, self.re, self.reml, self.reason = cp, re, reml, reason
        self.p = cp.XtX.shape[0]
        self.lam = LambdaMap(re)

    @property
    def dof(self) -> int:
        return self.cp.n - self.p if self.reml else self.cp.n

    def solve(self, theta: np.ndarray) -> PlsSolution | None:
        """The PLS solution at θ, or None where A or RX'RX is not positive definite."""
        raise NotImplementedError

    def solve_with_gradient(self, theta: np.ndarray) -> tuple[PlsSolution | None, np.ndarray | None]:
        """The solution and the gradient of its deviance in θ; (None, None) where it is not defined."""
        raise NotImplementedError

    def cholesky_at(self, theta: np.ndarray):
        """A Cholesky factor of A at θ (for conditional variances), or None where A is not positive definite."""
        raise NotImplementedError

    def _from_decomposed(self, theta: np.ndarray, pls, ldL2: float) -> PlsSolution:
        """The solution from a block solver that has decomposed the problem at θ (its coefficients, pwrss, RX)."""
        beta, u, b = pls.coefficients()
        return profiled_solution(
            theta, beta, u, b, pls.pwrss, ldL2, pls.ldRX2, pls.RX, self.cp.n, self.p, self.cp.log_det_w, self.reml
        )

    def _ztr(self, sol: PlsSolution) -> np.ndarray:
        """Z'r = Z'y − Z'Xβ̂ − Z'Zb̂ at the solution."""
        return self.cp.Zty - self.cp.ZtX @ sol.beta - self.cp.ZtZ @ sol.b


class DenseBackend(_Backend):
    """The bordered dense Cholesky of :mod:`skmixed.dense_pls`."""

    name = "dense"
    has_gradient = True
    _pls = DensePls

    def __init__(self, cp, re, reml, reason):
        super().__init__(cp, re, reml, reason)
        self._dense = self._pls(cp.ZtZ, cp.ZtX, cp.Zty, cp.XtX, cp.Xty, cp.yty, re)

    def solve(self, theta):
        return self._from_decomposed(theta, self._dense, self._dense.ldL2) if self._dense.decompose(theta) else None

    def solve_with_gradient(self, theta):
        sol = self.solve(theta)
        return sol, None if sol is None else self._dense.gradient(sol.beta, sol.u, sol.b, self.reml, self.dof)

    def cholesky_at(self, theta):
        penalized = PenalizedCholesky(
            self.cp.ZtZ, self.re
        )  # the dense path has no Cholesky factor of A alone: a sparse one, once
        return penalized.chol if penalized.refactor(self.lam.values(theta)) else None


class BlockedDenseBackend(DenseBackend):
    """The bordered Cholesky with the first term's block factored level by level (:mod:`skmixed.blocked_pls`)."""

    name = "dense, first term blocked"
    _pls = BlockedPls


class ScalarTermsBackend(_Backend):
    """Scalar terms on the blocked factor refactored from Λ = diag(λ) alone.

    With θₖ scaling term k's b = θₖu, Z'r = Z'y − Z'Xβ̂ − Z'Zb̂, W = Z'X − Z'ZΛA⁻¹Λ'Z'X and C = RX'RX:
    ∂log|A|/∂θₖ = (2/θₖ) Σ_{j∈k} (1 − (A⁻¹)ⱼⱼ),  ∂r²/∂θₖ = −2 Σ_{j∈k} (Z'r)ⱼuⱼ,
    ∂log|C|/∂θₖ = −2θₖ Σ_{j∈k} ‖(W RX⁻¹)ⱼ‖²  (REML only).
    """

    name = "blocked, scalar terms"
    has_gradient = True

    def __init__(self, cp, re, reml, reason, chol):
        super().__init__(cp, re, reml, reason)
        self.chol = chol
        self._term_of_column = np.repeat(np.arange(len(re.terms)), [t.q for t in re.terms])

    def _solve(self, theta):
        try:
            self.chol.refactor_lambda(theta[self._term_of_column])
        except NotPositiveDefinite:
            return None, None
        return solve_on_factor(self.chol, self.lam, self.cp, theta, self.reml)

    def solve(self, theta):
        return self._solve(theta)[0]

    def cholesky_at(self, theta):
        try:
            self.chol.refactor_lambda(theta[self._term_of_column])
        except NotPositiveDefinite:
            return None
        return self.chol

    def solve_with_gradient(self, theta):
        sol, RZX = self._solve(theta)
        if sol is None:
            return None, None
        term = self._term_of_column
        trace_first, diag_rest = self.chol.inverse_traces()  # the blocked factor's block 1 is the first term
        traces = np.concatenate(
            [[trace_first], np.bincount(term[self.re.terms[0].q :] - 1, diag_rest, minlength=len(theta) - 1)]
        )
        # A⁻¹Λ'Z'X = P'L'⁻¹ RZX
        return sol, scalar_terms_gradient(self.cp, self.reml, term, theta, sol, traces, lambda: self.chol.solve_Lt(RZX))


def scalar_terms_gradient(cp: CrossProducts, reml: bool, term, theta, sol: PlsSolution, traces, ainv_lzx) -> np.ndarray:
    """The gradient of :class:`ScalarTermsBackend`'s docstring, given the column's term (``term``), each term's
    Σ_{j∈k} (A⁻¹)ⱼⱼ (``traces``) and, called for REML only, ``ainv_lzx()`` = A⁻¹Λ'Z'X."""
    p, n_theta = cp.XtX.shape[0], len(theta)
    dof = cp.n - p if reml else cp.n
    ztr = cp.Zty - cp.ZtX @ sol.beta - cp.ZtZ @ sol.b
    g_pwrss = -2.0 * np.bincount(term, ztr * sol.u, minlength=n_theta)
    sizes = np.bincount(term, minlength=n_theta)
    safe = np.where(theta != 0, theta, 1.0)  # f is even in θ: the gradient is odd and 0 at θ = 0
    grad = np.where(theta != 0, 2.0 * (sizes - traces) / safe, 0.0) + dof * g_pwrss / sol.pwrss
    if reml and p:
        W = cp.ZtX - cp.ZtZ @ (theta[term][:, None] * ainv_lzx())
        V = dtrtrs(sol.RX, W.T, lower=0, trans=1)[0]  # RX'⁻¹W': columns are (W RX⁻¹)ⱼ
        grad += -2.0 * theta * np.bincount(term, (V**2).sum(axis=0), minlength=n_theta)
    return grad


class SparseBackend(_Backend):
    """A assembled on its fixed pattern (:class:`~skmixed.pls.ScaledGram`) and refactored per θ."""

    def __init__(self, cp, re, reml, reason=None):
        super().__init__(cp, re, reml, reason)
        self.penalized = PenalizedCholesky(cp.ZtZ, re)
        self.gram, self.chol = self.penalized.gram, self.penalized.chol
        blocks = pattern_inverse(self.gram.matrix, re)
        selected = None if blocks is not None else make_selected_inverse(self.chol, self.gram.matrix)
        self.has_gradient = blocks is not None or selected is not None
        if self.has_gradient:  # per ScaledGram product: its trace weight times its Z'Z value, and its θ indices
            gram, index = self.gram, self.lam.theta_index
            self._blocks, self._selected = blocks, selected
            weight = (blocks or selected).weight
            self._weighted_ztz = weight[gram.target] * gram.zdata[gram.z]
            self._index_l1, self._index_l2 = index[gram.l1], index[gram.l2]
        self.name = f"sparse ({type(self.chol).__name__})"
        if reason is None:  # why this path, and whether it has a gradient
            self.reason = "the sparse factor of A; " + (
                "one grouping factor, so a per-level gradient"
                if len({t.group for t in re.terms}) == 1
                else "two nested terms, so a gradient from their blocks"
                if blocks is not None
                else f"a gradient from the selected inverse of CHOLMOD's factor ({selected.n_supernodes} supernodes)"
                if selected is not None
                else "no gradient (BOBYQA): the blocked factor, or no selected inverse of this one (too large)"
            )

    def _solve(self, theta):
        if not self.penalized.refactor(self.lam.values(theta)):
            return None, None
        return solve_on_factor(self.chol, self.lam, self.cp, theta, self.reml)

    def solve(self, theta):
        return self._solve(theta)[0]

    def cholesky_at(self, theta):
        return self.chol if self.penalized.refactor(self.lam.values(theta)) else None

    def solve_with_gradient(self, theta):
        """The formulas of :mod:`skmixed.dense_pls`, on the sparse factor.

        With E_m = ∂Λ/∂θ_m, G = A⁻¹Λ'Z'X, W = Z'X − Z'ZΛG and C = RX'RX:
        ∂r²/∂θ_m = −2 (Z'r)'E_m û,  ∂log|A|/∂θ_m = tr(A⁻¹ ∂A/∂θ_m),  ∂log|C|/∂θ_m = −2 tr(C⁻¹W'E_m G).
        A's stored entries are sums of Λ[c,a]·Z'Z[c,d]·Λ[d,b] (the :class:`~skmixed.pls.ScaledGram` products), so the
        trace needs A⁻¹ only on A's pattern (:mod:`skmixed.pattern_inverse`, or :mod:`skmixed.selected_inverse`).
        """
        sol, RZX = self._solve(theta)
        if sol is None:
            return None, None
        cp, lam_map, gram = self.cp, self.lam, self.gram
        rows, cols, index = lam_map.rows, lam_map.cols, lam_map.theta_index
        n_theta = len(theta)
        lam = lam_map.values(theta)
        # at A's entries, A as :meth:`_solve` assembled and factored it
        A_inverse = self._selected.values() if self._blocks is None else self._blocks.values(gram.matrix.data)
        products = A_inverse[gram.target] * self._weighted_ztz
        grad = np.bincount(self._index_l1, products * lam[gram.l2], minlength=n_theta)
        grad += np.bincount(self._index_l2, products * lam[gram.l1], minlength=n_theta)
        grad -= (2.0 * self.dof / sol.pwrss) * np.bincount(index, self._ztr(sol)[rows] * sol.u[cols], minlength=n_theta)
        if self.reml and self.p:
            G = self.chol.solve_Lt(RZX)  # A⁻¹Λ'Z'X = P'L'⁻¹ RZX
            W = cp.ZtX - cp.ZtZ @ lam_map.dot_matrix(lam, G)
            U = dtrtrs(sol.RX, G.T, lower=0, trans=1)[0]  # RX'⁻¹G'
            V = dtrtrs(sol.RX, W.T, lower=0, trans=1)[0]  # RX'⁻¹W'; (GC⁻¹W')[b, a] = U[:, b]·V[:, a]
            grad -= 2.0 * np.bincount(index, np.einsum("ij,ij->j", U[:, cols], V[:, rows]), minlength=n_theta)
        return sol, grad


class NestedBackend(_Backend):
    """Two terms on nested grouping factors: the PLS problem level by level (:mod:`skmixed.nested_pls`)."""

    name = "nested blocks"
    has_gradient = True

    def __init__(self, cp, re, reml, structure):
        inner, outer = re.terms[structure.inner], re.terms[1 - structure.inner]
        reason = (
            f"two terms on nested grouping factors ({inner.n_levels} levels of {inner.group} in {outer.n_levels} of "
            f"{outer.group}): A's factor level by level, batched {inner.k} × {inner.k} and {outer.k} × {outer.k} "
            "blocks with no fill, with a gradient"
        )
        super().__init__(cp, re, reml, reason)
        self._nested = NestedPls(cp, re, structure, reml)

    def solve(self, theta):
        nested = self._nested
        return self._from_decomposed(theta, nested, nested.chol.logdet()) if nested.decompose(theta) else None

    def solve_with_gradient(self, theta):
        sol = self.solve(theta)
        return sol, None if sol is None else self._nested.gradient(self.dof)

    def cholesky_at(self, theta):
        return self._nested.chol if self._nested.decompose(theta) else None


def choose_backend(cp: CrossProducts, re: RandomEffects, reml: bool, krylov=None) -> _Backend:
    """The backend for this model, with the reason for the choice (``backend.reason``); the iterative one of
    :mod:`skmixed.krylov_pls` only where asked for (``krylov``: its settings), as it estimates log|A| and the
    gradient's traces where every other path is exact."""
    if krylov is not None:
        from .krylov_pls import KrylovBackend

        return KrylovBackend(cp, re, reml, krylov)
    if re.q <= MAX_DENSE_Q:
        return DenseBackend(cp, re, reml, f"q = {re.q} ≤ {MAX_DENSE_Q} random effects: the dense bordered Cholesky")
    structure = nested_structure(cp.ZtZ, re)
    if structure is not None:
        return NestedBackend(cp, re, reml, structure)
    if all(t.k == 1 for t in re.terms):
        chol = make_scalar_cholesky(cp.ZtZ, re.terms[0].q)
        if chol is not None:
            return ScalarTermsBackend(
                cp,
                re,
                reml,
                "scalar terms whose Schur complement is cheapest dense (small, full, or filling in under CHOLMOD): "
                "the blocked factor refactored from Λ, with a gradient",
                chol,
            )
    if len({t.group for t in re.terms}) > 1:
        backend = _with_gradient(cp, re, reml)
        if backend is not None:
            return backend
    return SparseBackend(cp, re, reml)


def _with_gradient(cp: CrossProducts, re: RandomEffects, reml: bool) -> _Backend | None:
    """Terms on several grouping factors: the dense path or the blocked one, whichever costs less, where that costs
    less than CHOLMOD's factor of A, weighted by the evaluations a gradient saves where the sparse path has none (a
    scalar first term and a complement small enough for the blocked factor) or by its selected inverse's work where
    it has one; else None."""
    p, first = cp.XtX.shape[0], re.terms[0]
    order = re.q + p + 1
    n = order - first.q  # the order of the blocked path's Schur complement
    dense = DENSE_WORK * float(order) ** 3 if re.q <= MAX_DENSE_GRADIENT_Q else np.inf
    small = n <= MAX_DENSE_GRADIENT_Q and first.q * n <= MAX_BLOCKED_BORDER
    blocked = BLOCKED_WORK * blocked_flops(re, p, reml) if small else np.inf
    if first.k > 1 or re.q - first.q > MAX_DENSE:  # no blocked split: CHOLMOD's factor, with its selected inverse
        weight, extra, sparse = SELECTED_INVERSE_WORK, SELECTED_INVERSE_PER_COLUMN * re.q, "its selected inverse"
    else:
        weight = VECTOR_GRADIENT_SAVING if any(t.k > 1 for t in re.terms) else GRADIENT_SAVING
        extra, sparse = 0.0, "no gradient"
    # the sparse path is taken where weight · Σⱼcⱼ² + extra is below the dense paths' cost, in CHOLMOD's flops
    cheaper = (min(dense, blocked) / DENSE_PER_SPARSE_FLOP - extra) / weight
    # CHOLMOD's analysis only where a bound does not settle it: a factor of A holds at least the (Z'Z.nnz + q)/2
    # entries of A's lower triangle, so its Σⱼcⱼ² is at least their square over q
    if not np.isfinite(cheaper) or (
        cheaper > (cp.ZtZ.nnz + re.q) ** 2 / (4 * re.q)
        and cheaper > factor_flops(sp.tril(cp.ZtZ + sp.identity(re.q), format="csc"))
    ):
        return None
    if blocked <= dense:
        return BlockedDenseBackend(
            cp,
            re,
            reml,
            f"several grouping factors, q = {re.q}: the bordered Cholesky with the first term's {first.n_levels} "
            f"levels factored as blocks and a dense Schur complement of order {n}, for its gradient, costs less than "
            f"the whole dense factor and than the sparse factor with {sparse}",
        )
    return DenseBackend(
        cp,
        re,
        reml,
        f"several grouping factors, q = {re.q}: the dense bordered Cholesky, for its gradient, costs less than the "
        f"sparse factor with {sparse}",
    )
