"""Exact quantiles of a Dask Series by passes of counts (the summary's scaled-residual quantiles).

``np.quantile``'s default (linear) quantile at p is ``x₍ₖ₎ + t(x₍ₖ₊₁₎ − x₍ₖ₎)``, ``h = (n − 1)p``, ``k = ⌊h⌋``,
``t = h − k``: it needs order statistics only.  Each is found by narrowing a bracket: a pass counts, per
partition, the values below the bracket and in each of ``BINS`` equal bins of it; the bin holding the rank
becomes the bracket.  Once a bracket holds at most ``COLLECT`` values, one last pass brings them to the client,
where they are sorted.  Dask's own ``quantile`` merges per-partition percentiles, an approximation.
"""

from __future__ import annotations

import numpy as np

from .passes import tree_reduce

BINS = 4096
COLLECT = 200_000
MAX_ROUNDS = 12


def _counts(part, brackets) -> np.ndarray:
    """Per bracket (lo, hi, closed): [values below lo, counts in each bin of [lo, hi)] (hi too if closed)."""
    x = part.to_numpy(dtype=float)
    x = x[~np.isnan(x)]
    out = np.zeros((len(brackets), BINS + 1), dtype=np.int64)
    for i, (lo, hi, closed) in enumerate(brackets):
        edges = np.linspace(lo, hi, BINS + 1)
        out[i, 0] = np.count_nonzero(x < lo)
        inside = x[(x >= lo) & ((x < hi) | (closed & (x == hi)))]
        bins = np.minimum(np.searchsorted(edges, inside, side="right") - 1, BINS - 1)
        out[i, 1:] = np.bincount(bins, minlength=BINS)
    return out


def _values(part, brackets) -> list[np.ndarray]:
    x = part.to_numpy(dtype=float)
    return [x[(x >= lo) & ((x < hi) | (closed & (x == hi)))] for lo, hi, closed in brackets]


def _sum(*arrays):
    return np.sum(arrays, axis=0)


def _concat(*lists):
    return [np.concatenate(parts) for parts in zip(*lists)]


def exact_quantiles(series, probs) -> np.ndarray:
    """The quantiles of the non-missing values of the Dask Series ``series`` at ``probs``, as ``np.quantile``."""
    import dask

    n, lo, hi = (
        x.item() if hasattr(x, "item") else x for x in dask.compute(series.count(), series.min(), series.max())
    )
    n = int(n)
    h = (n - 1) * np.asarray(probs, dtype=float)
    ranks = sorted({int(k) for k in np.floor(h)} | {min(int(k) + 1, n - 1) for k in np.floor(h)})
    state = {k: [float(lo), float(hi), True, 0] for k in ranks}  # lo, hi, closed, values below lo
    found: dict[int, float] = {}
    for _ in range(MAX_ROUNDS):
        open_ = [k for k in ranks if k not in found and state[k][0] == state[k][1]]
        for k in open_:
            found[k] = state[k][0]
        todo = [k for k in ranks if k not in found]
        if not todo:
            break
        counts = tree_reduce(series, _counts, _sum, [tuple(state[k][:3]) for k in todo], what="(quantile counts)")
        collect = []
        for k, row in zip(todo, counts):
            lo_k, hi_k, closed, _ = state[k]
            below = int(row[0])
            cumulative = below + np.cumsum(row[1:])
            j = int(np.searchsorted(cumulative, k, side="right"))
            edges = np.linspace(lo_k, hi_k, BINS + 1)
            state[k] = [float(edges[j]), float(edges[j + 1]), closed and j == BINS - 1, int(cumulative[j] - row[1 + j])]
            if row[1 + j] <= COLLECT:
                collect.append(k)
        if collect:
            brackets = [tuple(state[k][:3]) for k in collect]
            values = tree_reduce(series, _values, _concat, brackets, what="(quantile values)")
            for k, v in zip(collect, values):
                found[k] = float(np.sort(v)[k - state[k][3]])
    missing = [k for k in ranks if k not in found]
    if missing:
        raise ArithmeticError(f"could not isolate the order statistics {missing} in {MAX_ROUNDS} passes")
    out = []
    for hp in h:
        k = int(np.floor(hp))
        pair = np.array([found[k], found[min(k + 1, n - 1)]])
        out.append(float(np.quantile(pair, hp - k)) if k + 1 < n else found[k])
    return np.array(out)
