"""Stage 3 for a GLMM: optimising a :class:`~skmixed.deviance.GlmmObjective` (lme4's ``optimizeGlmer``).

Stage 1: BOBYQA over θ of the nAGQ = 0 deviance (β inside PIRLS).  Stage 2 (nAGQ ≥ 1): BOBYQA
over (θ, β) of the Laplace or adaptive Gauss–Hermite deviance, started at stage 1's answer, β
searched in units of its standard error.  Both end in :func:`skmixed.convergence.minimize` (Newton
finish and lme4's convergence checks); the Hessian of the deviance in (θ, β) is kept where lme4
computes one (n < 10⁴ and fewer than 20 parameters), for the covariance of β̂.

The Laplace fit takes a shortcut where the analytic gradient is affordable
(:mod:`skmixed.laplace_gradient`): from the nAGQ = 0 mode at Λ = I and one EM step for θ, BFGS
over (θ, β), then a Newton step on the Hessian from gradient differences.  A negative binomial
with unknown θ is fitted as lme4's ``glmer.nb`` does: a Poisson fit, θ from its means, then a
1-D search over log θ with the GLMM refitted at each value.

Here β is the coefficient vector of the standardized X̃ (:mod:`skmixed.standardize`); the
summary returned is on the user's scale.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg as la

from .convergence import finite_difference, gradient_hessian, minimize
from .exceptions import DataError
from .families import NegativeBinomial, Poisson, theta_ml
from .laplace import agq, gauss_hermite, laplace, minus_two_loglik
from .laplace_gradient import LaplaceGradient
from .optimizers import OptSummary, bfgs_symmetric, bobyqa
from .options import glmer_start
from .pirls import Mode, Pirls, rx_scales

DERIVS_MAX_NOBS = 10_000  # lme4's check.conv.nobsmax: above it, no Hessian (and vcov from RX)
DERIVS_MAX_PARAMS = 20  # lme4's check.conv.nparmax for glmer
#: BOBYQA's xtol_abs = ftol_abs where a Newton step on finite differences (or stage 2) finishes the job
LOOSE_TOL = 1e-6


@dataclass
class _Fit:
    theta: np.ndarray
    beta: np.ndarray  # of the standardized X̃
    mode: Mode
    objective: float  # −2 log-likelihood (lme4's scale; nAGQ > 1 with the omitted constant added back)
    optsum: OptSummary


def hessian_covariance(n: int, n_params: int, nAGQ: int) -> bool:
    """Whether lme4 takes the covariance of β̂ from the Hessian of the deviance in (θ, β) (else from RX)."""
    return nAGQ >= 1 and n < DERIVS_MAX_NOBS and n_params < DERIVS_MAX_PARAMS


def optimize_glmm(objective, start=None, check_conv: bool = True, maxeval: int = 100_000) -> OptSummary:
    """Fit ``objective`` (a GlmmObjective): the optimization summary over θ (nAGQ = 0) or (θ, β), on the
    user's scale; its ``hessian`` (when lme4 would compute one) is in (θ, β̃), the standardized coordinates.
    The PIRLS of ``objective`` ends at the optimum, and its family holds an estimated negative-binomial θ."""
    model, pirls, nAGQ = objective.model, objective.pirls, objective.nAGQ
    std, k = model.standardization, model.re.n_theta
    theta0, beta0 = glmer_start(start, model.re, model.X.shape[1])
    beta0 = None if beta0 is None else std.beta_tilde(beta0)
    # trial points far out (a diverging estimate) overflow exp() and squares: such a point's deviance is inf
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        family = pirls.family
        if isinstance(family, NegativeBinomial) and family.theta is None:
            fit = _fit_negative_binomial(pirls, nAGQ, theta0, beta0, check_conv, maxeval)
        else:
            fit = _fit(pirls, nAGQ, theta0, beta0, check_conv, maxeval)
    optsum = fit.optsum
    if len(optsum.theta) > k:  # over (θ, β̃)
        _beta_to_user_scale(optsum, std, k)
    return optsum


def _beta_to_user_scale(optsum: OptSummary, std, k: int) -> None:
    """Map the β̃ of every point of ``optsum`` (start, optimum, log) to the user's β = γ + sS⁻¹β̃ in one
    triangular solve with all of them as right-hand sides (each column is solved as it would be alone)."""
    points = np.array([optsum.theta_init, optsum.theta] + [x for x, _ in optsum.fitlog])
    beta = std.gamma[:, None] + std.s * la.solve_triangular(std.S, points[:, k:].T)
    points[:, k:] = beta.T
    optsum.theta_init, optsum.theta = points[0], points[1]
    optsum.fitlog = [(x, value) for x, (_, value) in zip(points[2:], optsum.fitlog)]


def _fit(
    pirls: Pirls,
    nAGQ: int,
    theta0,
    beta0,
    check_conv: bool,
    maxeval: int,
    derivs: bool = True,
    tol: float | None = None,
) -> _Fit:
    """Stage 1 (nAGQ = 0 deviance over θ), then for nAGQ ≥ 1 stage 2 over (θ, β) (``tol``: see :func:`_stage2`);
    for nAGQ = 1, where the gradient is available, :func:`_fit_with_gradient` instead."""
    if nAGQ == 1 and LaplaceGradient.available(pirls):
        em_start = beta0 is None and np.array_equal(theta0, pirls.re.theta_init)  # no start given
        fit = _fit_with_gradient(pirls, theta0, beta0, check_conv, maxeval, derivs, em_start)
        if fit is not None:
            return fit
    lower = pirls.re.theta_lower
    tol1 = LOOSE_TOL if nAGQ > 0 else 1e-8  # stage 1 only gives stage 2 its start

    def nagq0(theta):  # the Laplace deviance at (θ, β̂(θ)), β̂ from the joint PIRLS: lme4's nAGQ = 0 objective
        return laplace(pirls, pirls.joint_mode(theta))

    opt = minimize(
        lambda x0: bobyqa(nagq0, x0, lower, xtol_abs=tol1, ftol_abs=tol1, maxeval=maxeval),
        theta0,
        lower,
        f=nagq0,
        check=nAGQ == 0 and check_conv,
        newton_steps=1,
        hessian=pirls.n < DERIVS_MAX_NOBS and len(lower) < DERIVS_MAX_PARAMS,
    )
    mode = pirls.joint_mode(opt.theta)
    if not np.all(np.isfinite(mode.beta)):
        raise DataError(
            f"the model cannot be fitted to these data: penalized IRLS finds no conditional modes ({mode.message}); "
            "the fixed effects may determine the response exactly (separation, or a level whose counts are all "
            "zero): drop or merge the predictors or levels concerned"
        )
    if nAGQ == 0:
        return _Fit(opt.theta, mode.beta, mode, laplace(pirls, mode), opt)
    return _stage2(pirls, nAGQ, opt.theta, mode.beta if beta0 is None else beta0, check_conv, maxeval, derivs, tol)


def _refit(
    pirls: Pirls,
    nAGQ: int,
    theta0,
    beta0,
    check_conv: bool,
    maxeval: int,
    derivs: bool = True,
    tol: float | None = None,
) -> _Fit:
    """Stage 2 only, from (θ0, β0) (a refit after a small change of the model, e.g. the negative binomial θ)."""
    if nAGQ == 1 and LaplaceGradient.available(pirls):
        fit = _fit_with_gradient(pirls, theta0, beta0, check_conv, maxeval, derivs)
        if fit is not None:
            return fit
    return _stage2(pirls, nAGQ, theta0, beta0, check_conv, maxeval, derivs, tol)


class _SeUnits:
    """The search coordinates z = (θ, (β − β0)/scale) of (θ, β): β in units of its standard error, so that
    every coordinate has a typical size of about 1 for the optimizer; its results are reported in (θ, β)."""

    def __init__(self, k: int, beta0: np.ndarray, scale: np.ndarray):
        self.k, self.beta0, self.scale = k, beta0, scale

    def to_z(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([x[: self.k], (x[self.k :] - self.beta0) / self.scale])

    def from_z(self, z: np.ndarray) -> np.ndarray:
        return self.from_z_rows(z[None, :])[0]

    def from_z_rows(self, Z: np.ndarray) -> np.ndarray:
        """(θ, β) of each row of ``Z``: θ as it is, β = β₀ + scale · z."""
        out = Z.copy()
        out[:, self.k :] = self.beta0 + self.scale * Z[:, self.k :]
        return out

    def gradient_in_z(self, grad: np.ndarray) -> np.ndarray:
        return np.concatenate([grad[: self.k], grad[self.k :] * self.scale])

    @property
    def minimize_scale(self) -> np.ndarray:
        """The typical size of each (θ, β) coordinate, as :func:`~skmixed.convergence.minimize` takes it."""
        return np.concatenate([np.ones(self.k), 1 / self.scale])

    def run(self, search, x0: np.ndarray) -> OptSummary:
        """``search(z0)`` from x0's z, its summary re-expressed in (θ, β)."""
        opt = search(self.to_z(x0))
        opt.optimizer += " over (θ, β)"
        opt.map_rows(self.from_z_rows)
        return opt


def _memoized(f):
    """f with its values kept by argument: the Newton finish and the Hessian revisit the optimizer's points."""
    seen: dict[bytes, object] = {}

    def wrapped(x):
        key = x.tobytes()
        if key not in seen:
            seen[key] = f(x)
        return seen[key]

    wrapped.seen = seen
    return wrapped


def _fit_with_gradient(
    pirls: Pirls, theta0, beta0, check_conv: bool, maxeval: int, derivs: bool = True, em_start: bool = False
) -> _Fit | None:
    """nAGQ = 1 with the analytic gradient: BFGS over (θ, β), then a Newton step on the Hessian from gradient
    differences, which also gives the covariance of β̂.  None if PIRLS fails at the start (BOBYQA takes over).

    No stage 1: BFGS with the gradient reaches the same optimum in fewer PIRLS solves than stage
    1's BOBYQA alone takes.  The start: β0 (default: the nAGQ = 0 β at θ0) and, with
    ``em_start``, θ after one EM step from θ0; β is searched in units of its standard error from RX,
    and BFGS's first inverse Hessian is (2RX'RX)⁻¹ for β and, for θ, the inverse of the curvature
    from a gradient difference (about half the evaluations of a start at Λ = I with the identity).
    """
    k, p = pirls.re.n_theta, pirls.p
    gradient = getattr(pirls, "gradient_class", LaplaceGradient)(pirls)  # a Dask PIRLS has its own
    start = _gradient_start(pirls, gradient, theta0, beta0, em_start)
    if start is None:
        return None
    theta0, beta0, RX = start
    units = _SeUnits(k, beta0, rx_scales(RX, p))
    value_and_gradient = _memoized(lambda x: gradient(x[:k], x[k:]))

    def in_z(z):
        value, grad = value_and_gradient(units.from_z(z))
        return value, units.gradient_in_z(grad)

    hess_inv0 = _initial_inverse_hessian(in_z, np.concatenate([theta0, np.zeros(p)]), k, RX, units.scale)

    def canonical(z):
        return np.concatenate([pirls.re.canonical_theta(z[:k]), z[k:]])

    def search(z0):  # without the Newton finish (the negative binomial's inner refits) BFGS goes on to ~1e-11
        gtol = 1e-3 if check_conv else 1e-5
        return bfgs_symmetric(in_z, z0, gtol=gtol, maxfun=maxeval, canonical=canonical, hess_inv0=hess_inv0)

    lower = np.concatenate([pirls.re.theta_lower, np.full(p, -np.inf)])
    with_derivs = derivs and hessian_covariance(pirls.n, k + p, 1)
    optsum = minimize(
        lambda x0: units.run(search, x0), np.concatenate([theta0, beta0]), lower, f_and_grad=value_and_gradient,
        scale=units.minimize_scale, check=check_conv, hessian=with_derivs, newton_steps=1, hessian_step=1e-5,
    )  # fmt: skip
    optsum.n_evaluations = len(value_and_gradient.seen)
    if with_derivs and optsum.hessian is None:  # lme4's vcov uses the Hessian: computed even without the check
        x = optsum.theta
        optsum.hessian = gradient_hessian(value_and_gradient, x, value_and_gradient(x)[1], lower, 1e-5)
    theta, beta = optsum.theta[:k], optsum.theta[k:]
    mode = pirls.mode(theta, beta)
    return _Fit(theta, beta, mode, laplace(pirls, mode), optsum)


def _gradient_start(pirls: Pirls, gradient: LaplaceGradient, theta0, beta0, em_start: bool):
    """(θ0, β0, RX at their mode): β0 by default the nAGQ = 0 β at θ0, and with ``em_start`` θ0 after one EM step;
    None if PIRLS fails there."""
    u0 = None
    if beta0 is None:
        start = pirls.joint_mode(theta0)
        if not start.converged:
            return None
        theta0, u0 = gradient.em_step(start) if em_start else (theta0, start.u)
        beta0 = start.beta
    mode0 = pirls.mode(theta0, beta0, u0)
    return (theta0, beta0, pirls.fixed_rx(mode0)) if mode0.converged else None


def _initial_inverse_hessian(
    f_and_grad, z0: np.ndarray, k: int, RX: np.ndarray | None, scale: np.ndarray
) -> np.ndarray:
    """A diagonal-block guess of the inverse Hessian at z0 = (θ, (β − β0)/scale): (2RX'RX)⁻¹ on the β scale
    (the working linear model's information) and, for each θ_m, 1/max(|(H_θθ s)_m / h|, 1) from one gradient
    difference along s = h(1, …, 1) on θ: each θ's curvature with its cross terms added, a guess whose one
    evaluation (not one per θ) the references' fits repay with the same or one fewer BFGS evaluations."""
    n = len(z0)
    inverse = np.zeros((n, n))
    if RX is not None:
        Rs = RX * scale[None, :]
        inverse[k:, k:] = np.linalg.inv(2 * Rs.T @ Rs)
    else:
        inverse[k:, k:] = np.eye(n - k) / 2
    g0 = f_and_grad(z0)[1]
    h = 1e-4
    step = np.zeros(n)
    step[:k] = h
    curvature = np.abs(f_and_grad(z0 + step)[1][:k] - g0[:k]) / h
    for m in range(k):
        inverse[m, m] = 1 / max(curvature[m], 1.0) if np.isfinite(curvature[m]) else 1.0
    return (inverse + inverse.T) / 2


def _at(pirls: Pirls, theta, beta, rule) -> float:
    """The stage-2 objective at (θ, β): the Laplace deviance, or lme4's AGQ deviance (without its constant)."""
    mode = pirls.mode(theta, beta)
    return laplace(pirls, mode) if rule is None else agq(pirls, mode, rule)


def _stage2(
    pirls: Pirls, nAGQ: int, theta0, beta0, check_conv: bool, maxeval: int, derivs: bool = True, tol=None
) -> _Fit:
    """BOBYQA over (θ, β) of the Laplace (nAGQ = 1) or AGQ deviance; β searched in units of its standard error.

    ``tol`` (BOBYQA's xtol_abs = ftol_abs) defaults to ``LOOSE_TOL`` when the Newton polish follows, else 1e-8.
    """
    k = pirls.re.n_theta
    rule = gauss_hermite(nAGQ) if nAGQ > 1 else None
    deviance = _memoized(lambda x: _at(pirls, x[:k], x[k:], rule))
    units = _SeUnits(k, beta0, pirls.fixed_scales(pirls.mode(theta0, beta0)))
    lower = np.concatenate([pirls.re.theta_lower, np.full(len(beta0), -np.inf)])
    with_derivs = derivs and hessian_covariance(pirls.n, len(lower), nAGQ)
    if tol is None:  # loose where the Newton step on the finite-difference Hessian finishes the job
        tol = LOOSE_TOL if check_conv and with_derivs else 1e-8
    # first steps of 0.2·|θ| (at least 0.05) and 0.4 SE for β: the GLMM references need a fifth fewer evaluations
    step = np.concatenate([np.maximum(0.2 * np.abs(theta0), 0.05), np.full(len(beta0), 0.4)])

    def search(z0):
        return bobyqa(lambda z: deviance(units.from_z(z)), z0, lower, xtol_abs=tol, ftol_abs=tol, maxeval=maxeval,
                      initial_step=step)  # fmt: skip

    optsum = minimize(
        lambda x0: units.run(search, x0), np.concatenate([theta0, beta0]), lower, f=deviance,
        scale=units.minimize_scale, check=check_conv, hessian=with_derivs, newton_steps=1,
    )  # fmt: skip
    if with_derivs and optsum.hessian is None:  # lme4's vcov uses the Hessian: computed even without the check
        optsum.hessian = finite_difference(deviance, optsum.theta, lower)[1]
    theta, beta = optsum.theta[:k], optsum.theta[k:]
    mode = pirls.mode(theta, beta)
    objective = minus_two_loglik(pirls, mode, rule)
    return _Fit(theta, beta, mode, objective, optsum)


def _fit_negative_binomial(pirls: Pirls, nAGQ: int, theta0, beta0, check_conv: bool, maxeval: int) -> _Fit:
    """lme4's ``glmer.nb``: Poisson fit → θ̂ from its means → minimise −2 logLik over log θ in ±3 of it."""
    from scipy.optimize import minimize_scalar

    nb = pirls.family
    pirls.family = Poisson(link=nb.link.name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        poisson = _fit(pirls, nAGQ, theta0, beta0, False, maxeval, derivs=False, tol=LOOSE_TOL)
        th0 = theta_ml(pirls.y, poisson.mode.mu, pirls.wt)
        pirls.family = nb.with_theta(th0)
        current = _fit(pirls, nAGQ, theta0, beta0, False, maxeval, derivs=False, tol=LOOSE_TOL)

        def refit(fit: _Fit, final: bool) -> _Fit:
            if nAGQ == 0:
                return _fit(pirls, 0, fit.theta, None, final and check_conv, maxeval)
            if final:
                return _refit(pirls, nAGQ, fit.theta, fit.beta, check_conv, maxeval)
            return _refit(pirls, nAGQ, fit.theta, fit.beta, False, maxeval, derivs=False, tol=LOOSE_TOL)

        def profile(log_theta: float) -> float:  # warm-started from the previous θ's fit
            nonlocal current
            pirls.family = nb.with_theta(float(np.exp(log_theta)))
            current = refit(current, False)
            return current.objective

        res = minimize_scalar(
            profile, bounds=(np.log(th0) - 3, np.log(th0) + 3), method="bounded", options={"xatol": 5e-5}
        )
    pirls.family = nb.with_theta(float(np.exp(res.x)))
    return refit(current, True)


# --- result ----------------------------------------------------------------------------
