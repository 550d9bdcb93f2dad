"""Penalized least squares for the LMM and its profiled deviance (Bates' method): the shared pieces.

For θ, with ``A = Λ'Z'WZΛ + I`` and ``LL' = P A P'``:

    cu = L⁻¹PΛ'Z'Wy,  RZX = L⁻¹PΛ'Z'WX,  RX'RX = X'WX − RZX'RZX,
    cβ = RX'⁻¹(X'Wy − RZX'cu),  β̂ = RX⁻¹cβ,  û = P'L'⁻¹(cu − RZX β̂),  b̂ = Λû,
    r²(θ) = y'Wy − ‖cu‖² − ‖cβ‖²  (penalized weighted RSS),

and the profiled deviances (``log|W| = Σ log w``)

    ML:   log|A| − log|W| + n (1 + log(2π r²/n))
    REML: log|A| − log|W| + log|RX'RX| + (n−p)(1 + log(2π r²/(n−p))).

Every term is built from the cross-products Z'WZ, Z'WX, X'WX, Z'Wy, X'Wy, y'Wy formed
once, so one evaluation costs nothing that grows with the number of rows.  Here: the
cross-products, Λ's map from θ, A on a fixed pattern, the solution record and the solve
on a Cholesky factor of A; :mod:`skmixed.backends` evaluates the deviance with them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.linalg.lapack import dtrtrs

from ._cholmod import NotPositiveDefinite
from .cholesky import BlockedCholesky, make_cholesky
from .reterms import RandomEffects
from .scalar_gram import scalar_gram


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


def cross_products(
    Z: sp.csc_matrix,
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    offset: np.ndarray | None = None,
    *,
    Z_rows: sp.csr_matrix | None = None,
    scalar_offsets: np.ndarray | None = None,
) -> CrossProducts:
    """The weighted cross-products of Z, X and y − offset.

    √W scales the stored values of Z in place of a diagonal sparse product, which costs more than the rest on
    small data.  Z'WZ is the product of two compressed-column matrices, (√W Z)' (the transpose of √W Z's
    compressed-row form) and √W Z, which scipy multiplies without converting either; each of its entries is
    the sum over rows r, in increasing order, of the products of the scaled values.  ``Z_rows``, Z's
    compressed-row form when the caller has it (then scaled in place: pass a matrix nobody else holds), saves
    converting Z; without it, Z is converted once to the form it is not given in.  ``scalar_offsets``, the
    first columns of the terms when every term is scalar (each row of Z then holds one value per term, in term
    order), has Z'WZ counted by :func:`skmixed.scalar_gram.scalar_gram` instead: the same sums."""
    yw = y if offset is None else y - offset
    Xw = X
    unit = bool(np.all(weights == 1.0))
    sw = None if unit else np.sqrt(weights)
    if sw is not None:
        Xw, yw = X * sw[:, None], yw * sw
    if Z_rows is None and getattr(Z, "format", None) == "csr":
        Z_rows, Z = (Z if unit else Z.copy()), None
    if Z_rows is not None and sw is not None:
        Z_rows.data *= np.repeat(sw, np.diff(Z_rows.indptr))
    if Z is not None:
        Z = sp.csc_matrix(Z)
        if sw is not None:
            Z = Z.copy()
            Z.data *= sw[Z.indices]
    Zr = Z.tocsr() if Z_rows is None else Z_rows
    Zc = Zr.tocsc() if Z is None else Z
    Zt = Zr.T  # compressed columns
    return CrossProducts(
        ZtZ=Zt @ Zc if scalar_offsets is None else scalar_gram(Zr, Zc, scalar_offsets),
        ZtX=np.asarray(Zt @ Xw),
        Zty=np.asarray(Zt @ yw).ravel(),
        XtX=Xw.T @ Xw,
        Xty=Xw.T @ yw,
        yty=float(yw @ yw),
        n=len(y),
        log_det_w=0.0 if unit else float(np.log(weights[weights > 0]).sum()),
    )


#: keys below this bound may be made unique by marking them in an array of that size (32 MB of positions) rather
#: than by sorting them
MAX_MARKED_KEYS = 1 << 22


def unique_inverse(keys: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(keys, return_inverse=True)`` for integer keys in [0, size): by marking the keys present in an
    array of ``size`` flags where that costs less than sorting them (O(size) against O(n log n) for n keys), by
    sorting otherwise."""
    n = len(keys)
    if size > MAX_MARKED_KEYS or size > 8 * n * max(np.log2(max(n, 2)), 1.0):
        return np.unique(keys, return_inverse=True)
    present = np.zeros(size, dtype=bool)
    present[keys] = True
    uniq = np.flatnonzero(present)
    position = np.empty(size, dtype=np.intp)  # only the entries at uniq are set, and only they are read
    position[uniq] = np.arange(len(uniq))
    return uniq, position[keys]


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
    quadruples are enumerated once, so an update is one weighted ``bincount``.  When Λ is
    diagonal (scalar terms) each entry of A is one product ``λ_c·ZtZ[c,d]·λ_d`` over Z'Z's
    lower triangle, which is then A's pattern as it stands (no enumeration, no sums).

    :meth:`defer` records (Λ, Z'WZ) for a factor that is refactored from them directly
    (:meth:`~skmixed.cholesky.BlockedCholesky.refactor_scaled`); :attr:`matrix` is then
    assembled only when something reads it.
    """

    def __init__(self, ZtZ: sp.csc_matrix, re: RandomEffects):
        coo = ZtZ.tocoo()
        self.zdata = coo.data.copy()
        self._pending: tuple[np.ndarray, np.ndarray] | None = None
        if not self._index_diagonal(coo, re):
            self._index_general(coo, re)

    def _index_general(self, coo: sp.coo_matrix, re: RandomEffects) -> None:
        q = re.q
        lrows, lcols, _ = re.lambda_pattern
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
        uniq, inverse = unique_inverse(keys, q * q)
        self.target = inverse[: len(a)]
        self.diag_pos = inverse[len(a) :]
        self.z, self.l1, self.l2 = z, l1, l2
        indptr = np.concatenate([[0], np.cumsum(np.bincount(uniq // q, minlength=q))])
        self._matrix = sp.csc_matrix((np.zeros(len(uniq)), uniq % q, indptr), shape=(q, q))
        self.diagonal_lambda = False

    def _index_diagonal(self, coo: sp.coo_matrix, re: RandomEffects) -> bool:
        """The indices :meth:`_index_general` would find, in O(nnz), when Λ is diagonal (Λ[c, c] is its c-th
        nonzero) and Z'Z is stored in canonical CSC order with its whole diagonal: A's entries are then Z'Z's lower
        entries, one product each.  False (nothing set) otherwise."""
        q = re.q
        lrows, lcols, _ = re.lambda_pattern
        diagonal = len(lrows) == q and np.array_equal(lrows, np.arange(q)) and np.array_equal(lcols, lrows)
        if not diagonal:
            return False
        rows, cols = coo.row, coo.col
        z = np.flatnonzero(rows >= cols)
        r, c = rows[z], cols[z]
        keys = c.astype(np.int64) * q + r
        on_diagonal = np.flatnonzero(r == c)
        if np.any(np.diff(keys) <= 0) or not np.array_equal(r[on_diagonal], np.arange(q)):
            return False
        self.z, self.l1, self.l2 = z, r, c
        self.target, self.diag_pos = np.arange(len(z)), on_diagonal
        indptr = np.concatenate([[0], np.cumsum(np.bincount(c, minlength=q))])
        self._matrix = sp.csc_matrix((np.zeros(len(z)), r, indptr), shape=(q, q))
        self.diagonal_lambda = True
        return True

    @property
    def matrix(self) -> sp.csc_matrix:
        """A (lower triangle) for the last Λ and Z'WZ given, assembled now if they were only recorded."""
        if self._pending is not None:
            lam, zdata = self._pending
            self._assemble(lam, zdata)
        return self._matrix

    def reweight(self, ztz_data: np.ndarray) -> None:
        """New values of Z'WZ on the constructor's pattern, in the storage order of the CSC matrix it was given
        (a GLMM's weights change at every PIRLS iteration; the pattern, and so CHOLMOD's analysis, does not)."""
        if ztz_data.shape != self.zdata.shape:
            raise ValueError(f"Z'WZ has {ztz_data.shape[0]} values, the fixed pattern {self.zdata.shape[0]}")
        self.zdata = ztz_data

    def update(self, lam: np.ndarray) -> sp.csc_matrix:
        """Fill A for Λ's nonzeros ``lam`` (in the order of ``RandomEffects.lambda_pattern``)."""
        self._assemble(lam, self.zdata)
        return self._matrix

    def defer(self, lam: np.ndarray) -> None:
        """Record Λ's nonzeros ``lam`` (with the current Z'WZ) for :attr:`matrix` to assemble A from if it is read;
        neither array may be changed in place afterwards."""
        self._pending = (lam, self.zdata)

    def _assemble(self, lam: np.ndarray, zdata: np.ndarray) -> None:
        vals = lam[self.l1] * zdata[self.z] * lam[self.l2]
        data = vals if self.diagonal_lambda else np.bincount(self.target, vals, minlength=self._matrix.nnz)
        data[self.diag_pos] += 1.0
        self._matrix.data = data
        self._pending = None


def theta_scale(cp: CrossProducts, re: RandomEffects) -> np.ndarray:
    """Per θ element, the root mean square of the Z column of its row of T: a diagonal preconditioner.

    A random slope's θ is in σ per unit of its covariate, so its curvature grows with the
    covariate's square; in θ·scale all coordinates are on one footing, and L-BFGS-B needs about
    half the evaluations.
    """
    diag = cp.ZtZ.diagonal()
    out = []
    for i, t in enumerate(re.terms):
        rms = np.sqrt(diag[re.col_offsets[i] : re.col_offsets[i + 1]].reshape(t.n_levels, t.k).sum(axis=0) / cp.n)
        out.append(rms[[row for row, _ in t.tril]])
    scale = np.concatenate(out)
    return np.where(scale > 0, scale, 1.0)


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


def profiled_solution(
    theta, beta, u, b, pwrss, ldL2, ldRX2, RX, n: int, p: int, log_det_w: float, reml: bool
) -> PlsSolution:
    """The solution record with its profiled deviance ``log|A| − log|W| [+ log|RX'RX|] + dof(1 + log(2πr²/dof))``."""
    dof = n - p if reml else n
    deviance = ldL2 - log_det_w + dof * (1.0 + np.log(2.0 * np.pi * pwrss / dof))
    if reml:
        deviance += ldRX2
    return PlsSolution(
        theta=np.array(theta, dtype=float),
        beta=beta,
        u=u,
        b=b,
        pwrss=pwrss,
        ldL2=ldL2,
        ldRX2=ldRX2,
        RX=RX,
        deviance=float(deviance),
        sigma=float(np.sqrt(pwrss / dof)),
    )


def solve_on_factor(chol, lam_map: LambdaMap, cp: CrossProducts, theta: np.ndarray, reml: bool):
    """The PLS solution at θ given ``chol``, a factor of A at θ (the module docstring's formulas), and
    RZX = L⁻¹PΛ'Z'X (a gradient reuses it); (None, None) where RX'RX or r² is not positive."""
    p = cp.XtX.shape[0]
    lam = lam_map.values(theta)
    sol = chol.solve_L(lam_map.t_dot(lam, np.column_stack([cp.Zty, cp.ZtX])))
    cu, RZX = sol[:, 0], sol[:, 1:]
    fixed = fixed_effects(cp, RZX.T @ RZX, RZX.T @ cu, cu @ cu)
    if fixed is None:
        return None, None
    RX, beta, ldRX2, pwrss = fixed
    u = chol.solve_Lt(cu - RZX @ beta)
    solution = profiled_solution(
        theta, beta, u, lam_map.dot(lam, u), pwrss, chol.logdet(), ldRX2, RX, cp.n, p, cp.log_det_w, reml
    )
    return solution, RZX


def fixed_effects(cp: CrossProducts, K_XX: np.ndarray, K_Xy: np.ndarray, K_yy: float):
    """RX, β̂, log|RX'RX| and r² given the random effects' share of the cross-products, K = c'A⁻¹c for
    c = Λ'Z'[y X] (with A = LL', K = [cu RZX]'[cu RZX]):

        RX'RX = X'X − K_XX,   RX'cβ = X'y − K_Xy,   RXβ̂ = cβ,   r² = y'y − K_yy − ‖cβ‖².

    None where RX'RX or r² is not positive."""
    if cp.XtX.shape[0]:
        try:
            RX = np.linalg.cholesky(cp.XtX - K_XX).T
        except np.linalg.LinAlgError:
            return None
        cbeta = dtrtrs(RX, cp.Xty - K_Xy, lower=0, trans=1)[0]
        beta = dtrtrs(RX, cbeta, lower=0)[0]
        ldRX2 = 2.0 * np.log(np.diag(RX)).sum()
    else:
        RX, cbeta, beta, ldRX2 = np.zeros((0, 0)), np.zeros(0), np.zeros(0), 0.0
    pwrss = cp.yty - K_yy - cbeta @ cbeta
    return (RX, beta, ldRX2, pwrss) if pwrss > 0 else None


class PenalizedCholesky:
    """``A = Λ'Z'WZΛ + I`` on Z'Z's fixed pattern and its Cholesky factor, refactored for any θ and weights W.

    The factor's structure (the blocked split, or CHOLMOD's ordering and symbolic analysis) is
    settled once, at Λ = I; a GLMM's PIRLS refactors it for every weight vector it tries.  With
    scalar terms and the blocked factor, the factor is computed from Λ and Z'WZ's values directly
    (:meth:`~skmixed.cholesky.BlockedCholesky.refactor_scaled`) and A is assembled only if read.
    """

    def __init__(self, ZtZ, re: RandomEffects):
        self.gram = ScaledGram(ZtZ, re)
        self.lam = LambdaMap(re)
        first = re.terms[0]
        self.chol = make_cholesky(self.gram.update(self.lam.values(re.theta_init)), first.q if first.k == 1 else 0)
        self._scaled = self.gram.diagonal_lambda and isinstance(self.chol, BlockedCholesky)
        if self._scaled:
            self.chol.bind_scaled(self.gram.z, self.gram.l1, self.gram.l2)

    def refactor(self, lam: np.ndarray, ztwz_data: np.ndarray | None = None) -> bool:
        """Factor A for Λ's values ``lam`` (and new Z'WZ values, if given); False if it is not positive definite."""
        if ztwz_data is not None:
            self.gram.reweight(ztwz_data)
        try:
            if self._scaled:
                self.gram.defer(lam)
                self.chol.refactor_scaled(lam, self.gram.zdata)
            else:
                self.chol.refactor(self.gram.update(lam))
        except NotPositiveDefinite:
            return False
        return True

    def solve(self, cp: CrossProducts, theta: np.ndarray, reml: bool = False):
        """The PLS solution and RZX for the cross-products ``cp`` (whose Z'WZ has this pattern) at θ."""
        if not self.refactor(self.lam.values(theta), cp.ZtZ.data):
            return None, None
        return solve_on_factor(self.chol, self.lam, cp, theta, reml)
