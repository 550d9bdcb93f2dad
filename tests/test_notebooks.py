"""The tutorials in notebooks/: committed clean, sources named by author and title, and each one runs top to bottom
in a fresh python3 kernel (its checks of published numbers are asserts, so a check that no longer holds fails here)."""

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError, DeadKernelError
from notebook_kernel import run_notebook

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
NAMES = [path.stem for path in NOTEBOOKS]


def test_the_tutorials_are_there():
    assert {"tour", "crossed_and_nested", "hsb", "growth_curves", "glmm", "sklearn_grouped_cv"} <= set(NAMES)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_notebook_text(path):
    """Texts are cited by author and title (an internal file number such as "seed 002" means nothing to a reader),
    and math is unicode, as in the docstrings: the docs site loads no MathJax to render LaTeX."""
    cells = nbformat.read(path, as_version=4).cells
    assert not re.search(r"\bseeds?\s+0\d\d\b", "\n".join(c.source for c in cells), flags=re.IGNORECASE)
    assert "$" not in "\n".join(c.source for c in cells if c.cell_type == "markdown")


def _execute(path: Path):
    try:
        return run_notebook(path)
    except (CellExecutionError, DeadKernelError, TimeoutError) as error:  # reported by the notebook's own test
        return error


@pytest.fixture(scope="module")
def executed() -> dict:
    """Every notebook executed, two at a time (a kernel spends most of its time starting and importing)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(NAMES, pool.map(_execute, NOTEBOOKS), strict=True))


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_and_shows_plots(executed, name):
    nb = executed[name]
    if isinstance(nb, Exception):
        raise nb
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "every tutorial shows a plot"
