"""``glmer``: fit a generalized linear mixed model, lme4's ``glmer`` as a composition of the public stages
(:mod:`skmixed.stages`): build → deviance (Laplace, quadrature or nAGQ = 0) → optimize → make_result.
How a GLMM is optimised: :mod:`skmixed.glmm_fitting`; its deviances: :mod:`skmixed.pirls`."""

from __future__ import annotations

import warnings

import pandas as pd

from .blas import single_blas_thread
from .dask import is_dask_frame
from .exceptions import OptionError
from .families import Gaussian
from .options import check_glmer, theta_only
from .stages import build, deviance, make_result, optimize


def fitted_as_lmm(fam) -> bool:
    """Whether a Gaussian family with the identity link makes this GLMM a linear mixed model, fitted by
    lmer(REML=False), with a warning saying so."""
    if not (isinstance(fam, Gaussian) and fam.link.name == "identity"):
        return False
    warnings.warn(
        "a Gaussian GLMM with the identity link is a linear mixed model: fitted by lmer(REML=False) "
        "(lme4 would call lmer with its default REML=TRUE); call skmixed.lmer directly",
        UserWarning,
        stacklevel=3,
    )
    return True


def glmer(
    formula: str,
    data: pd.DataFrame,
    family="binomial",
    nAGQ: int = 1,
    weights=None,
    offset=None,
    start=None,
    check_conv: bool = True,
    maxeval: int = 100_000,
    residual=None,
):
    """Fit ``g(E[y | b]) = Xβ + Zb + offset``, ``b ~ N(0, ΛΛ')``, y | b from ``family``, by maximum likelihood.

    ``family``: ``"binomial"``, ``"poisson"``, ``"gamma"``, ``"inverse_gaussian"``, ``"gaussian"``,
    ``"negative_binomial"`` or an object from :mod:`skmixed.families` (e.g. ``Binomial(link="probit")``,
    ``NegativeBinomial(theta=None)`` to estimate θ).  A binomial response may be 0/1, boolean, a
    two-level factor (second level = success), a proportion with ``weights`` = trials, or
    ``cbind(successes, failures)``.  ``nAGQ``: 1 = Laplace (default), 0 = β within PIRLS
    (fast), > 1 = adaptive Gauss–Hermite with that many nodes (one scalar random-effects
    term only).  ``start``: θ, or a dict with ``theta`` and/or ``fixef``.  Missing values as in
    :func:`skmixed.lmer`: incomplete rows are dropped before transforms are evaluated.
    """
    if residual is not None:
        raise OptionError(
            "residual= (a residual covariance structure) is for linear mixed models: a GLMM's response given the "
            "random effects has its family's variance and no correlation; fit an lmer, or add a random effect"
        )
    if is_dask_frame(data):  # the rows stay on the workers: skmixed.dask
        from .dask import glmer as dask_glmer

        return dask_glmer(formula, data, family, nAGQ, weights, offset, start, check_conv, maxeval)
    fam, nAGQ, check_conv, maxeval = check_glmer(family, nAGQ, weights, offset, start, check_conv, maxeval, data)
    with single_blas_thread():  # once for the four stages (see skmixed.blas)
        if fitted_as_lmm(fam):
            model, start = build(formula, data, REML=False, weights=weights, offset=offset), theta_only(start)
        else:
            model = build(formula, data, family=fam, weights=weights, offset=offset)
        devfun = deviance(model, nAGQ)
        return make_result(model, devfun, optimize(devfun, start=start, check_conv=check_conv, maxeval=maxeval))
