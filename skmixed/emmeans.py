"""Estimated marginal means and their pairwise comparisons (Lenth's emmeans package: ``emmeans`` and ``pairs``).

The marginal mean of a level is the fitted linear predictor averaged with equal weights over the reference grid
(:mod:`skmixed.refgrid`) of the other factors, the covariates at their means: ``l'β + offset`` with l the mean of
the grid's model-matrix rows of that level.  Its standard error is ``√(l'Vl)`` and its df come from the method
``ddf`` names (:mod:`skmixed.linear_functions`: asymptotic, Satterthwaite or Kenward–Roger, emmeans' default by
default).  A mean whose l is not estimable in a rank-deficient model is NaN, as emmeans prints ``nonEst``.

On a GLMM's response scale (``type="response"``, emmeans' ``type``/``regrid``) a mean is ``g⁻¹(l'β)``, its
standard error ``|dμ/dη|·se`` (the delta method) and its interval the link-scale interval's ends mapped by g⁻¹.
Pairwise comparisons are differences on the link scale, shown on the response scale as emmeans shows them:
ratios for a log link, odds ratios for a logit link (the tests stay on the link scale); for other links they stay
differences on the link scale.

``pairs(adjust=...)`` adjusts the p-values within each ``by`` group: Tukey's studentized range for the family of
its k means (p = P(Q_{k,df} > √2·|t|)), Holm's step-down method, or none.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .exceptions import OptionError
from .linear_functions import check_level, emmeans_df_method, linear_functions
from .refgrid import ReferenceGrid, reference_grid
from .rsyntax import r_number
from .update import rhs_terms

ADJUSTMENTS = ("tukey", "holm", "none")


def emmeans(result, specs, by=None, ddf=None, type: str = "link", level: float = 0.95, at: dict | None = None):
    """Estimated marginal means of ``specs`` (a factor's name or a list of names), for each level of ``by``.

    Returns an :class:`EmmeansFrame`: a DataFrame with a column per factor of ``specs`` and ``by`` holding its
    levels, and the columns ``emmean, se, df, lower, upper`` (df is ``inf`` for asymptotic intervals).  Its
    method :meth:`~EmmeansFrame.pairs` compares the means pairwise.

    ``ddf``: ``"Kenward-Roger"``, ``"Satterthwaite"`` or ``"asymptotic"``; None chooses as emmeans 1.8 does for an
    lmer fit (Kenward–Roger up to 3000 observations, asymptotic beyond) and asymptotic for a GLMM.
    ``type``: ``"link"`` or ``"response"`` (a GLMM's means back-transformed, see the module docstring).
    ``level``: the confidence level of the intervals.  ``at``: values of variables in the reference grid, e.g.
    ``{"x": [0, 1]}`` (covariates are otherwise at their means).  The averages over the other factors give each
    cell of the grid equal weight, emmeans' default.
    """
    level = check_level(level)
    if type not in ("link", "response"):
        raise OptionError(f"type must be 'link' or 'response', not {type!r}")
    spec_vars, by_vars = _names(specs, "specs"), (_names(by, "by") if by is not None else [])
    family = getattr(result, "family", None)
    if type == "response" and family is None and not result.parsed.response.isidentifier():
        raise OptionError(
            f"the response {result.parsed.response!r} is transformed: emmeans would back-transform it, which skmixed "
            "does not; use type='link' (the scale of the transformed response)"
        )
    grid = reference_grid(result, at)
    _check_variables(grid, spec_vars, by_vars)
    averaged = [v for v in grid.dims if v not in spec_vars + by_vars and len(grid.dims[v]) > 1]
    _warn_if_interacting(result, spec_vars, averaged)
    cells, L, L_full = _cells(grid, spec_vars + by_vars)
    method = emmeans_df_method(result, ddf)
    estimable = grid.estimable(L_full)
    lf = linear_functions(result, L, method, estimable)
    eta, se = lf.estimate + grid.offset, lf.se
    lower, upper = (end + grid.offset for end in lf.interval(level))
    if type == "response" and family is not None:  # the delta method; the interval's ends mapped
        se = se * np.abs(family.mu_eta(eta))
        eta = family.linkinv(eta)
        lower, upper = np.sort(np.vstack([family.linkinv(lower), family.linkinv(upper)]), axis=0)
    out = EmmeansFrame(cells.assign(emmean=eta, se=se, df=lf.df, lower=lower, upper=upper))
    out.attrs.update(ddf=method, type=type, level=level, averaged_over=averaged)
    out._basis = _Basis(result, L, estimable, method, type, spec_vars, by_vars)
    return out


@dataclass(frozen=True)
class _Basis:
    """What :meth:`EmmeansFrame.pairs` needs: the linear functions of the means and how they were computed."""

    result: object
    L: np.ndarray
    estimable: np.ndarray
    method: str
    type: str
    spec_vars: list[str]
    by_vars: list[str]


class EmmeansFrame(pd.DataFrame):
    """The estimated marginal means as a DataFrame, with :meth:`pairs` to compare them.

    Anything derived from it (a selection, a copy, an arithmetic result) is a plain DataFrame: only the means
    as :func:`emmeans` returned them know the linear functions behind them.  ``attrs`` holds ``ddf`` (the df
    method), ``type``, ``level`` and ``averaged_over`` (the factors averaged over).
    """

    _metadata = ["_basis"]

    @property
    def _constructor(self):
        return pd.DataFrame

    def pairs(self, adjust: str = "tukey") -> pd.DataFrame:
        """All pairwise differences of the means within each ``by`` group (emmeans' ``pairs``).

        Columns: ``contrast`` (``"A - B"``; ``"A / B"`` for ratios), the ``by`` factors, the estimate (named
        ``estimate``, or ``ratio`` / ``odds_ratio`` on a GLMM's response scale), ``se``, ``df``, the statistic
        (``t``, or ``z`` for asymptotic df) and ``p``, adjusted by ``adjust``: ``"tukey"`` (default),
        ``"holm"`` or ``"none"``.
        """
        basis = getattr(self, "_basis", None)
        if basis is None:
            raise OptionError("pairs() needs the means as skmixed.emmeans returned them, not a frame derived from them")
        if adjust not in ADJUSTMENTS:
            raise OptionError(f"adjust must be one of {', '.join(map(repr, ADJUSTMENTS))}, not {adjust!r}")
        return _pairs(self, basis, adjust)


def _names(value, what: str) -> list[str]:
    names = [value] if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else None
    if not names or not all(isinstance(n, str) for n in names):
        raise OptionError(f"{what} must be a variable's name or a list of names, not {value!r}")
    return names


def _check_variables(grid: ReferenceGrid, spec_vars: list[str], by_vars: list[str]) -> None:
    factors = [v for v in grid.dims if v in grid.factors]
    covariates = [v for v in grid.dims if v not in grid.factors]
    for name in spec_vars + by_vars:
        if name not in grid.dims:
            known = f"its factors are {', '.join(factors)}" if factors else "it has no factors"
            if covariates:
                known += f" (covariates: {', '.join(covariates)})"
            raise OptionError(f"{name!r} is not a variable of the model's fixed effects: {known}")
    both = set(spec_vars) & set(by_vars)
    if both or len(set(spec_vars)) < len(spec_vars) or len(set(by_vars)) < len(by_vars):
        raise OptionError(f"specs and by must name different variables: {sorted(both) or spec_vars + by_vars}")


def _warn_if_interacting(result, spec_vars: list[str], averaged: list[str]) -> None:
    """emmeans' note: a mean averaged over a factor it interacts with hides how it changes with that factor."""
    for term in rhs_terms(result.formula):
        involved = {v for v in spec_vars + averaged if any(_reads(t, v) for t in term)} if len(term) > 1 else set()
        hidden = sorted(involved & set(averaged))
        if involved & set(spec_vars) and hidden:
            warnings.warn(
                f"{', '.join(spec_vars)} interacts with {', '.join(hidden)} (the term {':'.join(sorted(term))}), over "
                "which the means are averaged: they may mislead (emmeans' note); consider by=",
                UserWarning,
                stacklevel=3,
            )
            return


def _reads(expression: str, name: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(name)}(?![\w.])", expression) is not None


def _cells(grid: ReferenceGrid, names: list[str]) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The combinations of ``names``' values (the first varying fastest) and the mean grid row of each."""
    sizes = [len(grid.dims[n]) for n in names]
    code = np.zeros(len(grid.data), dtype=np.int64)
    stride = 1
    for name, size in zip(names, sizes):
        values = grid.dims[name]
        lookup = {v: i for i, v in enumerate(values)}
        code += stride * np.array([lookup[v] for v in grid.data[name]], dtype=np.int64)
        stride *= size
    n_cells = stride
    counts = np.bincount(code, minlength=n_cells).astype(float)
    L, L_full = np.zeros((n_cells, grid.X.shape[1])), np.zeros((n_cells, grid.X_full.shape[1]))
    np.add.at(L, code, grid.X)
    np.add.at(L_full, code, grid.X_full)
    L, L_full = L / counts[:, None], L_full / counts[:, None]
    index = np.arange(n_cells)
    columns, stride = {}, 1
    for name, size in zip(names, sizes):
        values = grid.dims[name]
        picked = [values[i] for i in (index // stride) % size]
        ordered = getattr(grid.data[name].dtype, "ordered", False)
        columns[name] = pd.Categorical(picked, categories=values, ordered=ordered) if name in grid.factors else picked
        stride *= size
    return pd.DataFrame(columns), L, L_full


def _labels(frame: pd.DataFrame, names: list[str]) -> list[str]:
    """A cell's label as emmeans writes it: its levels joined by spaces, a numeric level prefixed by its variable's
    name (``period1``), and a label holding ``-``, ``+``, ``/`` or ``*`` in parentheses (``(x-1)``)."""
    parts = []
    for name in names:
        values = [_text(v) for v in frame[name]]
        numeric = all(_is_number(v) for v in values)
        parts.append([f"{name}{v}" if numeric else v for v in values])
    labels = [" ".join(p) for p in zip(*parts)]
    return [f"({label})" if re.search(r"[-+/*]", label) else label for label in labels]


def _text(value) -> str:
    """A level as R prints it: numbers by R's rules, logicals as FALSE / TRUE."""
    if isinstance(value, (bool, np.bool_)):
        return "TRUE" if value else "FALSE"
    return r_number(value) if isinstance(value, (float, np.floating)) else str(value)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _pairs(emm: EmmeansFrame, basis: _Basis, adjust: str) -> pd.DataFrame:
    labels = _labels(emm, basis.spec_vars)
    groups = (
        emm.groupby(basis.by_vars, sort=False, observed=True).indices if basis.by_vars else {(): np.arange(len(emm))}
    )
    rows, L, ok, family = [], [], [], []
    for key, members in groups.items():
        members = np.sort(members)
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                i, j = members[a], members[b]
                rows.append((f"{labels[i]} - {labels[j]}", key))
                L.append(basis.L[i] - basis.L[j])
                ok.append(basis.estimable[i] and basis.estimable[j])
                family.append((key, len(members)))
    lf = linear_functions(basis.result, np.array(L).reshape(len(L), basis.L.shape[1]), basis.method, np.array(ok))
    stat, p = lf.statistic(), lf.p_values()
    p = _adjust(p, stat, lf.df, family, adjust)
    out = pd.DataFrame({"contrast": [r[0] for r in rows]})
    for name in basis.by_vars:
        out[name] = [emm[name].iloc[groups[r[1]][0]] for r in rows]
    name, estimate, se = _contrast_scale(basis, lf.estimate, lf.se)
    if name != "estimate":
        out["contrast"] = out["contrast"].str.replace(" - ", " / ", regex=False)
    out[name], out["se"], out["df"] = estimate, se, lf.df
    out["z" if basis.method == "asymptotic" else "t"] = stat
    out["p"] = p
    out.attrs.update(adjust=adjust, ddf=basis.method, type=basis.type)
    return out


def _contrast_scale(basis: _Basis, estimate: np.ndarray, se: np.ndarray) -> tuple[str, np.ndarray, np.ndarray]:
    """Differences on the link scale, or on a GLMM's response scale ratios (log link) and odds ratios (logit)."""
    family = getattr(basis.result, "family", None)
    link = None if family is None or basis.type != "response" else family.link.name
    if link not in ("log", "logit"):
        return "estimate", estimate, se
    ratio = np.exp(estimate)
    return ("ratio" if link == "log" else "odds_ratio"), ratio, ratio * se


def _adjust(p: np.ndarray, stat: np.ndarray, df: np.ndarray, family: list, adjust: str) -> np.ndarray:
    """p-values adjusted within each family: a ``by`` group, with its number of means (Tukey's k)."""
    from scipy import stats  # imported on use: scipy.stats is heavy for `import skmixed`

    if adjust == "none":
        return p
    out = np.full(len(p), np.nan)
    keys = [f[0] for f in family]
    for key in dict.fromkeys(keys):
        idx = np.array([i for i, k in enumerate(keys) if k == key and np.isfinite(p[i])], dtype=int)
        if not len(idx):
            continue
        if adjust == "tukey":
            k = family[idx[0]][1]
            out[idx] = stats.studentized_range.sf(np.sqrt(2) * np.abs(stat[idx]), k, df[idx])
        else:
            out[idx] = _holm(p[idx])
    return out


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment: the i-th smallest of m p-values times m − i + 1, made monotone, at most 1."""
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out
