"""A residual covariance structure bound to the data: each subject's visits, subjects grouped by visit pattern.

``residual="us(visit | subject)"`` makes the residuals of one subject i correlated, ε_i ~ N(0, σ²R_i(φ)), R_i
the rows and columns of R(φ) (:mod:`skmixed.covstruct`) for the visits subject i has; subjects are independent.
Subjects with the same set of visits (a *pattern*) share R_i, so the deviance (:mod:`skmixed.residual_deviance`)
works per pattern.  Binding checks what the structure needs of the data: no missing time or subject, one row per
subject and visit, every pair (``us``) or lag (``toep``) of visits observed together in some subject, and a
likelihood that is bounded (:func:`check_bounded`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .covstruct import Structure, StructureSpec
from .exceptions import DataError
from .grouping import grouping_factor


@dataclass
class Pattern:
    """Subjects observed at the same visits: ``visits`` (level indices, increasing), ``rows`` (m × T_P row
    indices into the model frame, one row of the array per subject, columns in visit order)."""

    visits: np.ndarray
    rows: np.ndarray


@dataclass
class ResidualDesign:
    """The structure on the fit's rows: levels of the time variable, subjects, and the visit patterns."""

    spec: StructureSpec
    structure: Structure
    levels: pd.Index
    subjects: pd.Index
    time_codes: np.ndarray
    subject_codes: np.ndarray
    patterns: list[Pattern]

    @property
    def level_labels(self) -> list[str]:
        return [f"{v:g}" if isinstance(v, (float, np.floating)) else str(v) for v in self.levels]

    def covariance(self, phi: np.ndarray, sigma: float) -> pd.DataFrame:
        """Σ = σ²R(φ) labelled by the time levels."""
        labels = self.level_labels
        return pd.DataFrame(
            sigma**2 * self.structure.matrix(np.asarray(phi, dtype=float)), index=labels, columns=labels
        )


def _time_levels(spec: StructureSpec, data: pd.DataFrame) -> tuple[np.ndarray, pd.Index, np.ndarray]:
    """Codes per row, the levels and their positions (level order; numeric time for ``exp``)."""
    if spec.time not in data.columns:
        raise DataError(f"the time variable {spec.time!r} of residual={str(spec)!r} is not a column of the data")
    col = data[spec.time]
    if col.isna().any():
        raise DataError(f"the time variable {spec.time!r} has missing values: drop those rows before fitting")
    if spec.name == "exp":
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            raise DataError(
                f"exp({spec.time} | {spec.group}) needs a numeric time (its correlation is ρ^|t−s|); "
                f"{spec.time!r} is {col.dtype}: use ar1 for a factor of equally spaced visits"
            )
        levels, codes = np.unique(col.to_numpy(float), return_inverse=True)
        return codes, pd.Index(levels), levels
    if isinstance(col.dtype, pd.CategoricalDtype):
        col = col.cat.remove_unused_categories()
        codes, levels = col.cat.codes.to_numpy(), pd.Index(col.cat.categories)
    else:
        levels, codes = np.unique(col.to_numpy(), return_inverse=True)
        levels = pd.Index(levels)
    return np.asarray(codes, dtype=np.int64), levels, np.arange(len(levels), dtype=float)


def bind(spec: StructureSpec, data: pd.DataFrame) -> ResidualDesign:
    """The structure ``spec`` on the fit's rows ``data`` (row order of the model frame)."""
    time_codes, levels, positions = _time_levels(spec, data)
    if spec.group not in data.columns and ":" not in spec.group:
        raise DataError(f"the grouping variable {spec.group!r} of residual={str(spec)!r} is not a column of the data")
    factor = grouping_factor(spec.group, data)
    if np.any(factor.codes < 0):
        raise DataError(f"the grouping variable {spec.group!r} has missing values: drop those rows before fitting")
    subject_codes = np.asarray(factor.codes, dtype=np.int64)
    T = len(levels)
    key = subject_codes * T + time_codes
    unique_keys, counts = np.unique(key, return_counts=True)
    if np.any(counts > 1):
        dup = unique_keys[np.argmax(counts > 1)]
        raise DataError(
            f"{spec.group} {factor.labels[dup // T]} has {counts.max()} rows at {spec.time} = {levels[dup % T]}: "
            f"a residual structure needs one row per {spec.group} and {spec.time} (average or drop duplicates)"
        )
    structure = Structure(spec.name, positions)
    if T < 2 and structure.n_corr > 0:
        raise DataError(f"{spec.time!r} has one value: the structure {spec.name} needs at least two visits")
    order = np.lexsort((time_codes, subject_codes))
    bounds = np.flatnonzero(np.diff(subject_codes[order])) + 1
    groups: dict[bytes, list[np.ndarray]] = {}
    for rows in np.split(order, bounds):
        groups.setdefault(time_codes[rows].tobytes(), []).append(rows)
    patterns = [Pattern(time_codes[rows[0]], np.vstack(rows)) for rows in groups.values()]
    design = ResidualDesign(spec, structure, levels, factor.labels, time_codes, subject_codes, patterns)
    _check_identified(design)
    return design


def _check_identified(design: ResidualDesign) -> None:
    """Every pair of visits (``us``) or every lag (``toep``) must occur within some subject."""
    kind, T, spec = design.structure.kind, design.structure.T, design.spec
    together = np.zeros((T, T), dtype=bool)
    for p in design.patterns:
        together[np.ix_(p.visits, p.visits)] = True
    if kind == "us" and not together.all():
        t, s = np.argwhere(~together)[0]
        raise DataError(
            f"no {spec.group} has both {spec.time} = {design.levels[t]} and {design.levels[s]}: their correlation "
            f"in us({spec.time} | {spec.group}) is not identified (the levels of {spec.time!r} must be shared "
            "across subjects); use fewer levels or a structure such as ar1 or exp"
        )
    if kind == "toep":
        lags = {abs(int(t) - int(s)) for t, s in np.argwhere(together)}
        missing = sorted(set(range(T)) - lags)
        if missing:
            raise DataError(
                f"no {spec.group} has two visits {missing[0]} levels of {spec.time!r} apart: the Toeplitz "
                "correlation at that lag is not identified; use ar1 or fewer levels"
            )


def check_bounded(design: ResidualDesign, X: np.ndarray, x_names: list[str]) -> None:
    """DataError where the likelihood has no maximum (de Leeuw's −∞ cells: more Σ parameters than the data carry).

    If the fixed part can fit a combination v'y_i of every subject's visits exactly, whatever y is (the rows
    Σ_t v_t x_it of the subjects are linearly independent), a structure whose σ²v'Rv can shrink to 0 drives
    the deviance to −∞.  Checked: each visit alone for a structure with a variance per visit (``us``, ``diag``
    and the heterogeneous ones), the subject's mean for compound symmetry (ρ → −1/(T−1)), and a generic v
    for ``us``.
    """
    s, spec = design.structure, design.spec
    if s.kind == "us":
        _check_residual_rank(design, X)
    directions: list[tuple[str, np.ndarray]] = []
    if s.heterogeneous:
        directions += [
            (f"the observations at {spec.time} = {lv}", np.eye(s.T)[t]) for t, lv in enumerate(design.levels)
        ]
    if s.kind == "cs":
        directions.append((f"each {spec.group}'s mean", np.ones(s.T)))
    if s.kind == "us":
        directions.append((f"a combination of each {spec.group}'s visits", np.random.default_rng(0).normal(size=s.T)))
    for what, v in directions:
        covered = [p for p in design.patterns if np.all(np.isin(np.flatnonzero(v), p.visits))]
        if not covered:
            continue
        M = np.vstack([np.einsum("t,mtk->mk", v[p.visits], X[p.rows]) for p in covered])  # Σ_t v_t x_it
        if np.linalg.matrix_rank(M) == len(M):
            raise DataError(
                f"the likelihood has no maximum: the fixed part ({len(x_names)} coefficients) fits {what} exactly "
                f"for every {spec.group}, so the {spec.name} structure's variance there can shrink to 0 and the "
                "deviance to −∞ (more Σ parameters than the data carry). Use fewer fixed effects or a structure "
                "with fewer variance parameters (e.g. residual=None for σ²I)"
            )


def _check_residual_rank(design: ResidualDesign, X: np.ndarray) -> None:
    """An unstructured Σ needs residual vectors spanning all T visits: with fewer subjects (or a fixed part
    that absorbs their differences) Σ̂ is singular and the likelihood unbounded."""
    T, spec = design.structure.T, design.spec
    y_free = np.random.default_rng(1).normal(size=X.shape[0])  # any y: the residual space is the fixed part's
    e = y_free - X @ np.linalg.lstsq(X, y_free, rcond=None)[0]
    S = np.zeros((T, T))
    for p in design.patterns:
        S[np.ix_(p.visits, p.visits)] += e[p.rows].T @ e[p.rows]
    rank = np.linalg.matrix_rank(S)
    if rank < T:
        raise DataError(
            f"the likelihood has no maximum: the residuals of the {len(design.subjects)} {spec.group} span {rank} "
            f"of the {T} dimensions of an unstructured Σ over {spec.time!r} (more Σ parameters than the data "
            "carry); use a structure with fewer parameters (ar1, cs, toep, diag) or more subjects"
        )
