"""The reference grid of a fit's fixed effects (emmeans' ``ref_grid``): every factor at each of its levels, every
covariate at its mean, and the model-matrix row of each combination.

The grid is built from the variables the fixed part reads, not from its model-matrix columns: ``scale(x)``,
``I(x^2)`` and ``poly(x, 2)`` are evaluated at the mean of x (as emmeans does), through the fitted formula's
encoding, so that stateful transforms use the fit's centring and scaling.  A variable is a factor when its column
is categorical, text or logical, or when the formula reads it only through ``factor()``/``as.factor()``; the
other numeric variables are covariates.  ``at`` replaces a variable's values (a covariate's several values become
a dimension of the grid; a factor's list restricts its levels).  The offset is its mean over the rows fitted, as
emmeans sets its ``.offset.``.

Where the fit dropped aliased columns (a rank-deficient X), a linear function ``l'β`` of the full set of columns
is estimable when l is orthogonal to the null space of X (emmeans' ``is.estble``: ‖N'l‖² < 10⁻⁸‖l‖² for an
orthonormal basis N); the null space is spanned by ``(−B_j, e_j)`` for each dropped column j, ``X_dropped = X_kept B``.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .exceptions import OptionError
from .model_matrix import encode_new, r_names
from .variables import expression_variables

#: emmeans' tolerance of estimability
ESTIMABLE_TOL = 1e-8
#: a grid beyond this many rows is refused: fix some factors with ``at=``
MAX_GRID_ROWS = 1_000_000


@dataclass(frozen=True)
class ReferenceGrid:
    """``dims``: each variable's grid values (a factor's levels, a covariate's mean), in the formula's order;
    ``factors``: which of them are factors; ``data``: the grid, the first variable varying fastest; ``X``: its
    rows of the fitted model matrix; ``X_full``: of every column of the formula (aliased ones included), with
    ``null_basis`` the null space of the fit's full model matrix (None when nothing was dropped)."""

    dims: dict[str, list]
    factors: set[str]
    data: pd.DataFrame
    X: np.ndarray
    X_full: np.ndarray
    null_basis: np.ndarray | None
    offset: float

    def estimable(self, L_full: np.ndarray) -> np.ndarray:
        """Whether each row of ``L_full`` (a linear function of every column, aliased ones included) is estimable."""
        if self.null_basis is None:
            return np.ones(len(L_full), dtype=bool)
        check = L_full @ self.null_basis
        size = np.einsum("ij,ij->i", L_full, L_full)
        size = np.where(size < ESTIMABLE_TOL, 1.0, size)
        return np.einsum("ij,ij->i", check, check) < ESTIMABLE_TOL * size


def reference_grid(result, at: dict | None = None) -> ReferenceGrid:
    """The reference grid of ``result``'s fixed effects (see the module docstring)."""
    frame, parsed = result.frame, result.parsed
    data = frame.data
    names = sorted(expression_variables(parsed.fixed, data), key=lambda n: _position(n, parsed.text))
    at = _check_at(at, names)
    dims, factors = {}, set()
    for name in names:
        values = data[name]
        if _is_factor(values) or _read_as_factor(name, parsed.fixed):
            factors.add(name)
            levels = _levels(values)
            dims[name] = levels if name not in at else _chosen_levels(name, at[name], levels)
        else:
            dims[name] = [float(values.mean())] if name not in at else [float(v) for v in np.atleast_1d(at[name])]
    grid = _grid_frame(dims, factors, data)
    full = np.asarray(encode_new(frame.x_spec, grid, "reference grid"), dtype=float)
    column = {n: j for j, n in enumerate(r_names(frame.x_spec, parsed.text))}
    X = full[:, [column[n] for n in frame.x_names]]
    null_basis = _null_basis(frame, column) if frame.dropped_columns else None
    return ReferenceGrid(dims, factors, grid, X, full, null_basis, float(np.mean(frame.offset)))


def _position(name: str, text: str) -> int:
    m = re.search(rf"(?<![\w.]){re.escape(name)}(?![\w.])", text)
    return m.start() if m else len(text)


def _is_factor(values: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype)


def _read_as_factor(name: str, fixed: str) -> bool:
    """A numeric column the fixed part reads only as ``factor(x)`` / ``as.factor(x)`` / ``ordered(x)``."""
    wrapped = rf"\b(?:factor|as_factor|ordered|as_ordered)\(\s*{re.escape(name)}\s*\)"
    bare = re.sub(wrapped, "", fixed)
    return bool(re.search(wrapped, fixed)) and not re.search(rf"(?<![\w.]){re.escape(name)}(?![\w.])", bare)


def _levels(values: pd.Series) -> list:
    if isinstance(values.dtype, pd.CategoricalDtype):
        return list(values.cat.categories)
    if pd.api.types.is_bool_dtype(values.dtype):
        return [False, True]
    return sorted(pd.unique(values.dropna()))


def _check_at(at, names: list[str]) -> dict:
    if at is None:
        return {}
    if not isinstance(at, dict):
        raise OptionError("at must be a dict such as {'x': [0, 1]} (a variable's values in the reference grid)")
    unknown = [k for k in at if k not in names]
    if unknown:
        raise OptionError(f"at= names {unknown}, which the fixed effects do not read; they read {', '.join(names)}")
    return at


def _chosen_levels(name: str, chosen, levels: list) -> list:
    chosen = list(np.atleast_1d(chosen))
    missing = [v for v in chosen if v not in levels]
    if missing or not chosen:
        raise OptionError(f"at={{{name!r}: ...}} must list levels of {name!r} ({', '.join(map(str, levels))})")
    return chosen


def _grid_frame(dims: dict[str, list], factors: set[str], data: pd.DataFrame) -> pd.DataFrame:
    """Every combination of the dims' values, the first varying fastest, columns typed as the fit's data."""
    size = int(np.prod([len(v) for v in dims.values()])) if dims else 1
    if size > MAX_GRID_ROWS:
        raise OptionError(
            f"the reference grid would have {size} rows: fix some factors at a level with at={{'factor': level}}"
        )
    rows = [tuple(reversed(r)) for r in itertools.product(*reversed(list(dims.values())))]
    columns = {}
    for j, name in enumerate(dims):
        column = [r[j] for r in rows]
        dtype = data[name].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            columns[name] = pd.Categorical(column, categories=dtype.categories, ordered=dtype.ordered)
        else:
            columns[name] = pd.Series(column, dtype=dtype if name in factors else float)
    return pd.DataFrame(columns, index=pd.RangeIndex(size))


def _null_basis(frame, column: dict[str, int]) -> np.ndarray:
    """An orthonormal basis of the null space of the fit's full model matrix, in the formula's column order."""
    full = frame.x_design.values
    kept = [column[n] for n in frame.x_names]
    dropped = [column[n] for n in frame.dropped_columns]
    B = np.linalg.lstsq(full[:, kept], full[:, dropped], rcond=None)[0]
    basis = np.zeros((full.shape[1], len(dropped)))
    basis[kept] = -B
    basis[dropped] = np.eye(len(dropped))
    return np.linalg.qr(basis)[0]
