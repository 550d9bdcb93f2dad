"""Packaging: the Makefile's choice of scikit-sparse, the dependency range that admits it, and a demo that needs
only the installed package."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent


def sksparse_for(include_dir: Path) -> str:
    """What ``make sksparse-version`` says for the SuiteSparse headers in ``include_dir``."""
    env = {k: v for k, v in os.environ.items() if k not in ("CONDA_PREFIX", "MAKEFLAGS", "MAKELEVEL")}
    env["SUITESPARSE_INCLUDE_DIR"] = str(include_dir)
    out = subprocess.run(["make", "-s", "-C", str(REPO), "sksparse-version"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def fake_headers(tmp_path: Path, major: int, minor: int) -> Path:
    # the lines of SuiteSparse_config.h that carry the version, spaced as SuiteSparse 7 spaces them
    (tmp_path / "SuiteSparse_config.h").write_text(
        f'#define SUITESPARSE_DATE "Oct 10, 2024"\n'
        f"#define SUITESPARSE_MAIN_VERSION    {major}\n"
        f"#define SUITESPARSE_SUB_VERSION     {minor}\n"
        f"#define SUITESPARSE_SUBSUB_VERSION  0\n"
    )
    return tmp_path


@pytest.mark.parametrize(
    "major, minor, release",
    [(4, 5, "0.4.16"), (5, 12, "0.4.16"), (7, 3, "none"), (7, 4, "0.5.0"), (7, 10, "0.5.0"), (7, 12, "0.5.0")],
)
def test_makefile_installs_the_scikit_sparse_that_builds_against_the_headers(tmp_path, major, minor, release):
    said = sksparse_for(fake_headers(tmp_path, major, minor))
    assert said == f"SuiteSparse {major}.{minor} in {tmp_path}: scikit-sparse {release}"


def test_pyproject_admits_each_release_the_makefile_installs():
    pins = set(re.findall(r"pin=(\d+\.\d+\.\d+)", (REPO / "Makefile").read_text()))
    assert pins == {"0.4.16", "0.5.0"}
    [line] = re.findall(r'"(scikit-sparse[^"]*)"', (REPO / "pyproject.toml").read_text())
    allowed = Requirement(line).specifier
    assert all(allowed.contains(pin) for pin in pins)
    assert not allowed.contains("0.4.15") and not allowed.contains("0.6.0")


def run_demo(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m skmixed.demo`` outside the repository, then the names of the modules it had loaded."""
    code = (
        "import sys\nfrom skmixed.demo import main\n"
        f"main({list(args)!r})\nprint('MODULES', ' '.join(sorted(sys.modules)))"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)


def test_demo_fits_from_the_package_alone(tmp_path):
    out = run_demo("sleepstudy", "Orthodont", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    summaries, modules = out.stdout.rsplit("MODULES", 1)
    assert summaries.count("Linear mixed model fit by REML") == 2
    assert "sleepstudy: lme4's sleep deprivation study  [180 rows" in summaries
    assert "Formula: Reaction ~ Days + (Days | Subject)" in summaries
    # nothing from the test, plot or notebook extras
    assert not {"pytest", "hypothesis", "matplotlib", "IPython", "nbclient", "nbformat"} & set(modules.split())


def test_demo_names_its_examples_when_asked_for_another(tmp_path):
    out = run_demo("cbpp", cwd=tmp_path)
    assert out.returncode == 2
    assert "no example on cbpp; the examples use Exam, ScotsSec, Chem97, Hsb82, Orthodont, sleepstudy" in out.stderr
