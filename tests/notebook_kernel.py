"""Run a notebook headless in a ``python3`` kernel that imports skmixed from this checkout."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def kernel_env() -> dict:
    """The environment for a notebook kernel: this checkout of skmixed first on the path, inline figures."""
    path = [str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    env.pop("MPLBACKEND", None)  # the kernel's inline backend, so figures are part of the notebook
    return env


def run_notebook(path: Path, timeout: int = 300):
    """Execute a notebook with the ``python3`` kernel, in its own folder; return it with its outputs."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=timeout,
        resources={"metadata": {"path": str(path.parent)}},
        extra_arguments=["--IPKernelApp.log_level=ERROR"],  # not the kernel's notice about local TCP sockets
    )
    client.execute(env=kernel_env())
    return nb
