"""Generalized linear models without random effects, fitted by IRLS as R's ``glm.fit`` fits them.

Model: ``η = β₀ + Xβ``, ``μ = g⁻¹(η)``, y from a family of :mod:`skmixed.families` with prior
weights w.  Each IRLS step solves the weighted least-squares problem of the working response
``z = η + (y − μ)/μ'(η)`` with weights ``W = w μ'(η)²/V(μ)`` (Fisher scoring; Newton's method
for a canonical link) and halves the step while the deviance is not finite, μ leaves the
family's range, or the deviance rises.  The iterations stop when the deviance changes by less
than 1e-8 relative (R's ``glm.control``), or, with a warning, when it falls below 1e-6 of its
starting value: a perfect fit, as when a binomial model's classes are separated by X and some
coefficients have no finite estimate.  A negative-binomial family with θ unknown alternates
IRLS with θ's maximum-likelihood estimate for the fitted means, as MASS's ``glm.nb`` does.

The scikit-learn estimators fit this model when they are given no groups.  (The penalized
IRLS of a mixed model's conditional modes is :mod:`skmixed.pirls`.)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .exceptions import ConvergenceWarning
from .families import Family, NegativeBinomial, Poisson, theta_ml

MAX_ITER = 100
MAX_HALVINGS = 30
TOL = 1e-8
#: a deviance below this fraction of its starting value is a perfect fit (separation): IRLS stops there,
#: where the iterates are still well conditioned, rather than chase coefficients towards infinity.
PERFECT_FIT = 1e-6
#: θ beyond this: no overdispersion, and the negative-binomial fit is the Poisson fit.
MAX_THETA = 1e8
THETA_ITER = 25
THETA_TOL = 1e-6


@dataclass(frozen=True)
class GlmFit:
    """A fitted GLM: ``beta`` (intercept first), the ``family`` (a negative binomial with its estimated θ),
    the ``deviance``, the residual degrees of freedom (rows of positive weight less the rank of the model
    matrix on them) and the Pearson ``dispersion`` Σ w (y − μ)²/V(μ) / df (1 for a family without one)."""

    beta: np.ndarray
    family: Family
    deviance: float
    df_residual: int
    dispersion: float


def _deviance(family: Family, y, mu, w) -> float:
    return float(np.sum(family.dev_resids(y, mu, w)))


def _wls(design, y, w, family: Family, eta, mu) -> np.ndarray:
    """The IRLS target: weighted least squares of the working response on the design."""
    d_mu = family.mu_eta(eta)
    root_w = np.sqrt(w * d_mu**2 / family.variance(mu))
    z = eta + (y - mu) / d_mu
    beta, _, _, _ = np.linalg.lstsq(design * root_w[:, None], z * root_w, rcond=None)
    return beta


def _start(design, y, w, family: Family) -> np.ndarray:
    """One IRLS step from the family's starting means; the null model's β if that step leaves μ's range.

    The starting means ignore w, so that integer weights and repeated rows take the same path.
    (R's ``glm.fit`` stops in that case and asks for starting values.)
    """
    mu = family.mustart(y, np.ones_like(y))
    beta = _wls(design, y, w, family, family.linkfun(mu), mu)
    if np.all(np.isfinite(beta)) and family.valid_mu(family.linkinv(design @ beta)):
        return beta
    null = np.zeros(design.shape[1])
    null[0] = family.linkfun(np.average(mu, weights=w))
    return null


def _irls(design, y, w, family: Family, beta=None) -> tuple[np.ndarray, str | None]:
    """β̂ maximising the family's likelihood of y given ``η = design @ β``, and a warning's text or None."""
    beta = _start(design, y, w, family) if beta is None else beta
    eta = design @ beta
    mu = family.linkinv(eta)
    dev = _deviance(family, y, mu, w)
    perfect = PERFECT_FIT * dev
    for _ in range(MAX_ITER):
        step = _wls(design, y, w, family, eta, mu) - beta
        for _ in range(MAX_HALVINGS):
            new_beta = beta + step
            new_eta = design @ new_beta
            new_mu = family.linkinv(new_eta)
            new_dev = _deviance(family, y, new_mu, w) if family.valid_mu(new_mu) else np.inf
            if new_dev <= dev + 1e-12 * (1 + abs(dev)):
                break
            step = step / 2
        else:
            return beta, "IRLS could not lower the deviance; keeping the last estimate"
        converged = abs(new_dev - dev) / (abs(new_dev) + 0.1) < TOL
        beta, eta, mu, dev = new_beta, new_eta, new_mu, new_dev
        if converged:
            return beta, None
        if dev <= perfect:
            if family.has_dispersion:
                return beta, None
            return beta, (
                "the model fits the data perfectly (deviance ≈ 0): for a binomial model the classes are separated "
                "by X, so some coefficients have no finite estimate; IRLS stopped"
            )
    return beta, (
        f"IRLS did not converge in {MAX_ITER} iterations (for a binomial model: are the classes perfectly "
        "separated by X?)"
    )


def _irls_negative_binomial(design, y, w, family: NegativeBinomial) -> tuple[np.ndarray, NegativeBinomial, list[str]]:
    """MASS's ``glm.nb``: from the Poisson fit, alternate θ's ML estimate for the means with IRLS at that θ."""
    beta, message = _irls(design, y, w, Poisson(link=family.link.name))
    messages = [message] if message else []
    theta = None
    for _ in range(THETA_ITER):
        new_theta = theta_ml(y, family.linkinv(design @ beta), w)
        if not np.isfinite(new_theta) or new_theta > MAX_THETA:
            messages.append(
                "the counts show no overdispersion (the negative-binomial θ goes to infinity): this is the Poisson fit"
            )
            return beta, family.with_theta(MAX_THETA), messages
        if theta is not None and abs(new_theta - theta) <= THETA_TOL * theta:
            break
        theta = new_theta
        beta, message = _irls(design, y, w, family.with_theta(theta), beta)
        messages += [message] if message else []
    return beta, family.with_theta(new_theta), messages


def fit_glm(X: np.ndarray, y: np.ndarray, weights: np.ndarray, family: Family) -> GlmFit:
    """Fit ``η = β₀ + Xβ`` by maximum likelihood; a :class:`ConvergenceWarning` says when IRLS stopped short."""
    design = np.column_stack([np.ones(len(y)), X])
    if isinstance(family, NegativeBinomial) and family.theta is None:
        beta, family, messages = _irls_negative_binomial(design, y, weights, family)
    else:
        beta, message = _irls(design, y, weights, family)
        messages = [message] if message else []
    for message in messages:
        warnings.warn(message, ConvergenceWarning, stacklevel=2)
    mu = family.linkinv(design @ beta)
    positive = weights > 0
    df = int(np.count_nonzero(positive)) - int(np.linalg.matrix_rank(design[positive]))
    dispersion = 1.0
    if family.has_dispersion:
        dispersion = float(np.sum(weights * (y - mu) ** 2 / family.variance(mu)) / df) if df > 0 else np.nan
    return GlmFit(
        beta=beta, family=family, deviance=_deviance(family, y, mu, weights), df_residual=df, dispersion=dispersion
    )
