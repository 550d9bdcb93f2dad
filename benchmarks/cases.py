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
    #: a residual covariance structure (``lmer(..., residual=)``)
    residual: str | None = None
    #: in the default run (a case of many minutes is run by name, or by another benchmark)
    by_default: bool = True
    #: ``lmer(..., solver=)``: "krylov" for the iterative path (its objective is the exact one at its θ)
    solver: str = "auto"


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


def _satterthwaite_summary_and_anova(m) -> None:
    """lmerTest's summary and its type 3 F table (Satterthwaite's df)."""
    import skmixed

    m.summary()
    skmixed.anova(m, type=3)


def _kenward_roger_summary_and_anova(m) -> None:
    """The summary and the type 3 F table with Kenward-Roger's df (pbkrtest's through lmerTest)."""
    import skmixed

    m.summary(ddf="Kenward-Roger")
    skmixed.anova(m, type=3, ddf="Kenward-Roger")


def _profile_intervals(m) -> None:
    """lme4's confint(m) (profile intervals for every parameter)."""
    m.confint("profile")


def _bootstrap_1000(m) -> None:
    """bootMer(m, nsim = 1000): a parametric bootstrap of 1000 replicates."""
    m.bootstrap(1000, seed=1)


def _lmer_many_10k_genes(m) -> None:
    """lmer_many over the 10,000 genes of :func:`benchmarks.data.expression` (the fit beside it: lmer on one gene)."""
    import skmixed

    from .data import expression

    samples, genes = expression()
    skmixed.lmer_many("~ x + (1 | donor) + (1 | batch)", samples, genes)


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
            "crossed_10m_wide",
            _synthetic("crossed_10m_wide"),
            "y ~ 1 + (1 | a) + (1 | b)",
            REML=False,
            warm_up=False,
            repeat=1,
            by_default=False,  # ~10 minutes a fit; benchmarks.dask_crossed runs it beside the Dask fit
        ),
        Case("crossed_sparse_10k", _synthetic("crossed_sparse_10k"), "y ~ 1 + (1 | a) + (1 | b)", REML=False),
        Case("crossed_100k", _synthetic("crossed_100k"), "y ~ 1 + (1 | a) + (1 | b)", REML=False),
        Case("ml1m_like", _synthetic("ml1m_like"), "y ~ 1 + (1 | user) + (1 | movie)", REML=False, warm_up=False),
        Case(
            "crossed_100k_krylov", _synthetic("crossed_100k"), "y ~ 1 + (1 | a) + (1 | b)", REML=False, solver="krylov"
        ),
        Case(
            "ml1m_like_krylov",
            _synthetic("ml1m_like"),
            "y ~ 1 + (1 | user) + (1 | movie)",
            REML=False,
            warm_up=False,
            solver="krylov",
        ),
        Case("nested_vector", _synthetic("nested_vector"), "y ~ x + (1 + x | a) + (1 + x | a:b)"),
        Case(
            "crossed_vector_sparse",
            _synthetic("crossed_vector_sparse"),
            "y ~ x + (1 + x | rater) + (1 + x | item)",
        ),
        Case(
            "kb07_like",
            _synthetic("kb07_like"),
            "y ~ 1 + a + b + c + (1 + a + b + c | subj) + (1 + a + b + c | item)",
            repeat=7,
        ),
        Case(
            "cbpp",
            _dataset("cbpp"),
            "cbind(incidence, size - incidence) ~ period + (1 | herd)",
            family="binomial",
            repeat=21,
        ),
        Case(
            "insteval_satterthwaite",
            _dataset("InstEval"),
            "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)",
            action=_satterthwaite_summary_and_anova,
        ),
        Case(
            "sleepstudy_kr",
            _dataset("sleepstudy"),
            "Reaction ~ Days + (Days | Subject)",
            repeat=7,
            action=_kenward_roger_summary_and_anova,
        ),
        Case(
            "crossed_10k_kr",
            _synthetic("crossed_10k"),
            "y ~ x + (1 + x | subject) + (1 + x | item)",
            action=_kenward_roger_summary_and_anova,
        ),
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
            "mmrm_10k",
            _synthetic("mmrm_10k"),
            "y ~ visit * arm + baseline",
            residual="us(visit | subject)",
        ),
        Case(
            "sleepstudy_boot1000", _dataset("sleepstudy"), "Reaction ~ Days + (Days | Subject)", action=_bootstrap_1000
        ),
        Case(
            "lmer_many_10k",
            _synthetic("expression_first_gene"),
            "y ~ x + (1 | donor) + (1 | batch)",
            action=_lmer_many_10k_genes,
        ),
    ]
}
