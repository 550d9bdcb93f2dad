"""The passes over a Dask DataFrame: a function of each partition, reduced up a tree of small merges.

:func:`tree_reduce` maps a function over the partitions, fused with the task that reads each, and merges
the results ``SPLIT_EVERY`` at a time.  The sum is the client's to hold (Z'WZ of crossed factors has an entry
per pair of levels observed, up to one per row), so the last merges are the client's: on a cluster it merges the
pieces as they arrive, so that a worker never holds more than the pieces of the tasks it runs.  The coding goes into the
graph once, as one key, so a cluster ships it to each worker once, not with every task.  The functions are
pure: when a worker is lost, Dask reruns its tasks elsewhere and the sums are the same.

The pieces:

* :func:`qr_partition` / :func:`qr_merge`: TSQR, the R factor of a QR of a tall matrix from the R factors
  of its blocks (``[A₁; A₂] = [Q₁R₁; Q₂R₂]`` has the R of ``[R₁; R₂]``), for the unweighted fixed-effects
  matrix (the aliased columns, as :func:`skmixed.rank.drop_aliased` finds them on X) and for
  ``√w̃[X_c, y_c]`` (the change of variables of :mod:`skmixed.standardize`);
* :func:`cross_partition` / :func:`cross_merge`: the standardized problem's cross-products
  (:func:`skmixed.pls.cross_products` of each partition, summed);
* :func:`residual_partition`: Σ w̃ r̃² at a solution, the penalized RSS as lme4 computes it at the optimum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp

from ..exceptions import DataError
from ..pls import CrossProducts, cross_products

#: how many results one merge takes
SPLIT_EVERY = 8


def tree_reduce(ddf, map_fn, merge_fn, *args, what: str):
    """``merge_fn`` over ``map_fn(partition, *args)`` of every partition; ``what`` names the pass in an error
    (a worker lost for good).  On a ``distributed`` cluster the client merges the pieces as they arrive
    (:func:`_stream`), with the local scheduler up a tree of merges whose last one is the client's."""
    from dask import delayed

    shared = [delayed(a, pure=True) if _large(a) else a for a in args]
    # one task per partition that reads it and maps it (fused): no worker keeps a partition once mapped
    mapped = ddf.map_partitions(map_fn, *shared, meta=("piece", object), enforce_metadata=False, align_dataframes=False)
    nodes = mapped.to_delayed()
    client, lost = _cluster()
    try:
        if client is not None:
            return _stream(client, nodes, merge_fn)
        return merge_up_a_tree(nodes, merge_fn, pure=True)
    except lost as e:
        raise pass_lost(what, e) from e


def merge_up_a_tree(nodes, merge_fn, pure: bool):
    """``merge_fn`` over delayed ``nodes`` with the local scheduler: merges of ``SPLIT_EVERY`` at a time up a tree,
    the last one on the client."""
    import dask
    from dask import delayed

    merge = delayed(merge_fn, pure=pure)
    while len(nodes) > SPLIT_EVERY:
        nodes = [merge(*nodes[i : i + SPLIT_EVERY]) for i in range(0, len(nodes), SPLIT_EVERY)]
    return merge_fn(*dask.compute(*nodes))


def pass_lost(what: str, error: Exception) -> RuntimeError:
    """The error of a pass whose tasks kept losing their workers."""
    return RuntimeError(
        f"the Dask pass {what} failed: {error}. Dask retried its tasks on other workers and lost those too; no fit "
        "was made. Give the workers more memory or the partitions fewer rows (ddf.repartition)"
    )


def _cluster() -> tuple[object, tuple]:
    """The default ``distributed`` client (None without one) and the error of a task that lost its workers."""
    try:
        from distributed import KilledWorker, default_client
    except ImportError:
        return None, ()
    try:
        return default_client(), (KilledWorker,)
    except ValueError:  # no client: the local scheduler
        return None, (KilledWorker,)


def _stream(client, nodes, merge_fn):
    """The pieces merged on the client, ``SPLIT_EVERY`` at a time in partition order (so the sums do not depend
    on which worker finished first), each released on the workers as soon as the client has it: a worker holds
    one piece per task it runs, whatever the number of partitions."""
    from distributed import as_completed

    futures = client.compute(nodes)
    index = {f.key: i for i, f in enumerate(futures)}
    arrived: dict[int, object] = {}
    total, start = None, 0
    for future, piece in as_completed(futures, with_results=True):
        arrived[index[future.key]] = piece
        future.release()
        while all(i in arrived for i in range(start, min(start + SPLIT_EVERY, len(futures)))) and start < len(futures):
            block = [arrived.pop(i) for i in range(start, min(start + SPLIT_EVERY, len(futures)))]
            total = merge_fn(*block) if total is None else merge_fn(total, *block)
            start += len(block)
    return total


def _large(value) -> bool:
    return not isinstance(value, (int, float, str, type(None), np.ndarray)) or (
        isinstance(value, np.ndarray) and value.size > 64
    )


# --- TSQR ------------------------------------------------------------------------------------------
@dataclass
class QrPiece:
    """R factors of the unweighted X (every column) and of √w̃[X_c, y_c]; max |y − offset|·√w̃ (the scale the
    in-memory fit judges an exact fit against)."""

    R_raw: np.ndarray
    R_w: np.ndarray
    magnitude: float


def _r_factor(A: np.ndarray) -> np.ndarray:
    if A.shape[0] == 0:
        return np.zeros((0, A.shape[1]))
    return la.qr(A, mode="r", check_finite=False)[0][: min(A.shape), :]


def qr_partition(part, coding, c: float) -> QrPiece:
    used, weights, offset = coding.used(part)
    X = coding.fixed(used)
    y = coding.response(used) - offset
    X_c = X - coding.shift
    y_c = y - coding.y_shift
    sw = np.sqrt(weights / c)
    magnitude = float(np.max(np.abs(y * sw))) if len(y) else 0.0
    return QrPiece(_r_factor(X), _r_factor(np.column_stack([X_c, y_c]) * sw[:, None]), magnitude)


def qr_merge(*pieces: QrPiece) -> QrPiece:
    return QrPiece(
        _r_factor(np.vstack([p.R_raw for p in pieces])),
        _r_factor(np.vstack([p.R_w for p in pieces])),
        max(p.magnitude for p in pieces),
    )


# --- cross-products ----------------------------------------------------------------------------------
def cross_partition(part, coding) -> CrossProducts:
    Z, X, y, w = coding.standardized(part)
    return cross_products(Z, X, y, w)


def _sum(arrays):
    out = np.array(arrays[0], copy=True)
    for a in arrays[1:]:
        out += a
    return out


def _sparse_sum(matrices) -> sp.csc_matrix:
    """The sum of sparse matrices in one conversion of their stacked triplets (duplicates summed, in order); a
    first matrix larger than the rest together (the client's running total) is added to their sum by a linear
    merge instead, so that its entries are neither copied to triplets nor sorted again at every merge."""
    if len(matrices) == 1:
        return matrices[0].tocsc()
    first, rest = matrices[0], matrices[1:]
    if first.nnz > sum(m.nnz for m in rest):
        return (first.tocsc() + _sparse_sum(rest)).tocsc()
    triplets = [m.tocoo() for m in matrices]
    data = np.concatenate([t.data for t in triplets])
    rows = np.concatenate([t.row for t in triplets])
    cols = np.concatenate([t.col for t in triplets])
    return sp.csc_matrix((data, (rows, cols)), shape=matrices[0].shape)


def cross_merge(*pieces: CrossProducts) -> CrossProducts:
    return CrossProducts(
        ZtZ=_sparse_sum([p.ZtZ for p in pieces]),
        ZtX=_sum([p.ZtX for p in pieces]),
        Zty=_sum([p.Zty for p in pieces]),
        XtX=_sum([p.XtX for p in pieces]),
        Xty=_sum([p.Xty for p in pieces]),
        yty=float(sum(p.yty for p in pieces)),
        n=sum(p.n for p in pieces),
        log_det_w=float(sum(p.log_det_w for p in pieces)),
    )


def finish_cross(cp: CrossProducts) -> CrossProducts:
    """The summed Z'WZ in canonical CSC form, without the entries that cancelled to zero (a sparse product
    over all rows at once does not store them either)."""
    ZtZ = cp.ZtZ.tocsc()
    ZtZ.sum_duplicates()
    ZtZ.eliminate_zeros()
    ZtZ.sort_indices()
    for name in ("ZtX", "Zty", "XtX", "Xty"):
        if not np.all(np.isfinite(getattr(cp, name))):
            raise DataError("the cross-products overflowed: a column has values too large to square; rescale it")
    cp.ZtZ = ZtZ
    return cp


# --- residuals at a solution ----------------------------------------------------------------------
def residual_partition(part, coding, beta: np.ndarray, b: np.ndarray) -> float:
    """Σ w̃ r̃² over the partition's rows, r̃ = ỹ − X̃β̃ − Zb̃ (the standardized problem's residuals)."""
    Z, X, y, w = coding.standardized(part)
    r = y - X @ beta - Z @ b
    return float(w @ r**2)


def add(*values: float) -> float:
    return float(sum(values))
