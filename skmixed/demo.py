"""``make demo``: fit the classic multilevel examples, print lme4-style summaries, and run the tour notebook.

The tour (``notebooks/tour.ipynb``) is executed headless and written as HTML to ``build/tour.html``.
"""
from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

from . import datasets, lmer

EXAMPLES = [
    ("Exam", "normexam ~ standLRT + sex + schgend + (1 | school)", "students in schools (seed 000, Table 1)"),
    ("Exam", "normexam ~ standLRT + sex + schgend + (standLRT | school)", "random slope of intake score"),
    ("ScotsSec", "attain ~ verbal * sex + (1 | primary) + (1 | second)", "crossed primary x secondary schools (seed 004)"),
    ("Chem97", "score ~ gcsecnt + (1 | school) + (1 | lea)", "schools within LEAs (seed 004)"),
    ("Hsb82", "mAch ~ meanses * cses + sector * cses + (cses | school)", "High School & Beyond (seed 002)"),
    ("Orthodont", "distance ~ age * Sex + (age | Subject)", "growth curves (seed 000)"),
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)", "lme4's sleepstudy"),
]

REPO = Path(__file__).resolve().parent.parent
TOUR = REPO / "notebooks" / "tour.ipynb"


def print_summaries() -> None:
    for name, formula, what in EXAMPLES:
        data = datasets.load(name)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = lmer(formula, data)
        seconds = time.perf_counter() - start
        print("=" * 78)
        print(f"{name}: {what}  [{len(data):,} rows, fitted in {seconds:.3f} s]")
        print("=" * 78)
        print(m.summary())
        print()


def kernel_env() -> dict:
    """The environment for a notebook kernel: this checkout of skmixed first on the path, inline figures."""
    path = [str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    env.pop("MPLBACKEND", None)  # the kernel's inline backend, so figures are part of the notebook
    return env


def run_notebook(path: Path, timeout: int = 300):
    """Execute a notebook headless with the ``python3`` kernel, in its own folder; return it with outputs."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, kernel_name="python3", timeout=timeout, resources={"metadata": {"path": str(path.parent)}},
        extra_arguments=["--IPKernelApp.log_level=ERROR"],  # not the kernel's notice about local TCP sockets
    )
    client.execute(env=kernel_env())
    return nb


def write_tour(out_dir: Path) -> Path:
    """Execute the tour and write it as a standalone HTML page."""
    from nbconvert import HTMLExporter

    nb = run_notebook(TOUR)
    body, _ = HTMLExporter().from_notebook_node(nb)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "tour.html"
    out.write_text(body, encoding="utf-8")
    return out


def main() -> None:
    print_summaries()
    if not TOUR.exists():
        print(f"{TOUR} not found: the tour notebook ships with the repository, not the installed package", file=sys.stderr)
        return
    print("=" * 78)
    print(f"Running {TOUR.relative_to(REPO)} headless ...")
    start = time.perf_counter()
    out = write_tour(REPO / "build")
    print(f"Tour executed in {time.perf_counter() - start:.1f} s; open {out} in a browser.")


if __name__ == "__main__":
    main()
