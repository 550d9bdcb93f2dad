"""Spline bases of R's package splines: ``bs`` (B-splines) and ``ns`` (natural cubic splines).

Both place ``df``-determined interior knots at quantiles of x (R's default type-7
quantiles of the values inside the boundary knots, equally spaced probabilities) and
evaluate the B-spline basis of order ``degree + 1`` on the knots, with the boundary
knots repeated ``order`` times (de Boor, *A Practical Guide to Splines*).

``ns`` is the cubic B-spline basis constrained to zero second derivative at both
boundary knots.  With C the 2 × p matrix of the basis' second derivatives there, the
natural splines are B·Q₂, where the columns of Q₂ span the null space of C: Q₂ is Q
without its first two columns, Q from the Householder QR of C' — the same reflections
R's ``qr`` uses, so the basis (not only the space it spans) is R's and coefficients
agree.  Without an intercept the first B-spline is dropped before the constraint.

Outside the boundary knots (new data), ``ns`` continues linearly and ``bs`` by its
Taylor polynomial at a pivot a quarter of the way into the outer knot interval, as R's
functions do.  The knots are the state formulaic keeps, so new data use the fit's basis.
"""

from __future__ import annotations

from math import factorial

import numpy as np


def spline_design(knots: np.ndarray, x: np.ndarray, order: int, deriv: int = 0) -> np.ndarray:
    """Values (or ``deriv``-th derivative) at x of the B-splines of ``order`` on ``knots``: n × (len(knots) − order)."""
    from scipy.interpolate import BSpline

    n_basis = len(knots) - order
    basis = BSpline(knots, np.eye(n_basis), order - 1, extrapolate=True)
    return basis(np.asarray(x, dtype=float), nu=deriv).reshape(len(x), n_basis)


def _interior_knots(x: np.ndarray, boundary: np.ndarray, n_inner: int) -> np.ndarray:
    if n_inner <= 0:
        return np.empty(0)
    inside = x[(x >= boundary[0]) & (x <= boundary[1])]
    return np.quantile(inside, np.linspace(0.0, 1.0, n_inner + 2)[1:-1])


def _setup(x, df, knots, boundary, n_inner_from_df, state: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x as floats, and the boundary and interior knots: from ``state`` (new data) or from x (the fit)."""
    x = np.asarray(x, dtype=float).ravel()
    if "knots" in state:
        return x, np.asarray(state["boundary"]), np.asarray(state["knots"])
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        raise ValueError("the spline's variable has no finite values")
    boundary = np.array([finite.min(), finite.max()] if boundary is None else sorted(boundary), dtype=float)
    if knots is None:
        if df is None:
            n_inner = 0
        else:
            n_inner = n_inner_from_df(int(df))
            if n_inner < 0:
                raise ValueError(f"df = {df} is too small for this spline: it needs at least {int(df) - n_inner}")
        knots = _interior_knots(finite, boundary, n_inner)
    knots = np.sort(np.asarray(knots, dtype=float).ravel())
    state.update(boundary=boundary.tolist(), knots=knots.tolist())
    return x, boundary, knots


def _columns(values: np.ndarray):
    from formulaic.materializers.types import FactorValues

    return FactorValues(values, column_names=tuple(str(j + 1) for j in range(values.shape[1])))


def bs(x, df=None, knots=None, degree=3, intercept=False, Boundary_knots=None, _state=None):
    """R's ``splines::bs``: the B-spline basis of ``degree`` (``df`` columns, or the given interior ``knots``)."""
    state = {} if _state is None else _state
    order = int(degree) + 1
    x, boundary, inner = _setup(x, df, knots, Boundary_knots, lambda d: d - order + (1 - bool(intercept)), state)
    all_knots = np.concatenate([np.repeat(boundary[0], order), inner, np.repeat(boundary[1], order)])
    basis = np.full((len(x), len(all_knots) - order), np.nan)
    ok = np.isfinite(x)
    inside = ok & (x >= boundary[0]) & (x <= boundary[1])
    basis[inside] = spline_design(all_knots, x[inside], order)
    for side, pivot in (
        (x < boundary[0], 0.75 * boundary[0] + 0.25 * all_knots[order]),
        (x > boundary[1], 0.75 * boundary[1] + 0.25 * all_knots[-order - 1]),
    ):
        side &= ok
        if side.any():  # the Taylor polynomial of the basis at the pivot
            derivs = np.vstack([spline_design(all_knots, [pivot], order, d) / factorial(d) for d in range(order)])
            powers = (x[side] - pivot)[:, None] ** np.arange(order)
            basis[side] = powers @ derivs
    return _columns(basis if intercept else basis[:, 1:])


def ns(x, df=None, knots=None, intercept=False, Boundary_knots=None, _state=None):
    """R's ``splines::ns``: the natural cubic spline basis (``df`` columns, or the given interior ``knots``)."""
    state = {} if _state is None else _state
    x, boundary, inner = _setup(x, df, knots, Boundary_knots, lambda d: d - 1 - bool(intercept), state)
    all_knots = np.concatenate([np.repeat(boundary[0], 4), inner, np.repeat(boundary[1], 4)])
    basis = np.full((len(x), len(all_knots) - 4), np.nan)
    ok = np.isfinite(x)
    inside = ok & (x >= boundary[0]) & (x <= boundary[1])
    basis[inside] = spline_design(all_knots, x[inside], 4)
    for side, edge in ((x < boundary[0], boundary[0]), (x > boundary[1], boundary[1])):
        side &= ok
        if side.any():  # linear beyond the boundary: value and slope at the boundary knot
            value, slope = spline_design(all_knots, [edge], 4, 0)[0], spline_design(all_knots, [edge], 4, 1)[0]
            basis[side] = value + (x[side] - edge)[:, None] * slope
    constraint = spline_design(all_knots, boundary, 4, 2)
    if not intercept:
        constraint, basis = constraint[:, 1:], basis[:, 1:]
    q, _ = np.linalg.qr(constraint.T, mode="complete")
    return _columns((basis @ q)[:, 2:])
