"""The R functions and constants an lme4 formula may use, with R's semantics, for formulaic to evaluate.

:mod:`skmixed.rsyntax` writes a formula's R code as Python: ``as.numeric`` becomes
``as_numeric`` (see ``PYTHON_SPELLING`` there), ``!`` ``&`` ``|`` ``%in%`` become
``_r_not`` ``_r_and`` ``_r_or`` ``_r_in`` and R's sequence ``a:b`` inside a call ``_r_seq``,
parentheses inside a call ``_r_paren(...)`` (so columns are named with them, as R names them),
and a parenthesised term such as ``(x == 1)`` ``_r_value(...)``.  :func:`context` gives formulaic those names.

Logical values are factors in R's model matrices, with levels FALSE and TRUE (R's
``model.matrix``): a term such as ``I(x > 2)`` (written ``_r_value(I(x > 2))``) is coded as
the column ``I(x > 2)TRUE``, and as two columns where R would use two (no intercept, or an
interaction without main effect).
``factor()`` labels levels as R's ``as.character`` does (``1``, ``2.5``, ``1e+05``, ``TRUE``)
so that column names and the levels matched on new data are R's.
"""

from __future__ import annotations

from functools import reduce

import numpy as np
import pandas as pd

from . import splines
from .rsyntax import r_number

_LOGICAL_LEVELS = ["FALSE", "TRUE"]


def _series(x) -> pd.Series:
    return x if isinstance(x, pd.Series) else pd.Series(np.asarray(x))


def _is_logical(x) -> bool:
    s = _series(x)
    if pd.api.types.is_bool_dtype(s.dtype):
        return True
    if s.dtype == object:
        present = s.dropna()
        return len(present) > 0 and all(isinstance(v, (bool, np.bool_)) for v in present)
    return False


def logical_factor(x) -> pd.Series:
    """A logical vector as R's model matrix codes it: a factor with levels FALSE, TRUE."""
    s = _series(x)
    missing = s.isna().to_numpy()
    codes = np.where(missing, -1, s.where(~missing, False).to_numpy().astype(bool).astype(np.int8))
    return pd.Series(pd.Categorical.from_codes(codes, categories=_LOGICAL_LEVELS), index=s.index)


def identity(x):
    """R's ``I()``: the value as it is."""
    return x


def model_term(x):
    """A term's value as R's model matrix reads it: a logical becomes the factor FALSE/TRUE, the rest is unchanged."""
    return logical_factor(x) if np.ndim(x) == 1 and _is_logical(x) else x


def _label(value) -> str:
    """A level's label as R's ``as.character`` writes it."""
    if isinstance(value, (bool, np.bool_)):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return r_number(value)
    return str(value)


def factor(x, levels=None, labels=None, ordered=None, _state=None):
    """R's ``factor()``: levels sorted (or as given), unused levels dropped, labels as R writes them; an ordered
    factor stays ordered (R's default ``ordered = is.ordered(x)``), so it keeps polynomial contrasts.

    The levels are kept (``_state``) so new data are coded with the fit's levels, as R's ``xlev``.
    """
    state = {} if _state is None else _state
    s = _series(x)
    if ordered is None:
        ordered = isinstance(s.dtype, pd.CategoricalDtype) and s.cat.ordered
    if isinstance(s.dtype, pd.CategoricalDtype):
        found = list(s.cat.categories[np.unique(s.cat.codes[s.cat.codes >= 0])])
        s = s.astype(object)
    else:
        found = sorted(pd.unique(s.dropna()))
    if "levels" not in state:
        state["levels"] = [_label(v) for v in (found if levels is None else np.atleast_1d(levels))]
    names = state["levels"]
    coded = s.map({v: _label(v) for v in pd.unique(s.dropna())})
    coded = coded.where(coded.isin(names))
    if labels is not None:
        labels = [str(v) for v in np.atleast_1d(labels)]
        if len(labels) != len(names):
            raise ValueError(f"factor(): {len(labels)} labels for {len(names)} levels")
        coded, names = coded.map(dict(zip(names, labels))), labels
    return pd.Series(pd.Categorical(coded, categories=names, ordered=bool(ordered)), index=s.index)


def as_factor(x, _state=None):
    """R's ``as.factor()``: a factor stays as it is (unused levels kept); anything else goes through ``factor``."""
    s = _series(x)
    return s if isinstance(s.dtype, pd.CategoricalDtype) else factor(s, _state=_state)


def relevel(x, ref, _state=None):
    """R's ``relevel()``: the factor with level ``ref`` (a label, or a 1-based position) first.

    The fit's level order is kept (``_state``) for new data, which may lack the reference level.
    """
    state = {} if _state is None else _state
    f = as_factor(x)
    if f.cat.ordered:
        raise ValueError("relevel() is only for unordered factors")
    if "levels" in state:
        return f.cat.set_categories(state["levels"])
    levels = [str(c) for c in f.cat.categories]
    if isinstance(ref, str):
        if ref not in levels:
            raise ValueError(f"relevel(): ref = {ref!r} is not a level; the levels are {levels}")
        position = levels.index(ref)
    else:
        position = int(ref) - 1
        if not 0 <= position < len(levels):
            raise ValueError(f"relevel(): ref = {ref} is outside the {len(levels)} levels")
    categories = list(f.cat.categories)
    categories.insert(0, categories.pop(position))
    state["levels"] = categories
    return f.cat.reorder_categories(categories)


def as_numeric(x):
    """R's ``as.numeric()``: logicals give 0/1, a factor its level codes 1, 2, ..., strings their numbers (else NaN)."""
    s = _series(x)
    if isinstance(s.dtype, pd.CategoricalDtype):
        codes = s.cat.codes.to_numpy()
        return pd.Series(np.where(codes >= 0, codes + 1.0, np.nan), index=s.index)
    if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
        if _is_logical(s):
            return s.map(lambda v: np.nan if pd.isna(v) else float(v))
        return pd.to_numeric(s, errors="coerce").astype(float)
    return s.astype(float)


def as_integer(x):
    """R's ``as.integer()``: truncation towards zero (factor codes for a factor)."""
    return np.trunc(as_numeric(x))


def as_logical(x):
    """R's ``as.logical()``: numbers are TRUE unless 0; the strings TRUE/true/T/True and FALSE/false/F/False."""
    s = _series(x)
    if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
        words = {
            "TRUE": True,
            "true": True,
            "T": True,
            "True": True,
            "FALSE": False,
            "false": False,
            "F": False,
            "False": False,
        }
        return s.map(lambda v: words.get(v) if isinstance(v, str) else None)
    values = s.astype(float)
    return values.where(values.isna(), values != 0)


def as_character(x):
    """R's ``as.character()``: labels as R writes them (a character vector is a factor in a model matrix)."""
    s = _series(x)
    return s.map(lambda v: None if pd.isna(v) else _label(v)).astype(object)


def poly(x, degree=1, raw=False, _state=None):
    """R's ``poly()``: orthonormal polynomials of x (formulaic's, which are R's), or raw powers x, x², ...

    Columns are named ``1`` ... ``degree`` as R names them, raw or not.
    """
    from formulaic.materializers.types import FactorValues
    from formulaic.transforms import poly as formulaic_poly

    degree = int(degree)
    values = np.asarray(x, dtype=float)
    if _state is not None and not _state and np.unique(values[np.isfinite(values)]).size <= degree:
        raise ValueError("poly(): 'degree' must be less than the number of unique points")
    if raw:
        powers = np.column_stack([values**k for k in range(1, degree + 1)])
        return FactorValues(powers, column_names=tuple(str(k) for k in range(1, degree + 1)))
    state = {} if _state is None else _state
    return formulaic_poly(values, degree, _state=state)


def log(x, base=None):
    """R's ``log(x, base = exp(1))``."""
    return np.log(x) if base is None else np.log(x) / np.log(base)


def round_(x, digits=0):
    """R's ``round()``: half to even, as IEC 60559 and R do."""
    return np.round(x, int(digits))


def signif(x, digits=6):
    """R's ``signif()``: ``digits`` significant digits."""
    values = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore"):
        scale = np.where(values == 0, 0, np.floor(np.log10(np.abs(values))))
    factor_ = 10.0 ** (int(digits) - 1 - scale)
    out = np.round(values * factor_) / factor_
    return pd.Series(out, index=x.index) if isinstance(x, pd.Series) else out


def c(*values):
    """R's ``c()``: the arguments as one vector."""
    return np.concatenate([np.atleast_1d(np.asarray(v)) for v in values]) if values else np.empty(0)


def _r_seq(start, end):
    """R's ``start:end``: steps of 1 from ``start`` towards ``end``, not passing it."""
    start, end = float(start), float(end)
    steps = np.arange(np.floor(abs(end - start) + 1e-10) + 1)
    return start + np.sign(end - start) * steps


def ifelse(test, yes, no):
    """R's ``ifelse()``: elementwise choice; a missing test gives a missing value."""
    t = _series(test)
    out = np.where(t.fillna(False).astype(bool), yes, no).astype(float)
    return pd.Series(np.where(t.isna(), np.nan, out), index=t.index)


def _reduction(function, ddof=None):
    def over_all(x, na_rm=False):
        values = np.asarray(x, dtype=float)
        if na_rm:
            values = values[~np.isnan(values)]
        return function(values) if ddof is None else function(values, ddof=ddof)

    over_all.__doc__ = f"R's {function.__name__} over all values (NA unless na.rm = TRUE)."
    return over_all


def _r_not(x):
    s = _series(x)
    return ~s.astype(bool) if _is_logical(s) else s == 0


def _r_and(a, b):
    return _series(a).astype(bool) & _series(b).astype(bool)


def _r_or(a, b):
    return _series(a).astype(bool) | _series(b).astype(bool)


def _r_in(x, table):
    """R's ``%in%``: membership of each value (labels compared for factors)."""
    s = _series(x)
    wanted = {_label(v) for v in np.atleast_1d(table)}
    return s.map(lambda v: not pd.isna(v) and _label(v) in wanted).astype(bool)


#: Python name -> value, for formulaic's evaluation context.
_FUNCTIONS = {
    "TRUE": True,
    "FALSE": False,
    "T": True,
    "F": False,
    "pi": np.pi,
    "NULL": None,
    "NA": np.nan,
    "Inf": np.inf,
    "NaN": np.nan,
    "I": identity,
    "_r_value": model_term,
    "_r_paren": identity,
    "_r_not": _r_not,
    "_r_and": _r_and,
    "_r_or": _r_or,
    "_r_in": _r_in,
    "_r_seq": _r_seq,
    "c": c,
    "as_numeric": as_numeric,
    "as_integer": as_integer,
    "as_logical": as_logical,
    "as_character": as_character,
    "is_na": pd.isna,
    "log": log,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "log10": np.log10,
    "log2": np.log2,
    "log1p": np.log1p,
    "expm1": np.expm1,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "floor": np.floor,
    "ceiling": np.ceil,
    "trunc": np.trunc,
    "sign": np.sign,
    "round": round_,
    "signif": signif,
    "ifelse": ifelse,
    "pmin": lambda *a: reduce(np.minimum, a),
    "pmax": lambda *a: reduce(np.maximum, a),
    "mean": _reduction(np.mean),
    "median": _reduction(np.median),
    "sum": _reduction(np.sum),
    "min": _reduction(np.min),
    "max": _reduction(np.max),
    "sd": _reduction(np.std, ddof=1),
    "var": _reduction(np.var, ddof=1),
    "length": len,
    "np": np,
}
_STATEFUL = {
    "poly": poly,
    "ns": splines.ns,
    "bs": splines.bs,
    "factor": factor,
    "as_factor": as_factor,
    "relevel": relevel,
}


def context() -> dict:
    """Every name a formula's Python may use besides the data's columns, for formulaic's ``context``; poly, ns,
    bs, factor, as.factor and relevel keep their state (coefficients, knots, levels) in the model spec, so new
    data are encoded as the fit's data were."""
    from formulaic.utils.stateful_transforms import stateful_transform

    return {**_FUNCTIONS, **{name: stateful_transform(f) for name, f in _STATEFUL.items()}}
