"""The pure parts of ``python -m benchmarks --peers``: targets relative to the peers measured in the same run, the
table's cells, the data handed to the peers, and the one-line message when their virtualenv is missing. No peer is
run and no time is measured here."""

import pandas as pd
import pytest

from benchmarks import __main__ as bench
from benchmarks import peers, table
from benchmarks.frames import read_frame, write_frame
from benchmarks.peer_fits import Model, unsupported


def _fit(seconds, criterion="REML", objective=100.0):
    return {"seconds": seconds, "criterion": criterion, "objective": objective, "version": "1"}


def test_a_ratio_to_a_peer_uses_its_time_in_this_run():
    ref = {"target_s": 0.089, "target_peers": {"mixedlm": 0.5}}
    assert table.target(ref, {}, {"mixedlm": _fit(0.2)}, "REML") == ("0.5× mixedlm = 100.0 ms", 0.1)
    # without --peers the recorded figure stands
    assert table.target(ref, {}, None, "REML") == ("89.0 ms", 0.089)


def test_every_peer_fitting_the_same_criterion_bounds_the_target():
    ref = {"target_s": 0.04, "target_peers": {"glmm": 0.5}}
    measured = {"glmm": _fit(0.08, "ML"), "mixedlm": _fit(1.3, "ML"), "gpboost": _fit(0.03, "ML")}
    assert table.target(ref, {}, measured, "ML") == ("gpboost 30.0 ms", 0.03)
    # a peer that fitted another criterion (gpboost has no REML) sets no bound; the absolute target stays
    ref = {"target_s": 1.6}
    assert table.target(ref, {}, {"gpboost": _fit(0.3, "ML"), "glmm": _fit(2.0)}, "REML") == ("1.60 s", 1.6)


def test_a_failed_peer_leaves_the_recorded_figure():
    ref = {"target_s": 0.17, "target_peers": {"gpboost": 1}}
    measured = {"gpboost": {"error": "timed out after 600 s"}, "mixedlm": _fit(0.4, "ML")}
    assert table.target(ref, {}, measured, "ML") == ("recorded 170.0 ms", 0.17)
    assert table.met(0.18, 0.17) == " ✗" and table.met(0.17, 0.17) == " ✓" and table.met(1.0, None) == ""


def test_peer_cells():
    assert table.peer_cell({"unsupported": "no correlated random slopes"}, "REML", 1.0, 1.0) == (
        "— (no correlated random slopes)"
    )
    assert table.peer_cell({"error": "ValueError: bad formula"}, "ML", 1.0, 1.0) == "failed: ValueError: bad formula"
    assert table.peer_cell(_fit(0.3, "ML"), "REML", 100.0, 100.0) == "300.0 ms (ML only)"
    assert table.peer_cell(_fit(2.5, "ML", 100.5), "ML", 100.0, 99.0) == "2.50 s, +5.00e-01"
    assert table.peer_cell(_fit(2.5, "ML", 100.5), "ML", None, 100.25) == "2.50 s, +2.50e-01 vs ours"


def test_markdown_pads_each_column_to_its_widest_cell():
    assert table.markdown(["case", "ours"], [["cbpp", "5.8 ms ✓"]]) == [
        "| case | ours     |",
        "| ---- | -------- |",
        "| cbpp | 5.8 ms ✓ |",
    ]


def test_missing_peer_venv_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(peers, "VENV", tmp_path / ".venv-peers")
    with pytest.raises(SystemExit) as stop:
        bench.main(["--peers", "sleepstudy"])
    assert stop.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"--peers needs the peers' virtualenv {tmp_path / '.venv-peers'}: make it with `make peers-venv`\n"


def test_the_peers_read_the_frame_skmixed_fitted(tmp_path):
    frame = pd.DataFrame(
        {
            "y": [0.5, -1.25, 3.0],
            "n": [1, 2, 3],
            "g": pd.Categorical(["b", "a", "b"], categories=["b", "a"]),
            "o": pd.Categorical(["lo", "hi", "hi"], categories=["lo", "hi"], ordered=True),
        }
    )
    write_frame(frame, tmp_path / "data.npz")
    pd.testing.assert_frame_equal(read_frame(tmp_path / "data.npz"), frame)


def test_model_as_the_peers_read_it():
    verbagg = Model.parse(
        {"formula": "r2 ~ (Anger + Gender) + (1 | id) + (1 | item)", "REML": False, "family": "binomial"}
    )
    assert verbagg.fixed == "Anger + Gender" and verbagg.terms == (("1", "id"), ("1", "item"))
    assert unsupported("gpboost", verbagg) is None
    nested = Model.parse({"formula": "y ~ x + (1 + x | a) + (1 + x | a:b)", "REML": True, "family": None})
    assert nested.formula("y", join_groups=True) == "y ~ x + (1 + x | a) + (1 + x | a_b)"
    assert unsupported("gpboost", nested) == "no correlated random slopes" and unsupported("glmm", nested) is None
    cbpp = Model.parse({"formula": "cbind(k, n - k) ~ period + (1 | herd)", "REML": False, "family": "binomial"})
    assert cbpp.cbind == ("k", "n - k") and cbpp.fixed == "period"


def test_process_clock_takes_the_cpu_time_where_it_was_measured():
    fit = {"seconds": 2.0, "cpu_seconds": 1.5}
    assert table.on_clock(fit, "process")["seconds"] == 1.5 and table.on_clock(fit, "wall") == fit
    analysis = {"seconds": 2.0, "cpu_seconds": None, "fit_seconds": 0.5}
    assert table.on_clock(analysis, "process") == analysis
