"""Plots of likelihood profiles (:func:`skmixed.profile.profile`): lme4's ``xyplot`` and ``splom`` of a profile.

:func:`zeta_plot` draws ζ against each parameter, with the intervals it gives at several levels:
straight lines where the likelihood is quadratic (ζ linear), bent ones where a Wald interval would
mislead.  :func:`profile_pairs` draws, for each pair of parameters, the profile traces (the optimum of
one as the other is fixed) and the pairwise likelihood-ratio regions, as Bates and Watts' profile-pair
sketches (*Nonlinear Regression Analysis and Its Applications*, ch. 6): below the diagonal on the ζ
scales, where a quadratic likelihood gives straight traces and elliptical contours, above it on the
parameters' own scales.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.stats import chi2, norm

from .exceptions import OptionError

CONF = (0.5, 0.8, 0.9, 0.95, 0.99)


def _grid_of_axes(n: int, ncols: int, size: float = 2.6):
    import matplotlib.pyplot as plt

    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return axes.ravel()[:n]


def _names(profile, which) -> list[str]:
    names = profile.names if which is None else [which] if isinstance(which, str) else list(which)
    unknown = [n for n in names if n not in profile.names]
    if unknown:
        raise OptionError(f"{unknown} not profiled; the profile has {profile.names}")
    return names


def zeta_plot(profile, conf=CONF, absolute: bool = False, which=None, axes=None):
    """ζ (or its absolute value, ``absolute=True``) against each parameter, one panel each, with the profile
    intervals at the levels ``conf`` drawn as vertical segments from the curve to ζ = 0 (lme4's
    ``xyplot(profile(m))``); returns the Axes."""
    names = _names(profile, which)
    levels = norm.ppf((1 + np.sort(np.asarray(conf, dtype=float))) / 2)
    axes = _grid_of_axes(len(names), min(3, len(names))) if axes is None else np.ravel(axes)
    for ax, name in zip(axes, names):
        values = np.array([pt.value for pt in profile.points[name]])
        grid = np.linspace(values.min(), values.max(), 201)
        zeta = np.asarray(profile.forward(name)(grid), dtype=float)
        ax.plot(grid, np.abs(zeta) if absolute else zeta, color="C0", label="zeta")
        ax.axhline(0.0, color="0.6", lw=0.8)
        backward = profile.backward(name)
        for z, level in zip(levels, np.sort(conf)):
            ends = np.asarray(backward([-z, z]), dtype=float)
            heights = [z, z] if absolute else [-z, z]
            ax.vlines(ends, 0.0, heights, color="C1", lw=0.8, label=f"{level:.0%} interval")
            if absolute:
                ax.hlines(z, ends[0], ends[1], color="C1", lw=0.6)
        ax.set_xlabel(name)
        ax.set_ylabel("|ζ|" if absolute else "ζ")
    return axes


def _traces(profile, names: list[str]) -> dict[str, np.ndarray]:
    """Each profile's points on every parameter's ζ scale: ``out[i][:, j]`` is ζ_j along the profile of i."""
    forward = {name: profile.forward(name) for name in names}
    out = {}
    for i in names:
        pts = profile.points[i]
        values = np.array([[pt.params[profile.all_names.index(j)] for j in names] for pt in pts])
        out[i] = np.column_stack([np.asarray(forward[j](values[:, k]), dtype=float) for k, j in enumerate(names)])
    return out


def _trace_spline(x: np.ndarray, y: np.ndarray):
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    order = np.argsort(x)
    x, y = x[order], y[order]
    unique = np.concatenate([[True], np.diff(x) > 0])
    return CubicSpline(x[unique], y[unique], extrapolate=False) if unique.sum() >= 3 else None


def pair_contours(sij, sji, levels: np.ndarray, nseg: int = 101) -> list[np.ndarray]:
    """For each level L, the (ζ_i, ζ_j) points of the pairwise contour (lme4's ``cont``), given ``sij``, ζ_j
    along the profile of i as a function of ζ_i, and ``sji`` the other way round.

    With ζ_i = L·cos(x) and ζ_j = L·cos(y), the profile of i crosses ζ_i = ±L at x = 0, π and y = arccos(ζ_j/L),
    and the profile of j likewise; the four (a, d) = ((x + y)/2, x − y) are interpolated by a periodic spline
    in a and mapped back, (ζ_i, ζ_j) = (L cos(a + d/2), L cos(a − d/2)).
    """

    def angle(spline, at):
        value = spline(at) if spline is not None else np.nan
        return np.arccos(np.clip(value / abs(at), -0.999, 0.999))

    out = []
    for L in levels:
        pairs = [(0.0, angle(sij, L)), (angle(sji, L), 0.0), (np.pi, angle(sij, -L)), (angle(sji, -L), np.pi)]
        a = np.array([(x + y) / 2 for x, y in pairs])
        d = np.array([x - y for x, y in pairs])
        a, d = np.sign(d) * a, np.abs(d)
        if not np.all(np.isfinite(a + d)):
            out.append(np.full((0, 2), np.nan))
            continue
        order = np.argsort(a)
        a, d = a[order], d[order]
        a, d = np.append(a, a[0] + 2 * np.pi), np.append(d, d[0])
        spline = CubicSpline(a, d, bc_type="periodic")
        t = np.linspace(a[0], a[-1], nseg + 1)
        dt = spline(t)
        out.append(np.column_stack([L * np.cos(t + dt / 2), L * np.cos(t - dt / 2)]))
    return out


def profile_pairs(profile, conf=CONF, which=None, axes=None):
    """Profile-pair plots of the parameters ``which`` names (lme4's ``splom(profile(m))``; see the module
    docstring): contours of the pairwise regions at the levels ``conf`` (χ² with 2 degrees of freedom)."""
    names = _names(profile, which)
    if len(names) < 2:
        raise OptionError("profile pairs need at least two profiled parameters")
    n = len(names)
    if axes is None:
        import matplotlib.pyplot as plt

        axes = plt.subplots(n, n, figsize=(2.2 * n, 2.2 * n), squeeze=False)[1]
    levels = np.sqrt(chi2.ppf(np.sort(np.asarray(conf, dtype=float)), 2))
    traces = _traces(profile, names)
    backward = {name: profile.backward(name) for name in names}
    for i, a in enumerate(names):
        axes[i, i].text(0.5, 0.5, a, ha="center", va="center", transform=axes[i, i].transAxes, wrap=True)
        axes[i, i].set_xticks([])
        axes[i, i].set_yticks([])
        for j in range(i):
            b = names[j]  # the lower panel (i, j): ζ_b across, ζ_a up; the upper panel (j, i): a across, b up
            s_ab = _trace_spline(traces[b][:, j], traces[b][:, i])  # ζ_a along the profile of b
            s_ba = _trace_spline(traces[a][:, i], traces[a][:, j])  # ζ_b along the profile of a
            contours = pair_contours(s_ab, s_ba, levels)  # (ζ_b, ζ_a) points
            lower, upper = axes[i, j], axes[j, i]
            lower.plot(traces[b][:, j], traces[b][:, i], color="C0", lw=0.8, label=f"profile of {b}")
            lower.plot(traces[a][:, j], traces[a][:, i], color="C2", lw=0.8, label=f"profile of {a}")
            for level, points in zip(np.sort(conf), contours):
                lower.plot(points[:, 0], points[:, 1], color="C1", lw=0.8, label=f"{level:.0%} region")
                upper.plot(backward[a](points[:, 1]), backward[b](points[:, 0]), color="C1", lw=0.8,
                           label=f"{level:.0%} region")  # fmt: skip
            upper.plot(backward[a](traces[b][:, i]), backward[b](traces[b][:, j]), color="C0", lw=0.8)
            upper.plot(backward[a](traces[a][:, i]), backward[b](traces[a][:, j]), color="C2", lw=0.8)
            lim = 1.07 * levels.max()
            lower.set_xlim(-lim, lim)
            lower.set_ylim(-lim, lim)
            if i == n - 1:
                lower.set_xlabel(f"ζ {b}", fontsize="small")
            if j == 0:
                lower.set_ylabel(f"ζ {a}", fontsize="small")
    return axes
