"""Bad input gets a clear error naming the problem (and the fix), never a deep traceback or a silent answer."""

import numpy as np
import pandas as pd
import pytest

import skmixed
from skmixed import DataError, FormulaError


def test_unknown_column_suggests_close_names(sleepstudy):
    with pytest.raises(DataError, match=r"'Reactoin' is not a column.*'Reaction'"):
        skmixed.lmer("Reactoin ~ Days + (1 | Subject)", sleepstudy)
    with pytest.raises(DataError, match=r"grouping factor 'Subjct'.*'Subject'"):
        skmixed.lmer("Reaction ~ Days + (1 | Subjct)", sleepstudy)
    with pytest.raises(DataError, match=r"fixed-effect variable 'Dayz'.*'Days'"):
        skmixed.lmer("Reaction ~ Dayz + (1 | Subject)", sleepstudy)
    with pytest.raises(DataError, match=r"random-effect variable 'Dayz'"):
        skmixed.lmer("Reaction ~ Days + (Dayz | Subject)", sleepstudy)


def test_formula_without_bar_points_to_ols(sleepstudy):
    with pytest.raises(FormulaError, match=r"no random-effects term.*\(1 \| group\).*least squares"):
        skmixed.lmer("Reaction ~ Days", sleepstudy)


def test_grouping_factor_with_one_level(sleepstudy):
    df = sleepstudy.assign(one="a")
    with pytest.raises(DataError, match=r"'one' has only 1 level"):
        skmixed.lmer("Reaction ~ Days + (1 | one)", df)


def test_grouping_factor_with_a_level_per_row(sleepstudy):
    df = sleepstudy.assign(row=np.arange(len(sleepstudy)))
    with pytest.raises(DataError, match=r"'row' has 180 levels for 180 observations"):
        skmixed.lmer("Reaction ~ Days + (1 | row)", df)


def test_missing_response_rows_are_dropped_with_a_warning(sleepstudy):
    df = sleepstudy.copy()
    df.loc[[0, 5, 7], "Reaction"] = np.nan
    with pytest.warns(UserWarning, match="3 rows with missing values were dropped"):
        m = skmixed.lmer("Reaction ~ Days + (1 | Subject)", df)
    assert m.nobs == 177
    ref = skmixed.lmer("Reaction ~ Days + (1 | Subject)", df.dropna())
    assert m.objective == pytest.approx(ref.objective, rel=1e-12)


def test_missing_value_in_a_grouping_factor_drops_the_row_once(sleepstudy):
    df = sleepstudy.copy()
    df["Subject"] = df["Subject"].astype(object)
    df.loc[3, "Subject"] = None
    df.loc[3, "Reaction"] = np.nan  # the same row: counted once
    with pytest.warns(UserWarning, match="1 rows with missing values"):
        m = skmixed.lmer("Reaction ~ Days + (1 | Subject)", df)
    assert m.nobs == 179


def test_infinite_response(sleepstudy):
    df = sleepstudy.copy()
    df.loc[2, "Reaction"] = np.inf
    with pytest.raises(DataError, match="infinite"):
        skmixed.lmer("Reaction ~ Days + (1 | Subject)", df)


def test_non_numeric_response(sleepstudy):
    with pytest.raises(DataError, match="'Subject' is not numeric"):
        skmixed.lmer("Subject ~ Days + (1 | Subject)", sleepstudy)


def test_empty_data_and_not_a_dataframe(sleepstudy):
    with pytest.raises(DataError, match="no rows"):
        skmixed.lmer("Reaction ~ Days + (1 | Subject)", sleepstudy.iloc[:0])
    with pytest.raises(DataError, match="pandas DataFrame"):
        skmixed.lmer("Reaction ~ Days + (1 | Subject)", sleepstudy.to_numpy())


def test_bar_typo(sleepstudy):
    with pytest.raises(FormulaError, match="missing '\\)'"):
        skmixed.lmer("Reaction ~ Days + (1 | Subject", sleepstudy)
    with pytest.raises(FormulaError, match="unmatched"):
        skmixed.lmer("Reaction ~ Days + (1 | Subject))", sleepstudy)


def test_bad_transform_is_named(sleepstudy):
    with pytest.raises(DataError, match="non-finite"):
        skmixed.lmer("Reaction ~ log(Days) + (1 | Subject)", sleepstudy)  # log(0)


def test_weights_and_offset_arguments_are_checked(sleepstudy):
    with pytest.raises(DataError, match="'wt' is not a column"):
        skmixed.lmer("Reaction ~ Days + (1 | Subject)", sleepstudy, weights="wt")
    with pytest.raises(DataError, match="3 values but the data have 180 rows"):
        skmixed.lmer("Reaction ~ Days + (1 | Subject)", sleepstudy, offset=[1, 2, 3])
    with pytest.raises(DataError, match="non-negative"):
        skmixed.lmer("Reaction ~ Days + (1 | Subject)", sleepstudy, weights=-np.ones(180))


def test_singular_fit_warns_and_flags():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"y": rng.normal(size=60), "g": np.repeat(list("abcdef"), 10)})
    df["y"] -= df.groupby("g")["y"].transform("mean")  # identical group means: no between-group variance
    with pytest.warns(skmixed.SingularFitWarning):
        m = skmixed.lmer("y ~ 1 + (1 | g)", df)
    assert m.is_singular and m.theta[0] == 0.0


def test_rank_deficiency_drops_columns_with_a_warning(sleepstudy):
    df = sleepstudy.assign(Days2=2 * sleepstudy["Days"])
    with pytest.warns(skmixed.RankDeficiencyWarning, match=r"dropping 1 column.*Days2"):
        m = skmixed.lmer("Reaction ~ Days + Days2 + (1 | Subject)", df)
    assert list(m.fixef.index) == ["(Intercept)", "Days"]


def test_bad_start(sleepstudy):
    with pytest.raises(ValueError, match="start must have 3 values"):
        skmixed.lmer("Reaction ~ Days + (Days | Subject)", sleepstudy, start=[1.0])
