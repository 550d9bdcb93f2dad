"""The benchmark cases: data, formula and how to fit them, and (``action``) an analysis of the fit to time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Case:
    name: str
    load: Callable[[], pd.DataFrame]
    formula: str
    REML: bool = True
    family: str | None = None
    repeat: int = 3
    #: one untimed fit first (cases of a few seconds or less)
    warm_up: bool = True
    #: an analysis of the fitted result to time instead of the fit (a summary with p-values, intervals, ...); the fit's
    #: own time is reported beside it, for targets stated as a multiple of it
    action: Callable | None = None


def _dataset(name: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        from skmixed import datasets

        return datasets.load(name)

    return load


def _synthetic(fn: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        from . import data

        return getattr(data, fn)()

    return load


def _profile_intervals(result):
    return result.confint("profile")


def _bootstrap_1000(result):
    return result.bootstrap(1000, seed=1)


CASES = {
    c.name: c
    for c in [
        Case("sleepstudy", _dataset("sleepstudy"), "Reaction ~ Days + (Days | Subject)", repeat=7),
        Case("chem97", _dataset("Chem97"), "score ~ gcsecnt + (1 | school) + (1 | lea)"),
        Case("insteval", _dataset("InstEval"), "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)"),
        Case("dallas", _synthetic("dallas_like"), "tli ~ Gr + Sx + Eth + (1 | ids) + (1 | Campus)", REML=False),
        Case(
            "verbagg",
            _dataset("VerbAgg"),
            "r2 ~ (Anger + Gender + btype + situ) + (1 | id) + (1 | item)",
            REML=False,
            family="binomial",
            repeat=7,
        ),
        Case("crossed_10m", _synthetic("crossed"), "y ~ 1 + (1 | a) + (1 | b)", REML=False, warm_up=False),
        Case(
            "sleepstudy_profile",
            _dataset("sleepstudy"),
            "Reaction ~ Days + (Days | Subject)",
            action=_profile_intervals,
        ),
        Case(
            "insteval_profile",
            _dataset("InstEval"),
            "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)",
            repeat=1,
            warm_up=False,
            action=_profile_intervals,
        ),
        Case(
            "sleepstudy_boot1000", _dataset("sleepstudy"), "Reaction ~ Days + (Days | Subject)", action=_bootstrap_1000
        ),
    ]
}
