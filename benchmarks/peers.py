"""``python -m benchmarks --peers``: each peer library fits the case's data in its own process, beside skmixed.

The peers (mixedlm, glmm, gpboost; pinned in benchmarks/peers-requirements.txt) live in their own virtualenv,
``.venv-peers`` at the repository's root (``make peers-venv``): never a dependency of skmixed, never needed by the
tests. The case's data frame is written once to a temporary ``.npz`` (benchmarks/frames.py), and each peer fits
it in a fresh process of that virtualenv (benchmarks/peer_fits.py), timed as skmixed's own process is.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from .peer_fits import PEERS

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-peers"


def peer_python(venv: Path | None = None) -> Path | None:
    """The peers' virtualenv's interpreter, or None when the virtualenv has not been made."""
    python = (venv or VENV) / "bin" / "python"
    return python if python.exists() else None


def missing_venv_message(venv: Path | None = None) -> str:
    return f"--peers needs the peers' virtualenv {venv or VENV}: make it with `make peers-venv`"


def applicable(case) -> bool:
    """Peers fit the cases that time a fit of lme4's model (not an analysis of it, not a residual structure)."""
    return case.action is None and case.residual is None


def model_spec(case) -> dict:
    return {
        "formula": case.formula,
        "REML": case.REML,
        "family": case.family,
        "repeat": case.repeat,
        "warm_up": case.warm_up,
    }


def run_json(command: list[str], timeout: float) -> dict:
    """Run ``command`` (a benchmark process) from the repository's root: the JSON of its last line of output, or
    ``{"error": reason}`` (its last line of errors, its exit code, or the timeout)."""
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_peer(python: Path, peer: str, spec: dict, data: Path, timeout: float) -> dict:
    """One peer's fits of the data in ``data``: its JSON line, or ``{"error": reason}``."""
    return run_json([str(python), "-m", "benchmarks.peer_fits", peer, json.dumps(spec), str(data)], timeout)


def measure(case, python: Path, timeout: float) -> dict[str, dict]:
    """Every peer's result for ``case``, by peer name."""
    from .frames import write_frame

    with tempfile.TemporaryDirectory(prefix="skmixed-peers-") as tmp:
        data = Path(tmp) / f"{case.name}.npz"
        write_frame(case.load(), data)
        return {peer: run_peer(python, peer, model_spec(case), data, timeout) for peer in PEERS}
