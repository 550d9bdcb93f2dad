"""Grouping factors keep their levels as values and code new data by value: predictions on the fit's own
data equal the fitted values whatever the grouping column's dtype, and interaction levels never collide."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

import skmixed
from skmixed.datasets import load
from skmixed.exceptions import DataError

FORMULA = "Reaction ~ Days + (Days | Subject)"


def grouping_factor(name, data):
    from skmixed.grouping import grouping_factor

    return grouping_factor(name, data)


def fit(formula, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return skmixed.lmer(formula, data, **kw)


@pytest.fixture(scope="module")
def sleep():
    return load("sleepstudy")


def _subject_as(sleep, kind):
    number = sleep["Subject"].astype(int)
    rank = number.rank(method="dense").astype(int).to_numpy()  # 1..18 in the subjects' order
    columns = {
        "category": sleep["Subject"],
        "int": number,
        "uint8": (rank).astype(np.uint8),
        "float": number.astype(float),
        "Int64": number.astype("Int64"),
        "str": number.astype(str),
        "string": number.astype(str).astype("string"),
        "category_of_ints": pd.Categorical(number),
        "datetime": pd.Timestamp("2021-03-01") + pd.to_timedelta(rank, unit="D"),
        "datetime_tz": pd.Timestamp("2021-03-01", tz="Europe/Paris") + pd.to_timedelta(rank, unit="h"),
        "timedelta": pd.to_timedelta(rank, unit="min"),
        "period": pd.Period("2021-03", freq="M") + rank,
        "bool_pairs": pd.Series(list(zip(rank % 2 == 0, rank)), dtype=object),  # tuples: hashable, ordered
    }
    return sleep.assign(Subject=columns[kind])


KINDS = [
    "category",
    "int",
    "uint8",
    "float",
    "Int64",
    "str",
    "string",
    "category_of_ints",
    "datetime",
    "datetime_tz",
    "timedelta",
    "period",
    "bool_pairs",
]


@pytest.mark.parametrize("kind", KINDS)
def test_every_dtype_of_grouping_column_gives_the_same_fit_and_predictions(sleep, kind):
    reference = fit(FORMULA, sleep)
    data = _subject_as(sleep, kind)
    m = fit(FORMULA, data)
    assert m.objective == pytest.approx(reference.objective, rel=1e-10)
    np.testing.assert_allclose(m.fitted, reference.fitted, rtol=1e-8)
    np.testing.assert_allclose(m.predict(data), m.fitted, rtol=1e-12)  # new data coded by value, not by a string
    np.testing.assert_allclose(m.predict(data, allow_new_levels=False), m.fitted, rtol=1e-12)  # no false new levels
    np.testing.assert_allclose(pickle.loads(pickle.dumps(m)).predict(data.iloc[::-1]), m.fitted[::-1], rtol=1e-12)
    assert m.ngroups == {"Subject": 18}
    blups = m.ranef["Subject"]
    assert blups.index.is_unique and all(isinstance(v, str) for v in blups.index)  # display strings, derived
    codes = grouping_factor("Subject", data).codes
    np.testing.assert_allclose(
        blups.to_numpy()[codes].sum(axis=1),
        reference.ranef["Subject"].to_numpy()[grouping_factor("Subject", sleep).codes].sum(axis=1),
        rtol=1e-6,
        atol=1e-6,
    )


def test_datetime_levels_display_as_dates_and_match_in_new_data(sleep):
    data = _subject_as(sleep, "datetime")
    m = fit(FORMULA, data)
    assert m.ranef["Subject"].index[0] == "2021-03-02"
    new = data.head(2).assign(Subject=["2021-03-02", "2021-03-02 00:00:00"])  # strings parse to the same date
    np.testing.assert_allclose(m.predict(new, allow_new_levels=False), m.fitted[:2], rtol=1e-12)  # subject 308's rows


def test_level_order_is_r_factor_order(sleep):
    """Sorted values (ints numerically: 2 before 10), or a Categorical's categories in their order."""
    data = sleep.assign(g=np.where(sleep["Days"] % 3 == 0, 10, np.where(sleep["Days"] % 3 == 1, 2, 1)))
    assert list(grouping_factor("g", data).labels) == ["1", "2", "10"]
    cat = pd.Categorical(
        sleep["Subject"].astype(str), categories=sorted(sleep["Subject"].astype(str).unique(), reverse=True)
    )
    m = fit(FORMULA, sleep.assign(Subject=cat))
    assert list(m.ranef["Subject"].index) == list(cat.categories)
    orth = load("Orthodont")  # an ordered factor from nlme: levels M16, M05, ... as in R
    assert list(fit("distance ~ age + (1 | Subject)", orth).ranef["Subject"].index) == list(
        orth["Subject"].cat.categories
    )


def test_interaction_levels_with_colons_do_not_collide():
    """("a:b", "c") and ("a", "b:c") both print as "a:b:c" but are two levels, matched part by part."""
    rng = np.random.default_rng(3)
    n = 120
    data = pd.DataFrame(
        {
            "a": np.tile(["a:b", "a"], n // 2),
            "b": np.tile(["c", "b:c"], n // 2),
            "h": np.repeat(np.arange(6), n // 6),
            "x": rng.normal(size=n),
        }
    )
    data.loc[::4, "b"] = "d"
    data["y"] = data["x"] + 3 * (data["a"] == "a") + rng.normal(size=6)[data["h"]] + rng.normal(size=n)
    m = fit("y ~ x + (1 | a:b) + (1 | h)", data)
    assert m.ngroups["a:b"] == 3
    factor = grouping_factor("a:b", data)
    assert list(factor.levels) == [("a", "b:c"), ("a:b", "c"), ("a:b", "d")]  # a varying slowest
    assert list(factor.labels) == ["a:b:c", "a:b:c", "a:b:d"]
    np.testing.assert_allclose(m.predict(data, allow_new_levels=False), m.fitted, rtol=1e-12)
    blups = m.ranef["a:b"]["(Intercept)"].to_numpy()
    assert blups[0] != pytest.approx(blups[1])
    with pytest.raises(DataError, match=r"levels of 'a:b' not in the fit \(a:c\)"):
        m.predict(data.head(1).assign(b="c", a="a"), allow_new_levels=False)


def test_nested_factor_levels_are_observed_combinations():
    pastes = load("Pastes")
    m = fit("strength ~ 1 + (1 | batch/cask)", pastes)
    assert list(m.ranef["cask:batch"].index[:4]) == ["a:A", "a:B", "a:C", "a:D"]  # cask slowest, R's order
    np.testing.assert_allclose(m.predict(pastes, allow_new_levels=False), m.fitted, rtol=1e-12)


def test_strings_for_a_numeric_factor_match_as_r_matches_them(sleep):
    """R's levels are strings: "308" is subject 308 whether the column was fitted as int or as text."""
    data = _subject_as(sleep, "int")
    m = fit(FORMULA, data)
    as_text = data.assign(Subject=data["Subject"].astype(str))
    np.testing.assert_allclose(m.predict(as_text, allow_new_levels=False), m.fitted, rtol=1e-12)
    m_text = fit(FORMULA, as_text)
    np.testing.assert_allclose(m_text.predict(data, allow_new_levels=False), m.fitted, rtol=1e-8)


def test_new_and_missing_grouping_values(sleep):
    m = fit(FORMULA, sleep)
    new = sleep.head(3).assign(Subject=pd.Categorical(["308", "999", None]))
    pred = m.predict(new)
    population = m.predict(new, re_form="~0")
    assert pred[0] == pytest.approx(m.fitted[0], rel=1e-12)
    assert pred[1:] == pytest.approx(population[1:], rel=1e-12)
    with pytest.raises(DataError, match=r"levels of 'Subject' not in the fit \(999\)"):
        m.predict(new, allow_new_levels=False)


def test_population_prediction_needs_no_grouping_column(sleep):
    m = fit(FORMULA, sleep)
    np.testing.assert_allclose(m.predict(sleep[["Days"]], re_form="~0"), m.predict(sleep, re_form="~0"), rtol=1e-12)


def test_grouping_values_that_cannot_be_levels_are_errors_in_new_data(sleep):
    m = fit(FORMULA, sleep)
    with pytest.raises(DataError, match=r"'Subject' has unhashable values \(list\)"):
        m.predict(sleep.head(2).assign(Subject=[[308], [308]]))
