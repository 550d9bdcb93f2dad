"""Diagnostic and explanatory plots of a fitted mixed model ``y = Xβ + Zb + ε``, ``b ~ N(0, σ²ΛΛ')``.

Each function draws on ``ax`` (a new figure when omitted) and returns the matplotlib Axes; the plots of a
likelihood profile (:func:`zeta_plot`, :func:`profile_pairs`, from :mod:`skmixed.plotting_profile`) draw a
panel per parameter or pair and return the array of Axes.  Artists carry labels (``"conditional modes"``,
``"no pooling"``, a group's level, ...) so the drawn data can be read back from the Axes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .exceptions import OptionError
from .grouping import group_labels
from .plotting_profile import profile_pairs, zeta_plot  # the profile plots live there

__all__ = [
    "caterpillar",
    "residuals_vs_fitted",
    "qq",
    "group_lines",
    "no_pooling",
    "shrinkage",
    "zeta_plot",
    "profile_pairs",
]

LINESTYLES = ["-", "--", ":", "-."]


def _axes(ax):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots()[1]


def _group(result, group: str | None) -> str:
    """The grouping factor to plot: ``group`` or the model's only one."""
    groups = list(result.ranef)
    if group is None:
        if len(groups) > 1:
            raise OptionError(f"the model has several grouping factors {groups}: pass group= one of them")
        return groups[0]
    if group not in groups:
        raise OptionError(f"{group!r} is not a grouping factor of the model; its grouping factors are {groups}")
    return group


def _effect(result, group: str, effect: str | None) -> str:
    effects = list(result.ranef[group].columns)
    if effect is None:
        return effects[0]
    if effect not in effects:
        raise OptionError(f"{effect!r} is not a random effect of {group!r}; its effects are {effects}")
    return effect


def caterpillar(result, group: str | None = None, effect: str | None = None, level: float = 0.95, ax=None):
    """Conditional modes b̂_j of one random effect with intervals b̂_j ± z·sd_j, sorted (lme4's dotplot of ranef).

    sd_j is the conditional standard deviation of b_j given y (``result.ranef_sd``); z is the
    normal quantile for the two-sided ``level``.
    """
    group = _group(result, group)
    effect = _effect(result, group, effect)
    modes = result.ranef[group][effect]
    half = stats.norm.ppf(0.5 + level / 2) * result.ranef_sd[group][effect]
    order = np.argsort(modes.to_numpy(), kind="stable")
    b, h, names = modes.to_numpy()[order], half.to_numpy()[order], modes.index[order]
    pos = np.arange(len(b))
    ax = _axes(ax)
    ax.axvline(0.0, color="0.6", lw=0.8)
    ax.hlines(pos, b - h, b + h, color="C0", lw=1, label=f"{level:.0%} interval")
    ax.plot(b, pos, "o", ms=3, color="C0", label="conditional modes")
    if len(b) <= 40:
        ax.set_yticks(pos, [str(n) for n in names], fontsize="small" if len(b) <= 20 else "x-small")
    else:
        ax.set_yticks([])
    ax.set_ylabel(group)
    ax.set_xlabel(f"{effect}: conditional mode ± {level:.0%} interval")
    return ax


def _pearson_residuals(result) -> np.ndarray:
    """lme4's Pearson residuals: (y − μ̂)·√w/√V(μ̂) for a GLMM, (y − ŷ)·√w for an LMM."""
    if hasattr(result, "residuals_pearson"):
        return np.asarray(result.residuals_pearson)
    return np.asarray(result.residuals) * np.sqrt(result.frame.weights)


def residuals_vs_fitted(result, ax=None):
    """Pearson residuals against fitted values (Xβ̂ + Zb̂; a GLMM's μ̂), as lme4's ``plot(model)``, with a zero line."""
    fitted, resid = np.asarray(result.fitted), _pearson_residuals(result)
    ax = _axes(ax)
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.plot(fitted, resid, "o", ms=3, alpha=0.5, color="C0", label="residuals")
    ax.set_xlabel("fitted values")
    ax.set_ylabel("Pearson residuals")
    return ax


def _plotting_positions(n: int) -> np.ndarray:
    """R's ``ppoints(n)``: (i − a)/(n + 1 − 2a), a = 3/8 for n ≤ 10, else 1/2."""
    a = 0.375 if n <= 10 else 0.5
    return (np.arange(1, n + 1) - a) / (n + 1 - 2 * a)


def qq(result, group: str | None = None, effect: str | None = None, ax=None):
    """Normal QQ plot of the scaled residuals (y − ŷ)√w/σ, or of one random effect's conditional modes.

    Pass ``group`` (and ``effect``) for the random effects. The reference line goes through the
    quartiles, as R's ``qqline``.
    """
    if group is None and effect is None:
        values, what = np.asarray(result.residuals_scaled), "scaled residuals"
    else:
        group = _group(result, group)
        effect = _effect(result, group, effect)
        values, what = result.ranef[group][effect].to_numpy(), f"{group}: {effect}"
    sample = np.sort(values)
    theory = stats.norm.ppf(_plotting_positions(len(sample)))
    q1, q3 = np.quantile(sample, [0.25, 0.75])
    z1, z3 = stats.norm.ppf([0.25, 0.75])
    slope = (q3 - q1) / (z3 - z1)
    ax = _axes(ax)
    ax.plot(theory, sample, "o", ms=3, color="C0", label="sample quantiles")
    ends = np.array([theory[0], theory[-1]])
    ax.plot(ends, q1 + slope * (ends - z1), color="0.4", lw=1, label="quartile line")
    ax.set_xlabel("standard normal quantiles")
    ax.set_ylabel(what)
    return ax


def _ols_line(x: np.ndarray, y: np.ndarray, grid: np.ndarray, degree: int) -> np.ndarray | None:
    if len(np.unique(x)) <= degree:
        return None
    return np.polyval(np.polyfit(x, y, degree), grid)


def _group_curves(result, kind: str, x: str, masks, degree: int, n_grid: int) -> tuple[list, list, list]:
    """Per group (a row mask of the model's data): a grid over its range of ``x``, its curve on the grid (None
    where a separate fit has too few points) and its first row, whose other covariates the curve holds."""
    data = result.frame.data
    xs = np.asarray(data[x], dtype=float)
    grids = [np.linspace(xs[m].min(), xs[m].max(), n_grid) for m in masks]
    first = [int(np.flatnonzero(m)[0]) for m in masks]
    if kind == "ols":
        y = np.asarray(result.frame.y)
        return grids, [_ols_line(xs[m], y[m], g, degree) for m, g in zip(masks, grids)], first
    new = data.iloc[np.repeat(first, n_grid)].copy()
    new[x] = np.concatenate(grids)
    scale = {"type": "response"} if getattr(result, "family", None) is not None else {}  # a GLMM's lines: μ̂ = g⁻¹(η)
    pred = result.predict(new, re_form=None if kind == "blup" else "~0", **scale)
    return grids, np.split(np.asarray(pred, dtype=float), len(masks)), first


def group_lines(
    result,
    x: str,
    kind: str = "blup",
    group: str | None = None,
    levels=None,
    by: str | None = None,
    degree: int = 1,
    points: bool = False,
    n_grid: int = 25,
    ax=None,
):
    """One fitted line per level of a grouping factor against the column ``x`` (growth curves).

    (Some 65 lines, most of them its ten keyword arguments and this docstring; the body is short.)

    ``kind="blup"``: the model's prediction Xβ̂ + Zb̂ for that group (shrunken lines);
    ``kind="ols"``: a separate least-squares polynomial of degree ``degree`` per group (no pooling);
    ``kind="population"``: Xβ̂ alone. A GLMM's lines are means g⁻¹(η). Lines span each group's
    observed range of ``x``; other covariates are held at the group's first row. ``by`` names a
    column (e.g. sex) whose levels get different line styles; ``levels`` restricts the groups drawn.
    """
    if kind not in ("blup", "ols", "population"):
        raise OptionError(f"kind must be 'blup', 'ols' or 'population', not {kind!r}")
    glmm = getattr(result, "family", None) is not None
    if glmm and kind == "ols":
        raise OptionError(
            "separate least-squares lines need a linear mixed model; for a GLMM use kind='blup' or 'population'"
        )
    group = _group(result, group)
    data = result.frame.data
    for col in [x] + ([by] if by else []):
        if col not in data.columns:
            raise OptionError(f"{col!r} is not a column of the model's data; its columns are {list(data.columns)}")
    labels = group_labels(group, data).to_numpy(dtype=str)
    wanted = [str(v) for v in (levels if levels is not None else result.ranef[group].index)]
    unknown = sorted(set(wanted) - set(labels))
    if unknown:
        raise OptionError(f"levels {unknown[:5]} are not levels of {group!r} in the fitted data")
    by_levels = [str(v) for v in pd.Categorical(data[by]).categories] if by else [None]
    masks = [labels == level for level in wanted]
    grids, curves, first = _group_curves(result, kind, x, masks, degree, n_grid)
    y, xs = np.asarray(result.frame.y), np.asarray(data[x], dtype=float)
    ax = _axes(ax)
    for k, (level, m, row, grid, curve) in enumerate(zip(wanted, masks, first, grids, curves)):
        i = by_levels.index(str(data[by].iloc[row])) if by else 0
        color = f"C{i}" if by or len(wanted) > 10 else f"C{k}"  # a few groups without `by`: a colour each
        if curve is not None:
            ax.plot(grid, curve, ls=LINESTYLES[i % len(LINESTYLES)], color=color, lw=1, label=level)
        if points:
            ax.plot(xs[m], y[m], ".", ms=3, color=color, alpha=0.6, label=f"_data {level}")
    if by:
        from matplotlib.lines import Line2D

        handles = [
            Line2D([], [], ls=LINESTYLES[i % len(LINESTYLES)], color=f"C{i}", label=v) for i, v in enumerate(by_levels)
        ]
        ax.legend(handles=handles, title=by, fontsize="small")
    ax.set_xlabel(x)
    ax.set_ylabel(result.parsed.response)
    ax.set_title(
        {
            "blup": "BLUP lines (partial pooling)",
            "ols": "separate least squares (no pooling)",
            "population": "population lines",
        }[kind]
    )
    return ax


def no_pooling(result, group: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-group least-squares coefficients of the random effects (no pooling) beside β̂ + b̂_j (partial pooling).

    The fixed effects not among the group's random effects are held at β̂: each group's
    coefficients come from regressing y − offset − X_other β̂_other on the group's random-effect
    columns. For ``y ~ 1 + (1 | g)`` the no-pooling estimate is the group mean ȳ_j and the partial
    pooling estimate the precision-weighted compromise of Gill and Womack, "The Multilevel Model
    Framework", eq. (17). Groups too small for their own fit get NaN.
    """
    if getattr(result, "family", None) is not None:
        raise OptionError(
            "no-pooling fits compare least squares per group with BLUPs: they need a linear mixed model (lmer)"
        )
    group = _group(result, group)
    terms = [t for t in result.re.terms if t.group == group]
    effects = [e for t in terms for e in t.effects]
    values = np.hstack([t.values for t in terms])
    codes = terms[0].factor.codes
    beta = result.fixef
    other = [i for i, name in enumerate(beta.index) if name not in effects]
    r = np.asarray(result.frame.y) - result.frame.offset - result.frame.X[:, other] @ beta.to_numpy()[other]
    levels = result.ranef[group].index
    separate = np.full((len(levels), len(effects)), np.nan)
    for j in range(len(levels)):
        rows = codes == j
        V = values[rows]
        if np.linalg.matrix_rank(V) == len(effects):
            separate[j] = np.linalg.lstsq(V, r[rows], rcond=None)[0]
    partial = result.ranef[group][effects] + np.array([beta.get(e, 0.0) for e in effects])
    return pd.DataFrame(separate, index=levels, columns=effects), partial


def shrinkage(result, group: str | None = None, effects=None, ax=None):
    """No pooling vs partial pooling: each group's own least-squares estimate joined to its BLUP β̂ + b̂_j.

    With one random effect the estimates are plotted against the group size n_j, with β̂ as the
    fully pooled line (small groups move furthest: Gill and Womack, "The Multilevel Model Framework",
    eq. (17)). With several, two of them (``effects``, default the first two) span the plane and each
    group is an arrow-like segment.
    """
    separate, partial = no_pooling(result, group)
    group = _group(result, group)
    names = list(separate.columns) if effects is None else list(effects)
    missing = [e for e in names if e not in separate.columns]
    if missing:
        raise OptionError(f"{missing} are not random effects of {group!r}; its effects are {list(separate.columns)}")
    from matplotlib.collections import LineCollection

    ax = _axes(ax)
    ok = separate[names].notna().all(axis=1).to_numpy()
    if len(names) == 1:
        e = names[0]
        n = np.bincount(result.re.flist()[group].codes, minlength=len(separate)).astype(float)
        a, b = separate[e].to_numpy(), partial[e].to_numpy()
        ax.axhline(result.fixef.get(e, 0.0), color="0.4", lw=1, ls="--", label="complete pooling (β̂)")
        ax.add_collection(
            LineCollection(
                [[(n[i], a[i]), (n[i], b[i])] for i in np.flatnonzero(ok)], colors="0.7", lw=1, label="shrinkage"
            )
        )
        ax.plot(n[ok], a[ok], "o", mfc="none", color="C3", ms=4, label="no pooling")
        ax.plot(n, b, "o", color="C0", ms=3, label="partial pooling")
        ax.set_xlabel(f"observations per {group}")
        ax.set_ylabel(e)
    else:
        e1, e2 = names[:2]
        A, B = separate[[e1, e2]].to_numpy(), partial[[e1, e2]].to_numpy()
        ax.add_collection(
            LineCollection(
                [[tuple(A[i]), tuple(B[i])] for i in np.flatnonzero(ok)], colors="0.7", lw=1, label="shrinkage"
            )
        )
        ax.plot(A[ok, 0], A[ok, 1], "o", mfc="none", color="C3", ms=4, label="no pooling")
        ax.plot(B[:, 0], B[:, 1], "o", color="C0", ms=3, label="partial pooling")
        ax.plot([result.fixef.get(e1, 0.0)], [result.fixef.get(e2, 0.0)], "+", color="k", ms=10, mew=2, label="β̂")
        ax.set_xlabel(e1)
        ax.set_ylabel(e2)
    ax.autoscale_view()
    ax.legend(fontsize="small")
    ax.set_title(f"shrinkage of {group} estimates")
    return ax
