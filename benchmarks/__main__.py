"""``python -m benchmarks [CASE ...]``: fit each case in a fresh process; print ours beside lme4's and the peers'.

lme4's and the peers' figures are read from ``reference_times.json`` (measured once on
the project's 2-core machine kind); neither R nor the peers are needed here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from .cases import CASES

HERE = Path(__file__).parent


def _run(name: str, timeout: float) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run_case", name],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=HERE.parent,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt_seconds(s: float) -> str:
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def _objective_check(ours: float | None, lme4: float | None) -> str:
    """Our objective less lme4's for the same fit: ✓ when at or below it (up to 1e-9 relative: rounding)."""
    if ours is None or lme4 is None:
        return "-"
    diff = ours - lme4
    return f"{diff:+.2e}" + (" ✓" if diff <= 1e-9 * abs(lme4) else " ✗")


def _target(ref: dict, res: dict) -> tuple[str, float | None]:
    """The target as printed and in seconds: ``target_s``, or ``target_fit_ratio`` times the case's own fit time
    (an analysis of a fit whose cost is stated relative to the fit, e.g. Satterthwaite df at most 1.5× the fit), or
    a loop of ``loop_fits`` such fits divided by ``speedup_over_loop`` (lmer_many against a loop of lmer)."""
    if "target_s" in ref:
        return _fmt_seconds(ref["target_s"]), ref["target_s"]
    if "loop_fits" in ref and "fit_seconds" in res:  # a loop of that many fits (the case's own fit), sped up
        loop = ref["loop_fits"] * res["fit_seconds"]
        limit = loop / ref["speedup_over_loop"]
        loop_text = f"loop of {ref['loop_fits']:,} fits {_fmt_seconds(loop)}"
        return f"{loop_text} ÷ {ref['speedup_over_loop']:g} = {_fmt_seconds(limit)}", limit
    if "target_fit_ratio" in ref and "fit_seconds" in res:
        limit = ref["target_fit_ratio"] * res["fit_seconds"]
        return f"{ref['target_fit_ratio']:g}× fit = {_fmt_seconds(limit)}", limit
    return "-", None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    default = ["first_call", *(name for name, case in CASES.items() if case.by_default)]
    others = ", ".join(name for name, case in CASES.items() if not case.by_default)
    parser.add_argument("cases", nargs="*", help=f"cases to run (default: {', '.join(default)}; by name: {others})")
    parser.add_argument("--skip", nargs="*", default=[], help="cases to leave out")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per case")
    args = parser.parse_args(argv)
    reference = json.loads((HERE / "reference_times.json").read_text())
    names = args.cases or default
    print(f"reference figures: {reference['machine']}")
    header = [
        "case",
        "rows",
        "levels",
        "ours",
        "evals",
        "objective − lme4's",
        "peak GB",
        "target",
        "lme4 1.1-31",
        "peers",
    ]
    rows = []
    for name in names:
        if name in args.skip:
            continue
        res = _run(name, args.timeout)
        ref = reference["cases"].get(name, {})
        peers = "; ".join(f"{k}: {v}" for k, v in ref.get("peers", {}).items()) or "-"
        target, limit = _target(ref, res)
        if "error" in res:
            rows.append(
                [name, "-", "-", "failed: " + res["error"][:60], "-", "-", "-", target, ref.get("lme4", "-"), peers]
            )
        else:
            met = "" if limit is None else (" ✓" if res["seconds"] <= limit else " ✗")
            rows.append(
                [
                    name,
                    f"{res['rows']:,}",
                    res["levels"],
                    _fmt_seconds(res["seconds"]) + met,
                    str(res["evaluations"] or "-"),
                    _objective_check(res.get("objective"), ref.get("lme4_objective")),
                    f"{res['peak_gb']:.2f}",
                    target,
                    ref.get("lme4", "-"),
                    peers,
                ]
            )
        print("  done:", " | ".join(rows[-1][:6]), flush=True)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    print()
    for r in [header, ["-" * w for w in widths]] + rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")


if __name__ == "__main__":
    main()
