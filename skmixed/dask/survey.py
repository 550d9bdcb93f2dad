"""Pass 1 over a Dask DataFrame: which rows a fit uses, the levels of its factors, and a few rows to code by.

In memory, :func:`skmixed.frame.model_frame` drops the rows with a missing value in a variable the formula
reads (or in the weights or the offset) and the rows of weight 0, and R's levels are read from the rows
kept: the sorted values of a grouping column (a Categorical's categories in their order, unused ones
dropped), the combinations observed of an interaction ``a:b``, the values of a fixed-effect factor.  Here
each partition reports the same from its rows (:func:`survey_partition`), and the reports are merged up a
tree (:func:`merge`): counts add, distinct values are concatenated and deduplicated.  The client then sets
the levels exactly as the in-memory fit would on the whole frame (:mod:`skmixed.dask.coding`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..exceptions import DataError
from ..frame import row_values
from ..variables import ModelVariables, prepare_data, present

#: rows of the first partition kept to build the model matrices' coding (formulaic's ModelSpec) from
HEAD_ROWS = 64


@dataclass(frozen=True)
class Request:
    """What a partition needs to find its rows used: the formula's variables and the weights/offset columns."""

    variables: ModelVariables
    weights: str | None
    offset: str | None

    def fresh_variables(self) -> ModelVariables:
        return ModelVariables(dict(self.variables.values), list(self.variables.groups))


@dataclass
class PartitionRows:
    """A partition's prepared columns, its rows used, and their prior weights and offset (all rows)."""

    data: pd.DataFrame
    keep: np.ndarray
    n_missing: int
    weights: np.ndarray | None
    offset: np.ndarray | None


def rows_used(part: pd.DataFrame, request: Request) -> PartitionRows:
    """The rows of ``part`` the fit uses, by :func:`skmixed.frame.model_frame`'s rule (complete in every
    variable, the weights and the offset; weight > 0), with the same errors for bad weights."""
    data, keep = prepare_data(request.fresh_variables(), part, fit=False)
    weights = row_values(request.weights, data, "weights", fit=False)
    offset = row_values(request.offset, data, "offset", fit=False)
    for values in (weights, offset):
        if values is not None:
            keep &= ~np.isnan(values)
    n_missing = int((~keep).sum())
    if weights is not None:
        if np.any(weights < 0) or np.any(np.isinf(weights)):
            raise DataError("weights must be finite and non-negative")
        keep &= weights != 0
    return PartitionRows(data, keep, n_missing, weights, offset)


def is_factor(values) -> bool:
    """A column a model matrix codes as a factor: strings, Categoricals, booleans."""
    dtype = values.dtype
    return pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype)


@dataclass
class Survey:
    """What pass 1 found: row counts, the sum of the prior weights, and distinct values among the rows used."""

    rows: int
    missing: int
    used: int
    weight_sum: float
    present: dict[str, int]  # per variable, the rows where it is not missing
    combos: dict[str, pd.DataFrame]  # per grouping factor, the combinations of its parts observed
    values: dict[str, pd.Series]  # per factor variable, its distinct values
    head: pd.DataFrame  # up to HEAD_ROWS of the rows used, of the first partition that has some


def survey_partition(part: pd.DataFrame, request: Request, groups: dict[str, list[str]]) -> Survey:
    """One partition's report (``groups``: each grouping factor's name → its columns)."""
    rows = rows_used(part, request)
    used = rows.data.loc[rows.keep]
    columns = list(request.variables.values) + list(request.variables.groups)
    counts = {c: int(present(rows.data[c]).sum()) for c in dict.fromkeys(columns)}
    factors = [c for c in request.variables.values if is_factor(rows.data[c])]
    weights = rows.weights
    return Survey(
        rows=len(part),
        missing=rows.n_missing,
        used=int(rows.keep.sum()),
        weight_sum=float(weights[rows.keep].sum()) if weights is not None else float(rows.keep.sum()),
        present=counts,
        combos={name: used[cols].drop_duplicates() for name, cols in groups.items()},
        values={c: used[c].drop_duplicates() for c in factors},
        head=used.iloc[:HEAD_ROWS],
    )


def merge(*surveys: Survey) -> Survey:
    """The report of the union of the partitions (a node of the reduction tree)."""
    first = surveys[0]
    heads = [s.head for s in surveys if len(s.head)]
    return Survey(
        rows=sum(s.rows for s in surveys),
        missing=sum(s.missing for s in surveys),
        used=sum(s.used for s in surveys),
        weight_sum=float(sum(s.weight_sum for s in surveys)),
        present={c: sum(s.present[c] for s in surveys) for c in first.present},
        combos={g: pd.concat([s.combos[g] for s in surveys]).drop_duplicates() for g in first.combos},
        values={c: pd.concat([s.values[c] for s in surveys]).drop_duplicates() for c in first.values},
        head=heads[0] if heads else first.head,
    )


def check_survey(survey: Survey) -> None:
    """The whole frame's checks of :func:`skmixed.frame.model_frame` (the partitions cannot make them)."""
    if survey.rows == 0:
        raise DataError("the data have no rows")
    for name, count in survey.present.items():
        if count == 0:
            raise DataError(f"column {name!r} has only missing values: drop it from the formula or fill it")
    if survey.used == 0:
        if survey.rows > survey.missing:
            raise DataError("every weight is zero: there is nothing to fit; check the weights")
        raise DataError("no complete rows: every row has a missing value in a variable the model uses")
