"""Factors in the fixed part coded as R codes them: contr.poly for ordered factors, unused levels dropped,
new levels refused at prediction, pandas' "string" dtype as a factor.

Reference numbers come from lme4 1.1-31 (R 4.2.2), written by tests/fixtures/input_data.R to
tests/fixtures/input_data.json.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import skmixed
from skmixed.datasets import load
from skmixed.exceptions import DataError, InputError

R = json.loads((Path(__file__).parent / "fixtures" / "input_data.json").read_text())


def fit(formula, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return skmixed.lmer(formula, data, **kw)


@pytest.fixture(scope="module")
def insteval():
    return load("InstEval")


@pytest.fixture(scope="module")
def insteval_fit(insteval):
    return fit("y ~ studage + lectage + service + (1 | dept)", insteval)


@pytest.mark.parametrize("ref", R["contr_poly"], ids=lambda r: f"k={r['k']}")
def test_contr_poly_is_r_contr_poly(ref):
    from skmixed.contrasts import contr_poly

    k = ref["k"]
    expected = np.asarray(ref["values"]).reshape(k - 1, k).T  # R's matrices are column-major
    np.testing.assert_allclose(contr_poly(k), expected, rtol=0, atol=2e-15)


def test_ordered_factor_gets_polynomial_contrasts_as_in_lme4(insteval_fit):
    ref, m = R["insteval_ordered"], insteval_fit
    assert list(m.fixef.index) == ref["fixef_names"]  # studage.L ... lectage^4, lectage^5
    np.testing.assert_allclose(m.fixef, ref["fixef"], rtol=1e-6)
    np.testing.assert_allclose(m.fixef_se, ref["fixef_se"], rtol=1e-5)
    np.testing.assert_allclose(m.theta, ref["theta"], rtol=1e-5)
    assert m.sigma == pytest.approx(ref["sigma"], rel=1e-8)
    assert m.objective == pytest.approx(ref["objective"], rel=1e-11)
    np.testing.assert_allclose(m.fitted[:10], ref["fitted_head"], rtol=1e-7)


def test_prediction_codes_new_data_with_the_fitted_polynomial_contrasts(insteval, insteval_fit):
    ref, m = R["insteval_ordered"], insteval_fit
    rows = insteval.iloc[ref["rows"]]
    np.testing.assert_allclose(m.predict(rows), ref["predict_new"], rtol=1e-7)
    np.testing.assert_allclose(m.predict(rows, re_form="~0"), ref["predict_new_population"], rtol=1e-7)
    # the same rows with the ordered factors as plain strings (or unordered): still coded by contr.poly
    plain = rows.assign(studage=rows["studage"].astype(str), lectage=rows["lectage"].astype(object))
    np.testing.assert_allclose(m.predict(plain), ref["predict_new"], rtol=1e-7)
    # and after a pickle round trip (the spec names its materializer, found again on import)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(m)).predict(plain), ref["predict_new"], rtol=1e-7)


def test_unordered_factors_get_treatment_contrasts_with_the_same_fit(insteval, insteval_fit):
    ref = R["insteval_unordered"]
    unordered = insteval.assign(
        studage=insteval["studage"].cat.as_unordered(), lectage=insteval["lectage"].cat.as_unordered()
    )
    m = fit("y ~ studage + lectage + service + (1 | dept)", unordered)
    assert list(m.fixef.index) == ref["fixef_names"]
    np.testing.assert_allclose(m.fixef, ref["fixef"], rtol=1e-6)
    assert m.objective == pytest.approx(ref["objective"], rel=1e-11)
    np.testing.assert_allclose(m.fitted, insteval_fit.fitted, rtol=1e-7)  # a reparametrisation of X


@pytest.mark.parametrize("how", ["categories", "missing rows"])
def test_unused_levels_are_dropped_before_coding(how):
    """A Categorical with categories 0..9 used only for 2..9: R's reference level is 2, not the unused 0."""
    ref = R["sleepstudy_unused_levels"]
    sl = load("sleepstudy")
    sl["fDays"] = pd.Categorical(sl["Days"], categories=range(10))
    if how == "categories":
        data = sl[sl["Days"] >= 2]
    else:  # the rows of days 0 and 1 are dropped for a missing response, leaving their levels unused
        data = sl.assign(Reaction=sl["Reaction"].where(sl["Days"] >= 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", skmixed.RankDeficiencyWarning)  # no level is dropped as aliased
        warnings.filterwarnings("ignore", message="36 rows with missing values")
        m = skmixed.lmer("Reaction ~ fDays + (1 | Subject)", data)
    assert list(m.fixef.index) == ref["fixef_names"]
    np.testing.assert_allclose(m.fixef, ref["fixef"], rtol=1e-9)
    np.testing.assert_allclose(m.theta, ref["theta"], rtol=1e-6)
    assert m.objective == pytest.approx(ref["objective"], rel=1e-12)


def test_ordered_factor_with_unused_levels_gets_contr_poly_of_the_levels_left():
    ref = R["sleepstudy_ordered_unused"]
    sl = load("sleepstudy")
    sl["oDays"] = pd.Categorical(sl["Days"], categories=range(10), ordered=True)
    m = fit("Reaction ~ oDays + (1 | Subject)", sl[sl["Days"] >= 2])
    assert list(m.fixef.index) == ref["fixef_names"]  # oDays.L ... oDays^7: 8 levels left
    np.testing.assert_allclose(m.fixef, ref["fixef"], rtol=1e-9, atol=1e-9)
    assert m.objective == pytest.approx(ref["objective"], rel=1e-12)


def test_full_rank_coding_of_an_ordered_factor_is_one_column_per_level():
    """Without an intercept R codes the factor by indicators (contrasts apply to reduced rank only)."""
    sl = load("sleepstudy")
    sl["oDays"] = pd.Categorical(sl["Days"] % 3, ordered=True)
    m = fit("Reaction ~ 0 + oDays + (1 | Subject)", sl)
    assert list(m.fixef.index) == ["oDays0", "oDays1", "oDays2"]
    means = fit("Reaction ~ oDays + (1 | Subject)", sl)
    np.testing.assert_allclose(m.fitted, means.fitted, rtol=1e-8)


def test_new_level_of_a_fixed_effect_factor_is_an_error_naming_it():
    """lme4 stops (its message in 1.1-31: {R[new_level_error]!r}); the old code predicted the reference level."""
    assert R["new_level_error"] != "no error"
    sl = load("sleepstudy")
    sl["fDays"] = sl["Days"].astype(str)
    m = fit("Reaction ~ fDays + (1 | Subject)", sl[sl["Days"] <= 8])
    new = sl[sl["Days"] == 9].head(2)
    with pytest.raises(DataError, match=r"factor 'fDays' has new level 9"):
        m.predict(new)
    with pytest.raises(DataError, match=r"new levels 10, 11"):
        m.predict(new.assign(fDays=["10", "11"]))
    np.testing.assert_allclose(m.predict(sl[sl["Days"] <= 8]), m.fitted, rtol=1e-12)


def test_new_level_of_a_factor_in_a_random_effects_term_is_an_error():
    sl = load("sleepstudy")
    sl["half"] = np.where(sl["Days"] < 5, "early", "late")
    m = fit("Reaction ~ Days + (0 + half | Subject)", sl)
    with pytest.raises(DataError, match=r"factor 'half' has new level middle"):
        m.predict(sl.head(3).assign(half="middle"))


def test_a_factor_with_one_level_is_an_error_as_in_r():
    sl = load("sleepstudy")
    sl["lab"] = np.where(sl["Days"] >= 0, "a", None)
    with pytest.raises(InputError, match=r"factor 'lab' has 1 level \['a'\].*2 or more levels"):
        fit("Reaction ~ Days + lab + (1 | Subject)", sl)
    sl["lab"] = np.where(sl["Days"] > 4, "late", None)  # two levels, one of them only on dropped rows
    sl["lab2"] = sl["lab"].where(sl["Days"] < 7)
    with pytest.raises(InputError, match=r"factor 'lab2' has 1 level"):
        fit("Reaction ~ Days + lab2 + (1 | Subject)", sl)


@pytest.mark.parametrize("dtype", ["string", "category", "str_object"])
def test_string_dtypes_are_factors_like_object_strings(dtype):
    sl = load("sleepstudy")
    words = np.where(sl["Days"] < 3, "low", np.where(sl["Days"] < 7, "mid", "high"))
    reference = fit("Reaction ~ band + (1 | Subject)", sl.assign(band=pd.Series(words, dtype=object)))
    column = pd.Series(words, dtype=object if dtype == "str_object" else dtype)
    m = fit("Reaction ~ band + (1 | Subject)", sl.assign(band=column))
    assert list(m.fixef.index) == ["(Intercept)", "bandlow", "bandmid"]  # levels sorted: high, low, mid
    np.testing.assert_allclose(m.fixef, reference.fixef, rtol=1e-12)
    np.testing.assert_allclose(m.predict(sl.assign(band=pd.Series(words, dtype="string"))), m.fitted, rtol=1e-12)


def test_a_missing_factor_value_in_new_data_predicts_nan_not_the_reference_level():
    sl = load("sleepstudy")
    sl["half"] = np.where(sl["Days"] < 5, "early", "late")
    m = fit("Reaction ~ Days + half + (1 | Subject)", sl)
    new = sl.head(3).assign(half=[None, "early", np.nan])
    pred = m.predict(new)
    assert np.isnan(pred[[0, 2]]).all()
    assert pred[1] == pytest.approx(m.fitted[1], rel=1e-12)


@pytest.mark.parametrize("column, value, fitted_as", [("Days", "3", "numbers"), ("half", 1, "a factor")])
def test_new_data_must_give_a_factor_where_the_fit_had_one(column, value, fitted_as):
    """R: "variable 'x' was fitted with type "numeric" but type "character" was supplied"."""
    sl = load("sleepstudy")
    sl["half"] = np.where(sl["Days"] < 5, "early", "late")
    m = fit("Reaction ~ Days + half + (1 | Subject)", sl)
    with pytest.raises(DataError, match=f"'{column}' was fitted as {fitted_as}"):
        m.predict(sl.head(2).assign(**{column: value}))


# lme4 1.1-31 on sleepstudy with long = Days > 4 (a logical column): REML criterion and fixef, printed with
# sprintf("%.10f") / ("%.8f") from R 4.2.2
LOGICAL = [
    ("Reaction ~ long + (1 | Subject)", 1813.8266375410, {"(Intercept)": 271.63017889, "longTRUE": 53.75542556}),
    ("Reaction ~ 0 + long + (1 | Subject)", 1813.8266375410, {"longFALSE": 271.63017889, "longTRUE": 325.38560444}),
    (
        "Reaction ~ Days:long + (1 | Subject)",
        1782.5693174425,
        {"(Intercept)": 254.48682585, "Days:longFALSE": 8.46416731, "Days:longTRUE": 10.15911386},
    ),
]


@pytest.mark.parametrize("formula,reml,fixef", LOGICAL)
def test_a_logical_column_is_a_false_true_factor_as_in_r(formula, reml, fixef):
    from skmixed import datasets

    sleep = datasets.load("sleepstudy").assign(long=lambda df: df.Days > 4)
    m = skmixed.lmer(formula, sleep)
    assert m.objective == pytest.approx(reml, abs=1e-9)
    assert list(m.fixef.index) == list(fixef)
    np.testing.assert_allclose(m.fixef.to_numpy(), list(fixef.values()), rtol=1e-8)
    np.testing.assert_allclose(m.predict(sleep), m.fitted, rtol=1e-12)
    nullable = sleep.assign(long=sleep.long.astype("boolean"))
    np.testing.assert_allclose(m.predict(nullable), m.fitted, rtol=1e-12)


def test_factor_of_an_ordered_factor_stays_ordered_as_in_r():
    """R's factor(x) keeps x ordered (ordered = is.ordered(x)), so polynomial contrasts: lme4 1.1-31 on InstEval,
    lmer(y ~ factor(studage) + (1|dept)), REML criterion and fixef printed with sprintf("%.10f")."""
    m = skmixed.lmer("y ~ factor(studage) + (1 | dept)", load("InstEval"))
    assert list(m.fixef.index) == ["(Intercept)", "factor(studage).L", "factor(studage).Q", "factor(studage).C"]
    assert m.objective == pytest.approx(250105.8765364453, abs=1e-6)
    np.testing.assert_allclose(m.fixef, [3.2134285396, 0.0297577975, 0.0270172820, 0.0281074019], rtol=0, atol=1e-9)
