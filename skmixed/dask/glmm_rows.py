"""The workers' side of ``glmer`` on a Dask DataFrame: each partition coded once, kept, and summed at a point.

A partition's rows are coded once into a :class:`Block` (y, prior weights, trials, offset, X, and Z as
the columns and values of each row's nonzeros) that stays on its worker (persisted).  After that the fit
only asks for sums over the rows at a point of the linear predictor ``η = X̃β + Zb + offset``
(:func:`point_partition`): Σ d_i(μ) for the penalized deviance, whether μ is valid, the largest
|η − η_previous| and |η| (PIRLS's step), the Pearson sum Σ w(y − μ)²/V(μ), and the cross-products of the
working response ``z = η − offset + (y − μ)/μ'`` with the IRLS weights ``W = w μ'²/V(μ)``: Z'WZ on the fixed
pattern of Z'Z (as :class:`skmixed.pirls.Pirls` enumerates it: one ``bincount``), Z'WX, X'WX, Z'Wz, X'Wz,
z'Wz, and Z'W(y − μ)/μ' (and, for a non-canonical link, Z'W_obsZ with the observed information's weights).
One pass gives what a PIRLS iteration needs at its new point, so each iteration (and each halving of a
step) is one map over the partitions and a merge of pieces of size about nnz(Z'Z) + q·p.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp

from ..families import Binomial, Family
from ..response import binomial_response
from .passes import _r_factor, _sum


@dataclass
class Block:
    """A partition's rows used, coded: ``X`` all fixed columns (after :func:`finish_block`: X̃ of the kept
    ones), Z's nonzeros per row (``cols``, ``vals``) and the Z'Z entry each pair of them adds to (``keys``:
    column·q + row, before :func:`finish_block`; ``target``: the position in the fit's pattern, after it)."""

    y: np.ndarray
    wt: np.ndarray
    trials: np.ndarray
    offset: np.ndarray
    X: np.ndarray
    Zt: sp.csr_matrix
    cols: np.ndarray
    vals: np.ndarray
    pair_prod: np.ndarray
    keys: np.ndarray | None
    target: np.ndarray | None = None


def load_block(part, coding, family: Family) -> Block:
    """The rows used of ``part`` coded by ``coding``; a binomial response in R's forms (cbind: y the proportion,
    the trials multiplying the weights, as :func:`skmixed.frame.model_frame` does)."""
    used, weights, offset = coding.used(part)
    if isinstance(family, Binomial):
        y, trials = binomial_response(coding.parsed.response, used)
    else:
        y, trials = coding.response(used), None
    wt = weights if trials is None else weights * trials
    X = coding.fixed(used)
    re = coding.random_effects(used)
    cols, vals = [], []
    for i, t in enumerate(re.terms):
        cols.append(t.factor.codes[:, None] * t.k + np.arange(t.k) + re.col_offsets[i])
        vals.append(t.values)
    C, V = np.hstack(cols), np.hstack(vals)
    K, q = C.shape[1], coding.q
    a, b = np.repeat(np.arange(K), K), np.tile(np.arange(K), K)
    keys = (C[:, b] * q + C[:, a]).ravel()  # as Pirls._build_gram_map: column d = C[:, b], row c = C[:, a]
    Zt = re.Z.T.tocsr() if len(y) else sp.csr_matrix((q, 0))
    ones = np.ones(len(y)) if trials is None else trials
    return Block(y, wt, ones, offset, X, Zt, C, V, V[:, a] * V[:, b], keys)


@dataclass
class LoadPiece:
    """What the client needs of the coded rows: the R factors of X and of √w·X (TSQR), the pattern of Z'Z, the
    response's range and the family's checks (``bad``: rows outside its support, ``example``: the first one)."""

    R_raw: np.ndarray
    R_w: np.ndarray
    keys: np.ndarray
    n: int
    y_min: float
    y_max: float
    bad: int
    example: float
    warned: list[str]
    constant: float | None


def load_piece(block: Block, family: Family) -> LoadPiece:
    y, wt = block.y, block.wt
    bad = (y < 0) | (y > 1) if isinstance(family, Binomial) else y < 0  # binomial; counts (Poisson, negative binomial)
    warned: list[str] = []
    constant = None
    if not bad.any() and len(y):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            family.check_response(y, wt)
            constant = family.aic_minus_deviance(y, block.trials, wt)
        warned = [str(w.message) for w in caught]
    return LoadPiece(
        _r_factor(block.X),
        _r_factor(block.X * np.sqrt(wt)[:, None]),
        np.unique(block.keys),
        len(y),
        float(y.min()) if len(y) else np.inf,
        float(y.max()) if len(y) else -np.inf,
        int(bad.sum()),
        float(y[bad][0]) if bad.any() else np.nan,
        warned,
        constant if len(y) else 0.0,
    )


def load_merge(*pieces: LoadPiece) -> LoadPiece:
    examples = [p.example for p in pieces if p.bad]
    constants = [p.constant for p in pieces]
    return LoadPiece(
        _r_factor(np.vstack([p.R_raw for p in pieces])),
        _r_factor(np.vstack([p.R_w for p in pieces])),
        np.unique(np.concatenate([p.keys for p in pieces])),
        sum(p.n for p in pieces),
        min(p.y_min for p in pieces),
        max(p.y_max for p in pieces),
        sum(p.bad for p in pieces),
        examples[0] if examples else np.nan,
        list(dict.fromkeys(m for p in pieces for m in p.warned)),
        None if any(c is None for c in constants) else float(sum(constants)),
    )


def finish_block(block: Block, keys: np.ndarray, S: np.ndarray, kept: list[int]) -> Block:
    """The block of the standardized problem: X̃ = X S⁻¹ (kept columns), each pair's place in the pattern."""
    X = block.X[:, kept]
    X = la.solve_triangular(S, X.T, trans="T").T if len(kept) else X
    target = np.searchsorted(keys, block.keys)
    return Block(block.y, block.wt, block.trials, block.offset, X, block.Zt, block.cols, block.vals,
                 block.pair_prod, None, target)  # fmt: skip


def _ztwz(block: Block, W: np.ndarray, nnz: int) -> np.ndarray:
    return np.bincount(block.target, (block.pair_prod * W[:, None]).ravel(), minlength=nnz)


def gram_partition(block: Block, nnz: int) -> np.ndarray:
    """Z'Z with the prior weights, on the pattern (the values the Cholesky factor is first analysed with)."""
    return _ztwz(block, block.wt, nnz)


def gram_merge(*pieces: np.ndarray) -> np.ndarray:
    return _sum(list(pieces))


# --- a point of the linear predictor --------------------------------------------------------------------
def _eta(block: Block, family: Family, point) -> np.ndarray:
    """η at ``point``: None is PIRLS's start g(μ_start); else (β, b), η = X̃β + Zb + offset."""
    if point is None:
        return family.linkfun(family.mustart(block.y, block.wt))
    beta, b = point
    C, V = block.cols, block.vals
    random = V[:, 0] * b[C[:, 0]] if C.shape[1] == 1 else np.einsum("rk,rk->r", V, b[C])
    return block.X @ beta + block.offset + random


@dataclass
class PointPiece:
    """Sums over rows at a point (see the module docstring); ``ZtX``… are the working response's cross-products."""

    dev: float
    valid: bool
    max_step: float
    max_eta: float
    pearson: float
    ztwz: np.ndarray
    ztwz_obs: np.ndarray | None
    ZtX_obs: np.ndarray | None
    ztr: np.ndarray
    ZtX: np.ndarray
    Zty: np.ndarray
    XtX: np.ndarray
    Xty: np.ndarray
    yty: float


def point_partition(block: Block, family: Family, point, previous, nnz: int) -> PointPiece:
    """The sums of :class:`PointPiece` over the block's rows at ``point`` (``previous``: the point the step left)."""
    with np.errstate(all="ignore"):  # a trial point far out overflows exp(): its deviance is inf, as in memory
        eta = _eta(block, family, point)
        step = np.abs(eta - _eta(block, family, previous)) if previous is not False else np.zeros(0)
        mu = family.linkinv(eta)
        y, wt, X = block.y, block.wt, block.X
        d = family.mu_eta(eta)
        var = family.variance(mu)
        W, resid = wt * d**2 / var, (y - mu) / d
        z = eta - block.offset + resid
        WX, Wz = X * W[:, None], W * z
        W_obs = None if family.is_canonical else family.observed_weights(y, mu, eta, wt)
        return PointPiece(
            dev=float(np.sum(family.deviance(y, wt)(mu))),
            valid=family.valid_mu(mu),
            max_step=float(np.max(step, initial=0.0)),
            max_eta=float(np.max(np.abs(eta), initial=0.0)),
            pearson=float(np.sum(wt * (y - mu) ** 2 / var)),
            ztwz=_ztwz(block, W, nnz),
            ztwz_obs=None if W_obs is None else _ztwz(block, W_obs, nnz),
            ZtX_obs=None if W_obs is None else np.asarray(block.Zt @ (X * W_obs[:, None])),
            ztr=block.Zt @ (W * resid),
            ZtX=np.asarray(block.Zt @ WX),
            Zty=block.Zt @ Wz,
            XtX=X.T @ WX,
            Xty=X.T @ Wz,
            yty=float(z @ Wz),
        )


def point_merge(*pieces: PointPiece) -> PointPiece:
    obs, obs_X = [p.ztwz_obs for p in pieces], [p.ZtX_obs for p in pieces]
    return PointPiece(
        dev=float(sum(p.dev for p in pieces)),
        valid=all(p.valid for p in pieces),
        max_step=max(p.max_step for p in pieces),
        max_eta=max(p.max_eta for p in pieces),
        pearson=float(sum(p.pearson for p in pieces)),
        ztwz=_sum([p.ztwz for p in pieces]),
        ztwz_obs=None if obs[0] is None else _sum(obs),
        ZtX_obs=None if obs_X[0] is None else _sum(obs_X),
        ztr=_sum([p.ztr for p in pieces]),
        ZtX=_sum([p.ZtX for p in pieces]),
        Zty=_sum([p.Zty for p in pieces]),
        XtX=_sum([p.XtX for p in pieces]),
        Xty=_sum([p.Xty for p in pieces]),
        yty=float(sum(p.yty for p in pieces)),
    )
