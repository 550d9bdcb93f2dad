"""A fit's likelihood profiles on a grid, the intervals they give, and lme4's table of them (``profile.merMod``).

:func:`profile` evaluates ζ (:mod:`skmixed.profiler`) for each parameter from its estimate outwards on
both sides until |ζ| reaches ``cutoff`` (lme4's √χ²₁₋α(npar), α = ``alphamax`` = 0.01) or the parameter
its bound, each step aiming at a change of ``delta`` (lme4's cutoff/8) in ζ from the slope at the last point.
Between the points ζ is interpolated by cubic Hermite splines through the exact slopes dζ/dp — on the log
scale for SDs and σ, Fisher's z for correlations — where lme4 fits interpolating splines to the values
alone.  :meth:`Profile.confint` reads an interval's ends off the inverse spline, as lme4 does, and then
solves ζ(p) = ±z exactly from there by Newton's method (a point or two each): lme4's spline ends are off
by up to a few 10⁻⁴ (relative) where a profile bends, as Dyestuff's lower end for the batch SD.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.interpolate import CubicHermiteSpline
from scipy.stats import chi2, norm

from .blas import single_blas_thread
from .exceptions import ConvergenceWarning, OptionError
from .profiler import Point, Profiler

#: lme4's profile(maxmult = 10): a step is at most this many times the previous one
MAX_MULT = 10


def select(names: list[str], kinds: np.ndarray, which) -> list[int]:
    """Indices of the parameters ``which`` names (None: all; lme4's "theta_" and "beta_" shortcuts)."""
    if which is None:
        return list(range(len(names)))
    wanted = [which] if isinstance(which, str) else list(which)
    chosen = set()
    for w in wanted:
        if w == "theta_":
            chosen |= {i for i, k in enumerate(kinds) if k != "beta"}
        elif w == "beta_":
            chosen |= {i for i, k in enumerate(kinds) if k == "beta"}
        elif w in names:
            chosen.add(names.index(w))
        else:
            raise OptionError(f"no parameter {w!r} to profile; the parameters are {names} (or 'theta_', 'beta_')")
    return sorted(chosen)


def profile(result, which=None, alphamax: float = 0.01, delta: float | None = None, maxpts: int = 100) -> Profile:
    """The profile of each parameter ``which`` names (default all), as lme4's ``profile(m)``."""
    if not 0 < alphamax < 1:
        raise OptionError(f"alphamax must be between 0 and 1, not {alphamax!r}")
    profiler = Profiler(result)
    indices = select(profiler.names, profiler.kinds, which)
    cutoff = float(np.sqrt(chi2.ppf(1 - alphamax, len(profiler.names))))
    step = cutoff / 8 if delta is None else float(delta)
    points = {}
    with single_blas_thread():
        for i in indices:
            points[profiler.names[i]] = _grid(profiler, i, cutoff, step, maxpts)
    return Profile(profiler, points)


def _estimate_point(profiler: Profiler, index: int) -> Point:
    return Point(profiler.estimates[index], 0.0, profiler._slope0(index), profiler.estimates, True)


def _grid(profiler: Profiler, index: int, cutoff: float, delta: float, maxpts: int) -> list[Point]:
    """The points of one parameter's profile: the estimate, then steps out on each side (module docstring)."""
    u, p_of_u, dp_du = profiler.transform(index)
    estimate = profiler.estimates[index]
    out = [_estimate_point(profiler, index)]
    for side in (-1, 1):
        if profiler.on_bound(index, side):
            continue
        bound = profiler.lower[index] if side < 0 else profiler.upper[index]
        last, previous_step, side_points = out[0], None, [out[0]]
        while len(out) < maxpts and abs(last.zeta) < cutoff and last.value != bound:
            if np.isfinite(last.slope) and last.slope > 0:
                step = delta / (last.slope * dp_du(last.value))
            else:
                step = previous_step if previous_step is not None else 0.1 * profiler.scale_of(index)
            if previous_step is not None:
                step = min(step, MAX_MULT * previous_step)
            value = float(p_of_u(u(last.value) + side * step))
            near = abs(value - bound) < 1e-3 * abs(estimate - bound)
            if np.isfinite(bound) and ((value - bound) * side >= 0 or near):
                value = bound
            point = profiler.point(index, value, profiler.extrapolated_start(side_points, value))
            if not point.converged:
                warnings.warn(
                    f"the profile of {profiler.names[index]} stops at {last.value:.6g}: the fit at {value:.6g} did not "
                    "converge",
                    ConvergenceWarning,
                    stacklevel=3,
                )
                break
            out.append(point)
            side_points.append(point)
            last, previous_step = point, step
    return sorted(out, key=lambda pt: pt.value)


class Profile:
    """The profiles of a fit's parameters (lme4's ``thpr``): ζ on a grid for each, with :meth:`confint`,
    :meth:`to_frame` and the plots of :mod:`skmixed.plotting` (``zeta_plot``, ``profile_pairs``)."""

    def __init__(self, profiler: Profiler, points: dict[str, list[Point]]):
        self._profiler = profiler
        self.points = points
        self.names = list(points)
        self.all_names = profiler.names
        self.estimates = pd.Series(profiler.estimates, index=profiler.names, name="estimate")
        self.lower_bounds = pd.Series(profiler.lower, index=profiler.names)
        self.upper_bounds = pd.Series(profiler.upper, index=profiler.names)

    def to_frame(self) -> pd.DataFrame:
        """lme4's ``as.data.frame(profile(m))``: one row per point, ``.zeta``, every parameter's value at the
        point's optimum, ``.par`` (the parameter profiled) and ``.focal`` (its value)."""
        rows = []
        for name, pts in self.points.items():
            for pt in pts:
                rows.append([pt.zeta, *pt.params, name, pt.value])
        return pd.DataFrame(rows, columns=[".zeta", *self.all_names, ".par", ".focal"])

    def _knots(self, name: str):
        """(u, ζ, dζ/du) at the points where u is finite and ζ strictly increases, and the transform (u, p(u))."""
        index = self.all_names.index(name)
        u, p_of_u, dp_du = self._profiler.transform(index)
        pts = self.points[name]
        values = np.array([pt.value for pt in pts])
        with np.errstate(divide="ignore"):
            x = u(values)
        zeta = np.array([pt.zeta for pt in pts])
        slope = np.array([pt.slope for pt in pts]) * np.array([dp_du(v) for v in values])
        keep = np.isfinite(x)
        x, zeta, slope = x[keep], zeta[keep], slope[keep]
        secant = np.gradient(zeta, x) if len(x) > 1 else np.ones_like(x)
        slope = np.where(np.isfinite(slope) & (slope > 0), slope, secant)
        return x, zeta, slope, u, p_of_u

    def forward(self, name: str):
        """ζ as a function of the parameter's value (a callable), interpolated between the profile's points."""
        x, zeta, slope, u, _ = self._knots(name)
        spline = CubicHermiteSpline(x, zeta, slope, extrapolate=False)

        def zeta_at(value):
            with np.errstate(divide="ignore", invalid="ignore"):  # a bound maps to ±inf: NaN, off the spline
                return spline(u(np.asarray(value, dtype=float)))

        return zeta_at

    def backward(self, name: str):
        """The parameter's value as a function of ζ (a callable; NaN outside the profile's range)."""
        x, zeta, slope, _, p_of_u = self._knots(name)
        if np.any(np.diff(zeta) <= 0) or np.any(slope <= 0):
            warnings.warn(f"non-monotonic profile for {name}: linear interpolation", ConvergenceWarning, stacklevel=3)
            return lambda z: p_of_u(np.interp(z, zeta, x, left=np.nan, right=np.nan))
        spline = CubicHermiteSpline(zeta, x, 1 / slope, extrapolate=False)
        return lambda z: p_of_u(spline(np.asarray(z, dtype=float)))

    def confint(self, level: float = 0.95) -> pd.DataFrame:
        """The profile intervals {p : |ζ(p)| ≤ z_{(1+level)/2}}: read off the interpolated profiles, then solved
        exactly; an end beyond the profile's points is the parameter's bound where the profile reached it, else
        NaN (with a warning)."""
        if not 0 < level < 1:
            raise OptionError(f"level must be between 0 and 1, not {level!r}")
        z = float(norm.ppf((1 + level) / 2))
        rows = []
        for name in self.names:
            ends = np.asarray(self.backward(name)([-z, z]), dtype=float)
            pts = self.points[name]
            for k, pt in enumerate((pts[0], pts[-1])):
                if np.isnan(ends[k]):
                    ends[k] = self._past_last_knot(name, pt, (2 * k - 1) * z)
                if np.isfinite(ends[k]) and ends[k] not in (self.lower_bounds[name], self.upper_bounds[name]):
                    ends[k] = self._profiler.end(self.all_names.index(name), z, 2 * k - 1, first=ends[k])
            rows.append(ends)
        return pd.DataFrame(rows, index=self.names, columns=["lower", "upper"])

    def _past_last_knot(self, name: str, outer: Point, target: float) -> float:
        """An end beyond the spline's knots: the bound where the profile reached it with |ζ| ≤ z, linear
        interpolation between the last knot and the bound where ζ passes the target in between, else NaN."""
        bound = self.lower_bounds[name] if target < 0 else self.upper_bounds[name]
        if outer.value == bound:
            if abs(outer.zeta) <= abs(target):
                return float(bound)
            inner = [pt for pt in self.points[name] if pt.value != bound and pt.zeta * target > 0]
            if inner:
                knot = min(inner, key=lambda pt: abs(pt.value - bound))
                if abs(knot.zeta) < abs(target):
                    weight = (target - knot.zeta) / (outer.zeta - knot.zeta)
                    return float(knot.value + weight * (bound - knot.value))
        warnings.warn(
            f"the profile of {name} does not reach ζ = {target:+.3f}: the {'lower' if target < 0 else 'upper'} end "
            "of its interval is NaN; profile it with a larger cutoff (a smaller alphamax)",
            ConvergenceWarning,
            stacklevel=3,
        )
        return np.nan

    def __repr__(self) -> str:
        counts = ", ".join(f"{name}: {len(pts)}" for name, pts in self.points.items())
        return f"<Profile of {len(self.names)} parameters ({counts} points)>"
