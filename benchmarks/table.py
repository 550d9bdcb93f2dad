"""The benchmark table: targets (recorded, or relative to the peers measured in the same run) and its cells."""

from __future__ import annotations


def fmt_seconds(s: float) -> str:
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def objective_check(ours: float | None, lme4: float | None) -> str:
    """Our objective less lme4's for the same fit: ✓ when at or below it (up to 1e-9 relative: rounding)."""
    if ours is None or lme4 is None:
        return "-"
    diff = ours - lme4
    return f"{diff:+.2e}" + (" ✓" if diff <= 1e-9 * abs(lme4) else " ✗")


def on_clock(result: dict, clock: str) -> dict:
    """The result with its time by ``clock``: the wall clock as measured, or the process's CPU time where it was
    measured (a fit's; an analysis's and the cold start's are by the wall clock only)."""
    if clock == "process" and result.get("cpu_seconds") is not None:
        return {**result, "seconds": result["cpu_seconds"]}
    return result


def recorded_target(ref: dict, res: dict) -> tuple[str, float | None]:
    """The target as printed and in seconds: ``target_s``, or ``target_fit_ratio`` times the case's own fit time
    (an analysis of a fit whose cost is stated relative to the fit, e.g. Satterthwaite df at most 1.5× the fit), or
    a loop of ``loop_fits`` such fits divided by ``speedup_over_loop`` (lmer_many against a loop of lmer)."""
    if "target_s" in ref:
        return fmt_seconds(ref["target_s"]), ref["target_s"]
    if "loop_fits" in ref and "fit_seconds" in res:  # a loop of that many fits (the case's own fit), sped up
        loop = ref["loop_fits"] * res["fit_seconds"]
        limit = loop / ref["speedup_over_loop"]
        loop_text = f"loop of {ref['loop_fits']:,} fits {fmt_seconds(loop)}"
        return f"{loop_text} ÷ {ref['speedup_over_loop']:g} = {fmt_seconds(limit)}", limit
    if "target_fit_ratio" in ref and "fit_seconds" in res:
        limit = ref["target_fit_ratio"] * res["fit_seconds"]
        return f"{ref['target_fit_ratio']:g}× fit = {fmt_seconds(limit)}", limit
    return "-", None


def peer_bounds(ref: dict, peers: dict[str, dict], criterion: str) -> dict[str, tuple[str, float]]:
    """The limits the peers measured in this run set, by peer: ``target_peers[p]`` times peer p's time (the
    issue's "≤ 0.5× mixedlm"), and 1× every other peer that fitted the same criterion ("fastest on every row")."""
    ratios = ref.get("target_peers", {})
    bounds = {}
    for peer, result in peers.items():
        if "seconds" not in result or result.get("criterion") != criterion:
            continue
        ratio = ratios.get(peer, 1.0)
        limit = ratio * result["seconds"]
        text = f"{peer} {fmt_seconds(limit)}" if ratio == 1 else f"{ratio:g}× {peer} = {fmt_seconds(limit)}"
        bounds[peer] = (text, limit)
    return bounds


def target(
    ref: dict, res: dict, peers: dict[str, dict] | None = None, criterion: str = "ML"
) -> tuple[str, float | None]:
    """The case's target and its limit in seconds. Without peers measured (``peers`` None), the recorded one. With
    them, the tightest of each peer's bound (:func:`peer_bounds`) and the recorded target, unless that was stated
    relative to peers that were all measured here: then their times in this run replace the recorded figures."""
    text, limit = recorded_target(ref, res)
    if peers is None:
        return text, limit
    bounds = peer_bounds(ref, peers, criterion)
    relative_to = set(ref.get("target_peers", {}))
    candidates = list(bounds.values())
    if limit is not None and not (relative_to and relative_to <= bounds.keys()):
        candidates.append((f"recorded {text}" if relative_to else text, limit))
    return min(candidates, key=lambda b: b[1], default=("-", None))


def met(seconds: float, limit: float | None) -> str:
    return "" if limit is None else (" ✓" if seconds <= limit else " ✗")


def peer_cell(result: dict, criterion: str, lme4: float | None, ours: float | None) -> str:
    """A peer's time and its objective less lme4's (or less ours, said so, when lme4's is not on record)."""
    if "unsupported" in result:
        return f"— ({result['unsupported']})"
    if "error" in result:
        return f"failed: {result['error'][:80]}"
    text = fmt_seconds(result["seconds"])
    if result["criterion"] != criterion:
        return f"{text} ({result['criterion']} only)"
    if lme4 is not None:
        return f"{text}, {result['objective'] - lme4:+.2e}"
    if ours is not None:
        return f"{text}, {result['objective'] - ours:+.2e} vs ours"
    return text


def markdown(header: list[str], rows: list[list[str]]) -> list[str]:
    """The rows as a Markdown table, columns padded to their widest cell."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
        for r in [header, ["-" * w for w in widths], *rows]
    ]
