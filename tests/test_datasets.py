"""skmixed.datasets: the shipped data sets, their sizes and structure, R's factor levels, descriptions."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from reference import DATA, as_list, data_file

from skmixed import datasets

SHIPPED = Path(datasets.__file__).parent / "data"

# name: (rows, {grouping factor: number of levels}) as the issue and the seeds state them
SIZES = {
    "Exam": (4059, {"school": 65}),
    "ScotsSec": (3435, {"primary": 148, "second": 19}),
    "Chem97": (31022, {"school": 2410, "lea": 131}),
    "Hsb82": (7185, {"school": 160}),
    "Orthodont": (108, {"Subject": 27}),
    "sleepstudy": (180, {"Subject": 18}),
    "Dyestuff": (30, {"Batch": 6}),
    "Dyestuff2": (30, {"Batch": 6}),
    "Penicillin": (144, {"plate": 24, "sample": 6}),
    "Pastes": (60, {"batch": 10, "sample": 30}),
    "cbpp": (56, {"herd": 15}),
    "VerbAgg": (7584, {"id": 316, "item": 24}),
    "InstEval": (73421, {"s": 2972, "d": 1128, "dept": 14}),
    "Contraception": (1934, {"district": 60}),
    "grouseticks": (403, {"BROOD": 118, "LOCATION": 63}),
}


def test_names_lists_every_data_set_the_issue_names():
    assert set(datasets.names()) == set(SIZES)
    assert datasets.names() == sorted(datasets.names())


@pytest.mark.parametrize("name", sorted(SIZES))
def test_sizes_and_grouping_factors(name):
    rows, groups = SIZES[name]
    df = datasets.load(name)
    assert len(df) == rows
    for col, n_levels in groups.items():
        assert isinstance(df[col].dtype, pd.CategoricalDtype)
        assert df[col].nunique() == n_levels
    assert df.attrs["name"] == name


def test_crossed_and_nested_structure():
    scots = datasets.load("ScotsSec")
    seconds_per_primary = scots.groupby("primary", observed=True)["second"].nunique()
    assert (seconds_per_primary > 1).any()  # crossed: pupils of one primary go to several secondaries
    chem = datasets.load("Chem97")
    assert (chem.groupby("school", observed=True)["lea"].nunique() == 1).all()  # nested: one LEA per school
    assert chem["student"].nunique() == len(chem)


def test_orthodont_is_potthoff_roy():
    o = datasets.load("Orthodont")
    assert sorted(o["age"].unique()) == [8, 10, 12, 14]
    sexes = o.groupby("Subject", observed=True)["Sex"].first().value_counts()
    assert sexes["Male"] == 16 and sexes["Female"] == 11


@pytest.mark.parametrize(
    "name, column, levels, ordered",
    [
        ("Exam", "schgend", ["mixed", "boys", "girls"], False),
        ("Exam", "sex", ["F", "M"], False),
        ("ScotsSec", "sex", ["M", "F"], False),
        ("Chem97", "gender", ["M", "F"], False),
        ("Orthodont", "Sex", ["Male", "Female"], False),
        ("Hsb82", "sector", ["Public", "Catholic"], False),
        ("Contraception", "livch", ["0", "1", "2", "3+"], False),
        ("Contraception", "use", ["N", "Y"], False),
        ("VerbAgg", "resp", ["no", "perhaps", "yes"], True),
        ("cbpp", "period", ["1", "2", "3", "4"], False),
    ],
)
def test_factor_levels_in_r_order(name, column, levels, ordered):
    col = datasets.load(name)[column]
    assert list(col.cat.categories) == levels
    assert col.cat.ordered is ordered


@pytest.mark.parametrize("name", sorted(SIZES))
def test_matches_the_r_export_used_by_the_reference_fits(name):
    """Each shipped data set equals the independent R export the lme4 reference fits were made on."""
    ref = pd.read_csv(data_file(name))
    levels = json.loads((DATA / f"{name}.levels.json").read_text())
    df = datasets.load(name)
    assert list(df.columns) == list(ref.columns)
    for col in df.columns:
        if col in levels:
            assert list(df[col].cat.categories) == as_list(levels[col]), col
            assert (df[col].astype(str).to_numpy() == ref[col].astype(str).to_numpy()).all(), col
        else:
            np.testing.assert_allclose(
                df[col].to_numpy(dtype=float), ref[col].to_numpy(dtype=float), rtol=1e-12, err_msg=col
            )


def test_describe_says_what_and_where_from():
    text = datasets.describe("Exam")
    assert "4,059" in text and "65 schools" in text and "mlmRev" in text
    for name in datasets.names():
        assert len(datasets.describe(name)) > 80
        assert "Exported from R package" in datasets.describe(name)


def test_names_are_case_insensitive_and_unknown_names_list_the_choices():
    assert len(datasets.load("exam")) == 4059
    with pytest.raises(KeyError, match="available: Chem97"):
        datasets.load("Exams")
    with pytest.raises(KeyError, match="no data set 'nope'"):
        datasets.describe("nope")


def test_each_load_is_a_fresh_frame():
    a = datasets.load("sleepstudy")
    a.loc[0, "Reaction"] = -1.0
    assert datasets.load("sleepstudy").loc[0, "Reaction"] != -1.0


def test_shipped_compressed_with_a_description_each():
    files = {p.name for p in SHIPPED.iterdir()}
    assert files == {f"{n}.csv.gz" for n in SIZES} | {f"{n}.json" for n in SIZES}
    assert sum(p.stat().st_size for p in SHIPPED.iterdir()) < 2_000_000
