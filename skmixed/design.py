"""Model frame: from a parsed formula and a DataFrame to y, X, offset, weights and grouping factors.

Rows with a missing value in any variable the model reads are dropped once, for y, X and
Z together, before any transform is evaluated (see :func:`model_frame`).  The fixed part
goes through formulaic with R's factor coding (:mod:`skmixed.contrasts`; plain numeric
columns are read directly) and its ``ModelSpec`` is kept, or built when first needed, so
new data are encoded identically for prediction.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd

from .exceptions import DataError, FormulaError, RankDeficiencyWarning
from .formula import ParsedFormula, _split_top
from .grouping import factor_codes
from .rfunctions import NAMES
from .rfunctions import context as r_context
from .rnames import column_name
from .variables import (  # column_error is re-exported: the estimators name missing columns with it
    column,
    column_error,  # noqa: F401
    drop_unused_levels,
    is_arithmetic,
    model_variables,
    plain_columns,
    prepare_data,
)


# formulaic is imported on first use: it costs ~0.1 s, a sixth of `import skmixed`, and a model of plain
# numeric columns (see design_matrix) never needs it.
@lru_cache(maxsize=256)
def parsed_rhs(expr: str):
    """formulaic's parse of a right-hand side, cached: Formula objects are immutable and parsing
    costs more than building a small model matrix (a refit in a grid search reuses it)."""
    from formulaic import Formula

    return Formula(expr)


def formulaic_error() -> type[Exception]:
    """formulaic's error class (for ``except formulaic_error() as e``, evaluated only when something is raised)."""
    from formulaic.errors import FormulaicError

    return FormulaicError


#: names a formula's Python may use besides the data's columns: R's functions and constants (see
#: :mod:`skmixed.rfunctions`, which :func:`formula_context` gives formulaic).
FORMULA_FUNCTIONS = NAMES


@lru_cache(maxsize=1)
def formula_context() -> dict:
    """The R functions of :data:`FORMULA_FUNCTIONS` for formulaic's ``context`` (built on first use)."""
    return r_context()


@dataclass
class ModelFrame:
    """Everything the fit needs from the data, after dropping incomplete rows."""

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


def r_name(name: str) -> str:
    """A formulaic column name in R's style: ``(Intercept)``, ``fb`` for ``f[T.b]``, ``poly(x, 2)1``, ``I(x^2)``."""
    if name == "Intercept":
        return "(Intercept)"
    return column_name(name, None)


def r_names(model_spec, formula_text: str) -> list[str]:
    """R's names for all columns: each factor printed as R's deparse prints it, the factors of an
    interaction ordered by their first appearance in the formula (R's variable order)."""
    names = []
    for st in model_spec.structure:
        for col in st.columns:
            names.append("(Intercept)" if col == "Intercept" else column_name(col, st.term.factors, formula_text))
    return names


def model_matrix(expr: str, data: pd.DataFrame, role: str):
    """formulaic's model matrix of a right-hand side, coded as R codes factors; errors name the term and the fix."""
    from .contrasts import RMaterializer

    try:
        with np.errstate(divide="ignore", invalid="ignore"):  # non-finite results get our own error, naming the column
            return parsed_rhs(expr).get_model_matrix(data, context=formula_context(), na_action="ignore", materializer=RMaterializer)
    except formulaic_error() as e:
        raise FormulaError(f"cannot evaluate the {role} {expr!r}: {e}") from None


def encode_new(spec, data: pd.DataFrame, role: str):
    """New data through a fitted ModelSpec (as the fit's data were coded); errors name the problem."""
    from . import contrasts  # noqa: F401  (registers the materializer that a fitted or unpickled spec names)
    try:
        with np.errstate(divide="ignore", invalid="ignore"):
            return spec.get_model_matrix(data, context=formula_context(), na_action="ignore")
    except formulaic_error() as e:
        raise DataError(f"cannot encode the new data for the {role}: {e}") from None


@dataclass
class Design:
    """The model matrix of a right-hand side: ``values`` (n × k), R's column ``names``, and ``spec``."""

    values: np.ndarray
    names: list[str]
    expr: str
    role: str
    rows: pd.DataFrame | None = None  # the data the values came from, until ``spec`` is built from them
    _spec: object = None

    @property
    def spec(self):
        """formulaic's ModelSpec of ``expr`` on the fit's rows: encodes new data identically (for prediction)."""
        if self._spec is None:
            self._spec = model_matrix(self.expr, self.rows, self.role).model_spec
            self.rows = None
        return self._spec


def design_matrix(expr: str, data: pd.DataFrame, role: str, names_from: str | None = None) -> Design:
    """The model matrix of ``expr`` on ``data``; ``names_from`` orders interaction names (see :func:`r_names`).

    A sum of plain numeric columns (``Days``, ``1 + Days``, ``0 + x + z``) is read straight
    from the data, as formulaic would build it (intercept first, then the columns in order),
    and formulaic's spec is built only when new data need encoding: building it costs
    0.5 ms per matrix, a third of a small fit (sleepstudy).  Anything else goes through formulaic.
    """
    plain = plain_columns(expr, data)
    if plain is None:
        mm = model_matrix(expr, data, role)
        return Design(np.asarray(mm, dtype=float), r_names(mm.model_spec, names_from or expr), expr, role, _spec=mm.model_spec)
    intercept, columns = plain
    values = np.empty((len(data), int(intercept) + len(columns)))
    if intercept:
        values[:, 0] = 1.0
    for j, name in enumerate(columns, start=int(intercept)):
        values[:, j] = data[name].to_numpy(dtype=float)
    return Design(values, ["(Intercept)"] * intercept + columns, expr, role, rows=data)


def _numeric_vector(expr: str, data: pd.DataFrame, role: str) -> np.ndarray:
    mm = model_matrix(f"0 + {expr}", data, role)
    if mm.shape[1] != 1:
        raise DataError(f"the {role} {expr!r} must be one numeric column, not {mm.shape[1]} columns (is it a factor?)")
    return np.asarray(mm.iloc[:, 0], dtype=float)


def _column_or_array(value, data: pd.DataFrame, role: str, fit: bool = True) -> np.ndarray | None:
    """A column name or an array of numbers, one per row (R: "'weights' must be a numeric vector"; booleans count
    as 0/1, as lme4 takes them); at ``fit``, not all missing."""
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
    if pd.api.types.is_complex_dtype(dtype) or not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)):
        raise DataError(f"{role} must be numbers, not values of dtype {dtype}: convert them, e.g. with pd.to_numeric")
    if not isinstance(value, np.ndarray):
        value = value.to_numpy(dtype=float, na_value=np.nan)
    arr = np.asarray(value, dtype=float).ravel()
    if arr.shape[0] != len(data):
        raise DataError(f"{role} has {arr.shape[0]} values but the data have {len(data)} rows")
    if fit and len(arr) and np.isnan(arr).all():
        raise DataError(f"{role} has only missing values")
    return arr


def _cbind_arguments(expr: str) -> list[str] | None:
    """The arguments of ``cbind(a, b)``, or None if ``expr`` is not a cbind call."""
    m = re.match(r"^cbind\s*\((.*)\)$", expr.strip())
    return [a for _, a in _split_top(m.group(1), ",")] if m else None


def _expression_vector(expr: str, data: pd.DataFrame, role: str) -> np.ndarray:
    """A column or an R expression of columns; arithmetic such as ``a - b`` or ``s / n`` is evaluated as such."""
    if expr in data.columns:
        values = data[expr]
        if not (pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype)):
            raise DataError(f"the {role} {expr!r} must be numbers, not values of dtype {values.dtype}")
        return np.asarray(values, dtype=float)
    if is_arithmetic(expr):
        expr = f"I({expr})"
    return _numeric_vector(expr, data, role)


def response_vector(expr: str, data: pd.DataFrame) -> np.ndarray:
    """The response as float; a non-numeric response is an error that names it."""
    if expr in data.columns:
        s = data[expr]
        if isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == object or pd.api.types.is_string_dtype(s):
            raise DataError(
                f"the response {expr!r} is not numeric (dtype {s.dtype}); the model needs a numeric response "
                "(a two-level factor is a binomial response for glmer)"
            )
    if _cbind_arguments(expr) is not None:
        raise DataError(f"{expr!r} is a binomial response (successes, failures): fit it with skmixed.glmer(..., family='binomial')")
    return _expression_vector(expr, data, "response")


def binomial_response(expr: str, data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """A binomial response as (proportion y, trials or None), from R's forms of it.

    ``cbind(s, f)`` gives y = s/(s + f) and trials s + f; a two-level factor (or
    strings) gives 1 for the second level; booleans and 0/1 or proportions (with
    weights = trials) are taken as they are.
    """
    args = _cbind_arguments(expr)
    if args is not None:
        if len(args) != 2:
            raise DataError(f"cbind() in a binomial response takes two columns (successes, failures), not {len(args)}: {expr!r}")
        s, f = (_expression_vector(a, data, "response") for a in args)
        if not (np.all(np.isfinite(s)) and np.all(np.isfinite(f))):
            raise DataError(f"the counts in {expr!r} must be finite numbers of successes and failures")
        if np.any(s < 0) or np.any(f < 0):
            raise DataError(f"the counts in {expr!r} must be non-negative (successes, failures)")
        trials = s + f
        if not np.any(trials > 0):
            raise DataError(f"every row of {expr!r} has zero trials (0 successes and 0 failures): there is nothing to fit")
        return np.divide(s, trials, out=np.zeros_like(s), where=trials > 0), trials
    if expr in data.columns:
        col = data[expr]
        if isinstance(col.dtype, pd.CategoricalDtype) or col.dtype == object or pd.api.types.is_string_dtype(col):
            codes, levels = factor_codes(expr, col)
            if len(levels) != 2:
                raise DataError(
                    f"the binomial response {expr!r} has {len(levels)} levels {list(levels)[:6]}; it needs two "
                    "(the second counts as success): recode it, e.g. (column == 'yes')"
                )
            return (codes == 1).astype(float), None
    return _expression_vector(expr, data, "response"), None


def _project_off(A: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """A less its projection on the orthonormal columns of Q, twice: once leaves rounding of the size removed."""
    for _ in range(2):
        A = A - Q @ (Q.T @ A)
    return A


def drop_aliased(X: np.ndarray, names: list[str], tol: float = 1e-7) -> tuple[np.ndarray, list[str], list[str]]:
    """Drop the columns of X that are (numerically) linear in earlier ones, as R's ``qr(X, tol = 1e-7)`` does.

    R's LINPACK QR (dqrdc2) moves a column to the end when its norm, after the reflections of the
    columns kept before it, falls below ``tol`` times its original norm; the rank is the number of
    columns kept.  The same greedy rule here: the R of one Householder QR of the remaining columns
    (projected off the kept ones) finds the first such column; the columns before it are kept, it is
    dropped, and the search resumes after it, so a design with k aliased columns costs k + 1 QRs
    (one, without Q, for a design of full rank).
    """
    import scipy.linalg as la

    n, p = X.shape
    norms = np.linalg.norm(X, axis=0)
    keep, dropped = [], []
    Q = np.zeros((n, 0))
    remaining = [j for j in range(p) if norms[j] > 0]
    dropped_zero = [j for j in range(p) if norms[j] == 0]
    while remaining:
        if len(keep) == n:  # the kept columns span every direction: the rest are linear in them
            dropped += remaining
            break
        A = _project_off(X[:, remaining], Q)
        Ra = la.qr(A, mode="r")[0]  # R alone: Q is formed only when a column is dropped
        m = min(len(remaining), n - len(keep))
        small = np.flatnonzero(np.abs(np.diag(Ra)[:m]) <= tol * norms[remaining[:m]])
        first = int(small[0]) if small.size else m
        if first < len(remaining) and first:
            Q = np.hstack([Q, la.qr(A[:, :first], mode="economic")[0]])
        keep += remaining[:first]
        if first < len(remaining):
            dropped.append(remaining[first])
        remaining = remaining[first + 1 :]
    keep.sort()
    aliased = sorted(dropped + dropped_zero)
    return X[:, keep], [names[j] for j in keep], [names[j] for j in aliased]


def model_frame(
    parsed: ParsedFormula, data, weights=None, offset=None, binomial: bool = False
) -> ModelFrame:
    """Select complete rows, then build y, X (full column rank), offset and weights.

    Incomplete rows are judged on the raw variables the formula reads (``x`` for
    ``poly(x, 2)``) and dropped before any transform is evaluated, so that ``poly``,
    ``scale`` and ``center`` see exactly the rows the fit uses.  This differs from R on
    purpose: R's ``poly()`` stops on a missing value, and ``scale()`` centres on all rows,
    including those dropped afterwards for a missing value in another variable.  Unused
    levels of factors are dropped, as R's ``model.frame`` drops them.

    ``binomial=True`` reads the response as :func:`binomial_response` does; trials of a
    ``cbind`` response multiply the weights, as in R's ``glm``.
    """
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    if len(data) == 0:
        raise DataError("the data have no rows")
    offset_arg = offset
    weights = _column_or_array(weights, data, "weights")
    offset = _column_or_array(offset, data, "offset")

    variables = model_variables(parsed, data)
    data, keep = prepare_data(variables, data)
    for arr in (weights, offset):
        if arr is not None:
            keep &= ~np.isnan(arr)
    n_dropped = int((~keep).sum())
    if keep.sum() == 0:
        raise DataError("no complete rows: every row has a missing value in a variable the model uses")
    if weights is not None:
        if np.any(weights < 0) or np.any(np.isinf(weights)):
            raise DataError("weights must be finite and non-negative")
        if not np.any(weights[keep] > 0):
            raise DataError("every weight is zero: there is nothing to fit; check the weights")
        keep &= weights != 0  # a row of weight 0 carries no information: left out, as if missing (R's lm)
    used = drop_unused_levels(variables, data.loc[keep])
    if n_dropped:
        warnings.warn(f"{n_dropped} rows with missing values were dropped", UserWarning, stacklevel=3)

    y, trials = binomial_response(parsed.response, used) if binomial else (response_vector(parsed.response, used), None)
    if not np.all(np.isfinite(y)):
        raise DataError(f"the response {parsed.response!r} has infinite values; remove or fix those rows")
    check_squares(y[:, None], [parsed.response], "response")
    design = design_matrix(parsed.fixed, used, "fixed-effects part", names_from=parsed.text)
    X = design.values
    if not np.all(np.isfinite(X)):
        bad = [c for c, ok in zip(design.names, np.isfinite(X).all(axis=0)) if not ok]
        raise DataError(f"the fixed-effect columns {bad} have non-finite values (a transform like log of 0?)")
    check_squares(X, design.names, "fixed-effect column")
    X, names, dropped = drop_aliased(X, design.names) if X.shape[1] else (X, design.names, [])
    if X.shape[1] >= len(y):
        raise DataError(
            f"the fixed effects have {X.shape[1]} columns for {len(y)} observations: nothing is left to estimate "
            "the variances; use fewer fixed effects (is a numeric column read as a factor?)"
        )
    if dropped:
        warnings.warn(
            f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} "
            f"column{'s' if len(dropped) > 1 else ''} / coefficient{'s' if len(dropped) > 1 else ''}: {dropped}",
            RankDeficiencyWarning,
            stacklevel=3,
        )

    off = np.zeros(len(used)) if offset is None else offset[keep]
    for expr in parsed.offsets:
        off = off + _numeric_vector(expr, used, "offset")
    w = np.ones(len(used)) if weights is None else weights[keep]
    if trials is not None:
        w = w * trials
    if not np.all(np.isfinite(off)):
        raise DataError("the offset has non-finite values")
    return ModelFrame(
        y=y, X=X, x_names=names, x_design=design, offset=off, weights=w, keep=keep,
        data=used, n_dropped=n_dropped, dropped_columns=dropped,
        offset_column=offset_arg if isinstance(offset_arg, str) else None,
        offset_array=offset_arg is not None and not isinstance(offset_arg, str), trials=trials,
    )


def fixed_matrix(frame_spec, names: list[str], formula_text: str, data: pd.DataFrame) -> np.ndarray:
    """Encode new data with the fitted fixed-effects spec, keeping only the fitted (non-aliased) columns."""
    mm = encode_new(frame_spec, data, "fixed effects")
    cols = {n: i for i, n in enumerate(r_names(frame_spec, formula_text))}
    return np.asarray(mm, dtype=float)[:, [cols[n] for n in names]]


def check_squares(values: np.ndarray, names: list[str], role: str) -> None:
    """Every column's sum of squares must be finite: the fit works with cross-products such as y'y and X'X.

    A value beyond ~1e150 overflows them and every estimate would be NaN; the error asks to rescale.
    """
    if values.size == 0 or np.max(np.abs(values)) < 1e150:  # then a sum of squares is finite for n < 1e8 rows
        return
    with np.errstate(over="ignore", invalid="ignore"):
        ok = np.isfinite(np.einsum("ij,ij->j", values, values))
    if not ok.all():
        j = int(np.flatnonzero(~ok)[0])
        big = float(np.max(np.abs(values[:, j])))
        scale = 10.0 ** (np.floor(np.log10(big)) - 3)
        raise DataError(
            f"the {role} {names[j]!r} has values up to {big:.3g}, too large to square in double precision: "
            f"rescale it (e.g. divide it by {scale:.0e}) and scale the estimates back"
        )
