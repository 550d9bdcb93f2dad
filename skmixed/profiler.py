"""ζ, the signed root of a likelihood-ratio statistic, for each parameter of a fit (lme4's ``profile.merMod``).

For a parameter p (an SD, a correlation, σ or a fixed effect) the profiled deviance D*(p) is the
deviance minimised over all the other parameters with p held fixed, and

    ζ(p) = sign(p − p̂) √(D*(p) − D*(p̂)),

which is the standard normal quantile of p's likelihood-ratio test (Bates, *lme4: Mixed-effects modeling
with R*, ch. 1; MixedModels.jl).  The level-(1 − α) interval is {p : |ζ(p)| ≤ z_{1−α/2}}.  As lme4, an LMM
is profiled on its ML deviance (a REML fit is refitted by ML first) over lme4's "sdcor" scale
(:mod:`skmixed.sdcor`, :mod:`skmixed.profile_deviance`); a GLMM over (SDs, correlations, β).

Each point of a profile is one fit, by the quasi-Newton method of :mod:`skmixed.quasi_newton` started
from the neighbouring point's optimum (extrapolated) with the Hessian of the fit.  The envelope theorem
gives dD*/dp, the gradient's component of the fixed parameter at that optimum, so dζ/dp = (dD*/dp)/2ζ
is known at every point: an interval's end is found by Newton's method on ζ(p) = ±z (on the log scale
for SDs and σ, Fisher's z for correlations), safeguarded by bisection once the end is bracketed, and a
profile's grid (:mod:`skmixed.profile`) steps about the same distance in ζ from point to point.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .blas import single_blas_thread
from .convergence import minimize
from .exceptions import ConvergenceWarning, OptionError, SingularFitWarning
from .profile_deviance import FixedEffectProblem, GlmmDeviance, LmmDeviance
from .quasi_newton import minimize_box
from .sdcor import SdCor

#: |ζ − target| below this ends the search for an interval's end (about 1e-7 of the interval's half-width)
ZETA_TOL = 1e-7
#: ... and below this (or with two points within ``HERMITE_SPAN`` in ζ that bracket it), the end is the root of
#: the tangent (the cubic through the two) without a further fit: off by O(error²), about 1e-8 in ζ
FINISH_TOL, HERMITE_SPAN = 1e-4, 0.3
#: evaluations allowed for one end of an interval
MAX_STEPS = 40
#: a point's fit stops when the quasi-Newton decrement (≈ twice the deviance above the optimum) is below this: ζ is
#: then within ~1e-8 where it matters (ζ² = D* − D̂, so δζ = δD/2ζ)
POINT_TOL = 1e-7


@dataclass
class Point:
    """One point of a profile: the fixed value, ζ and dζ/dp there, and every parameter at the optimum."""

    value: float
    zeta: float
    slope: float
    params: np.ndarray  # all parameters, in :attr:`Profiler.names`' order
    converged: bool
    hessian: np.ndarray | None = None  # the quasi-Newton's last Hessian of the others: the next point's first


class _Memo:
    """x ↦ (f, ∇f) of f restricted to the free parameters x, keeping what each evaluation leaves: the gradient
    in all coordinates and ``extras()`` (β of an LMM, ...)."""

    def __init__(self, f, expand, free, extras=lambda: None):
        self.f, self.expand, self.free, self.extras, self.seen = f, expand, free, extras, {}

    def __call__(self, x):
        value, grad = self.f(self.expand(x))
        self.seen[x.tobytes()] = (grad, self.extras())
        return value, grad[self.free]

    def at(self, x):
        return self.seen[x.tobytes()]


class Profiler:
    """ζ of each parameter of a fit (LMM: its ML refit), point by point; see the module docstring."""

    def __init__(self, result):
        from .glmm_results import GlmerResult

        if result.re.structured:  # the profiles run over θ, free in directions a structure does not have
            raise OptionError(
                "profiles of random-effect terms with a covariance structure (diag(...), cs(...), ...) are not "
                "available: use confint(method='Wald') for β or method='boot'"
            )
        self.glmm = isinstance(result, GlmerResult)
        self.beta_names = list(result.frame.x_names)
        with single_blas_thread():
            start, self.scale = self._setup_glmm(result) if self.glmm else self._setup_lmm(result)
            self.names = self.sdcor.names + self.beta_names
            self.kinds = np.array(list(self.sdcor.kinds) + ["beta"] * len(self.beta_names))
            self.lower = np.concatenate([self.sdcor.lower, np.full(len(self.beta_names), -np.inf)])
            self.upper = np.concatenate([self.sdcor.upper, np.full(len(self.beta_names), np.inf)])
            self._optimum(start)
        self._problems: dict[int, FixedEffectProblem] = {}

    # --- the fit ----------------------------------------------------------------------------
    def _setup_lmm(self, result):
        """The ML deviance over φ; the start: the fit's φ (a REML fit's is moved to the ML optimum by
        :meth:`_optimum`, which is what lme4's refitML does)."""
        self.model = result.model.with_reml(False)
        self.sdcor = SdCor(result.re, has_sigma=True)
        self.deviance = LmmDeviance(self.model, self.sdcor, result.standardization)
        return self.sdcor.phi(result.theta, result.sigma), np.where(self.sdcor.kinds == "cor", 1.0, result.sigma)

    def _setup_glmm(self, result):
        if result.nAGQ == 0:
            raise OptionError(
                "a profile needs the maximum-likelihood fit: with nAGQ = 0 the fixed effects are estimated inside "
                "PIRLS; refit with nAGQ=1 (the default)"
            )
        if result.has_dispersion:
            raise OptionError(
                f"profiles of GLMMs with a dispersion parameter ({result.family.name}) are not available, as in lme4; "
                'use confint(method="Wald") or confint(method="boot")'
            )
        self.model = result.model
        self.sdcor = SdCor(result.re, has_sigma=False)
        self.deviance = GlmmDeviance(result.model, result.nAGQ, self.sdcor)
        psi = np.concatenate([self.sdcor.phi(result.theta), result.fixef.to_numpy()])
        return psi, np.concatenate([np.ones(len(self.sdcor.names)), result.fixef_se.to_numpy()])

    def _optimum(self, start: np.ndarray) -> None:
        """The ML optimum by the quasi-Newton method from ``start``, with the Hessian of the deviance there (by
        differences of the gradient) as its first guess and the profiles' afterwards."""
        n = len(start)
        lower, upper = self.lower[:n], self.upper[:n]
        self.hessian = self._hessian(start, lower, upper)
        opt = self._fit(self.deviance, start, np.ones(n, dtype=bool), self.hessian)
        if not opt.converged:
            warnings.warn(f"the fit could not be polished for profiling: {opt.return_code}", ConvergenceWarning, 4)
        self.psi_hat, self.base = opt.theta, opt.objective
        if not self.glmm:  # β̂ and its standard error of the ML fit (ζ's slope at β̂ is 1/se)
            self.deviance(self.psi_hat)
            std, sol = self.deviance.std, self.deviance.solution
            self.beta_hat = self.deviance.beta()
            RX_inv = np.linalg.inv(std.RX(sol.RX)) if len(self.beta_hat) else np.zeros((0, 0))
            self.beta_se = self.psi_hat[-1] * np.sqrt(np.sum(RX_inv**2, axis=1))

    def _hessian(self, psi, lower, upper) -> np.ndarray:
        g0 = self.deviance(psi)[1]
        H = np.zeros((len(psi), len(psi)))
        for i in range(len(psi)):
            h = 1e-4 * max(abs(psi[i]), self.scale[i])
            h = -h if psi[i] + h > upper[i] else h
            e = np.zeros(len(psi))
            e[i] = h
            H[:, i] = (self.deviance(np.clip(psi + e, lower, upper))[1] - g0) / h
        return (H + H.T) / 2

    @property
    def estimates(self) -> np.ndarray:
        if self.glmm:
            return self.psi_hat.copy()
        return np.concatenate([self.psi_hat, self.beta_hat])

    def scale_of(self, index: int) -> float:
        """A typical size of parameter ``index`` (σ for an SD or σ, 1 for a correlation, SE for a fixed effect)."""
        if index < len(self.scale):
            return float(self.scale[index])
        return float(self.beta_se[index - len(self.scale)])

    def _slope0(self, index: int) -> float:
        """dζ/dp at the estimate, from the Hessian: 1/√(2(H⁻¹)_pp)."""
        if not self.glmm and self.kinds[index] == "beta":
            return 1.0 / self.beta_se[index - len(self.psi_hat)]
        try:
            variance = 2 * np.linalg.inv(self.hessian)[index, index]
        except np.linalg.LinAlgError:
            return np.nan
        return 1.0 / np.sqrt(variance) if variance > 0 else np.nan

    # --- one point ------------------------------------------------------------------------------
    def point(self, index: int, value: float, start: np.ndarray | None = None, hessian=None) -> Point:
        """The profile of parameter ``index`` at ``value``: the fit of all others, started at ``start`` (all
        parameters; default: the estimate moved along the quadratic model of the deviance) with ``hessian`` (of
        the others; default: the fit's) as the quasi-Newton's first Hessian."""
        with single_blas_thread():
            if not self.glmm and self.kinds[index] == "beta":
                return self._beta_point(index, value, start, hessian)
            return self._psi_point(index, value, start, hessian)

    def _psi_point(self, index: int, value: float, start, hessian) -> Point:
        n = len(self.psi_hat)
        free = np.arange(n) != index
        if start is None:
            H = self.hessian
            slope = -np.linalg.lstsq(H[np.ix_(free, free)], H[free, index], rcond=None)[0]
            x0 = self.psi_hat[free] + slope * (value - self.psi_hat[index])
        else:
            x0 = start[:n][free]

        def expand(x):
            full = np.empty(n)
            full[free], full[index] = x, value
            return full

        memo = _Memo(self.deviance, expand, free, (lambda: None) if self.glmm else self.deviance.beta)
        opt = self._fit(memo, x0, free, self.hessian[np.ix_(free, free)] if hessian is None else hessian)
        grad, beta = memo.at(opt.theta)
        params = expand(opt.theta)
        if not self.glmm:
            params = np.concatenate([params, beta])
        return self._make_point(index, value, opt, grad[index], params)

    def _beta_point(self, index: int, value: float, start, hessian) -> Point:
        j = index - len(self.psi_hat)
        if j not in self._problems:
            self._problems[j] = FixedEffectProblem(self.model, self.sdcor, j)
        problem = self._problems[j]
        deviance_b = problem.at(value)
        x0 = self.psi_hat if start is None else start[: len(self.psi_hat)]
        everything = np.ones(len(self.psi_hat), dtype=bool)
        memo = _Memo(deviance_b, lambda x: x, everything, lambda: (deviance_b.solution, deviance_b.beta()))
        opt = self._fit(memo, x0, everything, self.hessian if hessian is None else hessian)
        _, (solution, beta) = memo.at(opt.theta)
        deviance_b.solution = solution
        slope = problem.slope(deviance_b, opt.theta)
        return self._make_point(index, value, opt, slope, np.concatenate([opt.theta, beta]))

    def _fit(self, f, x0, free, hessian):
        """The quasi-Newton fit of the free parameters, within :func:`skmixed.convergence.minimize`'s probe: the
        deviance is even in an SD, so an SD at 0 is a stationary point whatever the curvature, and is kept only
        if moving it into the interior does not lower the deviance."""
        lower, upper = self.lower[: len(free)][free], self.upper[: len(free)][free]
        return minimize(
            lambda start: minimize_box(f, start, lower, upper, hessian, tol=POINT_TOL),
            x0,
            lower,
            f_and_grad=f,
            scale=1 / self.scale[free],
            check=False,
        )

    def _make_point(self, index, value, opt, dD, params) -> Point:
        excess = opt.objective - self.base
        if excess < -1e-6 * max(1.0, abs(self.base)):
            warnings.warn(
                f"the profile of {self.names[index]} found a deviance {-excess:.3g} below the fit's: the fit had not "
                "converged to the optimum",
                ConvergenceWarning,
                stacklevel=4,
            )
        estimate = self.estimates[index]
        zeta = np.sign(value - estimate) * np.sqrt(max(excess, 0.0))
        slope = dD / (2 * zeta) if abs(zeta) > 1e-6 else self._slope0(index)
        converged = bool(opt.converged and np.isfinite(zeta))
        return Point(float(value), float(zeta), float(slope), params, converged, opt.hessian)

    # --- interval ends and grids ------------------------------------------------------------------
    def transform(self, index: int):
        """(u(p), p(u), dp/du) of the scale Newton's method works on: log for SDs and σ, atanh for correlations."""
        kind, estimate = self.kinds[index], self.estimates[index]
        if kind in ("sd", "sigma") and estimate > 0:
            return np.log, np.exp, lambda p: p
        if kind == "cor" and abs(estimate) < 1:
            return np.arctanh, np.tanh, lambda p: 1 - p**2
        return (lambda p: p), (lambda u: u), (lambda p: 1.0)

    def end(self, index: int, z: float, side: int, first: float | None = None) -> float:
        """The end (``side`` −1: lower, +1: upper) of parameter ``index``'s interval {|ζ| ≤ z}, searched from
        ``first`` (default: the quadratic approximation at the estimate); its bound where ζ does not reach ±z
        before it, NaN with a warning where the end cannot be bracketed."""
        with single_blas_thread():
            return _EndSearch(self, index, z, side).run(first)

    def on_bound(self, index: int, side: int) -> bool:
        bound = self.lower[index] if side < 0 else self.upper[index]
        return bool(np.isfinite(bound) and abs(self.estimates[index] - bound) < 1e-6 * max(1.0, abs(bound)))

    def extrapolated_start(self, points: list[Point], value: float) -> np.ndarray | None:
        """All parameters at ``value`` extrapolated linearly from the two evaluated points nearest to it."""
        if len(points) < 2:
            return points[0].params if points else None
        near = sorted(points, key=lambda pt: abs(pt.value - value))[:2]
        a, b = near
        if a.value == b.value:
            return a.params
        weight = (value - a.value) / (b.value - a.value)
        params = a.params + weight * (b.params - a.params)
        n = len(self.lower)
        params[:n] = np.clip(params[:n], self.lower, self.upper)
        return params


class _EndSearch:
    """Newton's method on ζ(p) = side·z for one end of one interval, safeguarded by bisection (module docstring).

    From the second point on, the step solves the cubic Hermite interpolant of ζ through the last two points
    (their values and slopes) instead of the tangent, when the two agree to within half the tangent's step:
    the end is then usually found by the second or third fit.
    """

    def __init__(self, profiler: Profiler, index: int, z: float, side: int):
        self.pr, self.index, self.z, self.side = profiler, index, z, side
        self.u, self.p_of_u, self.dp_du = profiler.transform(index)
        self.estimate = profiler.estimates[index]
        self.bound = profiler.lower[index] if side < 0 else profiler.upper[index]
        self.points: list[Point] = [Point(self.estimate, 0.0, profiler._slope0(index), profiler.estimates, True)]

    def _warn(self, why: str) -> float:
        which = "lower" if self.side < 0 else "upper"
        warnings.warn(
            f"the {which} end of the profile interval of {self.pr.names[self.index]} is NaN: {why}",
            ConvergenceWarning,
            stacklevel=5,
        )
        return np.nan

    def _clip(self, p: float) -> float:
        """p, or the bound where p is beyond it or so close that the log or atanh scale cannot step further."""
        if not np.isfinite(self.bound):
            return p
        beyond = (p - self.bound) * self.side >= 0
        near = abs(p - self.bound) < 1e-3 * abs(self.estimate - self.bound)
        return self.bound if beyond or near else p

    def _first(self, first: float | None, target: float) -> float:
        slope0 = self.points[0].slope
        if first is not None and np.isfinite(first) and (first - self.estimate) * self.side > 0:
            return self._clip(float(first))
        if np.isfinite(slope0) and slope0 > 0:
            step = target / (slope0 * self.dp_du(self.estimate))
            return self._clip(float(self.p_of_u(self.u(self.estimate) + step)))
        # an estimate on its other bound: step out on the scale of its neighbours
        return self.estimate + self.side * 0.1 * self.pr.scale_of(self.index)

    def run(self, first: float | None = None) -> float:
        pr, side, target = self.pr, self.side, self.side * self.z
        if pr.on_bound(self.index, side):
            return self.bound
        inside, outside = self.estimate, None  # the farthest p with |ζ| < z, the nearest with |ζ| > z
        p, hessian = self._first(first, target), None
        for _ in range(MAX_STEPS):
            point = pr.point(self.index, p, pr.extrapolated_start(self.points, p), hessian)
            if not point.converged:
                return self._warn(f"the fit at {p:.6g} did not converge")
            self.points.append(point)
            hessian = point.hessian
            error = point.zeta - target
            if abs(error) < ZETA_TOL:
                return p
            if error * side < 0:
                if p == self.bound:  # ζ does not reach ±z before the bound: the interval extends to it
                    return p
                inside = p
            else:
                outside = p
            p = self._next(inside, outside, target)
            if self._finished(error, target):
                return p
        return self._warn(f"ζ did not reach {target:+.3g} within {MAX_STEPS} fits")

    def _finished(self, error: float, target: float) -> bool:
        """Whether the next p may be taken as the end without a fit (see ``FINISH_TOL``)."""
        if len(self.points) < 3 or self._newton(target) is None:
            return False
        a, b = self.points[-2], self.points[-1]
        bracketed = (a.zeta - target) * (b.zeta - target) < 0 and abs(a.zeta - b.zeta) < HERMITE_SPAN
        return abs(error) < FINISH_TOL or bracketed

    def _knot(self, point: Point) -> tuple[float, float, float]:
        return float(self.u(point.value)), point.zeta, point.slope * self.dp_du(point.value)

    def _newton(self, target: float) -> float | None:
        """The next p: the tangent's root, or the Hermite cubic's nearest to it (class docstring)."""
        ub, zb, sb = self._knot(self.points[-1])
        if not (np.isfinite(sb) and sb > 0):
            return None
        tangent = ub + (target - zb) / sb
        ua, za, sa = self._knot(self.points[-2])
        h = ub - ua
        if np.isfinite(ua) and np.isfinite(sa) and sa > 0 and h != 0:
            cubic = [2 * za + h * sa - 2 * zb + h * sb, -3 * za - 2 * h * sa + 3 * zb - h * sb, h * sa, za - target]
            roots = np.roots(cubic) if cubic[0] != 0 or cubic[1] != 0 else np.roots(cubic[2:])
            real = ua + h * roots[np.abs(roots.imag) < 1e-12].real
            if len(real):
                best = real[np.argmin(np.abs(real - tangent))]
                if abs(best - tangent) <= 0.5 * abs(tangent - ub):
                    tangent = best
        return self._clip(float(self.p_of_u(tangent)))

    def _next(self, inside: float, outside, target: float) -> float:
        side, p = self.side, self.points[-1].value
        newton = self._newton(target)
        if outside is None:  # not bracketed: Newton if it moves outwards, else twice as far out
            if newton is not None and (newton - inside) * side > 0:
                return newton
            return self._clip(float(self.p_of_u(self.u(p) + 2 * (self.u(p) - self.u(self.estimate)))))
        if newton is not None and (newton - inside) * side > 0 and (outside - newton) * side > 0:
            return newton
        if outside == self.bound or not np.isfinite(self.u(outside)):
            return (inside + outside) / 2
        return float(self.p_of_u((self.u(inside) + self.u(outside)) / 2))


def warn_singular(names: list[str]) -> None:
    warnings.warn(
        f"the fit is singular ({', '.join(names)} on the boundary): the intervals of these parameters end at their "
        "bound",
        SingularFitWarning,
        stacklevel=4,
    )
