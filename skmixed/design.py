"""Model frame: from a parsed formula and a DataFrame to y, X, offset, weights and grouping factors.

Rows with a missing value in any variable the model uses are dropped once, for
y, X and Z together.  The fixed part goes through formulaic (plain numeric columns
are read directly) and its ``ModelSpec`` is kept, or built when first needed, so new
data are encoded identically for prediction.
"""
from __future__ import annotations

import difflib
import keyword
import re
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd
from .exceptions import DataError, FormulaError, RankDeficiencyWarning
from .formula import ParsedFormula, _split_top
from .rfunctions import NAMES
from .rfunctions import context as r_context
from .rnames import column_name, factor_variables

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
class GroupingFactor:
    """A grouping factor: integer codes per row into ``levels`` (R's level order)."""

    name: str
    codes: np.ndarray
    levels: pd.Index

    def encode(self, data: pd.DataFrame) -> np.ndarray:
        """Codes of new data into the fitted levels; -1 for a level not seen in the fit (or missing)."""
        labels = group_labels(self.name, data)
        return pd.Index(self.levels).get_indexer(labels)


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


def column_error(name: str, data: pd.DataFrame, role: str) -> DataError:
    close = difflib.get_close_matches(str(name), [str(c) for c in data.columns], n=3)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else f"; the columns are {list(data.columns)[:20]}"
    return DataError(f"the {role} {name!r} is not a column of the data{hint}")


def _factor(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Codes and levels of one variable as R's ``factor()`` makes them (unused levels dropped)."""
    if isinstance(values.dtype, pd.CategoricalDtype):  # on the codes: pandas' remove_unused_categories costs ~0.1 ms
        codes, categories = values.array.codes.astype(np.int64), values.array.categories
        used = np.bincount(codes[codes >= 0], minlength=len(categories)) > 0
        if not used.all():
            renumber = np.append(np.cumsum(used) - 1, -1)  # code -1 (missing) stays -1
            codes, categories = renumber[codes], categories[used]
        return codes, pd.Index(categories.astype(str))
    levels = np.sort(pd.unique(values.dropna()))
    codes = pd.Index(levels).get_indexer(values)
    return codes.astype(np.int64), pd.Index([str(v) for v in levels])


def _present(column: pd.Series) -> np.ndarray:
    """Rows where ``column`` is not missing, from its values (pandas' notna costs ~50 µs per column)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.array.codes >= 0
    if isinstance(column.dtype, np.dtype) and column.dtype.kind in "iub":
        return np.ones(len(column), dtype=bool)
    if isinstance(column.dtype, np.dtype) and column.dtype.kind == "f":
        return ~np.isnan(column.to_numpy())
    return column.notna().to_numpy()


def group_labels(name: str, data: pd.DataFrame) -> pd.Index:
    """String labels of grouping factor ``name`` (``a`` or ``a:b``) per row; missing stays missing."""
    parts = name.split(":")
    cols = []
    for p in parts:
        if p not in data.columns:
            raise column_error(p, data, "grouping factor")
        s = data[p]
        cols.append(s.astype(str).where(s.notna(), None))
    if len(cols) == 1:
        return pd.Index(cols[0])
    joined = cols[0]
    for c in cols[1:]:
        joined = joined + ":" + c
    return pd.Index(joined)


def grouping_factor(name: str, data: pd.DataFrame) -> GroupingFactor:
    """Build the factor ``name``; an interaction ``a:b`` has the observed combinations, ``a`` varying slowest."""
    parts = name.split(":")
    for p in parts:
        if p not in data.columns:
            raise column_error(p, data, "grouping factor")
    if len(parts) == 1:
        codes, levels = _factor(data[parts[0]])
        return GroupingFactor(name, codes, levels)
    coded = [_factor(data[p]) for p in parts]
    combined = np.zeros(len(data), dtype=np.int64)
    for codes, levels in coded:
        combined = combined * len(levels) + codes
    used, codes = np.unique(combined, return_inverse=True)
    labels = []
    for u in used:
        idx = []
        for _, levels in reversed(coded):
            idx.append(levels[u % len(levels)])
            u //= len(levels)
        labels.append(":".join(reversed(idx)))
    return GroupingFactor(name, codes.astype(np.int64), pd.Index(labels))


def _variables(expr: str, data: pd.DataFrame) -> set[str]:
    """The data columns ``expr`` reads (plain numeric columns without formulaic's parse)."""
    plain = _plain_columns(expr, data)
    if plain is not None:
        return set(plain[1])
    try:
        terms = parsed_rhs(expr)
    except formulaic_error() as e:
        raise FormulaError(f"cannot read {expr!r}: {e}") from None
    names = {v for term in terms for f in term.factors for v in factor_variables(f)}
    return {v for v in names if v in data.columns or v not in FORMULA_FUNCTIONS}


def _check_columns(names: set[str], data: pd.DataFrame, role: str) -> None:
    for v in sorted(names):
        if v not in data.columns:
            raise column_error(v, data, role)


def model_matrix(expr: str, data: pd.DataFrame, role: str):
    """formulaic's model matrix of a right-hand side; errors name the term and the fix."""
    try:
        with np.errstate(divide="ignore", invalid="ignore"):  # non-finite results get our own error, naming the column
            return parsed_rhs(expr).get_model_matrix(data, context=formula_context(), na_action="ignore")
    except formulaic_error() as e:
        raise FormulaError(f"cannot evaluate the {role} {expr!r}: {e}") from None


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


def _plain_columns(expr: str, data: pd.DataFrame) -> tuple[bool, list[str]] | None:
    """(intercept, columns) when ``expr`` is a sum of ``1``, ``0`` and distinct numeric columns, else None."""
    intercept, columns = True, []
    for sign, term in _split_top(expr, "+-"):
        if not term:
            continue
        if sign == "-":
            return None
        if term in ("0", "1"):
            intercept = intercept and term == "1"
            continue
        if not term.isidentifier() or keyword.iskeyword(term) or term in columns or term not in data.columns:
            return None
        if data[term].dtype.kind not in "iuf":
            return None
        columns.append(term)
    return intercept, columns


def design_matrix(expr: str, data: pd.DataFrame, role: str, names_from: str | None = None) -> Design:
    """The model matrix of ``expr`` on ``data``; ``names_from`` orders interaction names (see :func:`r_names`).

    A sum of plain numeric columns (``Days``, ``1 + Days``, ``0 + x + z``) is read straight
    from the data, as formulaic would build it (intercept first, then the columns in order),
    and formulaic's spec is built only when new data need encoding: building it costs
    0.5 ms per matrix, a third of a small fit (sleepstudy).  Anything else goes through formulaic.
    """
    plain = _plain_columns(expr, data)
    if plain is None:
        mm = model_matrix(expr, data, role)
        return Design(np.asarray(mm, dtype=float), r_names(mm.model_spec, names_from or expr), expr, role, _spec=mm.model_spec)
    intercept, columns = plain
    values = np.empty((len(data), int(intercept) + len(columns)))
    if intercept:
        values[:, 0] = 1.0
    for j, column in enumerate(columns, start=int(intercept)):
        values[:, j] = data[column].to_numpy(dtype=float)
    return Design(values, ["(Intercept)"] * intercept + columns, expr, role, rows=data)


def _numeric_vector(expr: str, data: pd.DataFrame, role: str) -> np.ndarray:
    mm = model_matrix(f"0 + {expr}", data, role)
    if mm.shape[1] != 1:
        raise DataError(f"the {role} {expr!r} must be one numeric column, not {mm.shape[1]} columns (is it a factor?)")
    return np.asarray(mm.iloc[:, 0], dtype=float)


def _column_or_array(value, data: pd.DataFrame, role: str) -> np.ndarray | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value not in data.columns:
            raise column_error(value, data, role)
        value = data[value]
    arr = np.asarray(value, dtype=float).ravel()
    if arr.shape[0] != len(data):
        raise DataError(f"{role} has {arr.shape[0]} values but the data have {len(data)} rows")
    return arr


def _cbind_arguments(expr: str) -> list[str] | None:
    """The arguments of ``cbind(a, b)``, or None if ``expr`` is not a cbind call."""
    m = re.match(r"^cbind\s*\((.*)\)$", expr.strip())
    return [a for _, a in _split_top(m.group(1), ",")] if m else None


def _is_arithmetic(expr: str) -> bool:
    """Operators outside parentheses, which formulaic would read as formula syntax (``a - b`` drops b)."""
    return len(_split_top(expr, "+-*/:%^")) > 1


def _expression_vector(expr: str, data: pd.DataFrame, role: str) -> np.ndarray:
    """A column or an R expression of columns; arithmetic such as ``a - b`` or ``s / n`` is evaluated as such."""
    if expr in data.columns:
        return np.asarray(data[expr], dtype=float)
    if _is_arithmetic(expr):
        expr = f"I({expr})"
    return _numeric_vector(expr, data, role)


def response_vector(expr: str, data: pd.DataFrame) -> np.ndarray:
    """The response as float; a non-numeric response is an error that names it."""
    if expr in data.columns:
        s = data[expr]
        if isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == object or pd.api.types.is_string_dtype(s):
            raise DataError(
                f"the response {expr!r} is not numeric (dtype {s.dtype}); lmer needs a numeric response "
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
        if np.any(s < 0) or np.any(f < 0):
            raise DataError(f"the counts in {expr!r} must be non-negative (successes, failures)")
        trials = s + f
        return np.divide(s, trials, out=np.zeros_like(s), where=trials > 0), trials
    if expr in data.columns:
        col = data[expr]
        if isinstance(col.dtype, pd.CategoricalDtype) or col.dtype == object or pd.api.types.is_string_dtype(col):
            codes, levels = _factor(col)
            if len(levels) != 2:
                raise DataError(
                    f"the binomial response {expr!r} has {len(levels)} levels {list(levels)[:6]}; it needs two "
                    "(the second counts as success): recode it, e.g. (column == 'yes')"
                )
            return (codes == 1).astype(float), None
    return _expression_vector(expr, data, "response"), None


def drop_aliased(X: np.ndarray, names: list[str], tol: float = 1e-7) -> tuple[np.ndarray, list[str], list[str]]:
    """Drop columns of X that are (numerically) linear in earlier columns, as R's ``qr(X, tol = 1e-7)`` does."""
    keep = []
    for j in range(X.shape[1]):
        col = X[:, j]
        norm = np.linalg.norm(col)
        if norm == 0:
            continue
        if keep:
            Q, _ = np.linalg.qr(X[:, keep])
            resid = col - Q @ (Q.T @ col)
            if np.linalg.norm(resid) <= tol * norm:
                continue
        keep.append(j)
    dropped = [names[j] for j in range(X.shape[1]) if j not in keep]
    return X[:, keep], [names[j] for j in keep], dropped


def _full_rank(X: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str], list[str]]:
    if X.shape[1] == 0:
        return X, names, []
    R = np.linalg.qr(X, mode="r")
    scale = np.linalg.norm(X, axis=0)
    if np.all(np.abs(np.diag(R)) > 1e-7 * np.where(scale > 0, scale, 1.0)) and np.all(scale > 0):
        return X, names, []
    return drop_aliased(X, names)


def model_frame(
    parsed: ParsedFormula, data, weights=None, offset=None, binomial: bool = False
) -> ModelFrame:
    """Select complete rows, then build y, X (full column rank), offset and weights.

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

    response_expr = f"I({parsed.response})" if _is_arithmetic(parsed.response) else parsed.response
    if parsed.response not in data.columns:
        _check_columns(_variables(response_expr, data), data, "response")
    needed = {parsed.response} if parsed.response in data.columns else _variables(response_expr, data)
    fixed_vars = _variables(parsed.fixed, data)
    _check_columns(fixed_vars, data, "fixed-effect variable")
    needed |= fixed_vars
    for expr in parsed.offsets:
        v = _variables(expr, data)
        _check_columns(v, data, "offset variable")
        needed |= v
    for bar in parsed.bars:
        v = _variables(bar.lhs, data) if bar.lhs.strip() not in ("1", "0") else set()
        _check_columns(v, data, "random-effect variable")
        needed |= v
        for g in bar.group.split(":"):
            if g not in data.columns:
                raise column_error(g, data, "grouping factor")
            needed.add(g)

    keep = np.ones(len(data), dtype=bool)
    for column in needed:
        keep &= _present(data[column])
    for arr in (weights, offset):
        if arr is not None:
            keep &= ~np.isnan(arr)
    n_dropped = int((~keep).sum())
    if keep.sum() == 0:
        raise DataError("no complete rows: every row has a missing value in a variable the model uses")
    used = data.loc[keep]
    if n_dropped:
        warnings.warn(f"{n_dropped} rows with missing values were dropped", UserWarning, stacklevel=3)

    y, trials = binomial_response(parsed.response, used) if binomial else (response_vector(parsed.response, used), None)
    if not np.all(np.isfinite(y)):
        raise DataError(f"the response {parsed.response!r} has infinite values; remove or fix those rows")
    design = design_matrix(parsed.fixed, used, "fixed-effects part", names_from=parsed.text)
    X = design.values
    if not np.all(np.isfinite(X)):
        bad = [c for c, ok in zip(design.names, np.isfinite(X).all(axis=0)) if not ok]
        raise DataError(f"the fixed-effect columns {bad} have non-finite values (a transform like log of 0?)")
    X, names, dropped = _full_rank(X, design.names)
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
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise DataError("weights must be finite and non-negative")
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
    try:
        mm = frame_spec.get_model_matrix(data, context=formula_context(), na_action="ignore")
    except formulaic_error() as e:
        raise DataError(f"cannot encode the new data for the fixed effects: {e}") from None
    cols = {n: i for i, n in enumerate(r_names(frame_spec, formula_text))}
    return np.asarray(mm, dtype=float)[:, [cols[n] for n in names]]
