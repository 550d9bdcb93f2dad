"""``python -m benchmarks.dask_crossed [--rows N]`` (``make bench-dask``): skmixed.lmer on a Dask cluster.

``y ~ 1 + (1 | a) + (1 | b)`` on N rows (default 10⁸) with 10⁶ a-levels crossed with 10⁴ b-levels, written as
Parquet in chunks (never whole in memory), fitted by ML on a ``LocalCluster`` of two worker processes whose
memory limit is well below the data's size.  Prints the time and rows per second of each pass over the data, the
θ optimisation on the client, the peak resident memory of each worker and of the client, and beside it the same
model's in-memory fit of 10⁷ rows (the ``crossed_10m_wide`` case, 10⁶ × 10⁴ levels, in its own process).  The
Parquet files are deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from pathlib import Path

import numpy as np

CHUNK = 5_000_000


def write_parquet(path: Path, rows: int, n_a: int, n_b: int, seed: int = 10) -> float:
    """The data in files of CHUNK rows (a, b as integers, y from the model with σ_a = 1, σ_b = 0.5, σ = 1)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    effect_a, effect_b = rng.normal(0, 1.0, n_a), rng.normal(0, 0.5, n_b)
    start = time.perf_counter()
    for i, first in enumerate(range(0, rows, CHUNK)):
        n = min(CHUNK, rows - first)
        a = rng.integers(0, n_a, n).astype(np.int32)
        b = rng.integers(0, n_b, n).astype(np.int32)
        y = 5.0 + effect_a[a] + effect_b[b] + rng.normal(0, 1.0, n)
        table = pa.table({"y": y, "a": a, "b": b})
        pq.write_table(table, path / f"part-{i:04d}.parquet", row_group_size=1_000_000)
    return time.perf_counter() - start


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def fit_on_cluster(path: Path, workers: int, memory_limit: str) -> dict:
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    import skmixed
    import skmixed.dask.fit as fit_module

    passes = []
    tree_reduce = fit_module.tree_reduce

    def timed(ddf, *args, what, **kwargs):  # the time of each pass, as the fit makes it
        start = time.perf_counter()
        out = tree_reduce(ddf, *args, what=what, **kwargs)
        passes.append((what, time.perf_counter() - start))
        return out

    fit_module.tree_reduce = timed
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, memory_limit=memory_limit, dashboard_address=None
    )
    try:
        with Client(cluster) as client:
            ddf = dd.read_parquet(str(path), split_row_groups=True)
            start = time.perf_counter()
            m = skmixed.lmer("y ~ 1 + (1 | a) + (1 | b)", ddf, REML=False)
            total = time.perf_counter() - start
            worker_peaks = client.run(_peak_rss_gb)
    finally:
        fit_module.tree_reduce = tree_reduce
        cluster.close()
    rows = m.nobs
    return {
        "rows": rows,
        "partitions": ddf.npartitions,
        "levels": m.ngroups,
        "total_s": total,
        "passes": [(what, seconds, rows / seconds) for what, seconds in passes],
        "client_s": total - sum(seconds for _, seconds in passes),
        "worker_peak_gb": sorted(worker_peaks.values()),
        "client_peak_gb": _peak_rss_gb(),
        "objective": m.objective,
        "theta": m.theta.tolist(),
        "sigma": m.sigma,
        "fixef": float(m.fixef.iloc[0]),
        "evaluations": m.optsum.n_evaluations,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dask_crossed", description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000_000)
    parser.add_argument("--a-levels", type=int, default=1_000_000)
    parser.add_argument("--b-levels", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="0.8GB", help="per worker")
    parser.add_argument("--dir", default="build/dask-crossed-parquet")
    parser.add_argument("--keep", action="store_true", help="keep the Parquet files")
    parser.add_argument("--no-in-memory", action="store_true", help="skip the in-memory crossed_10m case")
    args = parser.parse_args(argv)
    path = Path(args.dir) / f"rows-{args.rows}"
    if not path.exists():
        print(f"writing {args.rows:,} rows as Parquet to {path} ...", flush=True)
        print(f"  {write_parquet(path, args.rows, args.a_levels, args.b_levels):.1f} s", flush=True)
    size_gb = sum(f.stat().st_size for f in path.glob("*.parquet")) / 1024**3
    in_memory_gb = args.rows * (8 + 4 + 4) / 1024**3
    mem = None
    if not args.no_in_memory:  # first: a child process started later would report this one's peak as its own
        from .__main__ import _run_module

        mem = _run_module("benchmarks.run_case", "crossed_10m_wide", timeout=3600)
    try:
        res = fit_on_cluster(path, args.workers, args.memory_limit)
    finally:
        if not args.keep:
            shutil.rmtree(path, ignore_errors=True)
    print(
        f"Parquet {size_gb:.2f} GB on disk, {in_memory_gb:.2f} GB as columns in memory; {res['partitions']} partitions"
    )
    print(f"Dask, {args.workers} workers of {args.memory_limit}: {res['rows']:,} rows, levels {res['levels']}")
    for what, seconds, rate in res["passes"]:
        print(f"  pass {what:<32} {seconds:8.1f} s  {rate / 1e6:6.2f} M rows/s")
    print(f"  on the client (θ optimisation){'':<3} {res['client_s']:8.1f} s")
    peaks = [round(g, 2) for g in res["worker_peak_gb"]]
    print(f"  total {res['total_s']:.1f} s; worker peaks {peaks} GB, client peak {res['client_peak_gb']:.2f} GB")
    print(f"  objective {res['objective']:.4f}, θ {np.round(res['theta'], 5).tolist()}, σ {res['sigma']:.5f}")
    if mem is not None:
        print(f"in memory, crossed_10m_wide (10,000,000 rows, 10⁶ × 10⁴ levels): {json.dumps(mem)}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
