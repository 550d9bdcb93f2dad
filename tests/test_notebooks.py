"""The seed notebooks run top to bottom in a fresh python3 kernel; each asserts that it reproduces its seed."""

from pathlib import Path

import nbformat
import pytest
from notebook_kernel import run_notebook

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
OURS = ["tour", "crossed_and_nested", "hsb", "growth_curves", "glmm"]


@pytest.mark.parametrize("name", OURS)
def test_notebook_is_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.mark.parametrize("name", OURS)
def test_notebook_runs(name):
    nb = run_notebook(NOTEBOOKS / f"{name}.ipynb", timeout=120)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, "every seed notebook shows plots"
