"""Every formula form lme4 accepts, fitted and named as lme4 1.1-31 does.

Reference numbers: tests/fixtures/formula_forms.json, written by tests/fixtures/formula_forms.R
(lme4 1.1-31, R 4.2) from lme4's sleepstudy, which skmixed ships, with the columns that
:func:`sleep` adds here.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import skmixed
from skmixed import datasets
from skmixed.exceptions import FormulaError
from skmixed.formula import parse_formula
from skmixed.model_matrix import design_matrix, formula_context
from skmixed.rnames import from_python
from skmixed.rsyntax import deparse, parse, to_python

R = json.loads((Path(__file__).parent / "fixtures" / "formula_forms.json").read_text(encoding="utf-8"))


def as_list(value):
    return value if isinstance(value, list) else [value]


@pytest.fixture(scope="module")
def sleep():
    d = datasets.load("sleepstudy")
    d["days.since"] = d["Days"]
    d["subj.id"] = d["Subject"]
    d["my subject"] = d["Subject"]
    d["Élève"] = d["Subject"]
    d["my x"] = d["Days"]
    d["long"] = d["Days"] > 4
    d["grp"] = pd.Categorical(np.array(["a", "b", "c"])[d["Days"] % 3])
    return d


def fit(formula, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return skmixed.lmer(formula, data, **kw)


@pytest.mark.parametrize("ref", R["lmer"], ids=[r["formula"] for r in R["lmer"]])
def test_lmer_form_matches_lme4(ref, sleep):
    m = fit(ref["formula"], sleep)
    assert list(m.fixef.index) == as_list(ref["fixef_names"])
    np.testing.assert_allclose(m.objective, ref["REML"], rtol=1e-10)
    np.testing.assert_allclose(m.fixef.to_numpy(), as_list(ref["fixef"]), rtol=2e-6)
    assert [t.group for t in m.re.terms] == as_list(ref["cnms_groups"])
    assert [t.effects for t in m.re.terms] == [as_list(v) for v in ref["cnms"].values()]
    assert sorted(m.ngroups) == sorted(as_list(ref["groups"]))


def test_bare_bar_is_the_whole_right_side():
    """lme4's findbars/nobars: in `y ~ x | g` the bar takes the whole right side; the fixed part is 1."""
    for text, lhs in [
        ("y ~ x | g", "x"),
        ("y ~ (1 + x) | g", "1 + x"),
        ("y ~ x + 1 | g", "x + 1"),
        ("y ~ ((1 + x | g))", "1 + x"),
    ]:
        p = parse_formula(text)
        assert (p.fixed, [(b.lhs, b.group) for b in p.bars]) == ("1", [(lhs, "g")])
    assert [(b.lhs, b.group) for b in parse_formula("y ~ x || g/h").bars] == [
        ("1", "g"),
        ("0 + x", "g"),
        ("1", "h:g"),
        ("0 + x", "h:g"),
    ]


def test_uncorrelated_terms_expand_interactions_as_r_terms():
    assert [b.lhs for b in parse_formula("y ~ (x * z || g)").bars] == ["1", "0 + x", "0 + z", "0 + x:z"]


def test_names_a_formula_quotes_reach_the_data(sleep):
    p = parse_formula("Reaction ~ days.since + `my x` + (0 + days.since | `my subject`) + (1 | Élève)")
    assert p.fixed == "`days.since` + `my x`"
    assert [(b.lhs, b.group) for b in p.bars] == [("0 + `days.since`", "my subject"), ("1", "Élève")]
    m = fit(p.text, sleep)
    assert list(m.ranef) == ["my subject", "Élève"]
    assert list(m.ranef["my subject"].columns) == ["days.since"]


@pytest.mark.parametrize("response", ["Reaction > 250", "I(Reaction > 250)", "(Reaction > 250)"])
def test_logical_response_is_a_binomial_success(response, sleep):
    ref = R["glmer"][0]
    m = skmixed.glmer(f"{response} ~ Days + (1 | Subject)", sleep, family="binomial")
    explicit = skmixed.glmer(
        "y01 ~ Days + (1 | Subject)", sleep.assign(y01=(sleep["Reaction"] > 250) * 1.0), family="binomial"
    )
    np.testing.assert_allclose(m.fixef.to_numpy(), explicit.fixef.to_numpy(), rtol=1e-12)
    assert list(m.fixef.index) == as_list(ref["fixef_names"])
    # lme4's optimizer stops at a log-likelihood 6e-4 lower; the estimates agree to 3e-3
    assert m.loglik >= ref["logLik"]
    np.testing.assert_allclose(m.fixef.to_numpy(), ref["fixef"], rtol=3e-3)


def test_cbind_response_matches_lme4():
    ref = R["glmer"][1]
    m = skmixed.glmer(ref["formula"], datasets.load("cbpp"), family="binomial")
    assert list(m.fixef.index) == ref["fixef_names"]
    assert m.loglik >= ref["logLik"]  # lme4 stops 3e-4 lower
    np.testing.assert_allclose(m.fixef.to_numpy(), ref["fixef"], rtol=5e-4)


@pytest.mark.parametrize("ref", R["bases"], ids=[b["call"] for b in R["bases"]])
def test_spline_bases_are_r_splines(ref):
    """ns and bs give R's basis (not only its span), on the data and, with the fit's knots, on new data."""
    data = pd.DataFrame({"x": R["spline_x"]})
    design = design_matrix(f"0 + {to_python(parse(ref['call']))}", data, "test")
    np.testing.assert_allclose(design.values, np.array(ref["values"]), rtol=1e-12, atol=1e-14)
    new = design.spec.get_model_matrix(pd.DataFrame({"x": R["spline_new"]}), context=formula_context())
    np.testing.assert_allclose(np.asarray(new, dtype=float), np.array(ref["new"]), rtol=1e-12, atol=1e-14)


def test_predictions_reuse_the_fits_transforms(sleep):
    """ns knots, poly coefficients, relevel's and logical factors' levels come from the fit, not from newdata."""
    m = fit(
        "Reaction ~ ns(Days, 3) + poly(Days, 2) + relevel(factor(Days %/% 3), ref = '2') + I(Days > 4) + (1 | Subject)",
        sleep,
    )
    rows = [3, 50, 101, 179]
    np.testing.assert_allclose(m.predict(sleep.iloc[rows]), m.fitted[rows], rtol=1e-12)


@pytest.mark.parametrize("expression", list(R["deparse"]))
def test_deparse_is_r_deparse(expression):
    tree = parse(expression)
    assert deparse(tree) == R["deparse"][expression]
    if "%in%" not in expression or "(" in expression:  # through formulaic's Python and back, as columns are named
        assert deparse(from_python(to_python(tree))) == R["deparse"][expression]


@pytest.mark.parametrize(
    "formula, fragment",
    [
        ("y ~ x * (1 | g)", "add random-effects terms with '+'"),
        ("y ~ log((1 | g)) + x", "add random-effects terms with '+'"),
        ("y ~ I(x > 2) == TRUE + (1 | g)", "put the comparison in parentheses"),
        ("y ~ !long + (1 | g)", "put the comparison in parentheses"),
        ("y ~ x + (1 | factor(g))", "add it to the DataFrame as a column"),
        ("y ~ . + (1 | g)", "list the columns"),
        ("y ~ interaction(a, b) + (1 | g)", "write the interaction with ':'"),
        ("y ~ cut(x, 3) + (1 | g)", "pandas.cut"),
        ("y ~ x[1] + (1 | g)", "indexing"),
        ("y ~ d$x + (1 | g)", "'$'"),
        ("y ~ (x %in% c(1, 2)) + (1 | g)", "for membership write I(x %in% c(...))"),
        ("y ~ is.finite(x) + (1 | g)", "unknown function is.finite()"),
        ("y ~ a < b < c + (1 | g)", "cannot chain comparisons"),
        ("y ~ x + (1 | `a:b`)", "rename the column"),
        ("(1 | g) ~ x + (1 | g)", "left of '~'"),
    ],
)
def test_constructs_that_cannot_be_read_name_themselves(formula, fragment):
    with pytest.raises(FormulaError) as err:
        parse_formula(formula)
    assert fragment in str(err.value)


def test_r_functions_evaluate_as_r(sleep):
    m = fit("Reaction ~ relevel(factor(Days %/% 3), ref = 2) + (1 | Subject)", sleep)
    assert list(m.fixef.index)[1:] == [
        "relevel(factor(Days%/%3), ref = 2)0",
        "relevel(factor(Days%/%3), ref = 2)2",
        "relevel(factor(Days%/%3), ref = 2)3",
    ]  # ref = 2: the second level, "1"
    with pytest.raises(FormulaError, match="not a level"):
        fit("Reaction ~ relevel(factor(Days), ref = 'z') + (1 | Subject)", sleep)
    data = sleep.assign(code=sleep["Days"].astype(str))
    numeric = fit("Reaction ~ as.numeric(code) + (1 | Subject)", data)
    np.testing.assert_allclose(numeric.fixef.to_numpy(), fit("Reaction ~ Days + (1 | Subject)", data).fixef.to_numpy())


def test_cell_magic_keeps_hashes_inside_backquoted_names():
    from skmixed.magics import formula_from_cell

    assert formula_from_cell("y ~ `dose #1` + (1 | g)  # note") == "y ~ `dose #1` + (1 | g)"


def test_python_spellings_of_r_constants_are_read(sleep):
    """raw=True (Python) means R's raw = TRUE, and the columns are named as R names them."""
    ref = next(r for r in R["lmer"] if r["formula"] == "Reaction ~ poly(Days, 2, raw = TRUE) + (1 | Subject)")
    m = fit("Reaction ~ poly(Days, 2, raw=True) + (1|Subject)", sleep)
    assert list(m.fixef.index) == ref["fixef_names"]
    np.testing.assert_allclose(m.fixef.to_numpy(), ref["fixef"], rtol=2e-6)
