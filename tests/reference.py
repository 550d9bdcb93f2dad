"""Load the lme4 reference fits and their data, all shipped under tests/fixtures.

Two sets of fits, each made with lme4 1.1-31 by the R script beside it:
``fixtures/public`` (keys as written, e.g. ``sleepstudy_slope_reml``) and our own
``fixtures/extra`` (keys ``extra/<id>``).  Their data sets share one directory,
``fixtures/data``: ``NAME.csv`` (or ``NAME.csv.gz``) plus ``NAME.levels.json`` with
each factor's levels in R's order.  Nothing here looks outside the repository, and a
missing file raises: references must never silently vanish from the suite.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

FIXTURES = Path(__file__).parent / "fixtures"
DATA = FIXTURES / "data"
SETS = {"": FIXTURES / "public" / "lme4_reference.json", "extra/": FIXTURES / "extra" / "lme4_reference.json"}


def references(family: str | None = "gaussian") -> dict:
    """All reference fits (public first); ``family='gaussian'`` keeps the LMMs, ``'glmm'`` the GLMMs, None all."""
    out = {}
    for prefix, path in SETS.items():
        out.update({prefix + k: v for k, v in json.loads(path.read_text()).items()})
    if family == "gaussian":
        return {k: v for k, v in out.items() if v["family"] == "gaussian"}
    if family == "glmm":
        return {k: v for k, v in out.items() if v["family"] != "gaussian"}
    return out


def as_list(value) -> list:
    """R's JSON writes one-element vectors as scalars."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def data_file(name: str) -> Path:
    """The CSV of data set ``name`` (plain or gzipped); FileNotFoundError if there is none."""
    for path in (DATA / f"{name}.csv", DATA / f"{name}.csv.gz"):
        if path.exists():
            return path
    raise FileNotFoundError(f"no data file {name}.csv or {name}.csv.gz in {DATA}")


def load_data(ref: dict | str) -> pd.DataFrame:
    """The data of a reference fit (or the data set of that name), factors as Categoricals in R's level order."""
    name = ref if isinstance(ref, str) else ref["data"]
    df = pd.read_csv(data_file(name))
    levels = json.loads((DATA / f"{name}.levels.json").read_text())
    for col, lv in levels.items():
        lv = as_list(lv)
        df[col] = pd.Categorical(df[col].map(lambda v: None if pd.isna(v) else str(v)), categories=lv)
    return df


def fixed_names(ref: dict) -> list[str]:
    return as_list(ref["fixef_names"])


def array(ref: dict, key: str) -> np.ndarray:
    return np.asarray(as_list(ref[key]), dtype=float)
