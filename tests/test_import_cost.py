"""`import skmixed` and a first fit of plain columns load only what they need (the first-call budget is 1 s)."""

import subprocess
import sys

HEAVY = ["sklearn", "scipy.stats", "formulaic", "matplotlib", "IPython"]


def loaded_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_import_and_a_plain_fit_skip_heavy_modules():
    modules = loaded_after(
        "import skmixed\nfrom skmixed import datasets\n"
        "skmixed.lmer('Reaction ~ Days + (Days | Subject)', datasets.load('sleepstudy'))"
    )
    assert "skmixed.lmm" in modules
    assert not [m for m in HEAVY if m in modules]


def test_a_formula_with_factors_loads_formulaic():
    modules = loaded_after(
        "import skmixed\nfrom skmixed import datasets\n"
        "skmixed.lmer('Reaction ~ factor(Days > 4) + (Days | Subject)', datasets.load('sleepstudy'))"
    )
    assert "formulaic" in modules
