"""Penalized least squares for the LMM and its profiled deviance (Bates' method, seed 004).

For θ, with ``A = Λ'Z'WZΛ + I`` and ``LL' = P A P'``:

    cu = L⁻¹PΛ'Z'Wy,  RZX = L⁻¹PΛ'Z'WX,  RX'RX = X'WX − RZX'RZX,
    cβ = RX'⁻¹(X'Wy − RZX'cu),  β̂ = RX⁻¹cβ,  û = P'L'⁻¹(cu − RZX β̂),  b̂ = Λû,
    r²(θ) = y'Wy − ‖cu‖² − ‖cβ‖²  (penalized weighted RSS),

and the profiled deviances (``log|W| = Σ log w``)

    ML:   log|A| − log|W| + n (1 + log(2π r²/n))
    REML: log|A| − log|W| + log|RX'RX| + (n−p)(1 + log(2π r²/(n−p))).

Every term is built from the cross-products Z'WZ, Z'WX, X'WX, Z'Wy, X'Wy, y'Wy formed
once, so one evaluation costs nothing that grows with the number of rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp
from scipy.linalg.lapack import dtrtrs

from ._cholmod import NotPositiveDefinite
from .dense_pls import MAX_DENSE_Q, DensePls
from .factor import make_factor, make_scalar_factor
from .reterms import RandomEffects


@dataclass
class CrossProducts:
    """Weighted cross-products of Z, X and y − offset."""

    ZtZ: sp.csc_matrix
    ZtX: np.ndarray
    Zty: np.ndarray
    XtX: np.ndarray
    Xty: np.ndarray
    yty: float
    n: int
    log_det_w: float


def cross_products(Z: sp.csc_matrix, X: np.ndarray, y: np.ndarray, weights: np.ndarray, offset: np.ndarray | None = None) -> CrossProducts:
    """The weighted cross-products of Z, X and y − offset.

    √W scales the stored values of Z's CSR form (rows contiguous) in place of a diagonal sparse
    product, which costs more than the rest on small data."""
    yw = y if offset is None else y - offset
    Zw, Xw = Z.tocsr(copy=True), X  # a copy even if Z is CSR: its values are scaled in place
    if not np.all(weights == 1.0):
        sw = np.sqrt(weights)
        Zw.data *= np.repeat(sw, np.diff(Zw.indptr))
        Xw, yw = X * sw[:, None], yw * sw
    Zt = Zw.T
    positive = weights > 0
    return CrossProducts(
        ZtZ=(Zt @ Zw).tocsc(),
        ZtX=np.asarray(Zt @ Xw),
        Zty=np.asarray(Zt @ yw).ravel(),
        XtX=Xw.T @ Xw,
        Xty=Xw.T @ yw,
        yty=float(yw @ yw),
        n=len(y),
        log_det_w=float(np.log(weights[positive]).sum()),
    )


@dataclass
class PlsSolution:
    """The PLS solution at one θ: everything the result object needs."""

    theta: np.ndarray
    beta: np.ndarray
    u: np.ndarray
    b: np.ndarray
    pwrss: float
    ldL2: float
    ldRX2: float
    RX: np.ndarray
    deviance: float
    sigma: float


class ScaledGram:
    """``A(θ) = Λ'(Z'WZ)Λ + I`` (lower triangle) on a sparsity pattern fixed at construction.

    Each entry of A is a sum of products ``Λ[c,a]·ZtZ[c,d]·Λ[d,b]``; the (c, d, a, b)
    quadruples are enumerated once, so an update is one weighted ``bincount``.
    """

    def __init__(self, ZtZ: sp.csc_matrix, re: RandomEffects):
        q = re.q
        lrows, lcols, self.lambda_theta = re.lambda_pattern
        coo = ZtZ.tocoo()
        self.zdata_index = np.arange(coo.nnz)
        self.zdata = coo.data.copy()
        order = np.argsort(lrows, kind="stable")
        ptr = np.concatenate([[0], np.cumsum(np.bincount(lrows, minlength=q))])

        def expand(parent_rows: np.ndarray):
            counts = ptr[parent_rows + 1] - ptr[parent_rows]
            parent = np.repeat(np.arange(len(parent_rows)), counts)
            within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            return parent, order[ptr[parent_rows][parent] + within]

        z1, l1 = expand(coo.row)  # Λ[c, a] for each ZtZ entry (c, d)
        z2, l2 = expand(coo.col[z1])  # Λ[d, b]
        z, l1 = z1[z2], l1[z2]
        a, b = lcols[l1], lcols[l2]
        lower = a >= b
        z, l1, l2, a, b = z[lower], l1[lower], l2[lower], a[lower], b[lower]
        diag = np.arange(q)
        keys = np.concatenate([b * q + a, diag * q + diag])  # column-major: CSC order
        uniq, inverse = np.unique(keys, return_inverse=True)
        self.target = inverse[: len(a)]
        self.diag_pos = inverse[len(a) :]
        self.z, self.l1, self.l2 = z, l1, l2
        indptr = np.concatenate([[0], np.cumsum(np.bincount(uniq // q, minlength=q))])
        self.matrix = sp.csc_matrix((np.zeros(len(uniq)), uniq % q, indptr), shape=(q, q))

    def reweight(self, ztz_data: np.ndarray) -> None:
        """New values of Z'WZ on the constructor's pattern, in the storage order of the CSC matrix it was given
        (a GLMM's weights change at every PIRLS iteration; the pattern, and so CHOLMOD's analysis, does not)."""
        if ztz_data.shape != self.zdata.shape:
            raise ValueError(f"Z'WZ has {ztz_data.shape[0]} values, the fixed pattern {self.zdata.shape[0]}")
        self.zdata = ztz_data

    def update(self, lam: np.ndarray) -> sp.csc_matrix:
        """Fill A for Λ's nonzeros ``lam`` (in the order of ``RandomEffects.lambda_pattern``)."""
        vals = lam[self.l1] * self.zdata[self.z] * lam[self.l2]
        data = np.bincount(self.target, vals, minlength=self.matrix.nnz)
        data[self.diag_pos] += 1.0
        self.matrix.data = data
        return self.matrix


def theta_scale(cp: CrossProducts, re: RandomEffects) -> np.ndarray:
    """Per θ element, the root mean square of the Z column of its row of T: a diagonal preconditioner.

    A random slope's θ is in σ per unit of its covariate, so its curvature grows with the
    covariate's square (sleepstudy's Days: RMS 5.3); in θ·scale all coordinates are on one
    footing (L-BFGS-B evaluations: sleepstudy 21 → 10, Orthodont 28 → 16).
    """
    diag = cp.ZtZ.diagonal()
    out = []
    for i, t in enumerate(re.terms):
        rms = np.sqrt(diag[re.col_offsets[i] : re.col_offsets[i + 1]].reshape(t.n_levels, t.k).sum(axis=0) / cp.n)
        out.append(rms[[row for row, _ in t.tril]])
    scale = np.concatenate(out)
    return np.where(scale > 0, scale, 1.0)


def moment_theta(cp: CrossProducts, re: RandomEffects, scale: np.ndarray) -> np.ndarray:
    """A starting θ: for each random-intercept term, θₖ² ≈ τₖ²/σ² from one-way ANOVA of y on its factor alone.

    The between-level variance of the level means, less the part σ²·ℓ/n due to noise,
    over the within-level variance.  Cheap (O(q)) and, on crossed models, it halves the
    optimizer's work (InstEval: 33 → 12 evaluations).  Other terms start at T = diag(1/scale)
    (the identity in the preconditioned coordinates of :func:`theta_scale`).
    """
    diag = cp.ZtZ.diagonal()
    theta = re.theta_init / scale
    for i, t in enumerate(re.terms):
        if t.effects != ["(Intercept)"]:
            continue
        cols = slice(re.col_offsets[i], re.col_offsets[i + 1])
        nj, sj = diag[cols], cp.Zty[cols]
        n = nj.sum()
        mean = sj.sum() / n
        between = np.sum(nj * (sj / np.maximum(nj, 1e-300) - mean) ** 2) / n
        within = max(cp.yty / n - mean**2 - between, 1e-12)
        tau2 = max(between - within * t.n_levels / n, 1e-4 * within)
        theta[re.theta_offsets[i]] = np.sqrt(tau2 / within)
    return theta


class LambdaMap:
    """Λ(θ) as its structural nonzeros, applied without building a sparse matrix per θ."""

    def __init__(self, re: RandomEffects):
        self.rows, self.cols, self.theta_index = re.lambda_pattern
        self.q = re.q

    def values(self, theta: np.ndarray) -> np.ndarray:
        return theta[self.theta_index]

    def t_dot(self, lam: np.ndarray, V: np.ndarray) -> np.ndarray:
        """Λ'V for a vector or the columns of a matrix V (q × m)."""
        if V.ndim == 1:
            return np.bincount(self.cols, lam * V[self.rows], minlength=self.q)
        return np.column_stack([self.t_dot(lam, V[:, j]) for j in range(V.shape[1])])

    def dot(self, lam: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Λu."""
        return np.bincount(self.rows, lam * u[self.cols], minlength=self.q)

    def dot_matrix(self, lam: np.ndarray, U: np.ndarray) -> np.ndarray:
        """ΛU for the columns of U (q × m)."""
        return np.column_stack([self.dot(lam, U[:, j]) for j in range(U.shape[1])])


class ProfiledDeviance:
    """θ ↦ profiled ML or REML deviance of a linear mixed model; ``solve`` gives the full PLS solution.

    Up to ``MAX_DENSE_Q`` random effects the deviance and its gradient come from one dense
    Cholesky of the bordered cross-products (:mod:`skmixed.dense_pls`); above it from the
    sparse factor of A (built on first use: a small LMM never needs it).
    """

    def __init__(self, cp: CrossProducts, re: RandomEffects, reml: bool, reweighted: bool = False):
        """``reweighted``: Z'WZ will change (a GLMM's PIRLS), so the factor must refactor from A's values."""
        self.cp, self.re, self.reml = cp, re, reml
        self._scalar_terms = not reweighted and all(t.k == 1 for t in re.terms)
        self.p = cp.XtX.shape[0]
        self.lam = LambdaMap(re)
        self._rhs = np.column_stack([cp.Zty, cp.ZtX])
        self._term_sizes = np.array([t.q for t in re.terms])
        self._term_of_column = np.repeat(np.arange(len(re.terms)), self._term_sizes)
        # the dense path serves the LMM; PIRLS reweights Z'WZ and refactors :attr:`chol` itself, so a GLMM keeps it
        self._dense = self._dense_pls(cp) if re.q <= MAX_DENSE_Q and not reweighted else None
        self._last = None  # (θ, solution, gradient) of the last value_and_gradient: the polish and the result reuse it

    def _dense_pls(self, cp: CrossProducts) -> DensePls:
        return DensePls(cp.ZtZ, cp.ZtX, cp.Zty, cp.XtX, cp.Xty, cp.yty, self.re.lambda_pattern)

    @cached_property
    def gram(self) -> ScaledGram:
        return ScaledGram(self.cp.ZtZ, self.re)

    @cached_property
    def chol(self):
        """The sparse (or blocked) Cholesky factor of A, analysed at Λ = I; for fixed weights and scalar
        terms, the blocked factor refactored from Λ alone where it applies."""
        first = self.re.terms[0]
        if self._scalar_terms:
            factor = make_scalar_factor(self.cp.ZtZ, first.q)
            if factor is not None:
                return factor
        self._scalar_terms = False
        return make_factor(self.gram.update(self.lam.values(self.re.theta_init)), first.q if first.k == 1 else 0)

    def reweight(self, cp: CrossProducts) -> None:
        """Use cross-products with new weights (same Z'WZ pattern and CSC storage order): one PIRLS iteration."""
        self.cp = cp
        self.gram.reweight(cp.ZtZ.data)
        self._rhs = np.column_stack([cp.Zty, cp.ZtX])
        self._last = None
        if self._dense is not None:
            self._dense = self._dense_pls(cp)

    def __call__(self, theta: np.ndarray) -> float:
        sol = self.solve(theta)
        return np.inf if sol is None else sol.deviance

    def solve(self, theta: np.ndarray) -> PlsSolution | None:
        """The PLS solution at θ, or None where A or RX'RX is not positive definite."""
        theta = np.asarray(theta, dtype=float)
        if self._last is not None and np.array_equal(self._last[0], theta):
            return self._last[1]
        return self._solve_dense(theta) if self._dense is not None else self._solve(theta)[0]

    def _solution(self, theta, beta, u, b, pwrss, ldL2, ldRX2, RX) -> PlsSolution:
        """The profiled deviance ``log|A| − log|W| [+ log|RX'RX|] + dof(1 + log(2πr²/dof))`` and the solution."""
        cp = self.cp
        dof = cp.n - self.p if self.reml else cp.n
        deviance = ldL2 - cp.log_det_w + dof * (1.0 + np.log(2.0 * np.pi * pwrss / dof))
        if self.reml:
            deviance += ldRX2
        return PlsSolution(
            theta=theta.copy(), beta=beta, u=u, b=b, pwrss=pwrss, ldL2=ldL2, ldRX2=ldRX2, RX=RX,
            deviance=float(deviance), sigma=float(np.sqrt(pwrss / dof)),
        )

    def with_pwrss(self, sol: PlsSolution, pwrss: float) -> PlsSolution:
        """``sol`` with another value of the penalized RSS (one computed from residuals), deviance and σ to match."""
        return self._solution(sol.theta, sol.beta, sol.u, sol.b, pwrss, sol.ldL2, sol.ldRX2, sol.RX)

    def _solve_dense(self, theta: np.ndarray) -> PlsSolution | None:
        dense = self._dense
        if not dense.factor(theta):
            return None
        beta, u, b = dense.coefficients()
        return self._solution(theta, beta, u, b, dense.pwrss, dense.ldL2, dense.ldRX2, dense.RX)

    def _solve(self, theta: np.ndarray) -> tuple[PlsSolution | None, np.ndarray | None]:
        """The PLS solution on the sparse path and RZX = L⁻¹PΛ'Z'X (the gradient reuses it)."""
        cp, p = self.cp, self.p
        lam = self.lam.values(theta)
        chol = self.chol  # built first: it settles whether the scalar-terms path applies
        try:
            if self._scalar_terms:
                chol.refactor_lambda(theta[self._term_of_column])
            else:
                chol.refactor(self.gram.update(lam))
        except NotPositiveDefinite:
            return None, None
        sol = self.chol.solve_L(self.lam.t_dot(lam, self._rhs))
        cu, RZX = sol[:, 0], sol[:, 1:]
        if p:
            try:
                RX = np.linalg.cholesky(cp.XtX - RZX.T @ RZX).T
            except np.linalg.LinAlgError:
                return None, None
            cbeta = dtrtrs(RX, cp.Xty - RZX.T @ cu, lower=0, trans=1)[0]  # RX'⁻¹(X'y − RZX'cu)
            beta = dtrtrs(RX, cbeta, lower=0)[0]
            ldRX2 = 2.0 * np.log(np.diag(RX)).sum()
        else:
            RX, cbeta, beta, ldRX2 = np.zeros((0, 0)), np.zeros(0), np.zeros(0), 0.0
        pwrss = cp.yty - cu @ cu - cbeta @ cbeta
        if pwrss <= 0:
            return None, None
        u = self.chol.solve_Lt(cu - RZX @ beta)
        return self._solution(theta, beta, u, self.lam.dot(lam, u), pwrss, self.chol.logdet(), ldRX2, RX), RZX

    @property
    def sparse(self) -> bool:
        """Whether evaluations use the sparse factor :attr:`chol` (else the dense path)."""
        return self._dense is None

    @property
    def has_gradient(self) -> bool:
        """Analytic gradients: on the dense path (any terms); for scalar terms on the blocked factor (cheap
        traces of A⁻¹); and when every term has the same grouping factor, so that A is block diagonal by level
        and A⁻¹ on A's pattern is ℓ small inverses.  Other models (nested, crossed vector terms) would need a
        selected inverse of the sparse factor per evaluation, which scikit-sparse does not offer."""
        return self._dense is not None or self._scalar_blocked or len({t.group for t in self.re.terms}) == 1

    @property
    def _scalar_blocked(self) -> bool:
        return all(t.k == 1 for t in self.re.terms) and hasattr(self.chol, "inverse_traces")

    def value_and_gradient(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """The deviance and its gradient in θ (the dense path's is in :mod:`skmixed.dense_pls`).

        For scalar terms on the blocked factor (θₖ scales term k's b = θₖu), with
        Z'r = Z'y − Z'Xβ̂ − Z'Zb̂, W = Z'X − Z'ZΛA⁻¹Λ'Z'X and C = RX'RX:
        ∂log|A|/∂θₖ = (2/θₖ) Σ_{j∈k} (1 − (A⁻¹)ⱼⱼ),  ∂r²/∂θₖ = −2 Σ_{j∈k} (Z'r)ⱼuⱼ,
        ∂log|C|/∂θₖ = −2θₖ Σ_{j∈k} ‖(W RX⁻¹)ⱼ‖²  (REML only).
        """
        theta = np.asarray(theta, dtype=float)
        if self._last is not None and np.array_equal(self._last[0], theta):
            return self._last[1].deviance, self._last[2]
        sol, grad = self._value_and_gradient(theta)
        if sol is None:
            return np.inf, np.zeros_like(theta)
        self._last = (theta.copy(), sol, grad)
        return sol.deviance, grad

    def _value_and_gradient(self, theta: np.ndarray) -> tuple[PlsSolution | None, np.ndarray | None]:
        """The solution and the gradient at θ; (None, None) where A or RX'RX is not positive definite."""
        dof = self.cp.n - self.p if self.reml else self.cp.n
        if self._dense is not None:
            sol = self._solve_dense(theta)
            return sol, None if sol is None else self._dense.gradient(sol.beta, sol.u, sol.b, self.reml, dof)
        sol, RZX = self._solve(theta)
        if sol is None:
            return None, None
        if not self._scalar_blocked:
            return sol, self._level_block_gradient(theta, sol, RZX, dof)
        cp, re = self.cp, self.re
        term, sizes = self._term_of_column, self._term_sizes
        lam = self.lam.values(theta)
        Ztr = cp.Zty - cp.ZtX @ sol.beta - cp.ZtZ @ sol.b
        g_pwrss = -2.0 * np.bincount(term, Ztr * sol.u, minlength=len(theta))
        trace_first, diag_rest = self.chol.inverse_traces()  # the blocked factor's block 1 is the first term
        traces = np.concatenate([[trace_first], np.bincount(term[re.terms[0].q :] - 1, diag_rest, minlength=len(theta) - 1)])
        safe = np.where(theta != 0, theta, 1.0)  # f is even in θ: the gradient is odd and 0 at θ = 0
        g_logA = np.where(theta != 0, 2.0 * (sizes - traces) / safe, 0.0)
        grad = g_logA + dof * g_pwrss / sol.pwrss
        if self.reml and self.p:
            AinvLZX = self.chol.solve_Lt(RZX)  # A⁻¹Λ'Z'X = P'L'⁻¹ RZX
            W = cp.ZtX - cp.ZtZ @ self.lam.dot_matrix(lam, AinvLZX)
            V = dtrtrs(sol.RX, W.T, lower=0, trans=1)[0]  # RX'⁻¹W': columns are (W RX⁻¹)ⱼ
            grad += -2.0 * theta * np.bincount(term, (V**2).sum(axis=0), minlength=len(theta))
        return sol, grad

    def _level_block_gradient(self, theta: np.ndarray, sol: PlsSolution, RZX: np.ndarray, dof: int) -> np.ndarray:
        """The gradient for terms on one grouping factor (the formulas of :mod:`skmixed.dense_pls`, on the sparse factor).

        With E_m = ∂Λ/∂θ_m, G = A⁻¹Λ'Z'X, W = Z'X − Z'ZΛG and C = RX'RX:
        ∂r²/∂θ_m = −2 (Z'r)'E_m û,  ∂log|A|/∂θ_m = tr(A⁻¹ ∂A/∂θ_m),  ∂log|C|/∂θ_m = −2 tr(C⁻¹W'E_m G).
        A's stored entries are sums of Λ[c,a]·Z'Z[c,d]·Λ[d,b] (the :class:`ScaledGram` products), so the
        trace needs A⁻¹ only on A's pattern: here the inverses of A's ℓ diagonal blocks, one per level.
        """
        cp, lam_map, gram = self.cp, self.lam, self.gram
        rows, cols, index = lam_map.rows, lam_map.cols, lam_map.theta_index
        n_theta = len(theta)
        lam = lam_map.values(theta)
        level, local_row, local_col, size, weight = self._level_blocks
        blocks = np.zeros((len(self.re.terms[0].factor.levels), size, size))
        A_values = gram.update(lam).data  # A at θ (the scalar-terms factor refactors without it)
        blocks[level, local_row, local_col] = A_values
        blocks[level, local_col, local_row] = A_values
        A_inverse = np.linalg.inv(blocks)[level, local_row, local_col]
        products = A_inverse[gram.target] * weight * gram.zdata[gram.z]
        grad = np.bincount(index[gram.l1], products * lam[gram.l2], minlength=n_theta)
        grad += np.bincount(index[gram.l2], products * lam[gram.l1], minlength=n_theta)
        Ztr = cp.Zty - cp.ZtX @ sol.beta - cp.ZtZ @ sol.b
        grad -= (2.0 * dof / sol.pwrss) * np.bincount(index, Ztr[rows] * sol.u[cols], minlength=n_theta)
        if self.reml and self.p:
            G = self.chol.solve_Lt(RZX)  # A⁻¹Λ'Z'X = P'L'⁻¹ RZX
            W = cp.ZtX - cp.ZtZ @ lam_map.dot_matrix(lam, G)
            U = dtrtrs(sol.RX, G.T, lower=0, trans=1)[0]  # RX'⁻¹G'
            V = dtrtrs(sol.RX, W.T, lower=0, trans=1)[0]  # RX'⁻¹W'; (GC⁻¹W')[b, a] = U[:, b]·V[:, a]
            grad -= 2.0 * np.bincount(index, np.einsum("ij,ij->j", U[:, cols], V[:, rows]), minlength=n_theta)
        return grad

    @cached_property
    def _level_blocks(self):
        """For A's stored lower entries: their level, row and column within the level's block, the block size
        (Σ kᵢ), and per ScaledGram product the weight of its entry in tr(A⁻¹dA) (2 off the diagonal, 1 on it)."""
        re, A = self.re, self.gram.matrix
        level, local = np.empty(re.q, dtype=np.int64), np.empty(re.q, dtype=np.int64)
        within = 0
        for i, t in enumerate(re.terms):
            offset = np.arange(t.q)
            level[re.col_offsets[i] : re.col_offsets[i + 1]] = offset // t.k
            local[re.col_offsets[i] : re.col_offsets[i + 1]] = within + offset % t.k
            within += t.k
        A_cols = np.repeat(np.arange(re.q), np.diff(A.indptr))
        if np.any(level[A.indices] != level[A_cols]):
            raise ValueError("A is not block diagonal by level")
        weight = np.where((A.indices == A_cols)[self.gram.target], 1.0, 2.0)
        return level[A_cols], local[A.indices], local[A_cols], within, weight

    def conditional_variances(self, theta: np.ndarray, sigma: float) -> list[np.ndarray]:
        """Per term, an ℓ × k × k array: ``σ² Λ A⁻¹ Λ'`` diagonal blocks (β treated as known, as lme4 does)."""
        sol = self._solve(np.asarray(theta, dtype=float))[0]  # factors :attr:`chol` at θ, also on the dense path
        if sol is None:
            raise ArithmeticError("cannot factor A at the fitted θ")
        Lam = self.re.Lambda(theta)
        LamT = Lam.T.tocsc()
        out = []
        for i, t in enumerate(self.re.terms):
            start, k = self.re.col_offsets[i], t.k
            blocks = np.empty((t.n_levels, k, k))
            per = max(1, min(256, 20_000_000 // self.re.q) // k)  # dense q × chunk solves, ≤ 160 MB
            for lv in range(0, t.n_levels, per):
                hi = min(t.n_levels, lv + per)
                cols = np.arange(start + lv * k, start + hi * k)
                W = self.chol.solve_L(LamT[:, cols].toarray())  # columns of L⁻¹PΛ'
                G = W.reshape(W.shape[0], hi - lv, k)
                blocks[lv:hi] = np.einsum("rli,rlj->lij", G, G)
            out.append(sigma**2 * blocks)
        return out
