"""The profiled deviance of one LMM design for many responses at once, each at its own θ.

For responses y₁ … y_m sharing X, Z and the weights, every cross-product but Z'yⱼ, X'yⱼ, yⱼ'yⱼ is
common.  With Ω the cross-products of [Z X y] and Λ̃ = diag(Λ, I_p, 1), Bates' method factors
``M = Λ̃'ΩΛ̃ + diag(I_q, 0, 0)`` (:mod:`skmixed.dense_pls`); here M is reduced before it is factored.

The first term (the one with the most levels) owns the leading q₁ columns of Z, and its block of
Z'Z is block diagonal, one k × k block G_l per level l (a row belongs to one level).  Eliminating
it leaves, on the other rows R (the other terms' columns, X and y),

    M₁₁ = diag_l(T'G_l T + I),   S = Λ̃_R'(Ω_RR − Σ_l Ω_R,l B_l Ω_l,R)Λ̃_R + diag(I, 0, 0),
    B_l = T (T'G_l T + I)⁻¹ T',

so that ``log|A| = Σ_l log|T'G_l T + I| + log|S_AA|`` and the Cholesky factor of S (order
r = q − q₁ + p + 1) holds RX and cβ in its X rows and the penalized RSS r² in its last pivot,
exactly as the full factor would.  B_l depends on the level only through G_l: levels with equal
blocks (equal counts in a balanced design) share it, so ``Σ_l Ω_R,l B_l Ω_l,R`` on the shared rows
is one product of the m responses' distinct B's with a matrix formed once.  Only the y row
involves each level's Z'yⱼ.  Per response and evaluation the work is O(q₁k² + r³) flops in a few
vectorised numpy calls, against a sparse or dense factorization of order q per response.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .model import LinearMixedModel

#: the reduced factor's order up to which responses are evaluated together: at r = 82 the batched fit of a
#: response took 2.5 ms against lmer's 35 ms, at r = 202 20 ms against 53 ms (benchmarks/HISTORY.md); the r³
#: work per evaluation grows past what the per-response sparse factors spend beyond a few hundred
MAX_BATCHED_ORDER = 256
#: the most values the design's product matrix F may hold (128 MB)
MAX_F_SIZE = 2**24


def batchable(model: LinearMixedModel) -> bool:
    """Whether the responses of this design are evaluated together: the reduced factor (the terms after the first,
    X and y) small enough, and F (distinct blocks of the first term × its k² × the other rows²) too."""
    re, p = model.re, model.X.shape[1]
    first = re.terms[0]
    order = re.q - first.q + p + 1
    if order > MAX_BATCHED_ORDER:
        return False
    return first.n_levels * first.k**2 * (order - 1) ** 2 <= MAX_F_SIZE  # every level distinct at worst


def block_size(model: LinearMixedModel) -> int:
    """Responses per batched call: their reduced matrices (r² values each) within 8 MB, at most 1,024."""
    order = model.re.q - model.re.terms[0].q + model.X.shape[1] + 1
    return int(np.clip(2**20 // order**2, 16, 1024))


def batched_cholesky(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower Cholesky factors of the m symmetric matrices ``S`` (m × r × r) and which of them are positive
    definite (the others' factors hold placeholders): column by column, each step vectorised over the m."""
    m, r, _ = S.shape
    L = np.zeros_like(S)
    ok = np.ones(m, dtype=bool)
    for j in range(r):
        row = L[:, j, :j]
        pivot = S[:, j, j] - np.einsum("ik,ik->i", row, row)
        good = pivot > 0
        ok &= good
        diag = np.sqrt(np.where(good, pivot, 1.0))
        L[:, j, j] = diag
        if j + 1 < r:
            below = S[:, j + 1 :, j] - np.einsum("imk,ik->im", L[:, j + 1 :, :j], row)
            L[:, j + 1 :, j] = below / diag[:, None]
    return L, ok


class BatchedDesign:
    """The parts of the reduced problem that the design alone determines (see the module docstring).

    ``model`` is the standardized model :func:`skmixed.build` made for the design (its response is ignored).
    """

    def __init__(self, model: LinearMixedModel):
        re, cp = model.re, model.cp
        first = re.terms[0]
        self.k, self.levels, self.q1 = first.k, first.n_levels, first.q
        self.n_theta1 = first.n_theta
        self.tril1 = first.tril
        self.q, self.p = re.q, cp.XtX.shape[0]
        self.n, self.log_det_w = cp.n, cp.log_det_w
        self.REML = model.REML
        self.dof = self.n - self.p if self.REML else self.n
        q1, k = self.q1, self.k
        ZtZ = cp.ZtZ.tocsr()
        rest = ZtZ[q1:, q1:].toarray()
        self.q_rest = self.q - q1
        r0 = self.q_rest + self.p
        self.order = r0 + 1
        self.omega_rr = np.block([[rest, cp.ZtX[q1:]], [cp.ZtX[q1:].T, cp.XtX]]).reshape(r0, r0)
        self.omega_1r = np.hstack([ZtZ[:q1, q1:].toarray(), cp.ZtX[:q1]])  # q1 × r0
        blocks = _diagonal_blocks(ZtZ, q1, k)  # levels × k × k
        distinct, self.group_of_level, counts = np.unique(
            blocks.reshape(self.levels, k * k), axis=0, return_inverse=True, return_counts=True
        )
        self.group_of_level = self.group_of_level.ravel()
        self.G = distinct.reshape(-1, k, k)
        self.group_counts = counts.astype(float)
        # F[(g, a, b), (i, j)] = Σ_{l in g} Ω[i, l·k + a] Ω[l·k + b, j]: the shared rows' Σ_l Ω_R,l B_l Ω_l,R = vec(B)·F
        per_level = self.omega_1r.reshape(self.levels, k, r0)
        F = np.zeros((len(self.G), k, k, r0, r0))
        np.add.at(F, self.group_of_level, np.einsum("lai,lbj->labij", per_level, per_level))
        self.F = F.reshape(len(self.G) * k * k, r0 * r0)
        self._rest_lambda(re, q1)

    def _rest_lambda(self, re, q1: int) -> None:
        """Λ̃_R's structural nonzeros (rows ≥ q₁ of Λ, shifted), and whether it is diagonal (scalar terms only)."""
        rows, cols, index = re.lambda_pattern
        rest = rows >= q1
        self.rest_rows, self.rest_cols, self.rest_index = rows[rest] - q1, cols[rest] - q1, index[rest]
        self.rest_diagonal = bool(np.all(self.rest_rows == self.rest_cols))

    def first_template(self, theta: np.ndarray) -> np.ndarray:
        """T of the first term for each row of θ (m × k × k)."""
        T = np.zeros((len(theta), self.k, self.k))
        for t, (i, j) in enumerate(self.tril1):
            T[:, i, j] = theta[:, t]
        return T


def _diagonal_blocks(ZtZ: sp.csr_matrix, q1: int, k: int) -> np.ndarray:
    """The ℓ diagonal k × k blocks of Z'Z's leading q₁ × q₁ block (levels × k × k)."""
    lead = ZtZ[:q1, :q1].tocoo()
    blocks = np.zeros((q1 // k, k, k))
    np.add.at(blocks, (lead.row // k, lead.row % k, lead.col % k), lead.data)
    return blocks


def _inverse_and_logdet(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverses and log-determinants of positive definite k × k matrices (the last two axes of A); closed forms
    for k = 2, where LAPACK's call per matrix costs more than the arithmetic."""
    if A.shape[-1] != 2:
        return np.linalg.inv(A), np.linalg.slogdet(A)[1]
    a, b, c, e = A[..., 0, 0], A[..., 0, 1], A[..., 1, 0], A[..., 1, 1]
    det = a * e - b * c
    inverse = np.stack([np.stack([e, -b], axis=-1), np.stack([-c, a], axis=-1)], axis=-2) / det[..., None, None]
    return inverse, np.log(det)


class BatchedResponses:
    """Responses' cross-products with the design: Z'Wy (q × m), X'Wy (p × m), y'Wy (m), of the standardized ỹ."""

    def __init__(self, design: BatchedDesign, Zty: np.ndarray, Xty: np.ndarray, yty: np.ndarray):
        self.design = design
        self.zy1 = Zty[: design.q1].T  # m × q1
        self.zyr = np.hstack([Zty[design.q1 :].T, Xty.T])  # m × r0
        self.yty = yty

    def __len__(self) -> int:
        return len(self.yty)

    def _reduce(self, theta: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For responses ``which`` at their first term's θ (the leading columns of ``theta``): the matrix
        Ω_RR − Σ_l Ω_R,l B_l Ω_l,R (m × r × r) and Σ_l log|T'G_l T + I|."""
        d = self.design
        m, k, r = len(which), d.k, d.order
        if m == len(self.yty):  # every response: no copies
            which = slice(None)
        if k == 1:  # closed forms: B = λ²/(λ²G + 1)
            lam2 = theta[:, :1] ** 2
            inner = lam2 * d.G[:, 0, 0] + 1.0
            B, ld1 = lam2 / inner, np.log(inner) @ d.group_counts
            v = B[:, d.group_of_level] * self.zy1[which]  # blockdiag(B) Z₁'y
        else:
            T = d.first_template(theta[:, : d.n_theta1])[:, None]  # m × 1 × k × k: broadcast over the blocks
            Tt = np.swapaxes(T, 2, 3)
            inner = Tt @ (d.G @ T) + np.eye(k)  # T'G T + I per distinct block (batched matmul: small k)
            inverse, logdet = _inverse_and_logdet(inner)
            B = T @ inverse @ Tt  # T (T'GT + I)⁻¹ T'
            ld1 = logdet @ d.group_counts
            zy1 = self.zy1[which].reshape(m, d.levels, k, 1)
            v = (B[:, d.group_of_level] @ zy1).reshape(m, d.q1)
        r0 = r - 1
        S = np.empty((m, r, r))
        S[:, :r0, :r0] = d.omega_rr - (B.reshape(m, len(d.F)) @ d.F).reshape(m, r0, r0)
        S[:, r0, :r0] = S[:, :r0, r0] = self.zyr[which] - v @ d.omega_1r
        S[:, r0, r0] = self.yty[which] - np.einsum("mi,mi->m", v, self.zy1[which])
        return S, ld1

    def _factor(self, reduced: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The Cholesky factor of S = Λ̃_R'(reduced)Λ̃_R + diag(I, 0, 0) at each row of θ, and whether it exists."""
        d = self.design
        S = self._scale_rest(reduced, theta)
        np.einsum("mii->mi", S)[:, : d.q_rest] += 1.0  # a view of the diagonals
        try:
            return np.linalg.cholesky(S), np.ones(len(S), dtype=bool)
        except np.linalg.LinAlgError:  # some response's factor does not exist: find which, column by column
            return batched_cholesky(S)

    def _deviance(self, L: np.ndarray, ok: np.ndarray, ld1: np.ndarray) -> np.ndarray:
        d = self.design
        diag = np.log(np.diagonal(L, axis1=1, axis2=2))
        ld_rest = 2.0 * diag[:, : d.q_rest].sum(axis=1)
        pwrss = L[:, -1, -1] ** 2
        dev = ld1 + ld_rest - d.log_det_w + d.dof * (1.0 + np.log(2.0 * np.pi * pwrss / d.dof))
        if d.REML:
            dev += 2.0 * diag[:, d.q_rest : d.q_rest + d.p].sum(axis=1)
        return np.where(ok, dev, np.inf)

    def deviance(self, theta: np.ndarray, which: np.ndarray) -> np.ndarray:
        """The standardized problem's profiled deviance of responses ``which`` at their θ (inf where undefined)."""
        reduced, ld1 = self._reduce(theta, which)
        return self._deviance(*self._factor(reduced, theta), ld1)

    def deviance_points(self, points: np.ndarray, which: np.ndarray) -> np.ndarray:
        """The deviance of responses ``which`` at each of their points θ (m × P × k gives m × P).  Points with the
        same first term's θ for every response share its reduction, the larger part of the work."""
        n1 = self.design.n_theta1
        out = np.empty(points.shape[:2])
        pending = list(range(points.shape[1]))
        while pending:
            first = points[:, pending[0], :n1]
            sharing = [p for p in pending if np.array_equal(points[:, p, :n1], first)]
            reduced, ld1 = self._reduce(points[:, pending[0]], which)
            for p in sharing:
                out[:, p] = self._deviance(*self._factor(reduced, points[:, p]), ld1)
            pending = [p for p in pending if p not in sharing]
        return out

    def _scale_rest(self, S: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Λ̃_R' S Λ̃_R for each response's θ."""
        d = self.design
        if not d.q_rest:
            return S.copy()
        if d.rest_diagonal:
            scale = np.ones((len(S), d.order))
            scale[:, d.rest_rows] = theta[:, d.rest_index]
            return np.einsum("mi,mij,mj->mij", scale, S, scale)  # a new array: ``S`` is reused
        lam = np.zeros_like(S)
        lam[:, np.arange(d.q_rest, d.order), np.arange(d.q_rest, d.order)] = 1.0
        lam[:, d.rest_rows, d.rest_cols] = theta[:, d.rest_index]
        return np.swapaxes(lam, 1, 2) @ S @ lam

    def estimates(self, theta: np.ndarray, which: np.ndarray, chunk: int):
        """At each response's θ, in blocks of ``chunk`` responses: β̃ (m × p), RX̃ (m × p × p, upper triangular),
        r² and the deviance of the standardized problem."""
        d, m = self.design, len(which)
        beta, RX, pwrss, deviance = np.zeros((m, d.p)), np.zeros((m, d.p, d.p)), np.zeros(m), np.zeros(m)
        xs = slice(d.q_rest, d.q_rest + d.p)
        for start in range(0, m, chunk):
            rows = slice(start, min(m, start + chunk))
            reduced, ld1 = self._reduce(theta[rows], which[rows])
            L, ok = self._factor(reduced, theta[rows])
            if not ok.all():
                raise FloatingPointError("the factor at the optimum is not positive definite")
            RX[rows] = np.swapaxes(L[:, xs, xs], 1, 2)
            if d.p:
                beta[rows] = np.linalg.solve(RX[rows], L[:, -1, xs][:, :, None])[:, :, 0]
            pwrss[rows], deviance[rows] = L[:, -1, -1] ** 2, self._deviance(L, ok, ld1)
        return beta, RX, pwrss, deviance
