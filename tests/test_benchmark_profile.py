"""The profile ``python -m benchmarks`` prints under its table for a case that misses its target
(benchmarks/profile_case.py): the stages of the fit, its evaluations, the functions of most own time, and the
case's recorded remedy. No time is compared here."""

import skmixed
from benchmarks import __main__ as bench
from benchmarks import profile_case
from benchmarks.cases import CASES


def test_a_fits_profile_has_its_stages_and_evaluations():
    out = profile_case.profile_case("sleepstudy")
    stages = dict(out["stages"])
    assert list(stages) == ["build", "deviance", "optimize", "result"]
    assert all(s > 0 for s in stages.values())
    assert sum(stages.values()) <= out["total"] * (1 + 1e-9)
    assert stages["optimize"] > stages["deviance"]  # the evaluations are in optimize
    case = CASES["sleepstudy"]
    fit = skmixed.lmer(case.formula, case.load())
    assert out["evaluations"] == fit.optsum.n_evaluations
    assert len(out["own"]) == profile_case.TOP
    own_times = [s for _, s, _ in out["own"]]
    assert own_times == sorted(own_times, reverse=True) and own_times[0] <= out["total"]


def test_functions_are_named_by_package_file_and_line():
    label = profile_case._label(("/x/lib/python3.11/site-packages/scipy/sparse/_compressed.py", 30, "__init__"))
    assert label == "scipy/sparse/_compressed.py:30 __init__"
    assert profile_case._label(("/repo/skmixed/cholesky.py", 137, "_inverse_traces")) == (
        "skmixed/cholesky.py:137 _inverse_traces"
    )
    builtin = "<built-in method scipy.sparse._sparsetools.csr_matmat>"
    assert profile_case._label(("~", 0, builtin)) == "scipy.sparse._sparsetools.csr_matmat"


def test_the_cold_start_is_split_into_import_load_and_fit():
    imports = profile_case._slowest_imports(n=50)
    packages = dict(imports)
    assert "skmixed" in packages and "numpy" in packages and all(s > 0 for s in packages.values())
    lines = profile_case.describe(
        "first_call",
        {"profiled": False, "total": 1.0, "stages": [["import skmixed", 0.8], ["first fit", 0.2]], "imports": imports},
    )
    head = "- **first_call** (1.00 s in this process): import skmixed 800.0 ms (80%), first fit 200.0 ms (20%)"
    assert lines[0] == head
    assert "skmixed" in lines[1]


def test_the_missed_cases_are_printed_with_their_remedy(monkeypatch):
    profile = {"total": 2.0, "stages": [["build", 0.5], ["optimize", 1.5]], "own": [["f", 1.0, 3]], "evaluations": 7}
    monkeypatch.setattr(bench, "_run_module", lambda module, name, timeout: profile if name == "a" else {"error": "x"})
    reference = {"cases": {"a": {"remedy": "a compiled kernel"}, "b": {}}}
    lines = bench._profiles(["a", "b"], reference, timeout=1.0)
    assert lines[2:] == [
        "- **a** (2.00 s under the profiler): build 500.0 ms (25%), optimize 1.50 s (75%); 7 evaluations",
        "  - most time of their own: f 1.00 s (3 calls)",
        "  - what would change it: a compiled kernel",
        "- **b**: the profile failed: x",
        "  - what would change it: not recorded (reference_times.json)",
    ]
