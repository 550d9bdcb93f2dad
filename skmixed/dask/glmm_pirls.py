"""PIRLS on persisted Dask partitions: :class:`skmixed.pirls.Pirls` with each iteration one pass over the rows.

The in-memory PIRLS holds η and μ per row; here a point of the linear predictor is named by (β, b = Λu), the
workers recompute η from it, and one pass (:func:`skmixed.dask.glmm_rows.point_partition`) returns the sums
the iteration needs there: Σd_i (the penalized deviance Σd_i + ‖u‖²), the step's largest |Δη| and |η|, and the
working response's cross-products (Z'WZ on the fixed pattern, Z'WX, X'WX, Z'Wz, X'Wz, Z'W(y − μ)/μ').  The
loops below are :meth:`Pirls._pirls_joint` (nAGQ = 0: β and u together, the PLS solve of :mod:`skmixed.pls`)
and :meth:`Pirls._pirls_u` (fixed β) step for step, so the modes, their ``ldL2`` and the Laplace deviance
``ldL2 + Σd_i + ‖û‖² + (aic − Σd_i)`` equal the in-memory ones to rounding; the constant aic − Σd_i (free of μ
for the binomial, Poisson and negative binomial families) is summed once.  A :class:`~skmixed.pirls.Mode`'s
``eta`` and ``mu`` hold the point's :class:`~skmixed.dask.glmm_rows.PointPiece` instead of rows.

:func:`block_reduce` is :func:`skmixed.dask.passes.tree_reduce` over the persisted blocks.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..exceptions import OptionError
from ..families import Family
from ..pirls import MAX_HALVINGS, MAX_ITER, Mode, Pirls
from ..pls import CrossProducts, PenalizedCholesky
from ..reterms import RandomEffects
from .glmm_rows import PointPiece, point_merge, point_partition
from .passes import _cluster, _large, merge_up_a_tree, pass_lost


def futures_of(block) -> list:
    """The futures of a block persisted on a ``distributed`` cluster."""
    from distributed import futures_of as of

    return of(block)


def block_reduce(blocks, map_fn, merge_fn, *args, what: str = "of PIRLS"):
    """``merge_fn`` over ``map_fn(block, *args)`` of every persisted block, merged in block order.  On a
    ``distributed`` cluster each block's task runs where the block is kept and the client merges the pieces (a
    PIRLS pass's piece is about nnz(Z'Z) + q·p numbers, and a round trip costs what a task does, so there is no
    tree); with the local scheduler up a tree of merges."""
    from dask import delayed

    client, lost = _cluster()
    try:
        if client is not None:  # the blocks are futures on the workers: a task each, its piece gathered
            futures = [futures_of(b)[0] for b in blocks]
            mapped = client.map(map_fn, futures, *[[a] * len(futures) for a in args], pure=False)
            pieces = client.gather(mapped)
            return merge_fn(*pieces)
        shared = [delayed(a, pure=True) if _large(a) else a for a in args]
        nodes = [delayed(map_fn, pure=False)(b, *shared) for b in blocks]
        return merge_up_a_tree(nodes, merge_fn, pure=False)
    except lost as e:
        raise pass_lost(what, e) from e


class DaskPirls(Pirls):
    """:class:`~skmixed.pirls.Pirls` whose rows are persisted Dask blocks (``blocks``); ``gram``: Z'Z with the
    prior weights, on the pattern every Z'WZ takes; ``n``, ``p``: rows used and fixed effects."""

    @property
    def gradient_class(self):
        """The Laplace gradient on the blocks, which glmm_fitting takes instead of the in-memory one."""
        from .glmm_gradient import DaskLaplaceGradient

        return DaskLaplaceGradient

    def __init__(self, blocks, re: RandomEffects, family: Family, gram: sp.csc_matrix, n: int, p: int, constant):
        self.blocks, self.re = blocks, re
        self.n, self.p, self.q = n, p, re.q
        self._ztz = gram.copy()
        self.penalized = PenalizedCholesky(gram, re)  # analysed once
        self.lam_map = self.penalized.lam
        self._family, self._constant = family, constant
        self._joint_start: tuple[np.ndarray, np.ndarray] | None = None
        self._u_start: np.ndarray | None = None

    @property
    def family(self) -> Family:
        return self._family

    @family.setter
    def family(self, family: Family) -> None:
        raise OptionError("the family of a Dask PIRLS is fixed (a negative binomial θ is estimated in memory only)")

    def deviance_residuals(self, mu):
        raise OptionError("the deviance residuals of a Dask fit stay on the workers")

    def working_weights(self, mode: Mode) -> np.ndarray:
        """The IRLS weights at the mode as this PIRLS takes weights (:meth:`refactor`): Z'WZ on the pattern."""
        return mode.eta.ztwz

    def refactor(self, lam: np.ndarray, W) -> bool:
        """Factor Λ'Z'WZΛ + I, with ``W`` the summed Z'WZ values on the pattern (not per-row weights)."""
        return self.penalized.refactor(lam, W)

    # --- passes -----------------------------------------------------------------------------------
    def evaluate(self, point, previous=False) -> PointPiece:
        """One pass: the sums at ``point`` (None: PIRLS's start; else (β, b)), the step from ``previous``."""
        return block_reduce(self.blocks, point_partition, point_merge, self._family, point, previous, self._ztz.nnz)

    def _pdev_at(self, piece: PointPiece, u: np.ndarray) -> float:
        if not piece.valid:
            return np.inf
        val = float(piece.dev + u @ u)
        return val if np.isfinite(val) else np.inf

    @staticmethod
    def _step(du: np.ndarray, piece: PointPiece) -> float:
        return max(float(np.max(np.abs(du), initial=0.0)), piece.max_step / (1 + piece.max_eta))

    def _ldL2_at(self, lam: np.ndarray, eta: PointPiece, mu) -> float:
        return self.penalized.chol.logdet() if self.refactor(lam, eta.ztwz) else np.nan

    def _halve_at(self, pdev, x, target, point_of, here):
        """:meth:`Pirls._halve`, each trial point one pass: (point, its piece, pdev, whether the full step)."""
        step = target - x
        slack = 1e-13 * abs(pdev) if np.isfinite(pdev) else np.inf
        for halvings in range(MAX_HALVINGS + 1):
            cand = x + step
            piece = self.evaluate(point_of(cand), here)
            val = self._pdev_at(piece, cand[len(cand) - self.q :])
            if np.isfinite(val) and val <= pdev + slack:
                return cand, piece, val, halvings == 0
            step = step / 2
        return None

    # --- the two PIRLS loops ----------------------------------------------------------------------
    def _pirls_u(self, theta, beta, u) -> Mode:
        lam = self.lam_map.values(theta)

        def point_of(v):
            return (beta, self.lam_map.dot(lam, v))

        here = point_of(u)
        piece = self.evaluate(here)
        pdev = self._pdev_at(piece, u)
        ldL2, previous = np.nan, np.inf
        for it in range(1, MAX_ITER + 1):
            if not np.isfinite(pdev):
                return Mode(
                    theta, beta, u, piece, piece, np.nan, pdev, False, it, "the linear predictor gives invalid means"
                )
            newton = not self._family.is_canonical and self.refactor(lam, piece.ztwz_obs)
            if not newton and not self.refactor(lam, piece.ztwz):
                return Mode(
                    theta, beta, u, piece, piece, np.nan, pdev, False, it, "Λ'Z'WZΛ + I is not positive definite"
                )
            ldL2 = np.nan if newton else self.penalized.chol.logdet()
            target = u + self.penalized.chol.solve(self.lam_map.t_dot(lam, piece.ztr) - u)
            new = self._halve_at(pdev, u, target, point_of, here)
            if new is None:
                message = "step-halving failed to reduce the penalized deviance"
                return Mode(theta, beta, u, piece, piece, np.nan, pdev, False, it, message)
            u_new, piece, pdev, full = new
            step = self._step(u_new - u, piece)
            u, here = u_new, point_of(u_new)
            if self._converged(step, previous, full and (newton or self._family.is_canonical)):
                return Mode(
                    theta, beta, u, piece, piece, self._final_ldL2(ldL2, step, lam, piece, piece), pdev, True, it
                )
            previous = step
        ldL2 = self._ldL2_at(lam, piece, piece)
        return Mode(
            theta, beta, u, piece, piece, ldL2, pdev, False, MAX_ITER, f"no convergence in {MAX_ITER} iterations"
        )

    def _pirls_joint(self, theta, beta, u) -> Mode:
        lam, q = self.lam_map.values(theta), self.q

        def point_of(x):
            return (x[:-q], self.lam_map.dot(lam, x[-q:]))

        if beta is None:
            x, here, pdev = None, None, np.inf
            piece = self.evaluate(None)
        else:
            x = np.concatenate([beta, u])
            here = point_of(x)
            piece = self.evaluate(here)
            pdev = self._pdev_at(piece, u)
        previous = np.inf
        for it in range(1, MAX_ITER + 1):
            sol = self.penalized.solve(self._cross_products_at(piece), theta)[0]
            if sol is None:
                return self._joint_failure(theta, x, piece, piece, it, "the penalized least-squares system is singular")
            ldL2 = sol.ldL2
            target = np.concatenate([sol.beta, sol.u])
            new = self._halve_at(pdev, target if x is None else x, target, point_of, here)
            if new is None:
                message = "step-halving failed to reduce the penalized deviance"
                return self._joint_failure(theta, x, piece, piece, it, message)
            x_new, piece, pdev, full = new
            step = self._step(x_new[-q:] - (x[-q:] if x is not None else 0), piece)
            x, here = x_new, point_of(x_new)
            if self._converged(step, previous, full and self._family.is_canonical):
                ldL2 = self._final_ldL2(ldL2, step, lam, piece, piece)
                return Mode(theta, x[:-q], x[-q:], piece, piece, ldL2, pdev, True, it)
            previous = step
        ldL2 = self._ldL2_at(lam, piece, piece)
        message = f"no convergence in {MAX_ITER} iterations"
        return Mode(theta, x[:-q], x[-q:], piece, piece, ldL2, pdev, False, MAX_ITER, message)

    # --- at the optimum ---------------------------------------------------------------------------
    def _cross_products_at(self, piece: PointPiece) -> CrossProducts:
        self._ztz.data = piece.ztwz
        return CrossProducts(
            ZtZ=self._ztz, ZtX=piece.ZtX, Zty=piece.Zty, XtX=piece.XtX, Xty=piece.Xty, yty=piece.yty, n=self.n,
            log_det_w=0.0,
        )  # fmt: skip

    def working_cross_products(self, mode: Mode) -> CrossProducts:
        cp = self._cross_products_at(mode.eta)
        cp.ZtZ = self._ztz.copy()
        return cp
