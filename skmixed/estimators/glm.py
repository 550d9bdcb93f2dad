"""The GLM without random effects that ``GLMM`` / ``GLMMClassifier`` fit when given no groups.

IRLS on ``η = β₀ + Xβ``, ``μ = g⁻¹(η)``, with the link, variance and deviance of
:mod:`skmixed.families`: each step solves the weighted least-squares problem of the
working response ``z = η + (y − μ)/μ'(η)`` with weights ``W = w μ'(η)²/V(μ)`` and halves
the step while the deviance is not finite, μ leaves the family's range, or the deviance
rises.  Stops when the deviance changes by less than 1e-8 relative (R's ``glm.fit``), or,
with a warning, when it falls below 1e-6 of its starting value: a perfect fit, as when a
binomial model's classes are separated by X and some coefficients have no finite estimate.
A negative-binomial family with θ unknown alternates IRLS with θ's ML estimate (``glm.nb``).
"""
from __future__ import annotations

import warnings

import numpy as np

from ..exceptions import ConvergenceWarning
from ..families import Family, NegativeBinomial, Poisson, theta_ml

MAX_ITER = 100
MAX_HALVINGS = 30
MAX_THETA = 1e8
TOL = 1e-8
#: a deviance below this fraction of its starting value is a perfect fit (separation): IRLS stops there,
#: where the iterates are still well conditioned, rather than chase coefficients towards infinity.
PERFECT_FIT = 1e-6


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
    """
    mu = family.mustart(y, np.ones_like(y))
    beta = _wls(design, y, w, family, family.linkfun(mu), mu)
    if np.all(np.isfinite(beta)) and family.valid_mu(family.linkinv(design @ beta)):
        return beta
    null = np.zeros(design.shape[1])
    null[0] = family.linkfun(np.average(mu, weights=w))
    return null


def irls(X: np.ndarray, y: np.ndarray, w: np.ndarray, family: Family, beta=None) -> np.ndarray:
    """β̂ (length 1 + p, intercept first) maximising the family's likelihood of ``y`` given ``η = β₀ + Xβ``."""
    design = np.column_stack([np.ones(len(y)), X])
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
            warnings.warn("IRLS could not lower the deviance; keeping the last estimate", ConvergenceWarning, stacklevel=6)
            return beta
        converged = abs(new_dev - dev) / (abs(new_dev) + 0.1) < TOL
        beta, eta, mu, dev = new_beta, new_eta, new_mu, new_dev
        if converged:
            return beta
        if dev <= perfect:
            if not family.has_dispersion:
                warnings.warn(
                    "the model fits the data perfectly (deviance ≈ 0): for a binomial model the classes are separated "
                    "by X, so some coefficients have no finite estimate; IRLS stopped", ConvergenceWarning, stacklevel=6,
                )
            return beta
    warnings.warn(
        f"IRLS did not converge in {MAX_ITER} iterations (for a binomial model: are the classes perfectly "
        "separated by X?)", ConvergenceWarning, stacklevel=6,
    )
    return beta


def fit_glm(X: np.ndarray, y: np.ndarray, w: np.ndarray, family: Family) -> tuple[np.ndarray, Family]:
    """β̂ and the family (a negative binomial with θ estimated when it was unknown)."""
    if not (isinstance(family, NegativeBinomial) and family.theta is None):
        return irls(X, y, w, family), family
    beta = irls(X, y, w, Poisson(link=family.link.name))
    theta = None
    for _ in range(25):
        mu = family.linkinv(beta[0] + X @ beta[1:])
        new_theta = theta_ml(y, mu, w)
        if not np.isfinite(new_theta) or new_theta > MAX_THETA:
            warnings.warn(
                "the counts show no overdispersion (the negative-binomial θ goes to infinity): this is the Poisson fit",
                ConvergenceWarning, stacklevel=5,
            )
            return beta, family.with_theta(MAX_THETA)
        if theta is not None and abs(new_theta - theta) <= 1e-6 * theta:
            break
        theta = new_theta
        beta = irls(X, y, w, family.with_theta(theta), beta)
    return beta, family.with_theta(new_theta)


def pearson_dispersion(X, y, w, beta, family: Family) -> float:
    """φ̂ = Σ w (y − μ)²/V(μ) / (n − p) for families with a dispersion, else 1."""
    if not family.has_dispersion:
        return 1.0
    mu = family.linkinv(beta[0] + X @ beta[1:])
    df = int(np.count_nonzero(w)) - np.linalg.matrix_rank(np.column_stack([np.ones(len(y)), X]))
    return float(np.sum(w * (y - mu) ** 2 / family.variance(mu)) / df) if df > 0 else np.nan
