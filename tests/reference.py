"""Load lme4 reference results and their data (public set in ../shared/reference, ours in tests/fixtures/extra)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
PUBLIC = HERE.parent.parent / "shared" / "reference"
EXTRA = HERE / "fixtures" / "extra"


def _records(root: Path) -> dict:
    path = root / "lme4_reference.json"
    if not path.exists():
        return {}
    return {k: dict(v, _root=str(root)) for k, v in json.loads(path.read_text()).items()}


def references(family: str | None = "gaussian") -> dict:
    """All reference fits (public first); ``family='gaussian'`` keeps the LMMs, None keeps all."""
    out = {**_records(PUBLIC), **{f"extra/{k}": v for k, v in _records(EXTRA).items()}}
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


def load_data(ref: dict) -> pd.DataFrame:
    """The data of a reference fit, with factors as pandas Categoricals in R's level order."""
    root = Path(ref["_root"]) / "data"
    name = ref["data"]
    csv = root / f"{name}.csv"
    df = pd.read_csv(csv if csv.exists() else root / f"{name}.csv.gz")
    levels = json.loads((root / f"{name}.levels.json").read_text())
    for col, lv in levels.items():
        lv = as_list(lv)
        df[col] = pd.Categorical(df[col].map(lambda v: None if pd.isna(v) else str(v)), categories=lv)
    return df


def fixed_names(ref: dict) -> list[str]:
    return as_list(ref["fixef_names"])


def array(ref: dict, key: str) -> np.ndarray:
    return np.asarray(as_list(ref[key]), dtype=float)
