"""``lmer``: fit a linear mixed model by lme4's staged pipeline.

parse formula → model frame (y, X) → random-effects terms (Z, Λ(θ)) → cross-products →
profiled deviance of θ → BOBYQA → result.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .design import model_frame
from .exceptions import FormulaError, OptionError, SingularFitWarning
from .factor import single_blas_thread
from .formula import parse_formula
from .optimize import bobyqa, lbfgsb_even, polish_and_check
from .pls import ProfiledDeviance, cross_products, moment_theta, theta_scale
from .results import LmerResult
from .reterms import check_identifiable, random_effects


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
    ``weights`` and ``offset`` are column names of ``data`` or arrays; ``start`` is an
    initial θ (default: identity Λ).  Rows with a missing value in a variable the formula reads
    are dropped (with a warning) before transforms such as ``poly(x, 2)`` or ``scale(x)`` are
    evaluated, so these see only the rows fitted; R differs here (its ``poly`` stops on NA and
    its ``scale`` centres on rows dropped afterwards), on purpose.
    """
    parsed = parse_formula(formula)
    if not parsed.bars:
        raise FormulaError(
            f"the formula {formula!r} has no random-effects term: add one such as (1 | group), "
            "or fit it by ordinary least squares (e.g. sklearn's LinearRegression or statsmodels' ols)"
        )
    frame = model_frame(parsed, data, weights=weights, offset=offset)
    re = random_effects(parsed.bars, frame.data)
    check_identifiable(re, len(frame.y))
    cp = cross_products(re.Z, frame.X, frame.y, frame.weights, frame.offset)
    name = data.attrs.get("name")
    result = LmerResult(
        formula=parsed.text, parsed=parsed, frame=frame, re=re, cp=cp, solution=None, optsum=None,
        REML=REML, data_name=name if isinstance(name, str) else None,
    )
    return fit(result, start=start, check_conv=check_conv, maxeval=maxeval)


def fit(result: LmerResult, start=None, check_conv: bool = True, maxeval: int = 100_000) -> LmerResult:
    """Optimise the profiled deviance of θ for the model in ``result`` and fill in its solution.

    Models with an analytic gradient (see :attr:`~skmixed.pls.ProfiledDeviance.has_gradient`) use
    L-BFGS-B, preconditioned by :func:`~skmixed.pls.theta_scale`, from moment estimates of θ; the
    others (nested or crossed models with vector terms or a non-blocked factor) use BOBYQA from
    Λ = I, as lme4 does.  On the 32 LMM references: 879 evaluations with BOBYQA, 336 now
    (sleepstudy 44 → 10), every objective at or below lme4's.  Moment starts for vector terms
    (per-level least squares) were measured and dropped: closer starts, no fewer evaluations.
    """
    re = result.re
    devfun = ProfiledDeviance(result.cp, re, reml=result.REML)
    scale = theta_scale(result.cp, re) if devfun.has_gradient else None
    if start is not None:
        theta0 = np.asarray(start, dtype=float)
    else:  # lme4 starts at Λ = I; the gradient path starts from moment estimates instead
        theta0 = moment_theta(result.cp, re, scale) if devfun.has_gradient else re.theta_init
    if theta0.shape != (re.n_theta,):
        raise OptionError(f"start must have {re.n_theta} values (one per θ element), not {theta0.shape}")
    lower = re.theta_lower
    with single_blas_thread():
        if devfun.has_gradient:
            optsum = lbfgsb_even(devfun.value_and_gradient, theta0, canonical=re.canonical_theta, scale=scale)
        else:
            optsum = bobyqa(devfun, theta0, lower, maxeval=maxeval)
        if check_conv:
            polish_and_check(devfun, optsum, lower, f_and_grad=devfun.value_and_gradient if devfun.has_gradient else None)
        result.optsum, result.solution = optsum, devfun.solve(optsum.theta)
    result._cache = {"devfun": devfun}
    if result.is_singular:
        warnings.warn("boundary (singular) fit: see result.is_singular and result.varcorr", SingularFitWarning, stacklevel=3)
    return result


def refit(result: LmerResult, REML: bool) -> LmerResult:
    """The same model fitted by ML or REML, from the stored cross-products, starting at the current θ."""
    if result.REML == REML:
        return result
    twin = LmerResult(
        formula=result.formula, parsed=result.parsed, frame=result.frame, re=result.re, cp=result.cp,
        solution=None, optsum=None, REML=REML, data_name=result.data_name,
    )
    return fit(twin, start=result.theta)
