"""Model matrices of formula right-hand sides, built by formulaic with R's coding and R's column names.

formulaic evaluates a right-hand side such as ``Days + factor(g) + poly(x, 2)`` on a
DataFrame with the R functions of :mod:`skmixed.rfunctions`, coding factors as R's
``model.matrix`` does (:class:`skmixed.contrasts.RMaterializer`); the columns are renamed as
R names them (:mod:`skmixed.rnames`).  Its ``ModelSpec`` keeps the state of stateful
transforms (factor levels, ``poly`` coefficients, spline knots) so that new data are encoded
as the fit's data were, which prediction needs.

A sum of plain numeric columns and unordered factors is read straight from the data (:func:`design_matrix`);
formulaic, whose import is a large share of ``import skmixed``, is then imported only if new
data must be encoded.
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from .exceptions import DataError, FormulaError
from .formula import split_top
from .rfunctions import context as r_context
from .rnames import column_name


@lru_cache(maxsize=256)
def parsed_rhs(expr: str):
    """formulaic's parse of a right-hand side, cached: Formula objects are immutable, and a refit (a grid
    search, a cross-validation) parses the same right-hand sides again."""
    from formulaic import Formula

    return Formula(expr)


def formulaic_error() -> type[Exception]:
    """formulaic's error class (for ``except formulaic_error() as e``, evaluated only when something is raised)."""
    from formulaic.errors import FormulaicError

    return FormulaicError


@lru_cache(maxsize=1)
def formula_context() -> dict:
    """formulaic's evaluation ``context``: R's functions and constants (:func:`skmixed.rfunctions.context`)."""
    return r_context()


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
            return parsed_rhs(expr).get_model_matrix(
                data, context=formula_context(), na_action="ignore", materializer=RMaterializer
            )
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


def _enclosed(term: str) -> bool:
    """Whether ``term`` is one parenthesized group, ``(…)``."""
    depth = 0
    for i, ch in enumerate(term):
        depth += (ch == "(") - (ch == ")")
        if depth == 0:
            return i == len(term) - 1 and i > 0
    return False


@lru_cache(maxsize=256)
def _summands(expr: str) -> tuple[tuple[str, str], ...]:
    """The ``(sign, term)`` pairs of ``expr`` with added parenthesized sums opened: ``(a + b) + c`` is ``a + b + c``
    in a formula.  A group with an intercept term (``0``, ``1``) inside stays closed: formulaic keeps the intercept of
    ``k + (x + 0)``, so such a formula is left to it.  Kept per text: a fit reads its fixed part several times."""
    out: list[tuple[str, str]] = []
    for sign, term in split_top(expr, "+-"):
        inner = _summands(term[1:-1]) if sign != "-" and _enclosed(term) else None
        if inner is not None and all(piece not in ("0", "1") for _, piece in inner):
            out += inner
        else:
            out.append((sign, term))
    return tuple(out)


def _sum_names(expr: str, columns: pd.Index) -> tuple[bool, list[str]] | None:
    """(intercept, names) when ``expr`` is a sum of ``1``, ``0`` and distinct names of unique ``columns``, else None
    (a duplicated column is left to the general path, which reports it)."""
    intercept, names = True, []
    for sign, term in _summands(expr):
        if not term:
            continue
        if sign == "-":
            return None
        if term in ("0", "1"):
            intercept = intercept and term == "1"
            continue
        if not term.isidentifier() or keyword.iskeyword(term) or term in names or term not in columns:
            return None
        if not isinstance(columns.get_loc(term), (int, np.integer)):  # several columns of that name
            return None
        names.append(term)
    return intercept, names


def _sum_terms(expr: str, data: pd.DataFrame) -> tuple[bool, list[tuple[str, pd.Series]]] | None:
    """(intercept, [(name, column)]) when ``expr`` is a sum of ``1``, ``0`` and distinct column names, else None."""
    terms = _sum_names(expr, data.columns)
    return None if terms is None else (terms[0], [(name, data[name]) for name in terms[1]])


def sum_columns(expr: str, data: pd.DataFrame) -> list[str] | None:
    """The columns ``expr`` reads when it is a sum of ``1``, ``0`` and distinct column names (of any type), else
    None: then no formula parser is needed to name them."""
    terms = _sum_names(expr, data.columns)
    return None if terms is None else terms[1]


def plain_columns(expr: str, data: pd.DataFrame) -> tuple[bool, list[str]] | None:
    """(intercept, columns) when ``expr`` is a sum of ``1``, ``0`` and distinct numeric columns, else None."""
    terms = _sum_terms(expr, data)
    if terms is None or any(values.dtype.kind not in "iuf" for _, values in terms[1]):
        return None
    return terms[0], [name for name, _ in terms[1]]


def _treatment_factor(values: pd.Series) -> bool:
    """Whether R's treatment coding of ``values`` can be read from its codes, as formulaic would code it.

    That is an unordered Categorical of string levels, every level present (so no question of
    which levels a coding keeps), and at least two of them (one level is an error that
    :mod:`skmixed.contrasts` words).  Everything else (ordered factors, strings, booleans)
    keeps formulaic's coding.
    """
    dtype = values.dtype
    if not isinstance(dtype, pd.CategoricalDtype) or dtype.ordered or len(dtype.categories) < 2:
        return False
    if not all(isinstance(level, str) for level in dtype.categories):
        return False
    counts = np.bincount(values.array.codes + 1, minlength=len(dtype.categories) + 1)
    return counts[0] == 0 and bool(np.all(counts[1:]))


def _direct_columns(expr: str, data: pd.DataFrame) -> tuple[np.ndarray, list[str]] | None:
    """The model matrix of a sum of numeric columns and (with an intercept) unordered factors, read directly.

    The columns are formulaic's, in its order (intercept first, then the terms as written):
    a numeric column as floats, a factor as the indicators of its levels but the first (R's
    treatment contrasts, named ``f`` + level).  Without an intercept the first factor would
    be coded in full, which is left to formulaic.  None when ``expr`` is anything else.
    """
    terms = _sum_terms(expr, data)
    if terms is None:
        return None
    intercept, columns = terms
    factors = [values for _, values in columns if values.dtype.kind not in "iuf"]
    if factors and not (intercept and all(_treatment_factor(values) for values in factors)):
        return None
    width = sum(1 if values.dtype.kind in "iuf" else len(values.dtype.categories) - 1 for _, values in columns)
    X = np.empty((len(data), int(intercept) + width))
    names = ["(Intercept)"] * intercept
    if intercept:
        X[:, 0] = 1.0
    j = int(intercept)
    for name, values in columns:
        if values.dtype.kind in "iuf":
            X[:, j] = values.to_numpy(dtype=float)
            names.append(name)
            j += 1
            continue
        levels = values.dtype.categories.tolist()[1:]  # a list: slicing an Index of Arrow strings costs more
        X[:, j : j + len(levels)] = values.array.codes[:, None] == np.arange(1, len(levels) + 1)
        names += [f"{name}{level}" for level in levels]
        j += len(levels)
    return X, names


def design_matrix(expr: str, data: pd.DataFrame, role: str, names_from: str | None = None) -> Design:
    """The model matrix of ``expr`` on ``data``; ``names_from`` orders interaction names (see :func:`r_names`).

    A sum of plain numeric columns and unordered factors (``Days``, ``1 + Days``, ``0 + x + z``,
    ``period + x``) is read straight from the data (:func:`_direct_columns`), as formulaic
    would build it; formulaic's spec, which a small fit would otherwise spend much of its time
    on, is built only when new data need encoding.  Anything else goes through formulaic.
    """
    direct = _direct_columns(expr, data)
    if direct is None:
        mm = model_matrix(expr, data, role)
        return Design(
            np.asarray(mm, dtype=float), r_names(mm.model_spec, names_from or expr), expr, role, _spec=mm.model_spec
        )
    return Design(direct[0], direct[1], expr, role, rows=data)


def fixed_matrix(frame_spec, names: list[str], formula_text: str, data: pd.DataFrame) -> np.ndarray:
    """Encode new data with the fitted fixed-effects spec, keeping only the fitted (non-aliased) columns."""
    mm = encode_new(frame_spec, data, "fixed effects")
    cols = {n: i for i, n in enumerate(r_names(frame_spec, formula_text))}
    return np.asarray(mm, dtype=float)[:, [cols[n] for n in names]]


def numeric_column(expr: str, data: pd.DataFrame, role: str) -> np.ndarray:
    """The R expression ``expr`` (an offset, a response) evaluated on ``data`` as one numeric column."""
    mm = model_matrix(f"0 + {expr}", data, role)
    if mm.shape[1] != 1:
        raise DataError(f"the {role} {expr!r} must be one numeric column, not {mm.shape[1]} columns (is it a factor?)")
    return np.asarray(mm.iloc[:, 0], dtype=float)


def check_squares(values: np.ndarray, names: list[str], role: str) -> None:
    """Every column's sum of squares must be finite: the fit works with cross-products such as y'y and X'X.

    A value beyond ~1e150 overflows them and every estimate would be NaN; the error asks to rescale.
    """
    if values.size == 0 or (values.min() > -1e150 and values.max() < 1e150):  # a sum of squares is finite, n < 1e8
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
