"""R² and intra-class correlation of a mixed model (Nakagawa, Johnson & Schielzeth, "The coefficient of
determination R² and intra-class correlation coefficient from generalized linear mixed-effects models revisited and
expanded", J. R. Soc. Interface 14, 2017), as R's performance package computes them (``r2_nakagawa``, ``icc``, on
insight's ``get_variance``).

The variance of the latent (link-scale) response is split into

- fixed: the variance of the fixed part's predictions ``Xβ̂`` over the rows fitted (n − 1 in the denominator);
- random: for each random-effects term, the mean over the rows of ``zᵢ'Σzᵢ``, zᵢ the row's values of the term's
  effects (1 for an intercept, x for a slope on x) and Σ the term's covariance; summed over the terms.  For a
  random-intercept term this is its variance; with random slopes it depends on where the covariates lie;
- residual: the distribution-specific variance plus, for a GLMM, the variance of any observation-level term
  (one level per row), which models overdispersion.

The distribution-specific variance is σ² for an LMM; π²/3, 1 and π²/6 for a binomial model with logit, probit and
cloglog links; and for a Poisson model with the log link the lognormal approximation ``log(1 + 1/λ)``, λ the mean
count ``exp(β₀)`` of the null model (the same random effects and no fixed effects but the intercept), as
performance 0.10 does by default (its alternatives, the delta method 1/λ and the trigamma function, are not used).

Then R²_marginal = fixed / total, R²_conditional = (fixed + random) / total, ICC_adjusted = random / (random +
residual) and ICC_conditional = random / total, with total = fixed + random + residual.

Where insight 0.19 differs: it takes a slope's values from the fixed-effects model matrix, so a random slope on a
variable that is not a fixed effect counts as 0 (it warns, as here); and it keeps one covariance per grouping
factor, so ``(x || g)`` loses its second term.  Both are counted here.  For a singular fit it returns NA for the
random part; here the estimated (near-zero) variance is used, with a warning.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .exceptions import OptionError
from .families import Binomial, Poisson
from .variables import expression_variables
from .variance import term_covariances

_BINOMIAL = {"logit": np.pi**2 / 3, "probit": 1.0, "cloglog": np.pi**2 / 6}


def variance_components(result, null_model=None) -> pd.Series:
    """The fixed, random, residual, distribution and dispersion variances (insight's ``get_variance``)."""
    _warn_slopes_not_fixed(result)
    if result.is_singular:
        warnings.warn(
            "the fit is singular (a variance at or near zero): performance returns NA for the random-effects part of "
            "R² and the ICC here; the values given use the estimated variances",
            UserWarning,
            stacklevel=3,
        )
    glmm = getattr(result, "family", None) is not None
    random = dispersion = 0.0
    for t, cov in zip(result.re.terms, term_covariances(result.re, result.theta, result.sigma)):
        part = float(np.mean(np.einsum("ij,jk,ik->i", t.values, cov, t.values)))
        if t.n_levels == result.nobs and glmm:
            dispersion += part
        else:
            random += part
    distribution = _distribution_variance(result, null_model)
    fixed = float(np.var(result.frame.X @ result.fixef.to_numpy(), ddof=1))
    return pd.Series(
        {
            "fixed": fixed,
            "random": random,
            "residual": distribution + dispersion,
            "distribution": distribution,
            "dispersion": dispersion,
        },
        name="variance",
    )


def r2(result, null_model=None) -> pd.Series:
    """Nakagawa's marginal and conditional R² (performance's ``r2_nakagawa``): a Series with ``marginal`` and
    ``conditional``.  For a Poisson GLMM, ``null_model`` may give the fitted null model (the same random effects,
    intercept only), which is otherwise fitted here."""
    v = variance_components(result, null_model)
    total = v.fixed + v.random + v.residual
    return pd.Series({"marginal": v.fixed / total, "conditional": (v.fixed + v.random) / total}, name="R2")


def icc(result, null_model=None) -> pd.Series:
    """The intra-class correlation (performance's ``icc``): ``adjusted`` = random / (random + residual) and
    ``conditional`` = random / (fixed + random + residual), for any random-effects structure."""
    v = variance_components(result, null_model)
    return pd.Series(
        {"adjusted": v.random / (v.random + v.residual), "conditional": v.random / (v.fixed + v.random + v.residual)},
        name="ICC",
    )


def _distribution_variance(result, null_model) -> float:
    family = getattr(result, "family", None)
    if family is None:
        return float(result.sigma**2)
    link = family.link.name
    if isinstance(family, Binomial) and link in _BINOMIAL:
        return float(_BINOMIAL[link])
    if type(family) is Poisson and link == "log":
        return float(np.log1p(1.0 / _null_mean(result, null_model)))
    raise OptionError(
        f"Nakagawa's R² and the ICC are computed here for LMMs, binomial GLMMs (logit, probit or cloglog link) and "
        f"Poisson GLMMs (log link), not for the {family.describe()} family"
    )


def _null_mean(result, null_model) -> float:
    """λ = exp(β₀) of the null model: the fit's random effects and offsets, no fixed effect but the intercept."""
    if null_model is None:
        if "null_model" not in result._cache:
            from .update import random_part, update

            result._cache["null_model"] = update(result, random_part(result.formula))
        null_model = result._cache["null_model"]
    if list(null_model.fixef.index) != ["(Intercept)"]:
        raise OptionError("null_model must be the model's null model: the same random effects and an intercept only")
    return float(np.exp(null_model.fixef.iloc[0]))


def _warn_slopes_not_fixed(result) -> None:
    """insight's warning: a random slope on a variable that is not a fixed effect inflates the random variance."""
    data = result.frame.data
    fixed = expression_variables(result.parsed.fixed, data)
    slopes = {
        v for b in result.parsed.bars if b.lhs.strip() not in ("1", "0") for v in expression_variables(b.lhs, data)
    }
    if slopes - fixed:
        warnings.warn(
            f"random slopes on {', '.join(sorted(slopes - fixed))}, which are not fixed effects: their variance is "
            "part of the random variance here (performance leaves it out); consider adding them as fixed effects",
            UserWarning,
            stacklevel=3,
        )
