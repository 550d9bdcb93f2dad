"""Stage 3, ``optimize``: minimise a deviance function over its parameters (lme4's ``optimizeLmer`` /
``optimizeGlmer``), ending in the convergence checks of :func:`skmixed.convergence.minimize`.

An LMM's profiled deviance is minimised over θ of the standardized problem: with an analytic
gradient (every backend, the sparse one through a selected inverse of its factor, but for the rare models of
:mod:`skmixed.backends` that go without) by L-BFGS-B,
preconditioned by :func:`~skmixed.pls.theta_scale` and started from moment estimates
(:func:`~skmixed.starts.moment_theta`); otherwise by BOBYQA from Λ = I, as lme4 does.  A GLMM goes
to :func:`skmixed.glmm_fitting.optimize_glmm`.  The summary returned is on the user's scale.
"""

from __future__ import annotations

from .blas import one_blas_thread
from .convergence import minimize
from .deviance import GlmmObjective, ProfiledDeviance
from .exceptions import OptionError
from .glmm_fitting import optimize_glmm
from .optimizers import OptSummary, bobyqa, lbfgsb_symmetric
from .options import check_fit_options, lmer_start
from .pls import theta_scale
from .starts import moment_theta

DERIVS_MAX_NOBS = 10_000  # lme4's check.conv.nobsmax: from here on the Hessian is computed only when needed
DERIVS_MAX_THETA = 10  # lme4's check.conv.nparmax for lmer


@one_blas_thread
def optimize(devfun, start=None, check_conv: bool = True, maxeval: int = 100_000) -> OptSummary:
    """Minimise ``devfun`` (from :func:`skmixed.deviance`) from ``start`` (θ, or lme4's ``{"theta": ..., "fixef":
    ...}``; the default as lme4's) with at most ``maxeval`` evaluations; ``check_conv``: lme4's checks, warned."""
    if isinstance(devfun, GlmmObjective):
        check_conv, maxeval = check_fit_options(start, check_conv, maxeval, ("theta", "fixef"))
        return optimize_glmm(devfun, start, check_conv, maxeval)
    if not isinstance(devfun, ProfiledDeviance):
        raise OptionError(f"optimize() takes a deviance function from skmixed.deviance, not {type(devfun).__name__}")
    check_conv, maxeval = check_fit_options(start, check_conv, maxeval)
    if devfun.model.re.structured:  # diag(1 + x | g), cs(...), ...: over the structures' parameters
        from .re_structures import optimize_psi

        return optimize_psi(devfun, start, check_conv, maxeval)
    return _optimize_lmm(devfun, lmer_start(start, devfun.model.re), check_conv, maxeval)


def _optimize_lmm(devfun: ProfiledDeviance, start, check_conv: bool, maxeval: int) -> OptSummary:
    model, dev = devfun.model, devfun.standardized
    std, re, cp = model.standardization, model.re, model.cp
    scale = theta_scale(cp, re)
    if start is not None:
        theta0 = std.theta_tilde(start)
    else:  # lme4 starts at Λ = I; the gradient path starts from moment estimates instead
        theta0 = moment_theta(cp, re, scale) if dev.has_gradient else re.theta_init
    lower = re.theta_lower
    hessian = cp.n < DERIVS_MAX_NOBS and re.n_theta < DERIVS_MAX_THETA  # lme4's calc.derivs rule
    if dev.has_gradient:

        def optimizer(x0):
            return lbfgsb_symmetric(
                dev.value_and_gradient,
                x0,
                canonical=re.canonical_theta,
                scale=scale,
                maxfun=maxeval,
                ftol=dev.backend.ftol,
            )

        optsum = minimize(
            optimizer,
            theta0,
            lower,
            f_and_grad=dev.value_and_gradient,
            scale=scale,
            check=check_conv,
            hessian=hessian,
        )
    else:
        optsum = minimize(
            lambda x0: bobyqa(dev, x0, lower, maxeval=maxeval),
            theta0,
            lower,
            f=dev,
            scale=scale,
            check=check_conv,
            hessian=hessian,
        )
    final = dev.final_solution(optsum.theta).deviance  # penalized RSS from the residuals
    optsum.map_rows(std.theta, lambda values: std.objective(values, model.REML))
    optsum.objective = std.objective(final, model.REML)
    return optsum
