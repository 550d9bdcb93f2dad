"""Example data sets of the multilevel literature, shipped with skmixed and loaded offline.

``load("Exam")`` returns a DataFrame whose factors are pandas Categoricals with R's
level order (ordered factors stay ordered); ``describe("Exam")`` says what it holds.
Exported once from R's mlmRev, lme4 and nlme packages.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pandas as pd

_DATA = Path(__file__).parent / "data"


def names() -> list[str]:
    """The data sets available."""
    return sorted(p.name[: -len(".csv.gz")] for p in _DATA.glob("*.csv.gz"))


def _resolve(name: str) -> str:
    lookup = {n.lower(): n for n in names()}
    if name.lower() not in lookup:
        raise KeyError(f"no data set {name!r}; available: {', '.join(names())}")
    return lookup[name.lower()]


@cache
def _meta(name: str) -> dict:
    return json.loads((_DATA / f"{name}.json").read_text())


def describe(name: str) -> str:
    """A short description of the data set and its source."""
    meta = _meta(_resolve(name))
    return f"{meta['description']}\nExported from {meta['source']}."


def load(name: str) -> pd.DataFrame:
    """The data set ``name`` (case-insensitive) as a DataFrame with factors in R's level order."""
    name = _resolve(name)
    meta = _meta(name)
    df = pd.read_csv(_DATA / f"{name}.csv.gz", dtype=dict.fromkeys(meta["levels"], str), keep_default_na=True)
    ordered = set(meta.get("ordered", []))
    for col, levels in meta["levels"].items():
        levels = levels if isinstance(levels, list) else [levels]
        df[col] = pd.Categorical(df[col], categories=levels, ordered=col in ordered)
    df.attrs["name"] = name
    return df
