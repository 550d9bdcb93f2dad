"""Where a benchmark case's time goes: ``python -m benchmarks.profile_case NAME`` prints a JSON line.

For a fit: the time of each public stage (build → deviance → optimize → make_result, :mod:`skmixed.stages`), the
evaluations of the objective, and the functions with the most time of their own, from cProfile of one fit in a
fresh process after the case's warm-up fit. For an analysis (a case with ``action``), the same of the analysis. For
``first_call``: the import, the data set's load and the first fit, and the packages slowest to import (``python -X
importtime``). ``python -m benchmarks`` prints this under its table for each case that misses its target, with
the case's ``remedy`` from reference_times.json (what would change it).

cProfile adds a fixed cost to every Python-level call, so a tiny fit's profile leans towards its Python overhead;
its stages are timed by the same profile, so they add up to its total. LAPACK and BLAS calls have no entry of their
own: their time is their caller's (``_factor_schur`` is ``dpotrf``, for instance).
"""

from __future__ import annotations

import cProfile
import inspect
import json
import pstats
import subprocess
import sys
import warnings
from pathlib import Path

from .run_case import cold_start, fit_function, pin_to_one_cpu
from .table import fmt_seconds

#: how many functions of the most own time are listed
TOP = 6


def _stage_functions() -> dict:
    from skmixed.stages import build, deviance, make_result, optimize

    return {"build": build, "deviance": deviance, "optimize": optimize, "result": make_result}


def _key(function) -> tuple[str, int, str]:
    code = inspect.unwrap(function).__code__
    return code.co_filename, code.co_firstlineno, code.co_name


def _label(key: tuple[str, int, str]) -> str:
    """``skmixed/cholesky.py:137 _inverse_traces``, ``scipy/sparse/_compressed.py:30 __init__``, or a builtin's name."""
    filename, line, name = key
    if filename == "~":
        return name.strip("<>").removeprefix("built-in method ")
    parts = Path(filename).parts
    for root in ("skmixed", "site-packages"):
        if root in parts:
            parts = parts[parts.index(root) + (root == "site-packages") :]
            break
    return f"{'/'.join(parts)}:{line} {name}"


def _summary(stats: pstats.Stats, stages: dict) -> dict:
    table = stats.stats  # key -> (primitive calls, calls, own time, cumulative time, callers)
    total = max(entry[3] for entry in table.values())
    own = sorted(table.items(), key=lambda item: item[1][2], reverse=True)[:TOP]
    return {
        "total": total,
        "stages": [[name, table.get(_key(f), (0, 0, 0.0, 0.0))[3]] for name, f in stages.items()],
        "own": [[_label(key), entry[2], entry[1]] for key, entry in own],
    }


def profile_case(name: str) -> dict:
    from .cases import CASES

    case = CASES[name]
    fit = fit_function(case, case.load())
    fitted = fit()  # the warm-up, and the analysis's input
    profiler = cProfile.Profile()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if case.action is None:
            profiler.runcall(fit)
        else:
            profiler.runcall(case.action, fitted)
    out = _summary(pstats.Stats(profiler), _stage_functions() if case.action is None else {})
    if case.action is None and fitted.optsum.n_evaluations:
        out["evaluations"] = fitted.optsum.n_evaluations
    return out


def _slowest_imports(n: int = 5) -> list[list]:
    """The packages ``import skmixed`` spends most time in (``-X importtime``): each module's own time summed by its
    top-level package, in s."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import skmixed"], capture_output=True, text=True, check=True
    )
    packages: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if len(fields) == 3 and fields[0].strip().isdigit():  # not the header
            package = fields[2].strip().split(".")[0]
            packages[package] = packages.get(package, 0.0) + int(fields[0]) / 1e6
    return [[p, s] for p, s in sorted(packages.items(), key=lambda item: item[1], reverse=True)[:n]]


def profile_first_call() -> dict:
    """The cold start by parts (:func:`~benchmarks.run_case.cold_start`) in this fresh process, and the packages
    its import spends most time in."""
    stages = cold_start()
    return {
        "profiled": False,
        "total": sum(s for _, s in stages),
        "stages": stages,
        "imports": _slowest_imports(),
    }


def describe(name: str, profile: dict) -> list[str]:
    """The profile as Markdown lines."""
    if "error" in profile:
        return [f"- **{name}**: the profile failed: {profile['error']}"]
    total = profile["total"]
    stages = ", ".join(f"{stage} {fmt_seconds(s)} ({s / total:.0%})" for stage, s in profile["stages"] if s > 0)
    timed = "in this process" if profile.get("profiled") is False else "under the profiler"
    head = f"- **{name}** ({fmt_seconds(total)} {timed}){': ' + stages if stages else ''}"
    if profile.get("evaluations"):
        head += f"; {profile['evaluations']} evaluations"
    lines = [head]
    if profile.get("own"):
        own = "; ".join(f"{label} {fmt_seconds(s)} ({calls} calls)" for label, s, calls in profile["own"])
        lines.append(f"  - most time of their own: {own}")
    if profile.get("imports"):
        imports = ", ".join(f"{p} {fmt_seconds(s)}" for p, s in profile["imports"])
        lines.append(f"  - the import's time by package (its modules' own time, ``python -X importtime``): {imports}")
    return lines


if __name__ == "__main__":
    pin_to_one_cpu()
    case_name = sys.argv[1]
    print(json.dumps(profile_first_call() if case_name == "first_call" else profile_case(case_name)))
