"""How an estimator's inputs become an lme4 formula and a model-frame DataFrame.

Array mode: X (n × p) and ``groups`` (n × m) become the columns of a DataFrame under the
user's column names (``x{j}`` / ``g{k}`` for unnamed arrays, or names a formula cannot quote)
and the model ``y ~ days + `dose (mg)` + ... + (1 + slopes | subject) + ...``, so the fit's
coefficients, random effects and summary carry the user's names (backquoted where R would).
Formula mode: X already is a DataFrame holding every column the formula names.
The fitted encoding is kept on the estimator so ``predict`` encodes new data the same way.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..exceptions import DataError, FormulaError, OptionError
from ..formula import parse_formula
from ..rsyntax import is_syntactic, r_name
from ..variables import column_error, expression_variables

RESPONSE = "y"


# --- groups ---------------------------------------------------------------------
def _user_group_names(groups, m: int) -> list[str]:
    if isinstance(groups, pd.DataFrame):
        return [str(c) for c in groups.columns]
    if isinstance(groups, pd.Series) and groups.name is not None:
        return [str(groups.name)]
    return ["group"] if m == 1 else [f"group{k}" for k in range(m)]


def _canonical(column: pd.Series) -> pd.Series:
    """One grouping column with a stable label per level: integral floats become ints, objects strings.

    ``fit`` and ``predict`` both pass through here, so ``1``, ``1.0`` and ``np.int32(1)`` are one level.
    """
    if isinstance(column.dtype, pd.CategoricalDtype):
        if not pd.api.types.is_numeric_dtype(column.cat.categories):
            return column  # keeps the categories' order as the level order
        column = column.astype(column.cat.categories.dtype)
    column = column.infer_objects()
    if pd.api.types.is_complex_dtype(column):  # levels by value, as they are
        return column
    if pd.api.types.is_bool_dtype(column) or not pd.api.types.is_numeric_dtype(column):
        return column.astype(str).where(column.notna(), None)
    values = column.to_numpy(dtype=float, na_value=np.nan)
    finite = np.isfinite(values)
    integral = np.all(values[finite] == np.round(values[finite])) and np.all(np.abs(values[finite]) < 2.0**53)
    if integral and not np.isinf(values).any():
        return column.astype("Int64")
    return column.astype(float)


def group_frame(groups, n: int) -> tuple[pd.DataFrame, list[str]]:
    """``groups`` (1-D, 2-D, Series or DataFrame) as a DataFrame of canonical labels, and the factors' names."""
    if isinstance(groups, pd.DataFrame):
        columns = [groups.iloc[:, k].reset_index(drop=True) for k in range(groups.shape[1])]
    elif isinstance(groups, pd.Series):
        columns = [groups.reset_index(drop=True)]
    else:
        arr = np.asarray(groups, dtype=object)
        if arr.ndim == 1:
            columns = [pd.Series(arr)]
        elif arr.ndim == 2:
            columns = [pd.Series(arr[:, k]) for k in range(arr.shape[1])]
        else:
            raise DataError(
                f"groups must be 1-D (one grouping factor) or 2-D (one column per factor), not {arr.ndim}-D"
            )
    if not columns:
        raise DataError("groups has no columns: pass one column per grouping factor, or groups=None")
    if len(columns[0]) != n:
        raise DataError(f"groups has {len(columns[0])} rows but X has {n}: pass one group label per row of X")
    names = _user_group_names(groups, len(columns))
    frame = pd.DataFrame({k: _canonical(c) for k, c in enumerate(columns)})
    return frame, names


def random_slope_indices(random_slopes, names: list[str] | None, n_features: int) -> list[int]:
    """Column indices of X for ``random_slopes`` given as column names (``names``: X's columns) or indices."""
    if random_slopes is None:
        return []
    items = [random_slopes] if isinstance(random_slopes, (str, int, np.integer)) else list(random_slopes)
    out = []
    for item in items:
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            if not 0 <= item < n_features:
                raise OptionError(f"random_slopes index {item} is out of range for X with {n_features} columns")
            out.append(int(item))
        elif isinstance(item, str):
            if names is None:
                raise OptionError(
                    f"random_slopes names a column ({item!r}) but X has no column names: pass X as a DataFrame "
                    "or give column indices"
                )
            if item not in names:
                raise column_error(item, pd.DataFrame(columns=names), "random_slopes column")
            out.append(names.index(item))
        else:
            raise OptionError(f"random_slopes must hold column names or integer indices, not {item!r}")
    return sorted(set(out))


def _quotable(name: str, group: bool) -> bool:
    """Whether a formula can name the column ``name`` (backquoted if need be) and R and Python read it alike.

    A grouping factor's name cannot hold ':' or '/' (a formula reads them as interaction and nesting);
    Python identifiers R would quote (``_x``, ``function``) are named differently by the two.
    """
    if not name or "`" in name or name != name.strip() or (group and (":" in name or "/" in name)):
        return False
    return is_syntactic(name) or not name.isidentifier()


def _model_columns(user_names: list[str], prefix: str, taken: set[str], group: bool) -> list[str]:
    """Model-frame column names: the user's name when a formula can name it and it is unused, else ``{prefix}{j}``."""
    out = []
    for j, name in enumerate(user_names):
        column = name if _quotable(name, group) and name not in taken else f"{prefix}{j}"
        while column in taken:
            column = f"{column}_"
        taken.add(column)
        out.append(column)
    return out


@dataclass
class ArrayEncoding:
    """Array mode: X and groups as model-frame columns; ``grouping_factors``: the columns of groups kept in the model.

    ``feature_data`` and ``group_columns`` are the DataFrame's columns (the user's names, or ``x{j}`` /
    ``g{k}``); ``feature_columns`` are the coefficients' names, as R prints them (``Days``, ```dose (mg)```);
    the response is ``y`` unless that name is taken.
    """

    feature_names: list[str]
    group_names: list[str]
    slopes: list[int]
    grouping_factors: list[int]
    feature_data: list[str] = field(init=False)
    feature_columns: list[str] = field(init=False)
    group_columns: list[str] = field(init=False)
    response: str = field(init=False)

    def __post_init__(self):
        taken: set[str] = set()
        self.feature_data = _model_columns(self.feature_names, "x", taken, group=False)
        self.group_columns = _model_columns(self.group_names, "g", taken, group=True)
        self.feature_columns = [r_name(c) for c in self.feature_data]
        self.response = RESPONSE
        while self.response in taken:
            self.response = f"{self.response}_"
        self._user = dict(zip(self.feature_data + self.group_columns, self.feature_names + self.group_names))
        self._user.update(zip(self.feature_columns, self.feature_names))

    def formula(self) -> str:
        fixed = " + ".join(self.feature_columns)
        lhs = " + ".join(["1"] + [self.feature_columns[j] for j in self.slopes])
        bars = " + ".join(f"({lhs} | {r_name(self.group_columns[k])})" for k in self.grouping_factors)
        return f"{self.response} ~ {fixed} + {bars}"

    def frame(self, X: np.ndarray, groups: pd.DataFrame | None, y=None) -> pd.DataFrame:
        data = pd.DataFrame(X, columns=self.feature_data)
        if groups is not None:
            if groups.shape[1] != len(self.group_names):
                raise DataError(
                    f"groups has {groups.shape[1]} columns but the model was fitted with {len(self.group_names)} "
                    f"grouping factors ({', '.join(self.group_names)})"
                )
            data = pd.concat([data, groups.set_axis(self.group_columns, axis=1)], axis=1)
        if y is not None:
            data[self.response] = y
        return data

    def user_name(self, column: str) -> str:
        """The user's name for a model-frame column or coefficient (other names, like ``(Intercept)``, unchanged)."""
        return self._user.get(column, column)


def estimable_grouping_factors(groups: pd.DataFrame, names: list[str], n: int, max_levels: int) -> list[int]:
    """Indices of grouping factors whose variance can be estimated: ≥ 2 levels and at most ``max_levels``.

    A factor with one level (a CV fold holding a single group) or one level per row has no
    variance of its own to estimate; it is left out of the model with a warning.
    """
    kept = []
    for k, name in enumerate(names):
        column = groups.iloc[:, k]
        if column.isna().any():
            raise DataError(
                f"the grouping factor {name!r} has {int(column.isna().sum())} missing values: "
                "drop those rows or give them a level of their own"
            )
        n_levels = column.nunique()
        if n_levels < 2:
            warnings.warn(
                f"the grouping factor {name!r} has a single level in the training data, so it gets no random "
                "effect in this fit",
                UserWarning,
                stacklevel=3,
            )
        elif n_levels > max_levels:
            warnings.warn(
                f"the grouping factor {name!r} has {n_levels} levels for {n} rows: its variance cannot be told "
                "apart from the residual variance, so it gets no random effect in this fit",
                UserWarning,
                stacklevel=3,
            )
        else:
            kept.append(k)
    return kept


# --- formula mode -----------------------------------------------------------------
@dataclass
class FormulaEncoding:
    """Formula mode: ``response ~ rhs`` on DataFrame X plus the response column; ``columns``: X's columns it reads."""

    rhs: str
    response: str
    columns: list[str] = field(default_factory=list)

    @classmethod
    def from_text(cls, formula, X) -> FormulaEncoding:
        if not isinstance(formula, str):
            raise FormulaError(f"formula must be a string such as '~ x + (1 | g)', not {type(formula).__name__}")
        text = formula.strip()
        if not text.startswith("~"):
            raise FormulaError(
                f"the formula {formula!r} has a left-hand side; in an estimator the response comes from "
                "fit(X, y): write only the right-hand side, e.g. '~ x + (1 | g)'"
            )
        if not isinstance(X, pd.DataFrame):
            raise DataError(
                f"formula mode needs X as a pandas DataFrame holding the columns the formula names "
                f"(grouping columns included), not {type(X).__name__}"
            )
        response = RESPONSE
        while response in X.columns:
            response = f"_{response}"
        parse_formula(f"{response} {text}")  # a typo in the formula is reported before any data work
        return cls(rhs=text, response=response)

    @property
    def formula(self) -> str:
        return f"{self.response} {self.rhs}"

    def frame(self, X, y=None) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            raise DataError(
                f"formula mode needs X as a pandas DataFrame with the columns the formula names, not {type(X).__name__}"
            )
        data = X.reset_index(drop=True)
        if y is not None:
            data = data.assign(**{self.response: y})
        return data


def formula_columns(result, data=None) -> list[str]:
    """The data columns a fitted model reads: fixed-effect, random-effect and offset variables, grouping factors
    (``data``: the fit's columns, by default its model frame's)."""
    parsed, data = result.parsed, result.frame.data if data is None else data
    used: set[str] = set()
    for expr in (parsed.fixed, *parsed.offsets, *(bar.lhs for bar in parsed.bars)):
        used |= expression_variables(expr, data)
    for bar in parsed.bars:
        used |= set(bar.group.split(":"))
    return sorted(v for v in used if v in data.columns and v != parsed.response)


def check_columns(X: pd.DataFrame, columns: list[str]) -> None:
    for c in columns:
        if c not in X.columns:
            raise column_error(c, X, "formula variable")
