"""The model frame: from a parsed formula and a DataFrame to y, X, offset, weights and the rows used.

As R's ``model.frame``, it reads every variable of the formula, drops incomplete rows and
unused factor levels (:mod:`skmixed.variables`), then builds the response
(:mod:`skmixed.response`), the fixed-effects model matrix (:mod:`skmixed.model_matrix`) with
its aliased columns dropped (:mod:`skmixed.rank`), the offset and the prior weights.  The
random-effects terms are built from the same rows by :mod:`skmixed.reterms`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .exceptions import DataError
from .formula import ParsedFormula
from .model_matrix import Design, check_squares, design_matrix, numeric_column
from .rank import drop_aliased, warn_rank_deficient
from .response import binomial_response, response_vector
from .variables import column, drop_unused_levels, model_variables, prepare_data


@dataclass
class ModelFrame:
    """Everything the fit needs from the data, after dropping incomplete rows.

    ``n_dropped`` and ``dropped_columns`` say what R records as the frame's ``na.action`` and
    the model matrix's ``col.dropped``: the rows left out for missing values, and the aliased
    fixed-effect columns.
    """

    y: np.ndarray
    X: np.ndarray
    x_names: list[str]
    x_design: Design  # the fixed part's model matrix and how to encode new data
    offset: np.ndarray
    weights: np.ndarray
    keep: np.ndarray  # boolean mask of the rows of the data that were used
    data: pd.DataFrame  # the rows used
    n_dropped: int
    dropped_columns: list[str] = field(default_factory=list)
    offset_column: str | None = None  # offset= given as a column name
    offset_array: bool = False  # offset= given as an array (new data need their own)
    trials: np.ndarray | None = None  # binomial cbind(s, f): s + f per row (weights already include them)

    @property
    def x_spec(self):
        """formulaic's ModelSpec of the fixed part (encodes new data as the fit's data were)."""
        return self.x_design.spec


def row_values(value, data: pd.DataFrame, role: str, fit: bool = True) -> np.ndarray | None:
    """``weights=`` or ``offset=``: a column name or an array of numbers, one per row (R: "'weights' must be a
    numeric vector"; booleans count as 0/1, as lme4 takes them); at ``fit``, not all missing."""
    if value is None:
        return None
    if isinstance(value, str):
        value = column(data, value, role)
    if not isinstance(value, (pd.Series, pd.Index)):
        value = np.asarray(value)
        if value.dtype == object:
            value = pd.Series(value.ravel())
    if value.dtype == object:
        value = pd.Series(value).infer_objects()
    dtype = value.dtype
    if pd.api.types.is_complex_dtype(dtype) or not (
        pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
    ):
        raise DataError(f"{role} must be numbers, not values of dtype {dtype}: convert them, e.g. with pd.to_numeric")
    if not isinstance(value, np.ndarray):
        value = value.to_numpy(dtype=float, na_value=np.nan)
    arr = np.asarray(value, dtype=float).ravel()
    if arr.shape[0] != len(data):
        raise DataError(f"{role} has {arr.shape[0]} values but the data have {len(data)} rows")
    if fit and len(arr) and np.isnan(arr).all():
        raise DataError(f"{role} has only missing values")
    return arr


def _rows_used(keep: np.ndarray, weights: np.ndarray | None, offset: np.ndarray | None) -> tuple[np.ndarray, int]:
    """The rows to fit: complete in the formula's variables, the weights and the offset, and of weight > 0.

    Returns them with the number of rows dropped for a missing value.  A row of weight 0 carries no
    information and is left out too, as R's ``lm`` leaves it out, but is not counted as missing.
    """
    for arr in (weights, offset):
        if arr is not None:
            keep &= ~np.isnan(arr)
    n_missing = int((~keep).sum())
    if keep.sum() == 0:
        raise DataError("no complete rows: every row has a missing value in a variable the model uses")
    if weights is not None:
        if np.any(weights < 0) or np.any(np.isinf(weights)):
            raise DataError("weights must be finite and non-negative")
        if not np.any(weights[keep] > 0):
            raise DataError("every weight is zero: there is nothing to fit; check the weights")
        keep &= weights != 0
    return keep, n_missing


def _fixed_effects(
    parsed: ParsedFormula, used: pd.DataFrame, n: int
) -> tuple[Design, np.ndarray, list[str], list[str]]:
    """The fixed-effects model matrix: its Design, X of full column rank, X's names and the aliased names."""
    design = design_matrix(parsed.fixed, used, "fixed-effects part", names_from=parsed.text)
    X = design.values
    if not np.all(np.isfinite(X)):
        bad = [c for c, ok in zip(design.names, np.isfinite(X).all(axis=0)) if not ok]
        raise DataError(f"the fixed-effect columns {bad} have non-finite values (a transform like log of 0?)")
    check_squares(X, design.names, "fixed-effect column")
    X, names, dropped = drop_aliased(X, design.names) if X.shape[1] else (X, design.names, [])
    if X.shape[1] >= n:
        raise DataError(
            f"the fixed effects have {X.shape[1]} columns for {n} observations: nothing is left to estimate "
            "the variances; use fewer fixed effects (is a numeric column read as a factor?)"
        )
    return design, X, names, dropped


def model_frame(parsed: ParsedFormula, data, weights=None, offset=None, binomial: bool = False) -> ModelFrame:
    """Select complete rows, then build y, X (full column rank), offset and weights.

    Incomplete rows are judged on the raw variables the formula reads (``x`` for
    ``poly(x, 2)``) and dropped before any transform is evaluated, so that ``poly``,
    ``scale`` and ``center`` see exactly the rows the fit uses.  This differs from R on
    purpose: R's ``poly()`` stops on a missing value, and ``scale()`` centres on all rows,
    including those dropped afterwards for a missing value in another variable.  Unused
    levels of factors are dropped, as R's ``model.frame`` drops them.

    ``binomial=True`` reads the response as :func:`skmixed.response.binomial_response` does;
    trials of a ``cbind`` response multiply the weights, as in R's ``glm``.
    """
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    if len(data) == 0:
        raise DataError("the data have no rows")
    weight_values, offset_values = row_values(weights, data, "weights"), row_values(offset, data, "offset")
    variables = model_variables(parsed, data)
    data, complete = prepare_data(variables, data)
    keep, n_dropped = _rows_used(complete, weight_values, offset_values)
    used = drop_unused_levels(variables, data.loc[keep], all_rows=bool(keep.all()))
    if n_dropped:
        warnings.warn(f"{n_dropped} rows with missing values were dropped", UserWarning, stacklevel=3)

    y, trials = binomial_response(parsed.response, used) if binomial else (response_vector(parsed.response, used), None)
    if not np.all(np.isfinite(y)):
        raise DataError(f"the response {parsed.response!r} has infinite values; remove or fix those rows")
    check_squares(y[:, None], [parsed.response], "response")
    design, X, names, dropped = _fixed_effects(parsed, used, len(y))
    warn_rank_deficient(dropped, stacklevel=3)

    off = np.zeros(len(used)) if offset_values is None else offset_values[keep]
    for expr in parsed.offsets:
        off = off + numeric_column(expr, used, "offset")
    if not np.all(np.isfinite(off)):
        raise DataError("the offset has non-finite values")
    w = np.ones(len(used)) if weight_values is None else weight_values[keep]
    return ModelFrame(
        y=y,
        X=X,
        x_names=names,
        x_design=design,
        offset=off,
        weights=w if trials is None else w * trials,
        keep=keep,
        data=used,
        n_dropped=n_dropped,
        dropped_columns=dropped,
        offset_column=offset if isinstance(offset, str) else None,
        offset_array=offset is not None and not isinstance(offset, str),
        trials=trials,
    )
