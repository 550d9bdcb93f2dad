"""Data that lme4 would refuse, or that deep code used to choke on, give an InputError naming the column and
the fix; odd but valid dtypes fit as their plain equivalents; missing values are dropped before transforms.

Reference numbers for poly()/scale() on the complete rows come from lme4 1.1-31 (R 4.2.2), written by
tests/fixtures/input_data.R to tests/fixtures/input_data.json.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import cross_val_score

import skmixed
from skmixed.datasets import load
from skmixed.estimators import GLMM, GLMMClassifier, MixedLM
from skmixed.exceptions import InputError

R = json.loads((Path(__file__).parent / "fixtures" / "input_data.json").read_text())


def fit(formula, data, glmm=False, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if glmm:
            return skmixed.glmer(formula, data, family="binomial", **kw)
        return skmixed.lmer(formula, data, **kw)


@pytest.fixture
def sleep():
    return load("sleepstudy")


@pytest.fixture
def counts():
    cbpp = load("cbpp")
    return cbpp.assign(failures=cbpp["size"] - cbpp["incidence"])


# --- missing values: dropped on the raw variables, before transforms -----------------------------------
@pytest.mark.parametrize(
    "key, formula",
    [
        ("sleepstudy_poly_complete", "Reaction ~ poly(Days, 2) + (1 | Subject)"),
        ("sleepstudy_scale_complete", "Reaction ~ scale(Days) + (1 | Subject)"),
    ],
)
def test_transforms_see_only_the_complete_rows(sleep, key, formula):
    """lme4 on the complete rows gives these numbers (R's poly() itself stops on NA)."""
    ref = R[key]
    data = sleep.assign(Days=sleep["Days"].astype(float))
    data.loc[ref["dropped_rows"], "Days"] = np.nan
    with pytest.warns(UserWarning, match=f"{len(ref['dropped_rows'])} rows with missing values were dropped"):
        m = skmixed.lmer(formula, data)
    assert m.nobs == len(sleep) - len(ref["dropped_rows"])
    assert list(m.fixef.index) == ref["fixef_names"]
    np.testing.assert_allclose(m.fixef, ref["fixef"], rtol=1e-6)
    assert m.objective == pytest.approx(ref["objective"], rel=1e-10)
    np.testing.assert_allclose(m.fitted[:10], ref["fitted_head"], rtol=1e-6)


@pytest.mark.parametrize(
    "formula",
    [
        "Reaction ~ center(Days) + (1 | Subject)",
        "Reaction ~ 1 + (poly(Days, 2) | Subject)",
        "Reaction ~ log(x + 1) + (1 | Subject)",
    ],
)
def test_missing_rows_are_dropped_before_any_transform(sleep, formula):
    data = sleep.assign(Days=sleep["Days"].astype(float), x=sleep["Days"].astype(float))
    missing = np.arange(0, len(data), 5)
    data.loc[missing, ["Days", "x"]] = np.nan
    complete = data.drop(index=missing).reset_index(drop=True)
    m, ref = fit(formula, data), fit(formula, complete)
    np.testing.assert_allclose(m.fixef, ref.fixef, rtol=1e-10)
    assert m.objective == pytest.approx(ref.objective, rel=1e-12)


ESTIMATORS = [
    (MixedLM, "~ Days + (1 | Subject)", lambda d: d["Reaction"]),
    (GLMM, "~ Days + (1 | Subject)", lambda d: np.round(d["Reaction"] / 10)),
    (GLMMClassifier, "~ Days + (1 | Subject)", lambda d: (d["Reaction"] > 300).astype(int)),
]


@pytest.mark.parametrize("Estimator, formula, target", ESTIMATORS, ids=["MixedLM", "GLMM", "GLMMClassifier"])
def test_estimators_refuse_missing_values_in_fit_and_predict_alike(sleep, Estimator, formula, target):
    X, y = sleep[["Days", "Subject"]].assign(Days=sleep["Days"].astype(float)), target(sleep)
    est = Estimator(formula=formula).fit(X, y)
    holes = X.copy()
    holes.loc[[3, 50], "Days"] = np.nan
    with pytest.raises(ValueError, match=r"missing values \(NaN\) in the columns 'Days' \(2 rows\)"):
        Estimator(formula=formula).fit(holes, y)
    with pytest.raises(ValueError, match=r"NaN.*'Days'"):
        est.predict(holes)
    holes_in_groups = X.assign(Subject=X["Subject"].cat.add_categories("x").where(X.index != 7))
    with pytest.raises(ValueError, match=r"NaN.*'Subject' \(1 row\)"):
        est.predict(holes_in_groups)
    with pytest.raises(ValueError, match="NaN"):
        cross_val_score(Estimator(formula=formula), holes, y, cv=3, error_score="raise")
    assert np.all(np.isfinite(cross_val_score(Estimator(formula=formula), X, y, cv=3)))


def test_array_mode_refuses_missing_values_in_x_in_fit_and_predict(sleep):
    X, y, g = sleep[["Days"]].astype(float), sleep["Reaction"], sleep["Subject"]
    est = MixedLM().fit(X, y, groups=g)
    holes = X.assign(Days=X["Days"].where(X.index != 2))
    for call in (lambda: MixedLM().fit(holes, y, groups=g), lambda: est.predict(holes, groups=g)):
        with pytest.raises(ValueError, match="NaN"):
            call()


# --- one test per input that used to raise from deep code ---------------------------------------------
def _error(formula, data, glmm=False, **kw) -> str:
    with pytest.raises(InputError) as info:
        fit(formula, data, glmm=glmm, **kw)
    return str(info.value)


def test_grouping_column_mixing_ints_and_strings(sleep):
    g = sleep["Subject"].astype(int).astype(object)
    g[::2] = g[::2].astype(str)
    message = _error("Reaction ~ Days + (1 | g)", sleep.assign(g=g))
    assert "grouping factor 'g'" in message and "different types (int, str)" in message


@pytest.mark.parametrize("wrap", [list, lambda v: {"id": v}], ids=["list", "dict"])
def test_grouping_column_of_unhashable_values(sleep, wrap):
    message = _error("Reaction ~ Days + (1 | g)", sleep.assign(g=[wrap(v) for v in sleep["Subject"]]))
    assert "grouping factor 'g' has unhashable values" in message


def test_duplicate_column_names(sleep):
    data = pd.concat([sleep, sleep[["Days"]]], axis=1)
    assert "2 columns named 'Days'" in _error("Reaction ~ Days + (1 | Subject)", data)


@pytest.mark.parametrize("where", ["fixed", "response", "slope"])
@pytest.mark.parametrize("kind", ["datetime", "timedelta", "datetime_tz"])
def test_dates_in_the_model_must_be_numbers(sleep, where, kind):
    days = pd.to_timedelta(sleep["Days"], unit="D")
    value = {
        "datetime": pd.Timestamp("2020-01-01") + days,
        "timedelta": days,
        "datetime_tz": pd.Timestamp("2020-01-01", tz="UTC") + days,
    }[kind]
    formula = {
        "fixed": "Reaction ~ t + (1 | Subject)",
        "response": "t ~ Days + (1 | Subject)",
        "slope": "Reaction ~ Days + (t | Subject)",
    }[where]
    message = _error(formula, sleep.assign(t=value))
    assert "'t' holds dates or durations" in message and "days since a date" in message


@pytest.mark.parametrize("role", ["weights", "offset"])
@pytest.mark.parametrize("value", ["column", "array", "categorical", "datetime", "lists"])
def test_weights_and_offsets_must_be_numbers(sleep, role, value):
    n = len(sleep)
    given = {
        "column": "text",
        "array": np.array(["1"] * n),
        "categorical": "cat",
        "datetime": "when",
        "lists": "lists",
    }[value]
    data = sleep.assign(text="1", cat=pd.Categorical(["1"] * n), when=pd.Timestamp("2020-01-01"), lists=[[1.0]] * n)
    assert f"{role} must be numbers" in _error("Reaction ~ Days + (1 | Subject)", data, **{role: given})


def test_offset_term_must_be_numeric(sleep):
    assert "offset variable 'o' must be numeric" in _error(
        "Reaction ~ Days + offset(o) + (1 | Subject)", sleep.assign(o="1")
    )


def test_binomial_response_with_no_trials_at_all(counts):
    message = _error(
        "cbind(incidence, failures) ~ period + (1 | herd)", counts.assign(incidence=0, failures=0), glmm=True
    )
    assert "every row of 'cbind(incidence, failures)' has zero trials" in message


def test_binomial_response_with_infinite_counts(counts):
    failures = counts["failures"].astype(float)
    failures[3] = np.inf
    message = _error("cbind(incidence, failures) ~ period + (1 | herd)", counts.assign(failures=failures), glmm=True)
    assert "counts in 'cbind(incidence, failures)' must be finite" in message


@pytest.mark.parametrize("column, role", [("Reaction", "response 'Reaction'"), ("Days", "fixed-effect column 'Days'")])
def test_values_too_large_to_square(sleep, column, role):
    message = _error("Reaction ~ Days + (1 | Subject)", sleep.assign(**{column: sleep[column] * 1e300}))
    assert role in message and "too large to square" in message and "rescale" in message
    ok = fit("Reaction ~ Days + (1 | Subject)", sleep.assign(Reaction=sleep["Reaction"] * 1e150))  # simply works
    np.testing.assert_allclose(ok.fixef / 1e150, fit("Reaction ~ Days + (1 | Subject)", sleep).fixef, rtol=1e-8)


@pytest.mark.parametrize("value", [np.nan, None, pd.NA], ids=["nan", "None", "NA"])
@pytest.mark.parametrize(
    "formula",
    [
        "Reaction ~ Days + x + (1 | Subject)",
        "x ~ Days + (1 | Subject)",
        "Reaction ~ Days + (1 | x)",
        "Reaction ~ Days + (x | Subject)",
    ],
)
def test_a_column_with_only_missing_values_is_named(sleep, formula, value):
    assert "column 'x' has only missing values" in _error(formula, sleep.assign(x=value))


@pytest.mark.parametrize("kind", ["complex covariate", "complex response", "interval", "period", "mixed object"])
def test_values_that_are_neither_numbers_nor_factors(sleep, kind):
    data = sleep.assign(
        c=sleep["Days"] + 1j,
        iv=pd.IntervalIndex.from_breaks(np.arange(len(sleep) + 1)),
        p=pd.Period("2020-01", freq="M") + sleep["Days"],
        mix=pd.Series([1, "a"] * (len(sleep) // 2), dtype=object),
    )
    formula, expected = {
        "complex covariate": ("Reaction ~ c + (1 | Subject)", "'c' has complex values"),
        "complex response": ("c ~ Days + (1 | Subject)", "'c' has complex values"),
        "interval": ("Reaction ~ iv + (1 | Subject)", "'iv' has dtype interval"),
        "period": ("Reaction ~ p + (1 | Subject)", "'p' holds dates or durations"),
        "mixed object": ("Reaction ~ mix + (1 | Subject)", "'mix' holds values of types int, str"),
    }[kind]
    assert expected in _error(formula, data)


def test_as_many_fixed_effects_as_observations(sleep):
    message = _error("Reaction ~ r + (1 | Subject)", sleep.assign(r=sleep["Reaction"].astype(str)))
    assert "180 columns for 180 observations" in message


# --- odd but valid dtypes fit as their plain equivalents -------------------------------------------------
@pytest.mark.parametrize("kind", ["float32", "uint8", "Int64", "Float64", "object", "bool"])
def test_numeric_dtypes_fit_as_float(sleep, kind):
    x = (sleep["Days"] % 2 == 0) if kind == "bool" else sleep["Days"]
    reference = fit("Reaction ~ x + (1 | Subject)", sleep.assign(x=x.astype(float)))
    m = fit("Reaction ~ x + (1 | Subject)", sleep.assign(x=x.astype(kind)))
    np.testing.assert_allclose(m.fixef, reference.fixef, rtol=1e-6 if kind == "float32" else 1e-12)
    assert list(m.fixef.index) == ["(Intercept)", "xTRUE" if kind == "bool" else "x"]  # R: a logical is a factor


@pytest.mark.parametrize("kind", ["Int64", "Float64", "object"])
def test_nullable_missing_values_are_dropped_like_nan(sleep, kind):
    x = sleep["Days"].astype(float).where(sleep.index % 9 != 0)
    reference = fit("Reaction ~ x + (1 | Subject)", sleep.assign(x=x))
    values = (
        x.astype(kind) if kind != "object" else pd.Series([None if np.isnan(v) else int(v) for v in x], dtype=object)
    )
    m = fit("Reaction ~ x + (1 | Subject)", sleep.assign(x=values))
    assert m.nobs == reference.nobs == 160
    np.testing.assert_allclose(m.fixef, reference.fixef, rtol=1e-12)


def test_category_of_ints_is_a_factor(sleep):
    m = fit("Reaction ~ d + (1 | Subject)", sleep.assign(d=pd.Categorical(sleep["Days"] % 3)))
    assert list(m.fixef.index) == ["(Intercept)", "d1", "d2"]


@pytest.mark.parametrize("role", ["weights", "offset"])
def test_weights_or_offset_with_only_missing_values(sleep, role):
    assert f"{role} has only missing values" in _error(
        "Reaction ~ Days + (1 | Subject)", sleep.assign(w=np.nan), **{role: "w"}
    )


def test_nullable_booleans_and_sparse_numbers_fit_and_predict_as_floats(sleep):
    flag = sleep["Days"] % 2 == 0
    reference = fit(
        "Reaction ~ Days + flag + (1 | Subject)", sleep.assign(flag=flag.astype(float).where(sleep["Days"] != 5))
    )
    data = sleep.assign(flag=flag.astype("boolean").where(sleep["Days"] != 5))
    m = fit("Reaction ~ Days + flag + (1 | Subject)", data)
    np.testing.assert_allclose(m.fixef, reference.fixef, rtol=1e-12)
    pred = m.predict(data)
    assert np.isnan(pred[data["Days"] == 5]).all()
    np.testing.assert_allclose(pred[m.frame.keep], m.fitted, rtol=1e-12)
    sparse = sleep.assign(Days=pd.arrays.SparseArray(sleep["Days"].astype(float)))
    np.testing.assert_allclose(
        fit("Reaction ~ Days + (Days | Subject)", sparse).fixef,
        fit("Reaction ~ Days + (Days | Subject)", sleep).fixef,
        rtol=1e-12,
    )


def test_estimator_groups_of_complex_numbers_are_levels_by_value(sleep):
    groups = sleep["Subject"].astype(int).to_numpy() + 1j
    est = MixedLM().fit(sleep[["Days"]], sleep["Reaction"], groups=groups)
    np.testing.assert_allclose(est.predict(sleep[["Days"]], groups=groups), est.result_.fitted, rtol=1e-12)
