"""Splitting lme4 formulas into response, fixed part, bars and offsets."""

import pytest

from skmixed.exceptions import FormulaError
from skmixed.formula import RandomBar, parse_formula


def bars(text):
    return [(b.lhs, b.group) for b in parse_formula(text).bars]


def test_simple_random_intercept():
    p = parse_formula("y ~ x + (1 | g)")
    assert (p.response, p.fixed, p.offsets) == ("y", "x", ())
    assert p.bars == (RandomBar("1", "g"),)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("y ~ x + (1 + x | g)", [("1 + x", "g")]),
        ("y ~ x + (0 + x | g)", [("0 + x", "g")]),
        ("y ~ x + (x || g)", [("1", "g"), ("0 + x", "g")]),
        ("y ~ (1 + x + z || g)", [("1", "g"), ("0 + x", "g"), ("0 + z", "g")]),
        ("y ~ (0 + x || g)", [("0 + x", "g")]),
        ("y ~ 1 + (1 | a/b)", [("1", "a"), ("1", "b:a")]),
        ("y ~ 1 + (1 | a/b/c)", [("1", "a"), ("1", "b:a"), ("1", "c:b:a")]),
        ("y ~ 1 + (1 | a:b)", [("1", "a:b")]),
        ("y ~ (1|s) + (1|d) + (1|dept)", [("1", "s"), ("1", "d"), ("1", "dept")]),
        ("y ~ x + (1 | g) + (0 + x | g)", [("1", "g"), ("0 + x", "g")]),
    ],
)
def test_bars(text, expected):
    assert bars(text) == expected


def test_fixed_part_keeps_transforms_and_removals():
    assert parse_formula("y ~ x * f + I(x^2) + (1 | g)").fixed == "x * f + _r_value(I(x ** 2))"
    assert parse_formula("y ~ -1 + x + (1 | g)").fixed == "1 - 1 + x"
    assert parse_formula("y ~ 0 + x + (1 | g)").fixed == "0 + x"
    assert parse_formula("y ~ (1 | g)").fixed == "1"
    assert parse_formula("y ~ (a + b)^2 + (1 | g)").fixed == "(a + b)^2"
    assert parse_formula("log(y) ~ poly(x, 2) + (1 | g)").fixed == "poly(x, 2)"


def test_offset_terms_are_split_out():
    p = parse_formula("y ~ x + offset(log(n)) + (1 | g)")
    assert p.offsets == ("log(n)",)
    assert p.fixed == "x"


def test_r_calls_become_python():
    p = parse_formula("log(y) ~ I(x^2) + as.factor(k) + as.numeric(z) + (1 | g)")
    assert (p.response, p.fixed) == ("log(y)", "_r_value(I(x ** 2)) + as_factor(k) + as_numeric(z)")


def test_multiline_formula():
    assert bars("y ~ x +\n   (1 | g)") == [("1", "g")]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("y ~ x + (1 | g", "missing ')'"),
        ("y ~ x + 1 | g)", "unmatched ')'"),
        ("y ~ x + (1 | )", "no grouping factor"),
        ("y ~ x + ( | g)", "nothing before '|'"),
        ("y ~ x + (1 | g + h)", "cannot read the grouping factor"),
        ("x + (1 | g)", "needs one '~'"),
        ("y ~ ", "nothing on the right"),
        ("", "non-empty string"),
        ("y ~ x - (1 | g)", "cannot be removed"),
    ],
)
def test_syntax_errors_name_the_problem(text, fragment):
    with pytest.raises(FormulaError, match=".*") as err:
        parse_formula(text)
    assert fragment in str(err.value)
