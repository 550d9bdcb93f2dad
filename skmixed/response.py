"""The response of a model, in the forms R accepts: numbers, and for a binomial model its three other forms.

``y`` is a column or an R expression of columns (``log(y)``, ``a - b``; a comparison such
as ``y > 2`` is parsed into 0/1 by :mod:`skmixed.formula`).  A binomial response may also be
``cbind(successes, failures)`` (y the proportion, the trials multiplying the weights, as in
R's ``glm``), a two-level factor (the second level is a success) or logical.
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache

import numpy as np
import pandas as pd

from .exceptions import DataError
from .formula import split_top
from .grouping import factor_codes
from .model_matrix import numeric_column
from .variables import is_arithmetic


def _is_text_or_factor(values: pd.Series) -> bool:
    return (
        isinstance(values.dtype, pd.CategoricalDtype) or values.dtype == object or pd.api.types.is_string_dtype(values)
    )


@lru_cache(maxsize=256)
def _cbind_arguments(expr: str) -> tuple[str, ...] | None:
    """The arguments of ``cbind(a, b)``, or None if ``expr`` is not a cbind call (kept per text)."""
    m = re.match(r"^cbind\s*\((.*)\)$", expr.strip())
    return tuple(a for _, a in split_top(m.group(1), ",")) if m else None


_OPERATORS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.true_divide}


def _numbers(name: str, values: pd.Series, role: str) -> np.ndarray:
    if not (pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype)):
        raise DataError(f"the {role} {name!r} must be numbers, not values of dtype {values.dtype}")
    if isinstance(values.dtype, np.dtype):  # pandas' own conversion of plain numbers costs a fraction of numpy's
        return values.to_numpy(dtype=float)
    return np.asarray(values, dtype=float)


def _column(name: str, data: pd.DataFrame, role: str, seen: dict | None = None) -> np.ndarray:
    """``data[name]`` as floats; ``seen`` keeps the columns already read (``cbind(s, n - s)`` reads s twice)."""
    if seen is None:
        return _numbers(name, data[name], role)
    if name not in seen:
        seen[name] = _numbers(name, data[name], role)
    return seen[name]


@lru_cache(maxsize=256)
def _arithmetic_tree(expr: str) -> ast.expr | None:
    """Python's parse of ``expr`` (not changed by its readers, so kept per text), or None if it is not Python."""
    try:
        return ast.parse(expr, mode="eval").body
    except SyntaxError:
        return None


def _plain_arithmetic(expr: str, data: pd.DataFrame, role: str, seen: dict | None = None) -> np.ndarray | None:
    """``a - b``, ``s / n``, ``2 * y``...: columns and numbers under + − × ÷ (the same in R and numpy), without the
    formula machinery (a small model's response is otherwise a good part of its fit); None for anything else."""
    tree = _arithmetic_tree(expr)
    if tree is None:
        return None

    def value(node):
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left, right = value(node.left), value(node.right)
            return None if left is None or right is None else _OPERATORS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = value(node.operand)
            return None if inner is None else -inner
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id not in data.columns:
                raise DataError(f"{node.id!r} in the {role} {expr!r} is not a column of the data")
            return _column(node.id, data, role, seen)
        return None

    out = value(tree)
    return out if isinstance(out, np.ndarray) else None


def _expression_vector(expr: str, data: pd.DataFrame, role: str, seen: dict | None = None) -> np.ndarray:
    """A column or an R expression of columns; arithmetic such as ``a - b`` or ``s / n`` is evaluated as such."""
    if expr in data.columns:
        return _column(expr, data, role, seen)
    if is_arithmetic(expr):
        plain = _plain_arithmetic(expr, data, role, seen)
        if plain is not None:
            return plain
        expr = f"I({expr})"
    return numeric_column(expr, data, role)


def response_vector(expr: str, data: pd.DataFrame) -> np.ndarray:
    """The response as float; a non-numeric response is an error that names it."""
    values = data[expr] if expr in data.columns else None
    if values is not None and _is_text_or_factor(values):
        raise DataError(
            f"the response {expr!r} is not numeric (dtype {values.dtype}); the model needs a numeric response "
            "(a two-level factor is a binomial response for glmer)"
        )
    if _cbind_arguments(expr) is not None:
        raise DataError(
            f"{expr!r} is a binomial response (successes, failures): fit it with skmixed.glmer(..., family='binomial')"
        )
    return _as_numbers(expr, values, data)


def _as_numbers(expr: str, values: pd.Series | None, data: pd.DataFrame) -> np.ndarray:
    """The response ``expr`` as floats: its column ``values`` where it is one, else its expression's values."""
    return _expression_vector(expr, data, "response") if values is None else _numbers(expr, values, "response")


def _successes_and_trials(expr: str, args: tuple[str, ...], data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``cbind(s, f)``: the proportion s/(s + f) (0 where there are no trials) and the trials s + f."""
    if len(args) != 2:
        raise DataError(
            f"cbind() in a binomial response takes two columns (successes, failures), not {len(args)}: {expr!r}"
        )
    seen: dict[str, np.ndarray] = {}
    s, f = (_expression_vector(a, data, "response", seen) for a in args)
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(f))):
        raise DataError(f"the counts in {expr!r} must be finite numbers of successes and failures")
    if np.any(s < 0) or np.any(f < 0):
        raise DataError(f"the counts in {expr!r} must be non-negative (successes, failures)")
    trials = s + f
    if not np.any(trials > 0):
        raise DataError(f"every row of {expr!r} has zero trials (0 successes and 0 failures): there is nothing to fit")
    return np.divide(s, trials, out=np.zeros_like(s), where=trials > 0), trials


def binomial_response(expr: str, data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """A binomial response as (proportion y, trials or None), from R's forms of it.

    ``cbind(s, f)`` gives y = s/(s + f) and trials s + f; a two-level factor (or
    strings) gives 1 for the second level; booleans and 0/1 or proportions (with
    weights = trials) are taken as they are.
    """
    args = _cbind_arguments(expr)
    if args is not None:
        return _successes_and_trials(expr, args, data)
    values = data[expr] if expr in data.columns else None
    if values is not None and _is_text_or_factor(values):
        codes, levels = factor_codes(expr, values)
        if len(levels) != 2:
            raise DataError(
                f"the binomial response {expr!r} has {len(levels)} levels {list(levels)[:6]}; it needs two "
                "(the second counts as success): recode it, e.g. (column == 'yes')"
            )
        return (codes == 1).astype(float), None
    return _as_numbers(expr, values, data), None
