"""The data columns a model reads, and their check and preparation before any matrix is built.

R's ``model.frame`` reads every variable of a formula, drops the rows where one is missing,
and drops the unused levels of factors; a column that cannot enter a model matrix stops it.
Here the same steps happen once, before transforms are evaluated, with errors that name the
column and the fix instead of a traceback from deep in numpy, pandas or formulaic:

* value columns (fixed part, random-effects left sides, offsets, the response) must be
  numbers, booleans or factors (Categorical, strings — pandas' ``"string"`` dtype included);
  an object column of numbers is read as numbers; dates, durations, complex numbers,
  intervals and columns mixing types are errors naming the column;
* a column with only missing values is an error naming it;
* duplicate column names that the model reads are an error.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd

from .exceptions import DataError, FormulaError
from .formula import ParsedFormula, split_top
from .model_matrix import formula_context, formulaic_error, parsed_rhs, sum_columns
from .rnames import factor_variables


def column_error(name: str, data: pd.DataFrame, role: str) -> DataError:
    close = difflib.get_close_matches(str(name), [str(c) for c in data.columns], n=3)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else f"; the columns are {list(data.columns)[:20]}"
    return DataError(f"the {role} {name!r} is not a column of the data{hint}")


def column(data: pd.DataFrame, name: str, role: str) -> pd.Series:
    """``data[name]`` as one Series; a missing or duplicated column is an error naming it."""
    if name not in data.columns:
        raise column_error(name, data, role)
    values = data[name]
    if isinstance(values, pd.DataFrame):
        raise DataError(
            f"the data have {values.shape[1]} columns named {name!r}: rename or drop the duplicates "
            "(e.g. data.loc[:, ~data.columns.duplicated()])"
        )
    return values


def present(values: pd.Series) -> np.ndarray:
    """Rows where ``values`` is not missing, read from its values or codes (cheaper than pandas' notna)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.array.codes >= 0
    if isinstance(values.dtype, np.dtype) and values.dtype.kind in "iub":
        return np.ones(len(values), dtype=bool)
    if isinstance(values.dtype, np.dtype) and values.dtype.kind == "f":
        return ~np.isnan(values.to_numpy())
    return values.notna().to_numpy()


_NUMERIC_KINDS = ("integer", "floating", "mixed-integer-float", "decimal", "boolean")
_TIME_KINDS = ("datetime64", "datetime", "date", "timedelta64", "timedelta", "time", "period")


def _time_error(name: str, role: str) -> DataError:
    return DataError(
        f"the {role} {name!r} holds dates or durations, which cannot enter a model matrix: convert it to a "
        f"number, e.g. days since a date, (data[{name!r}] - data[{name!r}].min()).dt.days, or to a factor "
        f"with data[{name!r}].astype(str)"
    )


def value_column(name: str, values: pd.Series, role: str) -> pd.Series:
    """``values`` as a model can read it (numbers, booleans or a factor), or an error naming the column.

    An object column of numbers (or booleans) becomes numeric; anything else that is not a
    number or a factor raises :class:`DataError` with the fix.
    """
    dtype = values.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iufb":  # the common case, first: plain numbers
        return values
    if isinstance(dtype, (pd.CategoricalDtype, pd.StringDtype)):
        return values
    if (
        pd.api.types.is_datetime64_any_dtype(dtype)
        or pd.api.types.is_timedelta64_dtype(dtype)
        or isinstance(dtype, pd.PeriodDtype)
    ):
        raise _time_error(name, role)
    if pd.api.types.is_complex_dtype(dtype):
        raise DataError(
            f"the {role} {name!r} has complex values: a model needs real numbers (e.g. data[{name!r}].real)"
        )
    if pd.api.types.is_bool_dtype(dtype):  # pandas' nullable booleans stay logical (a FALSE/TRUE factor in a model)
        return values
    if pd.api.types.is_numeric_dtype(dtype):
        # nullable (Int64, Float64) or sparse numbers: plain floats, pd.NA as NaN
        return pd.Series(values.to_numpy(dtype=float, na_value=np.nan), index=values.index, name=values.name)
    if dtype != object:  # intervals, ...: neither a number nor R's factor
        raise DataError(
            f"the {role} {name!r} has dtype {dtype}, which cannot enter a model matrix: convert it to numbers "
            f"or to a factor with data[{name!r}].astype(str)"
        )
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind in ("string", "empty"):
        return values
    if kind in _NUMERIC_KINDS:
        return pd.to_numeric(values) if kind != "boolean" else values.astype("boolean")
    if kind in _TIME_KINDS:
        raise _time_error(name, role)
    if kind == "complex":
        raise DataError(f"the {role} {name!r} has complex values: a model needs real numbers")
    types = sorted({type(v).__name__ for v in values.dropna()})
    raise DataError(
        f"the {role} {name!r} holds values of types {', '.join(types)}: a column must hold numbers or strings "
        f"(a factor), not a mixture or containers; convert it, e.g. with data[{name!r}].astype(str)"
    )


def _every_category_used(values: pd.Series) -> bool:
    """Whether each category of the Categorical ``values`` occurs in it (checked on the codes)."""
    codes = values.array.codes
    return bool(np.bincount(codes[codes >= 0], minlength=len(values.dtype.categories)).all())


def drop_unused_categories(values: pd.Series) -> pd.Series:
    """A Categorical without its unused categories (R's ``drop.unused.levels``), checked on the codes."""
    if not isinstance(values.dtype, pd.CategoricalDtype) or _every_category_used(values):
        return values
    return values.cat.remove_unused_categories()


@lru_cache(maxsize=256)
def is_arithmetic(expr: str) -> bool:
    """Operators outside parentheses, which formulaic would read as formula syntax (``a - b`` drops b); kept per
    text."""
    return len(split_top(expr, "+-*/:%^")) > 1


@lru_cache(maxsize=256)
def _expression_names(expr: str) -> frozenset[str]:
    """Names an R expression reads as values (``x`` in ``poly(x, 2)``, ``days.since`` in ``log(days.since)``;
    not ``poly``), factor by factor (:func:`skmixed.rnames.factor_variables`).

    formulaic's ``required_variables`` misses the arguments of its stateful transforms
    (``poly``, ``scale``, ``center``), so rows missing x would reach them, and splits dotted names.  Kept per
    text, as formulaic's parse is (:func:`~skmixed.model_matrix.parsed_rhs`).
    """
    return frozenset(name for term in parsed_rhs(expr) for factor in term.factors for name in factor_variables(factor))


def expression_variables(expr: str, data: pd.DataFrame) -> set[str]:
    """The data columns ``expr`` reads; a name that is neither a column nor a function is an error naming it."""
    plain = sum_columns(expr, data)
    if plain is not None:
        return set(plain)
    from formulaic.transforms import TRANSFORMS

    try:
        names = _expression_names(expr)
    except formulaic_error() as e:
        raise FormulaError(f"cannot read {expr!r}: {e}") from None
    known = set(formula_context()) | set(TRANSFORMS)
    return {n for n in names if n in data.columns or n not in known}


@dataclass
class ModelVariables:
    """The columns a formula reads: value columns with the role they play (for errors), and grouping columns."""

    values: dict[str, str]
    groups: list[str]
    factor_columns: list[str] = field(
        default_factory=list
    )  # value columns that are Categoricals (found by prepare_data)
    complete_factors: list[str] = field(default_factory=list)  # those with every category in the data's rows


def model_variables(parsed: ParsedFormula, data: pd.DataFrame, response: bool = True, bars=None) -> ModelVariables:
    """The columns ``parsed`` reads on ``data``: response (if ``response``), fixed part, offsets, and the
    random-effects ``bars`` (all of the formula's by default)."""
    values: dict[str, str] = {}

    def add(names, role):
        for n in sorted(names):
            values.setdefault(n, role)

    if response:
        if parsed.response in data.columns:
            add({parsed.response}, "response")
        else:
            add(
                expression_variables(
                    f"I({parsed.response})" if is_arithmetic(parsed.response) else parsed.response, data
                ),
                "response variable",
            )
    add(expression_variables(parsed.fixed, data), "fixed-effect variable")
    for expr in parsed.offsets:
        add(expression_variables(expr, data), "offset variable")
    groups: list[str] = []
    for bar in parsed.bars if bars is None else bars:
        if bar.lhs.strip() not in ("1", "0"):
            add(expression_variables(bar.lhs, data), "random-effect variable")
        groups += [g for g in bar.group.split(":") if g not in groups]
    return ModelVariables(values, groups)


def prepare_data(variables: ModelVariables, data: pd.DataFrame, fit: bool = True) -> tuple[pd.DataFrame, np.ndarray]:
    """The columns the model reads, checked and converted (:func:`value_column`), and the complete rows.

    Returns ``data`` with converted columns replaced (an object column of numbers becomes
    numeric) and the mask of rows where no variable is missing.  At ``fit``, a column that
    is all missing is an error naming it (new data may have rows to predict as missing).
    """
    keep = np.ones(len(data), dtype=bool)
    replaced = {}
    columns = [(n, role) for n, role in variables.values.items()] + [(g, "grouping factor") for g in variables.groups]
    for name, role in columns:
        values = column(data, name, role)
        if role != "grouping factor":
            converted = value_column(name, values, role)
            if converted is not values:
                replaced[name] = values = converted
            if role == "offset variable" and not pd.api.types.is_numeric_dtype(values.dtype):
                raise DataError(f"the offset variable {name!r} must be numeric, not of dtype {values.dtype}")
            if isinstance(values.dtype, pd.CategoricalDtype):
                variables.factor_columns.append(name)
                if _every_category_used(values):
                    variables.complete_factors.append(name)
        ok = present(values)
        if fit and not ok.any():
            raise DataError(f"column {name!r} has only missing values: drop it from the formula or fill it")
        keep &= ok
    return (data.assign(**replaced) if replaced else data), keep


def drop_unused_levels(variables: ModelVariables, used: pd.DataFrame, all_rows: bool = False) -> pd.DataFrame:
    """``used`` with the unused categories of its factor columns dropped, as R's model.frame drops unused levels.

    ``all_rows``: ``used`` holds every row the variables were prepared on, so a factor with every category there
    (:attr:`ModelVariables.complete_factors`) has nothing to drop."""
    dropped = {}
    for name in variables.factor_columns:
        if all_rows and name in variables.complete_factors:
            continue
        values = used[name]
        pruned = drop_unused_categories(values)
        if pruned is not values:
            dropped[name] = pruned
    return used.assign(**dropped) if dropped else used


def _is_factor(values: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype))


def check_like_fit(variables: ModelVariables, new: pd.DataFrame, fitted: pd.DataFrame) -> None:
    """Each value column of new data is a factor where the fit's was, and numbers where the fit's were.

    R's ``predict`` stops the same way ("variable 'x' was fitted with type "numeric" but type
    "character" was supplied"); formulaic would fail with a message about generated columns.
    """
    for name, role in variables.values.items():
        if name not in fitted.columns or name not in new.columns:
            continue
        was, now = _is_factor(fitted[name]), _is_factor(new[name])
        if was != now:
            kinds = ("a factor", "numbers")
            raise DataError(
                f"the {role} {name!r} was fitted as {kinds[not was]} but the new data give {kinds[not now]} "
                f"(dtype {new[name].dtype}): convert it as it was in the fit"
            )
