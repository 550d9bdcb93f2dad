"""``lmer`` on a Dask DataFrame: the passes of :mod:`skmixed.dask`, then the in-memory stages on the pieces.

:func:`build` makes the same record as :func:`skmixed.build` (a :class:`~skmixed.LinearMixedModel`) without
the rows: its frame and Z hold :class:`~skmixed.dask.rows.RowsOnWorkers`, its cross-products and change of
variables come from the passes.  :func:`~skmixed.deviance`'s deviance function reads only those, so the θ
optimisation runs on the client unchanged; only the penalized RSS at the optimum, which lme4 computes from
the residuals, needs one more pass (:class:`DaskStandardizedDeviance`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg as la

from ..blas import single_blas_thread
from ..checks import check_identifiable
from ..deviance import ProfiledDeviance, StandardizedDeviance
from ..exceptions import DataError, FormulaError, OptionError
from ..fitting import optimize
from ..formula import parse_formula
from ..frame import ModelFrame
from ..model import LinearMixedModel
from ..model_matrix import Design
from ..options import check_fit_options, switch
from ..rank import drop_aliased, warn_rank_deficient
from ..reterms import RandomEffects
from ..standardize import _EXACT_FIT, Standardization
from ..variables import model_variables
from .coding import Coding, Standardized, check_known_categories, coding_from_survey
from .passes import (
    _r_factor,
    add,
    cross_merge,
    cross_partition,
    finish_cross,
    qr_merge,
    qr_partition,
    residual_partition,
    tree_reduce,
)
from .rows import RowsOnWorkers
from .survey import Request, check_survey, merge, survey_partition


@dataclass(frozen=True)
class DaskLinearMixedModel(LinearMixedModel):
    """A :class:`~skmixed.LinearMixedModel` whose rows are a Dask DataFrame's (``source``), coded by ``coding``."""

    source: object = None
    coding: Coding | None = None


class DaskStandardizedDeviance(StandardizedDeviance):
    """The standardized deviance, with the penalized RSS at the optimum from a pass over the rows."""

    def _penalized_rss(self, sol) -> float:
        model = self.model
        rss = tree_reduce(
            model.source, residual_partition, add, model.coding, sol.beta, sol.b, what="4 (residuals at the optimum)"
        )
        return rss + sol.u @ sol.u


class DaskDeviance(ProfiledDeviance):
    """:class:`~skmixed.ProfiledDeviance` of a Dask fit's record."""

    def __init__(self, model: DaskLinearMixedModel):
        self.model = model
        self.standardized = DaskStandardizedDeviance(model)


def _check_options(REML, weights, offset, start, check_conv, maxeval) -> tuple[bool, bool, int]:
    for name, value in (("weights", weights), ("offset", offset)):
        if value is not None and not isinstance(value, str):
            raise OptionError(
                f"{name}= on a Dask DataFrame must be the name of one of its columns (per-row values cannot be "
                f"matched to its partitions): add them as a column, e.g. ddf = ddf.assign({name}=...)"
            )
    return (switch(REML, "REML"), *check_fit_options(start, check_conv, maxeval))


def _aliased(R_raw: np.ndarray, names: list[str]) -> list[str]:
    """The columns kept, as :func:`skmixed.rank.drop_aliased` finds them on X (X = QR: the same on R)."""
    if not names:
        return []
    _, kept, dropped = drop_aliased(R_raw, names)
    warn_rank_deficient(dropped, stacklevel=4)
    return kept


def _standardization(piece, coding: Coding, x_names: list[str], n: int, c: float):
    """The change of variables of :func:`skmixed.standardize.standardize` from the R of √w̃[X_c, y_c]."""
    kept = [coding.x_all.index(name) for name in x_names]
    p = len(kept)
    R = _r_factor(piece.R_w[:, kept + [len(coding.x_all)]])
    R = np.vstack([R, np.zeros((p + 1 - R.shape[0], p + 1))])
    R11, r12, rho = R[:p, :p], R[:p, p], R[p, p]
    sign = np.where(np.diag(R11) < 0, -1.0, 1.0)
    R11, r12 = R11 * sign[:, None], r12 * sign
    magnitude = piece.magnitude
    if magnitude == 0 or not np.isfinite(magnitude):
        raise DataError(
            "the response is zero in every row: there is nothing to model"
            if magnitude == 0
            else "the response has non-finite values"
        )
    s = abs(float(rho)) / np.sqrt(n)
    if s <= _EXACT_FIT * magnitude:
        raise DataError(
            "the response is an exact linear function of the fixed effects (a constant response, for example): "
            "the residuals are all zero, so there is no variance left to estimate; check the response column"
        )
    S_c = R11 / np.sqrt(n)
    gamma_c = la.solve_triangular(R11, r12) if p else np.zeros(0)
    shift = coding.shift[kept]
    S, gamma = S_c + np.outer(S_c[:, 0], shift) if p else S_c, gamma_c.copy()
    if p and x_names[0] == "(Intercept)":
        gamma[0] += coding.y_shift - shift @ gamma_c
    return Standardized(S_c, gamma_c, s, c), Standardization(S, gamma, s, c, n)


def survey_formula(formula: str, data, weights, offset, without_bars: str):
    """Pass 1 for ``formula`` on the Dask DataFrame ``data``: (parsed formula, request, survey), the rows with a
    missing value dropped with R's warning.  ``without_bars`` ends the error for a formula with no random effect."""
    parsed = parse_formula(formula)
    if not parsed.bars:
        raise FormulaError(
            f"the formula {formula!r} has no random-effects term: add one such as (1 | group), or {without_bars}"
        )
    variables = model_variables(parsed, data._meta)
    check_known_categories(data, list(variables.values) + list(variables.groups))
    request = Request(variables, weights, offset)
    groups = {bar.group: bar.group.split(":") for bar in parsed.bars}
    survey = tree_reduce(data, survey_partition, merge, request, groups, what="1 (levels)")
    check_survey(survey)
    if survey.missing:
        warnings.warn(f"{survey.missing} rows with missing values were dropped", UserWarning, stacklevel=4)
    return parsed, request, survey


def build(formula: str, data, *, REML: bool = True, weights: str | None = None, offset: str | None = None):
    """The record of ``formula`` on the Dask DataFrame ``data`` (:func:`skmixed.build`'s, without the rows)."""
    parsed, request, survey = survey_formula(
        formula, data, weights, offset, "fit it by ordinary least squares (e.g. dask-ml's LinearRegression)"
    )
    meta = data._meta
    coding = coding_from_survey(parsed, request, survey, meta)
    n, c = survey.used, survey.weight_sum / survey.used
    piece = tree_reduce(data, qr_partition, qr_merge, coding, c, what="2 (QR)")
    x_names = _aliased(piece.R_raw, coding.x_all)
    std_c, std = _standardization(piece, coding, x_names, n, c)
    coding = coding.with_std(x_names, std_c)
    re = RandomEffects(coding.terms)
    check_identifiable(re, n)
    cp = finish_cross(tree_reduce(data, cross_partition, cross_merge, coding, what="3 (cross-products)"))
    return DaskLinearMixedModel(
        formula=parsed.text,
        parsed=parsed,
        frame=_frame(coding, survey.missing, offset),
        re=re,
        REML=REML,
        standardization=std,
        X=RowsOnWorkers("standardized model matrix"),
        y=RowsOnWorkers("standardized response"),
        weights=RowsOnWorkers("standardized weights"),
        cp=cp,
        source=data,
        coding=coding,
    )


def _frame(coding: Coding, n_dropped: int, offset: str | None) -> ModelFrame:
    x_all = coding.x_all
    return ModelFrame(
        y=RowsOnWorkers("response"),
        X=RowsOnWorkers("fixed-effects model matrix"),
        x_names=coding.x_names,
        x_design=Design(
            RowsOnWorkers("fixed-effects model matrix"),
            x_all,
            coding.parsed.fixed,
            "fixed-effects part",
            _spec=coding.x_spec,
        ),  # fmt: skip
        offset=RowsOnWorkers("offset"),
        weights=RowsOnWorkers("prior weights"),
        keep=RowsOnWorkers("rows used"),
        data=RowsOnWorkers("rows used"),
        n_dropped=n_dropped,
        dropped_columns=[name for name in x_all if name not in coding.x_names],
        offset_column=offset,
    )


def lmer(
    formula: str,
    data,
    REML: bool = True,
    weights: str | None = None,
    offset: str | None = None,
    start=None,
    check_conv: bool = True,
    maxeval: int = 100_000,
):
    """:func:`skmixed.lmer` on a Dask DataFrame: the same fit, to rounding, with the rows left on the workers.

    ``weights`` and ``offset`` are column names.  Four passes over the data (levels, QR, cross-products,
    residuals at the optimum); persist the frame first (``ddf = ddf.persist()``) if it fits in the workers'
    memory, or each pass reads it again (from Parquet, say).
    """
    from .result import dask_lmer_result

    REML, check_conv, maxeval = _check_options(REML, weights, offset, start, check_conv, maxeval)
    with single_blas_thread():
        model = build(formula, data, REML=REML, weights=weights, offset=offset)
        devfun = DaskDeviance(model)
        optsum = optimize(devfun, start=start, check_conv=check_conv, maxeval=maxeval)
        return dask_lmer_result(model, devfun, optsum)
