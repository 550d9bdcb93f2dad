"""A GLMM's deviance at a conditional mode: the Laplace approximation and adaptive Gauss–Hermite quadrature.

Notation of :mod:`skmixed.pirls`; ``mode`` is the PIRLS result at (θ, β).

**Laplace deviance** (nAGQ = 1; lme4 1.1-31 ``glmResp::Laplace``):

    ldL2 + ‖û‖² + aic(y, μ̂),    LL' = Λ'Z'WZΛ + I with W at the mode,

where ``aic`` is the family's −2 log-likelihood of y given û as R's ``family()$aic``
computes it — the normalising constants included (binomial coefficients, log y!, ...)
and, for families with a dispersion, φ̂ = Σd_i/Σw plugged in plus 2.  lme4 reports
this value as −2 logLik (cbpp, Laplace: 184.0531).  One difference: lme4 takes ldL2 from
the factor of its last PIRLS iteration, i.e. with the weights of the iterate before the
mode (tolPwrss = 1e-7), and restarts PIRLS from a fixed η.  Its objective is then higher
by up to ~1e-3 (cbpp: 5.6e-4) and its Hessian-based standard errors differ by up to ~1.5%;
emulating that shortcut reproduces lme4's cbpp objective to 3e-6 and standard errors to
1e-5.  We use W at the mode, so the deviance is a smooth function of (θ, β).

**Adaptive Gauss–Hermite deviance** (nAGQ > 1, a single scalar term; lme4's
``glmerAGQ``): with ``devc_j(u) = u_j² + Σ_{i in level j} d_i``, ``s_j = 1/L_jj`` and the
rule (z_k, w_k) for the standard normal,

    Σ_j devc_j(û) + ldL2 − 2 Σ_j log Σ_k w_k exp(−½[devc_j(û_j + s_j z_k) − devc_j(û_j)] + ½ z_k²).

It is built from deviance residuals, so lme4's objective for nAGQ > 1 omits the constant
``aic − Σd_i`` (free of μ for the binomial, Poisson and negative binomial families): its
values are not comparable with Laplace fits.  We optimise the same function and report
that constant added back (:func:`agq_constant`), i.e. the full −2 log-likelihood,
which for nAGQ = 1 is exactly the Laplace value.
"""

from __future__ import annotations

import numpy as np

from .pirls import Mode, Pirls


def gauss_hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the n-point rule for ∫ f(z) φ(z) dz (φ standard normal), symmetrised as lme4 does."""
    z, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / np.sqrt(2 * np.pi)
    return (z - z[::-1]) / 2, (w + w[::-1]) / 2


def aic(pirls: Pirls, mu: np.ndarray) -> float:
    """The family's −2 log-likelihood of y at the means μ (R's ``family()$aic``)."""
    return pirls.family.aic(pirls.y, pirls.trials, mu, pirls.wt, float(np.sum(pirls.deviance_residuals(mu))))


def laplace(pirls: Pirls, mode: Mode) -> float:
    """ldL2 + ‖û‖² + aic(μ̂): lme4's Laplace objective (−2 log-likelihood)."""
    if not np.isfinite(mode.ldL2):
        return np.inf
    constant = pirls.aic_constant
    val = mode.ldL2 + (mode.pdev + constant if constant is not None else mode.usq + aic(pirls, mode.mu))
    return float(val) if np.isfinite(val) else np.inf


def agq(pirls: Pirls, mode: Mode, rule: tuple[np.ndarray, np.ndarray]) -> float:
    """lme4's adaptive Gauss–Hermite deviance (on the deviance-residual scale) for one scalar term."""
    if not np.isfinite(mode.ldL2):
        return np.inf
    term = pirls.re.terms[0]
    codes, z = term.factor.codes, term.values[:, 0]
    lam = float(mode.theta[0])
    A = 1 + lam**2 * np.bincount(codes, pirls.working_weights(mode) * z**2, minlength=term.n_levels)
    sd = 1 / np.sqrt(A)
    u = mode.u
    fixed = mode.eta - lam * z * u[codes]
    devc0 = u**2 + np.bincount(codes, pirls.deviance_residuals(mode.mu), minlength=term.n_levels)
    mult = np.zeros(term.n_levels)
    for zk, wk in zip(*rule):
        if zk == 0:
            mult += wk
            continue
        uk = u + zk * sd
        mu_k = pirls.family.linkinv(fixed + lam * z * uk[codes])
        devc = uk**2 + np.bincount(codes, pirls.deviance_residuals(mu_k), minlength=term.n_levels)
        mult += wk * np.exp(-0.5 * (devc - devc0) + 0.5 * zk**2)
    val = devc0.sum() + np.log(A).sum() - 2 * np.log(mult).sum()
    return float(val) if np.isfinite(val) else np.inf


def agq_constant(pirls: Pirls, mode: Mode) -> float:
    """aic − Σ d_i at the mode: what lme4's nAGQ > 1 objective leaves out of −2 log-likelihood."""
    return aic(pirls, mode.mu) - float(np.sum(pirls.deviance_residuals(mode.mu)))


def minus_two_loglik(pirls: Pirls, mode: Mode, rule=None) -> float:
    """−2 log-likelihood at the mode: the Laplace value, or (with a quadrature ``rule``) the AGQ value with the
    constant lme4 omits added back, so that the two are comparable."""
    return laplace(pirls, mode) if rule is None else agq(pirls, mode, rule) + agq_constant(pirls, mode)
