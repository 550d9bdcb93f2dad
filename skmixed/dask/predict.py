"""Fitted values, residuals and predictions of a Dask fit, as lazy Dask Series (one task per partition).

``Xβ̂ + Zb̂ + offset`` per partition, coded as the fit coded its rows (:class:`~skmixed.dask.coding.Coding`) or
as :func:`skmixed.prediction.predict` codes new data: grouping factors by value (a level the fit did not see
contributes nothing, or is an error without ``allow_new_levels``), a missing covariate gives NaN.  β̂ and the
level → b̂ tables enter the graph once, as one key each, and go to each worker once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..exceptions import DataError
from ..frame import row_values
from ..model_matrix import design_matrix, encode_new, numeric_column, plain_columns
from ..variables import model_variables, prepare_data


def _term_rows(coding, t, data: pd.DataFrame, allow_new_levels: bool) -> tuple[np.ndarray, np.ndarray]:
    codes = t.factor.encode(data)
    if (codes < 0).any() and not allow_new_levels:
        unseen = t.factor.new_levels(data, codes)
        if unseen:
            raise DataError(
                f"newdata has levels of {t.group!r} not in the fit ({', '.join(unseen[:5])}); "
                "pass allow_new_levels=True to predict those at the population level"
            )
    design = t.design
    if plain_columns(design.expr, data) is not None:
        values = design_matrix(design.expr, data, design.role).values
    else:
        values = np.asarray(encode_new(design.spec, data, design.role), dtype=float)
    return codes, np.nan_to_num(values)


def _combine(X, offset, beta, terms, blocks) -> np.ndarray:
    pred = X @ beta + offset
    for (codes, values), block in zip(terms, blocks):
        seen = codes >= 0
        contrib = np.einsum("rk,rk->r", values, block[np.where(seen, codes, 0)]) if len(codes) else np.zeros(0)
        pred = pred + np.where(seen, contrib, 0.0)
    return pred


def fit_rows(part: pd.DataFrame, coding, beta, blocks, kept: list[int], what: str) -> pd.Series:
    """On the partition's rows used by the fit: ``what`` = "fitted", "residuals" or "response"."""
    used, weights, offset = coding.used(part)
    y = coding.response(used)
    if what == "response":
        return pd.Series(y, index=used.index, name=what)
    X = coding.fixed(used, coding.x_names)
    terms = [_term_rows(coding, coding.terms[i], used, True) for i in kept]
    fitted = _combine(X, offset, beta, terms, [blocks[i] for i in kept])
    return pd.Series(fitted if what == "fitted" else y - fitted, index=used.index, name=what)


def weight_rows(part: pd.DataFrame, coding) -> pd.Series:
    used, weights, _ = coding.used(part)
    return pd.Series(weights, index=used.index, name="weights")


def new_rows(part: pd.DataFrame, coding, beta, blocks, kept: list[int], allow_new_levels: bool, offset) -> np.ndarray:
    """Predictions on new data (a pandas frame, or a partition of a Dask one)."""
    if not isinstance(part, pd.DataFrame):
        raise DataError(f"newdata must be a pandas or Dask DataFrame, not {type(part).__name__}")
    bars = [coding.terms[i].bar for i in kept]
    variables = model_variables(coding.parsed, part, response=False, bars=bars)
    data, _ = prepare_data(variables, part, fit=False)
    cast = {c: d for c, d in coding.categories.items() if c in data.columns}
    if cast:
        data = data.astype(cast)
    X = coding.fixed(data, coding.x_names, check=False)
    off = np.zeros(len(data))
    given = offset if offset is not None else coding.request.offset
    if given is not None:
        off += row_values(given, data, "offset", fit=False)
    for expr in coding.parsed.offsets:
        off += numeric_column(expr, data, "offset")
    terms = [_term_rows(coding, coding.terms[i], data, allow_new_levels) for i in kept]
    return _combine(X, off, beta, terms, [blocks[i] for i in kept])


def new_rows_series(part, coding, beta, blocks, kept, allow_new_levels, offset) -> pd.Series:
    values = new_rows(part, coding, beta, blocks, kept, allow_new_levels, offset)
    return pd.Series(values, index=part.index, name="predict")
