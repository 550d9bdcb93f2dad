"""``lmer``: fit a linear mixed model by lme4's staged pipeline.

parse formula → model frame (y, X) → random-effects terms (Z, Λ(θ)) → standardized data
(:mod:`skmixed.standardize`) → cross-products → profiled deviance of θ → optimizer and
convergence checks (:func:`skmixed.optimize.minimize`) → result on the user's scale.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .design import model_frame
from .exceptions import FormulaError, SingularFitWarning
from .factor import single_blas_thread
from .formula import parse_formula
from .optimize import bobyqa, lbfgsb_even, minimize
from .options import check_lmer, lmer_start
from .pls import PlsSolution, ProfiledDeviance, cross_products, moment_theta, theta_scale
from .results import LmerResult
from .reterms import check_identifiable, random_effects
from .standardize import standardize

DERIVS_MAX_NOBS = 10_000  # lme4's check.conv.nobsmax: from here on the Hessian is computed only when needed
DERIVS_MAX_THETA = 10  # lme4's check.conv.nparmax for lmer


def lmer(
    formula: str,
    data: pd.DataFrame,
    REML: bool = True,
    weights=None,
    offset=None,
    start=None,
    check_conv: bool = True,
    maxeval: int = 100_000,
) -> LmerResult:
    """Fit ``y = Xβ + Zb + ε``, ``b ~ N(0, σ²ΛΛ')``, ``ε ~ N(0, σ²W⁻¹)`` by REML (default) or ML.

    ``formula`` is an lme4 formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``.
    ``weights`` and ``offset`` are column names of ``data`` or arrays (rows of weight 0 are
    left out of the fit, as if missing); ``start`` is an initial θ or ``{"theta": θ}`` (default:
    identity Λ).  :mod:`skmixed.options` says what each option accepts.  Rows with a missing value
    in a variable the formula reads are dropped (with a warning) before transforms such as
    ``poly(x, 2)`` or ``scale(x)`` are evaluated, so these see only the rows fitted; R differs here
    (its ``poly`` stops on NA and its ``scale`` centres on rows dropped afterwards), on purpose.
    """
    REML, check_conv, maxeval = check_lmer(REML, weights, offset, start, check_conv, maxeval, data)
    parsed = parse_formula(formula)
    if not parsed.bars:
        raise FormulaError(
            f"the formula {formula!r} has no random-effects term: add one such as (1 | group), "
            "or fit it by ordinary least squares (e.g. sklearn's LinearRegression or statsmodels' ols)"
        )
    frame = model_frame(parsed, data, weights=weights, offset=offset)
    re = random_effects(parsed.bars, frame.data)
    check_identifiable(re, len(frame.y))
    start = lmer_start(start, re)
    name = data.attrs.get("name")
    result = LmerResult(
        formula=parsed.text, parsed=parsed, frame=frame, re=re, cp=None, solution=None, optsum=None,
        REML=REML, data_name=name if isinstance(name, str) else None,
    )
    return fit(result, start=start, check_conv=check_conv, maxeval=maxeval)


def fit(result: LmerResult, start=None, check_conv: bool = True, maxeval: int = 100_000) -> LmerResult:
    """Optimise the profiled deviance of θ for the model in ``result`` and fill in its solution.

    The deviance is that of the standardized problem (:mod:`skmixed.standardize`): its
    cross-products keep their digits whatever the location and units of y, X and the weights.
    Models with an analytic gradient (see :attr:`~skmixed.pls.ProfiledDeviance.has_gradient`) use
    L-BFGS-B, preconditioned by :func:`~skmixed.pls.theta_scale`, from moment estimates of θ; the
    others (nested or crossed models with vector terms on the sparse path) use BOBYQA from
    Λ = I, as lme4 does.
    """
    re, frame = result.re, result.frame
    X, y, w, std = standardize(frame.X, frame.y - frame.offset, frame.weights)
    result.cp = cross_products(re.Z, X, y, w)
    result.standardization = std
    devfun = ProfiledDeviance(result.cp, re, reml=result.REML)
    scale = theta_scale(result.cp, re)
    if start is not None:
        theta0 = std.theta_tilde(np.asarray(start, dtype=float))
    else:  # lme4 starts at Λ = I; the gradient path starts from moment estimates instead
        theta0 = moment_theta(result.cp, re, scale) if devfun.has_gradient else re.theta_init
    lower = re.theta_lower
    hessian = len(frame.y) < DERIVS_MAX_NOBS and re.n_theta < DERIVS_MAX_THETA  # lme4's calc.derivs rule
    with single_blas_thread():
        if devfun.has_gradient:
            def optimizer(x0):
                return lbfgsb_even(devfun.value_and_gradient, x0, canonical=re.canonical_theta, scale=scale,
                                   maxfun=maxeval)

            optsum = minimize(optimizer, theta0, lower, f_and_grad=devfun.value_and_gradient, scale=scale,
                              check=check_conv, hessian=hessian)
        else:
            optsum = minimize(lambda x0: bobyqa(devfun, x0, lower, maxeval=maxeval), theta0, lower, f=devfun,
                              scale=scale, check=check_conv, hessian=hessian)
        solution = _residual_solution(devfun, devfun.solve(optsum.theta), X, y, w, re)
    optsum.map(std.theta, lambda value: std.objective(value, result.REML))
    optsum.objective = std.objective(solution.deviance, result.REML)
    result.optsum, result.solution = optsum, std.solution(solution, result.REML)
    result._cache = {"devfun": devfun}
    if result.is_singular:
        warnings.warn("boundary (singular) fit: see result.is_singular and result.varcorr", SingularFitWarning, stacklevel=3)
    return result


def _residual_solution(devfun: ProfiledDeviance, sol: PlsSolution, X, y, w, re) -> PlsSolution:
    """The solution with its penalized RSS recomputed from the residuals, as lme4 does: the cross-product
    form ``y'y − ‖cu‖² − ‖cβ‖²`` cancels when the random effects explain most of the variance."""
    r = y - X @ sol.beta - re.Z @ sol.b
    return devfun.with_pwrss(sol, float(w @ r**2 + sol.u @ sol.u))


def refit(result: LmerResult, REML: bool) -> LmerResult:
    """The same model fitted by ML or REML, starting at the current θ."""
    if result.REML == REML:
        return result
    twin = LmerResult(
        formula=result.formula, parsed=result.parsed, frame=result.frame, re=result.re, cp=None,
        solution=None, optsum=None, REML=REML, data_name=result.data_name,
    )
    return fit(twin, start=result.theta)
