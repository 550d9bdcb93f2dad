"""``python -m benchmarks [--peers] [CASE ...]``: fit each case in a fresh process; print ours beside lme4's and the
peers'.

lme4's figures, and the peers' unless ``--peers`` is given, are read from ``reference_times.json`` (measured once on
the project's 2-core machine kind); neither R nor the peers are needed then. With ``--peers``, mixedlm, glmm and
gpboost fit each case's data in their own processes of the ``.venv-peers`` virtualenv (``make peers-venv``), timed
as ours are, and the targets stated relative to a peer use its time measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from . import peers, table
from .cases import CASES
from .peer_fits import PEERS
from .profile_case import describe

HERE = Path(__file__).parent
HEADER = ["case", "rows", "levels", "ours", "evals", "objective − lme4's", "peak GB", "target", "lme4 1.1-31"]


def _run_module(module: str, name: str, timeout: float) -> dict:
    return peers.run_json([sys.executable, "-m", module, name], timeout)


def _parse(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    default = ["first_call", *(name for name, case in CASES.items() if case.by_default)]
    others = ", ".join(name for name, case in CASES.items() if not case.by_default)
    parser.add_argument("cases", nargs="*", help=f"cases to run (default: {', '.join(default)}; by name: {others})")
    parser.add_argument("--skip", nargs="*", default=[], help="cases to leave out")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per case")
    parser.add_argument("--peers", action="store_true", help="fit each case with the peers too, in this run")
    parser.add_argument("--peer-timeout", type=float, default=600.0, help="seconds allowed per peer and case")
    parser.add_argument(
        "--no-profile",
        dest="profile",
        action="store_false",
        help="do not profile the cases that miss their target (each is profiled in one more process by default)",
    )
    parser.add_argument(
        "--clock",
        choices=["wall", "process"],
        default="wall",
        help="time by the wall clock, or by the process's CPU time (steadier on a machine loaded by other jobs)",
    )
    args = parser.parse_args(argv)
    args.cases = [name for name in args.cases or default if name not in args.skip]
    return args


def _ours(res: dict, limit: float | None, lme4_objective: float | None) -> list[str]:
    """Our cells: rows, levels, time (✓/✗ against the target), evaluations, objective check, peak memory."""
    if "error" in res:
        return ["-", "-", "failed: " + res["error"][:60], "-", "-", "-"]
    return [
        f"{res['rows']:,}",
        res["levels"],
        table.fmt_seconds(res["seconds"]) + table.met(res["seconds"], limit),
        str(res["evaluations"] or "-"),
        table.objective_check(res.get("objective"), lme4_objective),
        f"{res['peak_gb']:.2f}",
    ]


def _compile_bytecode() -> None:
    """Write skmixed's bytecode, as pip does when it installs a wheel, so that the cold start measures the import
    and not the compilation of every module (an editable install under ``PYTHONDONTWRITEBYTECODE`` never caches
    it)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(HERE.parent / "skmixed")], check=False)


def _row(name: str, ref: dict, args, python: Path | None) -> tuple[list[str], dict, bool]:
    """The case's row, the peers' results (empty without ``--peers`` or for a case they do not fit), and whether
    the case missed its target."""
    if name == "first_call":
        _compile_bytecode()
    res = table.on_clock(_run_module("benchmarks.run_case", name, args.timeout), args.clock)
    case = CASES.get(name)
    measured = None
    if python is not None and case is not None and peers.applicable(case):
        measured = {p: table.on_clock(r, args.clock) for p, r in peers.measure(case, python, args.peer_timeout).items()}
    criterion = "REML" if case is not None and case.REML and case.family is None else "ML"
    target, limit = table.target(ref, res, measured, criterion)
    lme4 = ref.get("lme4_objective")
    row = [name, *_ours(res, limit, lme4), target, ref.get("lme4", "-")]
    if python is None:
        row.append("; ".join(f"{k}: {v}" for k, v in ref.get("peers", {}).items()) or "-")
    else:
        row += [table.peer_cell(measured[p], criterion, lme4, res.get("objective")) if measured else "-" for p in PEERS]
    missed = limit is not None and "seconds" in res and res["seconds"] > limit
    return row, measured or {}, missed


def _profiles(missed: list[str], reference: dict, timeout: float) -> list[str]:
    """Under the table: for each case that missed its target, where its time goes (benchmarks/profile_case.py, in
    a fresh process) and what would change it (the case's ``remedy`` in reference_times.json)."""
    lines = ["", "Where the time goes in the cases that missed their target, and what would change it:"]
    for name in missed:
        profile = _run_module("benchmarks.profile_case", name, timeout)
        lines += describe(name, profile)
        remedy = reference["cases"].get(name, {}).get("remedy")
        lines.append(f"  - what would change it: {remedy or 'not recorded (reference_times.json)'}")
    return lines


def main(argv=None) -> None:
    args = _parse(argv)
    python = None
    if args.peers:
        python = peers.peer_python()
        if python is None:
            print(peers.missing_venv_message(), file=sys.stderr)
            raise SystemExit(2)
    reference = json.loads((HERE / "reference_times.json").read_text())
    print(f"reference figures: {reference['machine']}; times by the {args.clock} clock")
    rows, versions, missed = [], {}, []
    for name in args.cases:
        row, measured, miss = _row(name, reference["cases"].get(name, {}), args, python)
        versions.update({p: r["version"] for p, r in measured.items() if "version" in r})
        rows.append(row)
        missed += [name] if miss else []
        print("  done:", " | ".join(row[:6] + row[len(HEADER) :]), flush=True)
    header = HEADER + (list(PEERS) if args.peers else ["peers (recorded)"])
    print()
    print("\n".join(table.markdown(header, rows)))
    if versions:
        print("peers measured in this run:", ", ".join(f"{p} {v}" for p, v in sorted(versions.items())))
    if missed and args.profile:
        print("\n".join(_profiles(missed, reference, args.timeout)))


if __name__ == "__main__":
    main()
