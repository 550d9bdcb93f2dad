"""The gradient of the Laplace deviance on Dask blocks: :class:`skmixed.laplace_gradient.LaplaceGradient` with its
sums over rows in one pass per evaluation.

Notation of :mod:`skmixed.laplace_gradient`: ``∂D/∂β = X'e``, ``∂D/∂θ_m = e'ZE_mû + r'ZE_mv + 2 tr(H⁻¹Λ'Z'WZE_m)``
with ``e = −2r + a − W_obs⊙ZΛv`` and ``v`` from the adjoint solve ``H_obs v = Λ'Z'a``.  The rows are needed for
``h_i = (ZΛH⁻¹Λ'Z')_ii`` (so for ``a``), the traces, and the right-hand sides Λ'Z'[a, −W_obs ZE_mû, −W_obs X].
One pass (:func:`gradient_partition`, with the selected inverse of H sent to the workers) returns those, Z'r, and
Z'(−2r + a), X'(−2r + a); the last term of e needs no second pass, since
``Z'(W_obs⊙ZΛv) = (Z'W_obsZ)Λv`` and ``X'(W_obs⊙ZΛv) = (Z'W_obsX)'Λv``, and both matrices are in the PIRLS pass
at the mode.  The selected inverse is q·(q − q₁) numbers (at most ``MAX_INVERSE_ENTRIES``), sent once per
evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..laplace_gradient import LaplaceGradient
from .glmm_pirls import block_reduce
from .glmm_rows import Block, _eta
from .passes import _sum


@dataclass
class GradientPiece:
    traces: np.ndarray
    rhs: np.ndarray  # q × (1 + m + p): Λ'Z'[a, −W_obs ZE_mû, −W_obs X]
    ztr: np.ndarray
    ztg: np.ndarray  # Z'(−2r + a)
    xtg: np.ndarray  # X'(−2r + a)


def gradient_partition(block: Block, family, point, u, templates, term_cols, theta_row, theta_col, Hinv, q, q1):
    """The rows' part of the gradient at the mode ``point`` = (β̃, Λû) (``u`` = û), as LaplaceGradient.gradient."""
    with np.errstate(all="ignore"):
        eta = _eta(block, family, point)
        mu = family.linkinv(eta)
        y, wt, X, C, Zv = block.y, block.wt, block.X, block.cols, block.vals
        n, K = C.shape
        d, var = family.mu_eta(eta), family.variance(mu)
        W = wt * d**2 / var
        r = wt * (y - mu) * d / var
        ZL = np.empty_like(Zv)
        for T, cols in zip(templates, term_cols):
            ZL[:, cols] = Zv[:, cols] @ T
        pair_a, pair_b = np.repeat(np.arange(K), K), np.tile(np.arange(K), K)
        lo, hi = np.minimum(C[:, pair_a], C[:, pair_b]), np.maximum(C[:, pair_a], C[:, pair_b])
        gather = np.where(hi >= q1, lo * (q - q1) + (hi - q1), q * (q - q1) + hi)
        Q = np.einsum("rij,rj->ri", Hinv[gather].reshape(n, K, K), ZL)
        h = np.einsum("rj,rj->r", ZL, Q)
        traces = np.einsum("r,rm,rm->m", W, Zv[:, theta_row], Q[:, theta_col])
        a = family.weights_deriv(mu, eta, wt) * h
        W_obs = W if family.is_canonical else family.observed_weights(y, mu, eta, wt)
        ZE_u = Zv[:, theta_row] * u[C[:, theta_col]]
        lzt = sp.csr_matrix((ZL.ravel(), (C.ravel(), np.repeat(np.arange(n), K))), shape=(q, n))
        rhs = lzt @ np.column_stack([a, -W_obs[:, None] * ZE_u, -W_obs[:, None] * X])
        g = -2 * r + a
        return GradientPiece(traces, np.asarray(rhs), block.Zt @ r, block.Zt @ g, X.T @ g)


def gradient_merge(*pieces: GradientPiece) -> GradientPiece:
    return GradientPiece(*(_sum([getattr(p, f) for p in pieces]) for f in ("traces", "rhs", "ztr", "ztg", "xtg")))


class DaskLaplaceGradient(LaplaceGradient):
    """``(θ, β) ↦ (D, ∇D)`` for a :class:`~skmixed.dask.glmm_pirls.DaskPirls` (nAGQ = 1)."""

    def _index_rows(self) -> None:
        """Nothing: the per-row indices are made on the workers, in each pass."""

    def gradient(self, mode):
        """∇D and dû/d(θ, β) at a converged mode (see the module docstring)."""
        pl, fam, re = self.pirls, self.pirls.family, self.pirls.re
        failed = np.full(len(mode.theta) + pl.p, np.nan), None
        piece, u = mode.eta, mode.u
        lam = pl.lam_map.values(mode.theta)
        if pl.penalized.chol.logdet() != mode.ldL2 and not pl.refactor(lam, piece.ztwz):
            return failed
        Hinv = self._selected_inverse()
        obs, obs_X = (piece.ztwz, piece.ZtX) if fam.is_canonical else (piece.ztwz_obs, piece.ZtX_obs)
        if not fam.is_canonical and not pl.refactor(lam, obs):
            return failed
        templates = [t.T(re.term_theta(mode.theta, i)) for i, t in enumerate(re.terms)]
        g = block_reduce(
            pl.blocks, gradient_partition, gradient_merge, fam, (mode.beta, pl.lam_map.dot(lam, u)), u, templates,
            self._term_cols, self._theta_row, self._theta_col, Hinv, pl.q, self.q1, what="of the Laplace gradient",
        )  # fmt: skip
        rhs = g.rhs
        for m, (i, j) in enumerate(self._theta_effects):
            rhs[j, 1 + m] += g.ztr[i]  # E_m'Z'r
        solved = pl.penalized.chol.solve(rhs)
        v, du_dx = solved[:, 0], solved[:, 1:]
        Lv = pl.lam_map.dot(lam, v)
        ZtWZ = pl._ztz.copy()
        ZtWZ.data = obs
        Zte = g.ztg - ZtWZ @ Lv
        g_theta = np.array([Zte[i] @ u[j] + g.ztr[i] @ v[j] for i, j in self._theta_effects]) + 2 * g.traces
        return np.concatenate([g_theta, g.xtg - obs_X.T @ Lv]), du_dx
