"""The fitted generalized linear mixed model: :class:`LmerResult`'s estimates and displays, on a GLMM's scales.

Shared with the LMM: fixed effects, θ, variance components, conditional modes and
their variances (from the PLS problem of the working response at the mode, whose
cross-products are stored as ``cp``), prediction on the link scale, summaries.
What differs: the likelihood (Laplace or AGQ, see :mod:`skmixed.pirls`), the
response scale (``fitted``, ``predict(type="response")``), deviance residuals,
z tests, and whether there is a dispersion σ (Gamma, inverse Gaussian, Gaussian).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from .exceptions import ConvergenceWarning, OptionError
from .families import Binomial, Family, NegativeBinomial
from .glmm_fitting import hessian_covariance
from .laplace import minus_two_loglik
from .optimizers import OptSummary
from .pls import PenalizedCholesky, PlsSolution
from .prediction import predict_frame
from .results import LmerResult, warn_if_singular
from .variance import icc


def glmer_result(model, objective, optsum: OptSummary) -> GlmerResult:
    """The fitted GLMM at ``optsum``'s (θ, β) (θ for nAGQ = 0): the mode there, on the user's scale (β = S⁻¹β̃,
    RX = R̃X·S for the standardized X = X̃S); the covariance of β̂ from the Hessian where lme4 uses it."""
    pirls, frame, fam = objective.pirls, model.frame, objective.pirls.family
    mode = mode_at(objective, optsum)
    cp = pirls.working_cross_products(mode)  # the PLS problem of the working response at the mode ...
    if pirls.scalar is not None:  # ... and its RX (RX'RX: the information on β)
        working = pirls.scalar.rx(float(mode.theta[0]), pirls.X, pirls.working_weights(mode))
    else:
        working = pirls.penalized.solve(cp, mode.theta)[0]
    wrss = float(np.sum(frame.weights * (frame.y - mode.mu) ** 2 / fam.variance(mode.mu)))
    pwrss = wrss + mode.usq
    sigma = float(np.sqrt(pwrss / len(frame.y))) if fam.has_dispersion else 1.0
    solution = solution_at(objective, mode, working, pwrss, minus_two_loglik(pirls, mode, objective.rule), sigma)
    result = GlmerResult(
        model=model,
        solution=solution,
        optsum=optsum,
        cp=cp,
        family=fam,
        nAGQ=objective.nAGQ,
        hessian_vcov=hessian_vcov(objective, optsum),
        nb_theta_estimated=isinstance(model.family, NegativeBinomial) and model.family.theta is None,
    )
    keep_and_warn(result, objective, mode)
    warn_if_singular(result)
    return result


def mode_at(objective, optsum: OptSummary):
    """The conditional mode at ``optsum``'s θ and β (θ alone, β estimated with u, for nAGQ = 0)."""
    pirls, std, k = objective.pirls, objective.model.standardization, objective.model.re.n_theta
    theta = optsum.theta[:k]
    if objective.nAGQ == 0:
        return pirls.joint_mode(theta)
    return pirls.mode(theta, std.beta_tilde(optsum.theta[k:]))


def solution_at(objective, mode, working, pwrss: float, deviance: float, sigma: float) -> PlsSolution:
    """The fit's solution on the user's scale from the mode and the PLS solution of its working response
    (``working``; None where RX'RX is singular)."""
    pirls, std = objective.pirls, objective.model.standardization
    p = pirls.p
    return PlsSolution(
        theta=np.array(mode.theta, dtype=float),
        beta=std.beta(mode.beta),
        u=mode.u.copy(),
        b=pirls.lam_map.dot(pirls.lam_map.values(mode.theta), mode.u),
        pwrss=pwrss,
        ldL2=mode.ldL2,
        ldRX2=np.nan if working is None else working.ldRX2 + 2 * std.log_det_S,
        RX=np.full((p, p), np.nan) if working is None else std.RX(working.RX),
        deviance=deviance,
        sigma=sigma,
    )


def hessian_vcov(objective, optsum: OptSummary) -> np.ndarray | None:
    """The covariance of β̂ from the optimizer's Hessian, where lme4 takes it from there; else None (RX's)."""
    if optsum.hessian is None or not hessian_covariance(objective.pirls.n, len(optsum.theta), objective.nAGQ):
        return None
    V = _vcov_from_hessian(optsum.hessian, objective.model.re.n_theta)
    return None if V is None else objective.model.standardization.vcov(V)


def keep_and_warn(result, objective, mode) -> None:
    """Keep the deviance function with ``result``; warn, as lme4, when PIRLS did not converge at the estimates."""
    result._cache["devfun"] = objective
    if not mode.converged:
        warnings.warn(
            f"PIRLS did not converge at the estimates ({mode.message}): the conditional modes, and so the "
            "likelihood, may be inaccurate; look for separation or extreme values of the linear predictor",
            ConvergenceWarning,
            stacklevel=4,
        )


def _vcov_from_hessian(H: np.ndarray, k: int) -> np.ndarray | None:
    """The β block of 2 H⁻¹ for the Hessian H of the deviance in (θ, β), if positive definite (else None, warned)."""
    try:
        Hinv = np.linalg.inv(H)
    except np.linalg.LinAlgError:
        Hinv = np.full_like(H, np.nan)
    V = (Hinv + Hinv.T)[k:, k:]
    if np.all(np.isfinite(V)) and (V.size == 0 or np.linalg.eigvalsh(V).min() > 0):
        return V
    warnings.warn(
        "the covariance of the fixed effects from the finite-difference Hessian is not positive definite: "
        "using the one from RX (the working linear model at the mode) instead",
        ConvergenceWarning,
        stacklevel=5,
    )
    return None


@dataclass(frozen=True, repr=False)  # keep LmerResult's lme4-style repr
class GlmerResult(LmerResult):
    """A GLMM fitted by maximum likelihood (lme4's ``glmerMod``).

    ``objective`` is −2 log-likelihood on lme4's scale (nAGQ = 1 and 0: lme4's value;
    nAGQ > 1: lme4's value plus the constant it omits, see :mod:`skmixed.pirls`).
    ``sigma`` is the dispersion's square root for Gamma / inverse Gaussian / Gaussian
    families (lme4: √(pwrss/n)) and 1 otherwise.  ``optsum`` describes the last
    optimisation: over θ for nAGQ = 0, over (θ, β) otherwise.
    """

    family: Family | None = None
    nAGQ: int = 1
    hessian_vcov: np.ndarray | None = None  # 2 H⁻¹ for β from the finite-difference Hessian of the deviance
    nb_theta_estimated: bool = False

    uses_z = True

    def summary(self, ddf=None):
        """lme4's summary, with Wald z tests (``ddf`` is for LMMs: giving one is an error naming the alternatives)."""
        return super().summary(ddf)

    def coef_table(self, ddf=None) -> pd.DataFrame:
        """The fixed effects' Wald tests by name: estimate, se, z, p."""
        return super().coef_table(ddf)

    @property
    def has_dispersion(self) -> bool:
        return self.family.has_dispersion

    def title(self) -> str:
        if self.nAGQ > 1:
            how = f"Adaptive Gauss-Hermite Quadrature, nAGQ = {self.nAGQ}"
        elif self.nAGQ == 1:
            how = "Laplace Approximation"
        else:
            how = "nAGQ = 0: fixed effects within PIRLS"
        return (
            f"Generalized linear mixed model fit by maximum likelihood ({how}) ['glmerMod']\n"
            f" Family: {self.family.describe()}"
        )

    # --- likelihood -------------------------------------------------------
    @property
    def npar(self) -> int:
        """Fixed effects, θ, the dispersion (if any) and an estimated negative-binomial θ."""
        return len(self.fixef) + self.re.n_theta + int(self.has_dispersion) + int(self.nb_theta_estimated)

    @property
    def deviance(self) -> float:
        """−2 log-likelihood (as lme4's summary and anova use it)."""
        return self.objective

    @property
    def nb_theta(self) -> float | None:
        """The negative-binomial θ (variance μ + μ²/θ), or None for other families."""
        return self.family.theta if isinstance(self.family, NegativeBinomial) else None

    # --- estimates --------------------------------------------------------
    @property
    def vcov(self) -> pd.DataFrame:
        """Covariance of β̂: from the Hessian of the deviance in (θ, β) when lme4 would use it, else σ²(RX'RX)⁻¹."""
        if self.hessian_vcov is None:
            return super().vcov
        names = self.frame.x_names
        return pd.DataFrame(self.hessian_vcov, index=names, columns=names)

    @property
    def varcorr(self) -> pd.DataFrame:
        vc = super().varcorr
        return vc if self.has_dispersion else vc[vc.grp != "Residual"].reset_index(drop=True)

    def icc(self) -> pd.Series:
        """Latent-scale intra-class correlation: residual variance π²/3 (logit) or 1 (probit), binomial only."""
        if not isinstance(self.family, Binomial) or self.family.link.name not in ("logit", "probit"):
            raise OptionError(
                "the ICC of a GLMM is defined here on the latent scale of binomial logit or probit models"
            )
        return icc(self.re, self.theta, self.sigma, np.pi**2 / 3 if self.family.link.name == "logit" else 1.0)

    # --- fitted values, residuals, prediction ---------------------------------
    @cached_property
    def linear_predictor(self) -> np.ndarray:
        """η = Xβ̂ + Zb̂ + offset."""
        return self.frame.X @ self.solution.beta + self.re.Z @ self.solution.b + self.frame.offset

    @cached_property
    def fitted(self) -> np.ndarray:
        """Conditional means μ̂ = g⁻¹(η) (for a binomial model, probabilities)."""
        return self.family.linkinv(self.linear_predictor)

    @property
    def residuals(self) -> np.ndarray:
        """Deviance residuals sign(y − μ̂)·√dᵢ (lme4's default)."""
        y, mu = self.frame.y, self.fitted
        d = self.family.dev_resids(y, mu, self.frame.weights)
        return np.sign(y - mu) * np.sqrt(np.maximum(d, 0))

    @property
    def residuals_pearson(self) -> np.ndarray:
        """(y − μ̂)·√w / √V(μ̂)."""
        y, mu = self.frame.y, self.fitted
        return (y - mu) * np.sqrt(self.frame.weights / self.family.variance(mu))

    @property
    def residuals_scaled(self) -> np.ndarray:
        """Pearson residuals divided by σ."""
        return self.residuals_pearson / self.sigma

    def predict(
        self,
        newdata=None,
        re_form=None,
        allow_new_levels: bool = True,
        offset=None,
        type: str = "link",
        se_fit: bool = False,
        interval: str | None = None,
        level: float = 0.95,
    ):
        """Predictions on the link scale (``type="link"``, lme4's default) or as means (``type="response"``).

        ``re_form``, ``allow_new_levels``, ``offset``, ``se_fit``, ``interval`` (``"confidence"`` only) and
        ``level`` as for :meth:`LmerResult.predict`; on the response scale by the delta method.
        """
        if type not in ("link", "response"):
            raise OptionError(f"type must be 'link' or 'response', not {type!r}")
        if se_fit or interval is not None:
            return predict_frame(self, newdata, re_form, allow_new_levels, offset, se_fit, interval, level, type)
        eta = super().predict(newdata, re_form=re_form, allow_new_levels=allow_new_levels, offset=offset)
        return self.family.linkinv(eta) if type == "response" else eta

    def refit_ml(self) -> GlmerResult:
        """A GLMM is fitted by maximum likelihood already."""
        return self

    @property
    def devfun(self):
        """The GLMM's deviance function (:func:`skmixed.deviance`), rebuilt from the model after unpickling."""
        if "devfun" not in self._cache:
            from .deviance import GlmmObjective

            self._cache["devfun"] = GlmmObjective(self.model, self.nAGQ)
        return self._cache["devfun"]

    def profiled_deviance(self, theta) -> float:
        raise OptionError("a GLMM's deviance is not profiled over β: evaluate result.devfun at (θ, β) instead")

    def _cholesky_at(self, theta_tilde: np.ndarray):
        """A factor of A = Λ'Z'WZΛ + I with W at the mode (the working PLS problem's ``cp``)."""
        penalized = PenalizedCholesky(self.cp.ZtZ, self.re)
        return penalized.chol if penalized.refactor(penalized.lam.values(theta_tilde)) else None
