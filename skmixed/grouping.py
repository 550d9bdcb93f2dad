"""Grouping factors of random-effects terms: levels kept as values, rows coded into them by value.

A grouping factor ``g`` has R's levels: the sorted unique values of the column (a Categorical keeps
its categories' order, unused ones dropped, as R's ``factor`` drops unused levels).  An
interaction ``a:b`` has the combinations observed in the data, ``a`` varying slowest.

Levels are values of the column's own dtype (a ``MultiIndex`` for an interaction), and new
data are coded by looking their values up among them: a datetime, a timedelta, an integer or
a string level is the same level in the fit and in ``predict``, and the parts of an
interaction are matched one by one, so that ``("a:b", "c")`` and ``("a", "b:c")`` stay two
levels.  Strings given for a factor of numbers are matched through the numbers' text, as in
R, whose levels are strings.  Strings are made from the levels for display only (the index
of ``ranef``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from .exceptions import DataError
from .variables import column


def _column(data: pd.DataFrame, name: str) -> pd.Series:
    return column(data, name, "grouping factor")


def _type_names(values: pd.Series) -> list[str]:
    return sorted({type(v).__name__ for v in values.dropna()})


def _check_hashable_kind(name: str, values: pd.Series) -> None:
    """An object column must hold one kind of value: numbers, strings, ... (not both), all hashable."""
    if values.dtype != object:
        return
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind in ("mixed-integer", "mixed"):
        types = _type_names(values)
        unhashable = [t for t in types if t in ("list", "dict", "set", "ndarray", "DataFrame", "Series")]
        if len(types) == 1 and not unhashable:  # one kind of hashable value (tuples, say): levels as they are
            return
        problem = (
            f"unhashable values ({', '.join(unhashable)})"
            if unhashable
            else f"values of different types ({', '.join(types)})"
        )
        raise DataError(
            f"the grouping factor {name!r} has {problem}: a level must be one number, string or date; convert the "
            f"column to one type, e.g. data[{name!r}].astype(str)"
        )


def factor_codes(name: str, values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Codes (−1 for missing) and levels, as R's ``factor()`` makes them: sorted values, or a Categorical's order."""
    if isinstance(values.dtype, pd.CategoricalDtype):  # on the codes, cheaper than pandas' remove_unused_categories
        codes, categories = values.array.codes.astype(np.int64), values.array.categories
        present = codes if not len(codes) or codes.min() >= 0 else codes[codes >= 0]
        used = np.bincount(present, minlength=len(categories)) > 0
        if not used.all():
            renumber = np.append(np.cumsum(used) - 1, -1)  # code -1 (missing) stays -1
            codes, categories = renumber[codes], categories[used]
        return codes, pd.Index(categories)
    _check_hashable_kind(name, values)
    try:
        codes, levels = pd.factorize(values, sort=True)
    except TypeError as e:  # unorderable or unhashable values that infer_dtype did not flag
        raise DataError(
            f"the grouping factor {name!r} has values that cannot be levels ({e}): "
            f"convert it, e.g. data[{name!r}].astype(str)"
        ) from None
    return codes.astype(np.int64), pd.Index(levels)


def _is_text(values) -> bool:
    """Strings (object, str or "string" dtype, or a Categorical of strings)."""
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return _is_text(dtype.categories)
    if isinstance(dtype, pd.StringDtype):
        return True
    return (dtype == object or pd.api.types.is_string_dtype(dtype)) and pd.api.types.infer_dtype(
        values, skipna=True
    ) == "string"


def _labels(levels: pd.Index) -> np.ndarray:
    """Display strings of one factor's levels (dates as ``2020-01-31``, as pandas prints them)."""
    return np.asarray(levels.astype(str), dtype=object)


@dataclass
class GroupingFactor:
    """Codes per row (into ``levels``) of the grouping factor ``name`` (``g`` or ``a:b``); ``levels`` are values."""

    name: str
    codes: np.ndarray
    levels: pd.Index  # an Index of the column's values, or a MultiIndex for an interaction

    @property
    def parts(self) -> list[str]:
        return self.name.split(":")

    @cached_property
    def labels(self) -> pd.Index:
        """The levels as strings, for display: ``308``, ``2020-01-31``, ``a:b`` for an interaction."""
        if not isinstance(self.levels, pd.MultiIndex):
            return pd.Index(_labels(self.levels), dtype=object)
        pieces = [_labels(lv)[codes] for lv, codes in zip(self.levels.levels, self.levels.codes)]
        joined = pieces[0]
        for p in pieces[1:]:
            joined = joined + ":" + p
        return pd.Index(joined, dtype=object)

    def encode(self, data: pd.DataFrame) -> np.ndarray:
        """Codes of the rows of ``data`` into the fitted levels, by value; −1 for a new level or a missing value."""
        if not isinstance(self.levels, pd.MultiIndex):
            return self._lookup(self.levels, self.parts[0], data)
        mi = self.levels
        part_codes = [self._lookup(lv, p, data) for lv, p in zip(mi.levels, self.parts)]
        sizes = [len(lv) for lv in mi.levels]
        keys, fitted = _mixed_radix(part_codes, sizes), _mixed_radix([np.asarray(c) for c in mi.codes], sizes)
        order = np.argsort(fitted)
        pos = np.minimum(np.searchsorted(fitted, keys, sorter=order), len(fitted) - 1)
        found = (keys >= 0) & (fitted[order[pos]] == keys)
        return np.where(found, order[pos], -1)

    @staticmethod
    def _lookup(levels: pd.Index, part: str, data: pd.DataFrame) -> np.ndarray:
        """Positions of ``data[part]`` among ``levels`` by value.  Strings for a factor of numbers (or integers
        for a factor of strings) are matched through the numbers' text, as R, whose levels are strings, does."""
        values = _column(data, part)
        _check_hashable_kind(part, values)
        numeric_levels = pd.api.types.is_numeric_dtype(levels.dtype) or pd.api.types.is_bool_dtype(levels.dtype)
        if numeric_levels and _is_text(values):
            return np.asarray(pd.Index(_labels(levels)).get_indexer(values), dtype=np.int64)
        if _is_text(levels) and pd.api.types.is_integer_dtype(values.dtype):
            return np.asarray(levels.get_indexer(values.astype(str).where(values.notna(), None)), dtype=np.int64)
        return np.asarray(levels.get_indexer(values), dtype=np.int64)

    def new_levels(self, data: pd.DataFrame, codes: np.ndarray) -> list[str]:
        """Display strings of the values of ``data`` that are not levels (rows with code −1, missing values aside)."""
        rows = data.loc[codes < 0] if len(data) == len(codes) else data.iloc[:0]
        columns = [_column(rows, p) for p in self.parts]
        present = np.ones(len(rows), dtype=bool)
        for c in columns:
            present &= c.notna().to_numpy()
        if not present.any():
            return []
        text = [np.asarray(c[present].astype(str), dtype=object) for c in columns]
        joined = text[0]
        for t in text[1:]:
            joined = joined + ":" + t
        return sorted(set(joined))


def _mixed_radix(codes: list[np.ndarray], sizes: list[int]) -> np.ndarray:
    """One integer per row from per-part codes (first part varying slowest); −1 where any part is −1."""
    key = np.zeros(len(codes[0]), dtype=np.int64)
    missing = np.zeros(len(codes[0]), dtype=bool)
    for c, size in zip(codes, sizes):
        key = key * size + c
        missing |= c < 0
    key[missing] = -1
    return key


def grouping_factor(name: str, data: pd.DataFrame) -> GroupingFactor:
    """The grouping factor ``name`` on ``data``: one column, or an interaction ``a:b`` of the observed combinations."""
    parts = name.split(":")
    coded = [factor_codes(p, _column(data, p)) for p in parts]
    if len(parts) == 1:
        codes, levels = coded[0]
        return GroupingFactor(name, codes, levels)
    key = _mixed_radix([c for c, _ in coded], [len(lv) for _, lv in coded])
    present = key >= 0
    used, inverse = np.unique(key[present], return_inverse=True)
    codes = np.full(len(key), -1, dtype=np.int64)
    codes[present] = inverse
    part_codes, rest = [], used
    for _, lv in reversed(coded):
        part_codes.append(rest % len(lv))
        rest = rest // len(lv)
    levels = pd.MultiIndex(levels=[lv for _, lv in coded], codes=part_codes[::-1], names=parts)
    return GroupingFactor(name, codes, levels)


def group_labels(name: str, data: pd.DataFrame) -> pd.Index:
    """Display labels (as in ``ranef``'s index) of grouping factor ``name`` per row of ``data``; missing stays None."""
    grouping = grouping_factor(name, data)
    labels = grouping.labels.to_numpy(dtype=object)
    return pd.Index(np.where(grouping.codes >= 0, labels[np.maximum(grouping.codes, 0)], None), dtype=object)
