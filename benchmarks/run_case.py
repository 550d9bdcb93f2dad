"""Run one benchmark case in this process and print a JSON line (used by ``python -m benchmarks``).

Each case runs in its own process so that the peak resident memory is the case's own.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
import warnings


def time_fits(fit, repeat: int, warm_up: bool):
    """The median wall-clock and process time of ``repeat`` calls of ``fit`` (after one untimed call when
    ``warm_up``: lazy imports and first-use caches are first_call's to measure), and the last call's result. The same
    for skmixed and for the peers (benchmarks/peer_fits.py)."""
    if warm_up:
        fit()
    wall, cpu, result = [], [], None
    for _ in range(repeat):
        result = None  # the previous fit's memory is not this one's peak
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fit()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    return statistics.median(wall), statistics.median(cpu), result


def fit_function(case, data):
    """The case's fit of ``data`` as a function of no arguments (warnings silenced: they are the tests' to check)."""
    import skmixed

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if case.residual is not None:
                return skmixed.lmer(case.formula, data, REML=case.REML, residual=case.residual)
            if case.family is None:
                return skmixed.lmer(case.formula, data, REML=case.REML, solver=case.solver)
            return skmixed.glmer(case.formula, data, family=case.family)

    return fit


def cold_start() -> list[list]:
    """``import skmixed``, sleepstudy's load and its first fit in this process: [[part, seconds]]."""
    times = [time.perf_counter()]
    import skmixed

    times.append(time.perf_counter())
    from skmixed import datasets

    data = datasets.load("sleepstudy")
    times.append(time.perf_counter())
    skmixed.lmer("Reaction ~ Days + (Days | Subject)", data)
    times.append(time.perf_counter())
    parts = ["import skmixed", "load sleepstudy", "first fit"]
    return [[part, b - a] for part, a, b in zip(parts, times, times[1:])]


def first_call() -> dict:
    return {"seconds": sum(s for _, s in cold_start()), "rows": 180, "levels": "18", "evaluations": None}


def run(name: str) -> dict:
    if name == "first_call":
        out = first_call()
    else:
        from .cases import CASES

        case = CASES[name]
        fit = fit_function(case, case.load())
        fit_seconds, cpu_seconds, m = time_fits(fit, case.repeat, case.warm_up)
        seconds = fit_seconds
        if case.action is not None:  # time the analysis of a fitted result instead (a fresh fit for each run)
            times = []
            for _ in range(case.repeat):
                fitted = fit()
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    case.action(fitted)
                times.append(time.perf_counter() - start)
            seconds, cpu_seconds = statistics.median(times), None
        out = {
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "fit_seconds": fit_seconds,
            "rows": m.nobs,
            "levels": " × ".join(f"{v:,}" for v in m.ngroups.values()),
            "evaluations": m.optsum.n_evaluations,
            "objective": m.objective,
        }
    out["peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return out


def pin_to_one_cpu() -> None:
    """Keep this process on one CPU (the fits run on one thread), so core migrations stay out of the timings.
    Pinning does not remove the host's own noise: see HISTORY.md (2026-11-22) for millisecond timings."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})


if __name__ == "__main__":
    pin_to_one_cpu()
    print(json.dumps(run(sys.argv[1])))
