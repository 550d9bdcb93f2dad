"""``%%lmer --confint``: the summary is displayed, then the intervals, which are the cell's value."""

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from skmixed import datasets


@pytest.fixture(scope="module")
def shell():
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "skmixed.magics")
    ip.user_ns["sleep"] = datasets.load("sleepstudy")
    yield ip
    for name in ("sleep", "fm_ci"):
        ip.user_ns.pop(name, None)


@pytest.mark.parametrize("method", ["wald", "Profile"])
def test_confint_shows_the_summary_then_the_intervals(shell, capsys, method):
    result = shell.run_cell(f"%%lmer -d sleep -o fm_ci --confint {method}\nReaction ~ Days + (Days | Subject)\n")
    assert result.error_in_exec is None
    fit = shell.user_ns["fm_ci"]
    shown = capsys.readouterr().out
    assert "Linear mixed model fit by REML" in shown  # the summary, displayed before the intervals
    assert isinstance(result.result, pd.DataFrame)
    pd.testing.assert_frame_equal(result.result, fit.confint(method.lower()))


def test_confint_line_magic_and_bad_uses(shell):
    result = shell.run_cell("%lmer -d sleep --confint wald Reaction ~ Days + (1 | Subject)")
    assert list(result.result.index) == ["sd_(Intercept)|Subject", "sigma", "(Intercept)", "Days"]
    quiet = shell.run_cell("%%lmer -d sleep -q --confint wald\nReaction ~ Days + (1 | Subject)\n")
    assert isinstance(quiet.error_in_exec, UsageError) and "-q/--quiet" in str(quiet.error_in_exec)
    bad = shell.run_cell("%%lmer -d sleep --confint bogus\nReaction ~ Days + (1 | Subject)\n")
    assert isinstance(bad.error_in_exec, UsageError)


def test_confint_with_ddf(shell):
    """--ddf sets the t tests of the summary shown before the intervals; the cell's value is the intervals whether or
    not -o keeps the fit."""
    result = shell.run_cell("%%lmer -d sleep --ddf kr --confint wald\nReaction ~ Days + (Days | Subject)\n")
    assert result.error_in_exec is None and list(result.result.columns) == ["lower", "upper"]
    kept = shell.run_cell("%%lmer -d sleep -o fm_kr --ddf kr --confint wald\nReaction ~ Days + (Days | Subject)\n")
    pd.testing.assert_frame_equal(kept.result, result.result)
    html = shell.display_formatter.format(shell.user_ns["fm_kr"])[0]["text/html"]
    assert "t-tests use Kenward-Roger" in html
