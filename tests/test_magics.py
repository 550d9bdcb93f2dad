"""The %%lmer / %%glmer magics, driven through IPython's InteractiveShell as a notebook or terminal would."""

from html import unescape as html_unescape

import numpy as np
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import skmixed
from skmixed import datasets
from skmixed.magics import formula_from_cell


@pytest.fixture(scope="module")
def shell():
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "skmixed.magics")
    return ip


@pytest.fixture
def ns(shell):
    sleep = datasets.load("sleepstudy")
    sleep["w"] = np.linspace(0.5, 2.0, len(sleep))
    sleep["off"] = np.tile(np.arange(10.0), 18)
    shell.user_ns.update(sleep=sleep, not_a_frame=[1, 2, 3])
    yield shell.user_ns
    for name in ("sleep", "not_a_frame", "fm", "fm_ml"):
        shell.user_ns.pop(name, None)


def run(shell, cell):
    result = shell.run_cell(cell, store_history=False)
    return result


def user_error(shell, capsys, cell) -> str:
    """Run a cell that must fail with one UsageError message; return that message."""
    result = run(shell, cell)
    assert isinstance(result.error_in_exec, UsageError), result.error_in_exec
    err = capsys.readouterr().err
    assert err.startswith("UsageError: ")
    assert "Traceback" not in err and "skmixed/" not in err
    return err


def test_cell_fits_like_lmer_and_is_the_cells_value(shell, ns):
    result = run(shell, "%%lmer -d sleep -o fm\nReaction ~ Days + (Days | Subject)\n")
    assert result.error_in_exec is None
    direct = skmixed.lmer("Reaction ~ Days + (Days | Subject)", ns["sleep"])
    assert result.result is ns["fm"]
    assert result.result.REML
    np.testing.assert_allclose(result.result.objective, direct.objective, rtol=1e-12)
    np.testing.assert_allclose(result.result.fixef, direct.fixef, rtol=1e-10)
    assert result.result.data_name == "sleep"


def test_multiline_formula_with_comments(shell, ns):
    cell = (
        "%%lmer -d sleep -o fm\n# sleep deprivation\nReaction ~ Days   # fixed\n   + (Days | Subject)  # by subject\n"
    )
    result = run(shell, cell)
    assert result.result.formula == "Reaction ~ Days + (Days | Subject)"


def test_formula_from_cell_keeps_hashes_inside_quotes():
    assert (
        formula_from_cell("y ~ C(g, levels=['#1', '#2'])  # note\n + (1 | g)")
        == "y ~ C(g, levels=['#1', '#2']) + (1 | g)"
    )


def test_ml_weights_offset_match_lmer(shell, ns):
    result = run(shell, "%%lmer -d sleep --ml --weights w --offset off -o fm_ml\nReaction ~ Days + (1 | Subject)")
    direct = skmixed.lmer("Reaction ~ Days + (1 | Subject)", ns["sleep"], REML=False, weights="w", offset="off")
    fit = result.result
    assert not fit.REML
    np.testing.assert_allclose(fit.objective, direct.objective, rtol=1e-12)
    np.testing.assert_allclose(fit.fixef, direct.fixef, rtol=1e-10)
    reml = run(shell, "%%lmer -d sleep --reml\nReaction ~ Days + (1 | Subject)").result
    assert reml.REML


def test_line_magic_takes_the_formula_after_the_options(shell, ns):
    result = run(shell, "%lmer -d sleep --ml -o fm Reaction ~ Days + (1 | Subject)  # one line")
    assert not result.result.REML and result.result.formula == "Reaction ~ Days + (1 | Subject)"
    assert ns["fm"] is result.result


@pytest.mark.parametrize(
    "line, options, formula",
    [
        ("-d sleep y ~ x + (1 | g)", "-d sleep ", "y ~ x + (1 | g)"),
        ("--data=sleep -q --ml y ~ x + (1|g)", "--data=sleep -q --ml ", "y ~ x + (1|g)"),
        ("-d sleep --weights w -o fm log(y) ~ x", "-d sleep --weights w -o fm ", "log(y) ~ x"),
        ("-d sleep", "-d sleep", ""),
    ],
)
def test_line_magic_options_end_where_the_formula_starts(shell, line, options, formula):
    from skmixed.magics.cell import split_line

    parser = shell.magics_manager.magics["line"]["lmer"].parser
    assert split_line(parser, line) == (options, formula)


def test_quiet_displays_nothing_but_keeps_the_fit(shell, ns, capsys):
    result = run(shell, "%%lmer -q -d sleep -o fm\nReaction ~ Days + (1 | Subject)")
    assert result.result is None
    assert capsys.readouterr().out == ""
    assert ns["fm"].nobs == 180


def test_display_is_html_summary_in_jupyter_and_lme4_text_in_a_terminal(shell, ns, capsys):
    fit = run(shell, "%%lmer -d sleep\nReaction ~ Days + (Days | Subject)").result
    out = capsys.readouterr().out
    assert "Linear mixed model fit by REML ['lmerMod']" in out and "Data: sleep" in out
    formats, _ = shell.display_formatter.format(fit)
    assert "skmixed-summary" in formats["text/html"] and "Fixed effects" in formats["text/html"]
    assert formats["text/plain"].startswith("Linear mixed model fit by REML")


@pytest.mark.parametrize(
    "option, title",
    [
        ("", "t-tests use Satterthwaite's method"),
        ("--ddf kr", "t-tests use Kenward-Roger's method"),
        ("--ddf Kenward-Roger", "t-tests use Kenward-Roger's method"),
        ("--ddf none", "['lmerMod']"),
    ],
)
def test_ddf_sets_the_displayed_summarys_tests(shell, ns, option, title):
    fit = run(shell, f"%%lmer -d sleep {option}\nReaction ~ Days + (Days | Subject)").result
    html = html_unescape(shell.display_formatter.format(fit)[0]["text/html"])
    assert title in html and ("Pr(>|t|)" in html) == (option != "--ddf none")


def test_unknown_dataframe_suggests_close_names(shell, ns, capsys):
    err = user_error(shell, capsys, "%%lmer -d slep\nReaction ~ Days + (1 | Subject)")
    assert "no DataFrame named 'slep'" in err and "did you mean 'sleep'" in err
    err = user_error(shell, capsys, "%%lmer -d not_a_frame\nReaction ~ Days + (1 | Subject)")
    assert "'not_a_frame' is a list, not a pandas DataFrame" in err


def test_unknown_column_is_named_with_close_columns(shell, ns, capsys):
    err = user_error(shell, capsys, "%%lmer -d sleep\nReaction ~ Dayz + (Days | Subject)")
    assert "'Dayz'" in err and "did you mean 'Days'" in err
    err = user_error(shell, capsys, "%%lmer -d sleep\nReaction ~ Days + (1 | Subjekt)")
    assert "'Subjekt'" in err and "'Subject'" in err
    err = user_error(shell, capsys, "%%lmer -d sleep --weights wt\nReaction ~ Days + (1 | Subject)")
    assert "'wt'" in err and "'w'" in err


def test_formula_syntax_error_points_at_the_spot(shell, ns, capsys):
    err = user_error(shell, capsys, "%%lmer -d sleep\nReaction ~ Days + (Days | Subject))")
    lines = err.splitlines()
    formula_line = next(ln for ln in lines if "Reaction ~" in ln)
    caret = lines[lines.index(formula_line) + 1]
    assert formula_line[caret.index("^")] == ")" and caret.index("^") == len(formula_line) - 1


@pytest.mark.parametrize(
    "cell, message",
    [
        ("%%lmer -d sleep --famly binomial\ny ~ x + (1 | g)", "unrecognized arguments: --famly"),
        ("%%lmer\nReaction ~ Days + (1 | Subject)", "required: -d/--data"),
        ("%%lmer -d sleep --ml --reml\nReaction ~ Days + (1 | Subject)", "either --ml or --reml"),
        ("%%lmer -d sleep --ddf kenward\nReaction ~ Days + (1 | Subject)", "--ddf: ddf must be 'Satterthwaite'"),
        ("%%lmer -d sleep --ml --ddf kr\nReaction ~ Days + (1 | Subject)", "--ddf kr needs a REML fit"),
        ("%%lmer -d sleep -o 2fit\nReaction ~ Days + (1 | Subject)", "'2fit' is not a valid Python variable name"),
        ("%%lmer -d sleep\n# only a comment\n", "no formula"),
        ("%%lmer -d sleep\nReaction ~ Days", "no random-effects term"),
    ],
)
def test_bad_options_and_cells(shell, ns, capsys, cell, message):
    assert message in user_error(shell, capsys, cell)


def test_usage_help(shell, capsys):
    run(shell, "%lmer?")
    out = capsys.readouterr().out
    assert "-d NAME, --data NAME" in out and "--ml" in out and "--weights COL" in out and "%%lmer -d sleepstudy" in out
    run(shell, "%glmer?")
    out = capsys.readouterr().out
    assert "--family NAME" in out and "--link NAME" in out and "--nagq N" in out


# --- %%glmer ---------------------------------------------------------------------------------------------
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


@pytest.fixture
def cbpp_ns(shell):
    cbpp = datasets.load("cbpp")
    cbpp["logsize"] = np.log(cbpp["size"])
    cbpp["negative"] = -cbpp["incidence"]
    shell.user_ns["cbpp"] = cbpp
    yield shell.user_ns
    for name in ("cbpp", "gm"):
        shell.user_ns.pop(name, None)


def test_glmer_cell_fits_like_glmer(shell, cbpp_ns):
    result = run(shell, f"%%glmer -d cbpp -o gm\n{CBPP}  # incidence out of herd size\n")
    assert result.error_in_exec is None and result.result is cbpp_ns["gm"]
    direct = skmixed.glmer(CBPP, cbpp_ns["cbpp"], family="binomial")
    np.testing.assert_allclose(result.result.objective, direct.objective, rtol=1e-12)
    np.testing.assert_allclose(result.result.fixef, direct.fixef, rtol=1e-10)
    assert result.result.data_name == "cbpp" and result.result.nAGQ == 1


@pytest.mark.parametrize(
    "options, formula, kwargs",
    [
        ("--link probit", CBPP, dict(family=skmixed.families.Binomial(link="probit"))),
        ("--nagq 5", CBPP, dict(nAGQ=5)),
        ("--nagq 0", CBPP, dict(nAGQ=0)),
        ("--weights size", "incidence / size ~ period + (1 | herd)", dict(weights="size")),
        (
            "--family poisson --offset logsize",
            "incidence ~ period + (1 | herd)",
            dict(family="poisson", offset="logsize"),
        ),
    ],
)
def test_glmer_options_match_glmer(shell, cbpp_ns, options, formula, kwargs):
    fit = run(shell, f"%%glmer -d cbpp {options}\n{formula}").result
    direct = skmixed.glmer(formula, cbpp_ns["cbpp"], **kwargs)
    np.testing.assert_allclose(fit.objective, direct.objective, rtol=1e-10)
    np.testing.assert_allclose(fit.fixef, direct.fixef, rtol=1e-8, atol=1e-10)
    assert fit.family == direct.family and fit.nAGQ == direct.nAGQ


def test_glmer_line_magic_and_display(shell, cbpp_ns, capsys):
    fit = run(shell, f"%glmer -d cbpp --family binomial {CBPP}").result
    out = capsys.readouterr().out
    assert "Generalized linear mixed model fit by maximum likelihood" in out and "Family: binomial" in out
    formats, _ = shell.display_formatter.format(fit)
    assert "skmixed-summary" in formats["text/html"] and "z value" in formats["text/html"]


@pytest.mark.parametrize(
    "cell, message",
    [
        (f"%%glmer -d cbpp --family binomal\n{CBPP}", "unknown family 'binomal'"),
        (
            f"%%glmer -d cbpp --family poisson --link logit\n{CBPP}",
            "link 'logit' is not available for the poisson family",
        ),
        (f"%%glmer -d cbpp --nagq -1\n{CBPP}", "nAGQ must be an integer from 0"),
        (
            "%%glmer -d cbpp --nagq 5\nincidence / size ~ 1 + (1 | herd) + (1 | period)",
            "single scalar random-effects term",
        ),
        (f"%%glmer -d cbpp --nagq many\n{CBPP}", "argument --nagq: invalid int value: 'many'"),
        (f"%%glmer -d cbpp --ml\n{CBPP}", "unrecognized arguments: --ml"),
        (f"%%glmer -d cbp\n{CBPP}", "did you mean 'cbpp'"),
        ("%%glmer -d cbpp --family poisson\nnegative ~ period + (1 | herd)", "negative"),
        ("%%glmer -d cbpp\ncbind(incidence, size - incidence) ~ perod + (1 | herd)", "did you mean 'period'"),
    ],
)
def test_glmer_user_errors(shell, cbpp_ns, capsys, cell, message):
    assert message in user_error(shell, capsys, cell)


def test_in_a_jupyter_kernel_the_fit_is_html_and_an_error_is_one_line():
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell, new_notebook
    from notebook_kernel import kernel_env

    nb = new_notebook(
        cells=[
            new_code_cell(
                "%load_ext skmixed.magics\nfrom skmixed import datasets\nsleep = datasets.load('sleepstudy')"
            ),
            new_code_cell("%%lmer -d sleep\nReaction ~ Days + (Days | Subject)"),
            new_code_cell("%%lmer -d sleep\nReaction ~ Dayz + (Days | Subject)"),
        ]
    )
    client = NotebookClient(
        nb, kernel_name="python3", timeout=60, allow_errors=True, extra_arguments=["--IPKernelApp.log_level=ERROR"]
    )
    client.execute(env=kernel_env())
    [shown] = nb.cells[1].outputs
    assert shown.output_type == "execute_result"
    assert "skmixed-summary" in shown.data["text/html"] and "Data: sleep" in shown.data["text/plain"]
    [error] = nb.cells[2].outputs
    assert error.output_type == "stream" and error.name == "stderr"
    assert error.text.startswith("UsageError: ") and error.text.count("\n") == 1  # one line, no traceback
    assert "'Dayz'" in error.text and "did you mean 'Days'" in error.text


def test_a_bug_keeps_its_traceback(shell, ns, monkeypatch):
    """Only input errors become one-line usage errors; anything else is a bug and must stay visible."""
    import skmixed.lmm

    def broken(*args, **kwargs):
        raise ValueError("internal failure")

    monkeypatch.setattr(skmixed.lmm, "lmer", broken)
    result = run(shell, "%%lmer -d sleep\nReaction ~ Days + (1 | Subject)")
    assert isinstance(result.error_in_exec, ValueError)
    assert not isinstance(result.error_in_exec, UsageError)
