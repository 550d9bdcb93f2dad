"""The coding of a Dask fit's rows: model matrices with the whole frame's levels, and the standardized rows.

The client sets the coding once, from pass 1 (:mod:`skmixed.dask.survey`): formulaic's ModelSpec of the
fixed part and of each random-effects term's left side is built on a few rows of the data in which every
factor takes each of its levels, so that it codes factors with the levels and contrasts the in-memory fit
would find on the whole frame; the grouping factors keep their levels as values.  A :class:`Coding` then goes
to the workers once, and each partition's rows are coded by it as new data are for ``predict``
(:func:`skmixed.model_matrix.fixed_matrix`, :meth:`skmixed.grouping.GroupingFactor.encode`).

Transforms whose state depends on the whole column (``poly``, ``scale``, ``center``, splines) cannot be set
from a few rows; they are refused with the fix (transform the column first).  A ``factor(x)`` of a numeric
column takes its levels from those rows and stops with an error naming a level they lack.

After pass 2, :meth:`Coding.standardized` gives a partition's rows of the standardized problem of
:mod:`skmixed.standardize`: ``X̃ = X_c S_c⁻¹``, ``ỹ = (y − offset − m_y − X_c γ_c)/s``, ``w̃ = w/c``, where
``X_c`` is X with its non-intercept columns shifted by ``m`` (the first rows' means) and ``y`` by ``m_y``
when the model has an intercept: shifting before the QR and the cross-products keeps a large mean from
cancelling digits, which the in-memory fit gets from its Householder QR of the whole X.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.linalg as la
import scipy.sparse as sp

from ..exceptions import DataError, OptionError
from ..formula import ParsedFormula
from ..grouping import GroupingFactor, grouping_factor
from ..model_matrix import Design, design_matrix, encode_new, fixed_matrix, numeric_column, plain_columns
from ..response import response_vector
from ..reterms import RandomEffects, ReTerm, _lme4_order
from .rows import RowsOnWorkers
from .survey import Request, Survey, rows_used


@dataclass(frozen=True)
class Standardized:
    """The change of variables of pass 2 in the shifted coordinates (see the module docstring)."""

    S_c: np.ndarray  # p × p upper triangular
    gamma_c: np.ndarray
    s: float
    c: float


@dataclass(frozen=True)
class Coding:
    """How every partition is coded: the rows used, the fixed part's columns, the random-effects terms."""

    request: Request
    parsed: ParsedFormula
    categories: dict[str, pd.CategoricalDtype]  # Categorical variables → their used categories, in order
    x_spec: object
    x_all: list[str]  # every column of the fixed part (before aliased ones are dropped)
    x_names: list[str]  # the columns kept (set by pass 2)
    terms: list[ReTerm]  # in lme4's order, without rows
    shift: np.ndarray  # m, per column of x_all (0 for the intercept, all 0 without one)
    y_shift: float
    std: Standardized | None = None

    @property
    def kept(self) -> list[int]:
        return [self.x_all.index(n) for n in self.x_names]

    # --- the rows of a partition ---------------------------------------------------------------------
    def used(self, part: pd.DataFrame):
        """The rows used of ``part`` (prepared, Categoricals with the fit's categories), their weights and offset."""
        rows = rows_used(part, self.request)
        used = rows.data.loc[rows.keep]
        if self.categories:
            used = used.astype({c: d for c, d in self.categories.items() if c in used.columns})
        n = len(used)
        weights = np.ones(n) if rows.weights is None else rows.weights[rows.keep]
        offset = np.zeros(n) if rows.offset is None else rows.offset[rows.keep]
        for expr in self.parsed.offsets:
            offset = offset + numeric_column(expr, used, "offset")
        if not np.all(np.isfinite(offset)):
            raise DataError("the offset has non-finite values")
        return used, weights, offset

    def response(self, used: pd.DataFrame) -> np.ndarray:
        y = response_vector(self.parsed.response, used)
        if not np.all(np.isfinite(y)):
            raise DataError(f"the response {self.parsed.response!r} has infinite values; remove or fix those rows")
        return y

    def fixed(self, used: pd.DataFrame, columns: list[str] | None = None, check: bool = True) -> np.ndarray:
        """The fixed-effects model matrix of ``used``, its columns ``columns`` (default: all of ``x_all``);
        ``check``: non-finite values are an error (new data may have missing covariates: NaN predictions)."""
        columns = self.x_all if columns is None else columns
        if plain_columns(self.parsed.fixed, used) is not None:
            X = design_matrix(self.parsed.fixed, used, "fixed-effects part").values
        else:
            X = _coded(lambda: fixed_matrix(self.x_spec, self.x_all, self.parsed.text, used))
        if check and not np.all(np.isfinite(X)):
            bad = [c for c, ok in zip(self.x_all, np.isfinite(X).all(axis=0)) if not ok]
            raise DataError(f"the fixed-effect columns {bad} have non-finite values (a transform like log of 0?)")
        return X[:, [self.x_all.index(c) for c in columns]]

    def random_effects(self, used: pd.DataFrame) -> RandomEffects:
        """The terms with the rows of ``used`` (codes into the fit's levels, the left sides' values)."""
        terms = []
        for t in self.terms:
            codes = t.factor.encode(used)
            if np.any(codes < 0):
                raise DataError(f"the grouping factor {t.group!r} has values pass 1 did not see: did the data change?")
            design = t.design
            if plain_columns(design.expr, used) is not None:
                values = design_matrix(design.expr, used, design.role).values
            else:
                values = np.asarray(_coded(lambda d=design: encode_new(d.spec, used, d.role)), dtype=float)
            if not np.all(np.isfinite(values)):
                raise DataError(f"the random-effects term {t.bar} has non-finite values")
            rows = Design(values, design.names, design.expr, design.role, _spec=design.spec)
            terms.append(ReTerm(t.bar, GroupingFactor(t.group, codes, t.factor.levels), rows))
        return RandomEffects(terms)

    # --- the standardized problem ------------------------------------------------------------------
    def shifted(self, used, weights, offset) -> tuple[np.ndarray, np.ndarray]:
        """X_c (the kept columns) and y_c = y − offset − m_y."""
        kept = self.kept
        X = self.fixed(used, self.x_names) - self.shift[kept]
        return X, self.response(used) - offset - self.y_shift

    def standardized(self, part: pd.DataFrame):
        """Z (CSC), X̃, ỹ and w̃ of the rows used of ``part``."""
        std = self.std
        used, weights, offset = self.used(part)
        X_c, y_c = self.shifted(used, weights, offset)
        if X_c.shape[1]:
            X = la.solve_triangular(std.S_c, X_c.T, trans="T").T
            y = (y_c - X_c @ std.gamma_c) / std.s
        else:
            X, y = X_c, y_c / std.s
        Z = self.random_effects(used).Z if len(used) else sp.csc_matrix((0, self.q))
        return Z, X, y, weights / std.c

    @property
    def q(self) -> int:
        return int(sum(t.q for t in self.terms))

    def with_std(self, x_names: list[str], std: Standardized) -> Coding:
        return dataclasses.replace(self, x_names=x_names, std=std)


def _coded(encode):
    """``encode()``, a partition coded by the fit's spec; a level the first rows lacked is named with the fix."""
    try:
        return encode()
    except DataError as e:
        raise DataError(
            f"{e}. On a Dask DataFrame the levels of a factor made in the formula from a numeric column "
            "(factor(x)) come from the first rows: make the column a Categorical with known categories "
            "(ddf = ddf.categorize(columns=[...]) after ddf[col].astype(str))"
        ) from None


# --- the client's side: the coding from pass 1 ------------------------------------------------------------
def _sample(survey: Survey, categories: dict[str, pd.CategoricalDtype]) -> pd.DataFrame:
    """The first rows used, repeated until each factor variable can take every one of its levels in them."""
    head = survey.head.reset_index(drop=True)
    length = max([len(head)] + [len(v) for v in survey.values.values()])
    sample = head.iloc[np.arange(length) % len(head)].reset_index(drop=True)
    for name, values in survey.values.items():
        values = values.reset_index(drop=True)
        sample[name] = values.iloc[np.arange(length) % len(values)].to_numpy()
    return sample.astype(categories) if categories else sample


def _spec(design: Design, role: str):
    """The design's formulaic spec, refused when a transform keeps state beyond factor levels."""
    spec = design.spec
    stateful = [name for name, state in dict(spec.transform_state).items() if set(state) != {"levels"}]
    if stateful:
        raise OptionError(
            f"the {role} uses {', '.join(stateful)}, whose coding depends on every row of the column; on a Dask "
            "DataFrame compute the transformed column first (ddf['x2'] = ...) and use it in the formula"
        )
    return spec


def _categories(survey: Survey, meta: pd.DataFrame) -> dict[str, pd.CategoricalDtype]:
    """Per Categorical variable, its categories used, in the categories' order (R drops unused levels)."""
    out = {}
    for name, values in survey.values.items():
        if isinstance(meta[name].dtype, pd.CategoricalDtype):
            used = set(values.dropna())
            order = [c for c in meta[name].dtype.categories if c in used]
            out[name] = pd.CategoricalDtype(order, ordered=meta[name].dtype.ordered)
    return out


def coding_from_survey(
    parsed: ParsedFormula, request: Request, survey: Survey, meta: pd.DataFrame, response: bool = True
) -> Coding:
    """The coding of pass 2 and 3 (every column of the fixed part, none dropped yet; no standardization).
    ``response=False`` (a GLMM, whose response is not shifted): no mean of the response is taken."""
    categories = _categories(survey, meta)
    sample = _sample(survey, categories)
    fixed = design_matrix(parsed.fixed, sample, "fixed-effects part", names_from=parsed.text)
    x_spec = _spec(fixed, "fixed-effects part")
    terms = []
    for bar in parsed.bars:
        role = f"random-effects term {bar}"
        design = design_matrix(bar.lhs, sample, role)
        if not design.names:
            raise DataError(f"the random-effects term {bar} has no columns: write (1 | {bar.group}) for an intercept")
        spec = _spec(design, role)
        combos = survey.combos[bar.group]
        levels = grouping_factor(bar.group, combos.astype({c: categories[c] for c in combos if c in categories})).levels
        factor = GroupingFactor(bar.group, RowsOnWorkers(f"grouping factor {bar.group!r}'s codes"), levels)
        rows = RowsOnWorkers(f"model matrix of the random-effects term {bar}")
        terms.append(ReTerm(bar, factor, Design(rows, design.names, bar.lhs, role, _spec=spec)))
    intercept = bool(fixed.names) and fixed.names[0] == "(Intercept)"
    shift = np.zeros(len(fixed.names))
    y_shift = 0.0
    if intercept:
        shift[1:] = fixed.values[: len(survey.head), 1:].mean(axis=0)
        y_shift = float(np.mean(response_vector(parsed.response, sample.iloc[: len(survey.head)]))) if response else 0.0
    if not np.all(np.isfinite(shift)) or not np.isfinite(y_shift):
        shift, y_shift = np.zeros(len(fixed.names)), 0.0  # non-finite values get their error in pass 2
    if len(fixed.names) >= survey.used:
        raise DataError(
            f"the fixed effects have {len(fixed.names)} columns for {survey.used} observations: nothing is left to "
            "estimate the variances; use fewer fixed effects (is a numeric column read as a factor?)"
        )
    return Coding(
        request=request,
        parsed=parsed,
        categories=categories,
        x_spec=x_spec,
        x_all=list(fixed.names),
        x_names=list(fixed.names),
        terms=_lme4_order(terms),
        shift=shift,
        y_shift=y_shift,
    )


def check_known_categories(ddf, names: list[str]) -> None:
    """Categorical columns must have known categories: their order is the levels' order, as in memory."""
    unknown = [n for n in names if isinstance(ddf._meta[n].dtype, pd.CategoricalDtype) and not ddf[n].cat.known]
    if unknown:
        raise DataError(
            f"the Categorical columns {unknown} of the Dask DataFrame have unknown categories, whose order sets the "
            f"levels: make them known first, e.g. ddf = ddf.categorize(columns={unknown})"
        )
