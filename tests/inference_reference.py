"""The references of ``fixtures/inference/emmeans_r2.json`` (made by ``emmeans_r2.R`` beside it) and their fits.

Each model id names a formula, data set and family; :func:`fit` fits it once per session.  The LMMs of the R
script were fitted with tight optimizer tolerances, so that our estimates agree with lme4's to about 1e-7 and the
analyses can be compared to 1e-6.  GLMM fits agree less closely (lme4's Laplace deviance is evaluated at a mode
found to a looser tolerance: on cbpp its objective is 5.7e-4 above ours at its own optimum), so the GLMM analyses
are compared at lme4's estimates (:func:`at_r_estimates`) to 1e-6, and at our own estimates more loosely.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
from reference import load_data

import skmixed
from skmixed.families import Binomial

FIXTURE = Path(__file__).parent / "fixtures" / "inference" / "emmeans_r2.json"


@cache
def references() -> dict:
    return json.loads(FIXTURE.read_text())


def number(value) -> float:
    """R's numbers as the script wrote them: null for NA, ``"Inf"`` for infinity, text for df."""
    if value is None:
        return np.nan
    return float(value)


def frame(records: list[dict], numeric: tuple[str, ...]) -> pd.DataFrame:
    df = pd.DataFrame(records)
    for column in numeric:
        df[column] = [number(v) for v in df[column]]
    return df


def model_data(model_id: str) -> pd.DataFrame:
    ref = references()["fits"][model_id]
    data = load_data(ref["data"])
    if model_id == "cbpp_olre":  # the script's observation-level factor
        data["obs"] = [str(i + 1) for i in range(len(data))]
    if model_id == "sleepstudy_weighted":  # the script's prior weights
        data["w"] = np.linspace(0.5, 2, len(data))
    return data


_FITS: dict = {}


def fit(model_id: str):
    """Our fit of the model ``model_id`` (warnings recorded, not raised)."""
    if model_id not in _FITS:
        ref = references()["fits"][model_id]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if ref["family"] is None:
                m = skmixed.lmer(ref["formula"], model_data(model_id), REML=ref["REML"], weights=ref["weights"])
            else:
                family = Binomial(link="probit") if ref["family"] == "binomial_probit" else ref["family"]
                m = skmixed.glmer(ref["formula"], model_data(model_id), family=family)
        _FITS[model_id] = m
    return _FITS[model_id]


def at_r_estimates(model_id: str):
    """Our GLMM fit with lme4's θ, β and vcov(β̂) in place of ours."""
    m, ref = fit(model_id), references()["fits"][model_id]
    solution = dataclasses.replace(
        m.solution,
        theta=np.atleast_1d(np.array(ref["theta"], dtype=float)),
        beta=np.array(list(ref["fixef"].values()), dtype=float),
    )
    return dataclasses.replace(m, solution=solution, hessian_vcov=np.array(ref["vcov"], dtype=float), _cache={})
