"""Formula mode of the scikit-learn estimators on Dask DataFrames, as dask-ml's estimators take them.

``MixedLM(formula="~ x + (1 | g)").fit(X, y)`` with X a Dask DataFrame and y a Dask Series of the same
partitions (``y = ddf["y"]``, ``X = ddf.drop(columns="y")``): the response (and ``sample_weight``, a Dask
Series too) become columns of X and the model is fitted by ``skmixed.lmer`` on Dask (:mod:`skmixed.dask`);
``predict`` on a Dask DataFrame returns a lazy Dask Series.  As in memory, a missing value in a column the
formula reads is an error (counted in one pass), not a silently dropped row.
"""

from __future__ import annotations

from ..exceptions import DataError, OptionError
from ..formula import parse_formula
from ..variables import model_variables
from . import is_dask_frame

WEIGHT_COLUMN = "_sample_weight"


def _dask_series(value, name: str):
    if not is_dask_frame(value) or getattr(value, "ndim", None) != 1:
        raise DataError(
            f"with X a Dask DataFrame, {name} must be a Dask Series of the same partitions (e.g. ddf['y']), "
            f"not {type(value).__name__}"
        )
    return value


def fit_formula(estimator, encoding_class, X, y, sample_weight):
    """The fitted result and its encoding for ``estimator`` in formula mode on the Dask DataFrame ``X``."""
    from sklearn.utils.validation import validate_data

    meta = X._meta
    encoding = encoding_class.from_text(estimator.formula, meta)
    validate_data(estimator, meta, skip_check_array=True)
    check_no_missing(estimator, X, encoding.formula)
    y = _dask_series(y, "y")
    check_target = getattr(estimator, "_check_dask_target", None)  # a classifier's classes: one pass
    data = X.assign(**{encoding.response: y if check_target is None else check_target(y)})
    weights = None
    if sample_weight is not None:
        if WEIGHT_COLUMN in X.columns:
            raise OptionError(
                f"X has a column named {WEIGHT_COLUMN!r}, the name sample_weight travels under: rename it"
            )
        data = data.assign(**{WEIGHT_COLUMN: _dask_series(sample_weight, "sample_weight")})
        weights = WEIGHT_COLUMN
    return estimator._fit_mixed(encoding.formula, data, weights), encoding


def check_no_missing(estimator, X, formula: str) -> None:
    """No missing value in the columns of the Dask DataFrame X the formula reads (one pass of counts)."""
    variables = model_variables(parse_formula(formula), X._meta, response=False)
    columns = list(dict.fromkeys([*variables.values, *variables.groups]))
    counts = X[columns].isna().sum().compute()
    missing = {name: int(n) for name, n in counts.items() if n}
    if missing:
        where = ", ".join(f"{name!r} ({n} row{'s' if n > 1 else ''})" for name, n in missing.items())
        raise DataError(
            f"X has missing values (NaN) in the columns {where}: {type(estimator).__name__} does not accept NaN in the "
            "columns its formula reads; fill or drop those rows first (ddf.dropna(subset=[...]))"
        )


def rowwise(series, fn, name=None):
    """``fn`` (numpy array → array of the same length) applied to a Dask Series partition by partition, lazily."""
    import pandas as pd

    def apply(part):
        return pd.Series(fn(part.to_numpy()), index=part.index, name=name or part.name)

    meta = pd.Series(fn(series._meta.to_numpy()), index=series._meta.index, name=name or series.name)
    return series.map_partitions(apply, meta=meta)
