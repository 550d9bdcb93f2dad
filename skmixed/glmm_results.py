"""The fitted generalized linear mixed model: :class:`LmerResult`'s estimates and displays, on a GLMM's scales.

Shared with the LMM: fixed effects, θ, variance components, conditional modes and
their variances (from the PLS problem of the working response at the mode, whose
cross-products are stored as ``cp``), prediction on the link scale, summaries.
What differs: the likelihood (Laplace or AGQ, see :mod:`skmixed.pirls`), the
response scale (``fitted``, ``predict(type="response")``), deviance residuals,
z tests, and whether there is a dispersion σ (Gamma, inverse Gaussian, Gaussian).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from .exceptions import OptionError
from .families import Binomial, Family, NegativeBinomial
from .results import LmerResult


@dataclass(repr=False)  # keep LmerResult's lme4-style repr
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
            raise OptionError("the ICC of a GLMM is defined here on the latent scale of binomial logit or probit models")
        if any(t.effects != ["(Intercept)"] for t in self.re.terms):
            raise OptionError("the ICC is defined here for random-intercept models only, e.g. y ~ x + (1 | g)")
        residual = np.pi**2 / 3 if self.family.link.name == "logit" else 1.0
        variances = [V[0, 0] for V in self._term_covariances()]
        total = sum(variances) + residual
        return pd.Series([v / total for v in variances], index=self._group_names(), name="ICC")

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

    def predict(self, newdata=None, re_form=None, allow_new_levels: bool = True, offset=None, type: str = "link") -> np.ndarray:
        """Predictions on the link scale (``type="link"``, lme4's default) or as means (``type="response"``).

        ``re_form``, ``allow_new_levels`` and ``offset`` as for :meth:`LmerResult.predict`.
        """
        if type not in ("link", "response"):
            raise OptionError(f"type must be 'link' or 'response', not {type!r}")
        eta = super().predict(newdata, re_form=re_form, allow_new_levels=allow_new_levels, offset=offset)
        return self.family.linkinv(eta) if type == "response" else eta

    def refit_ml(self) -> "GlmerResult":
        """A GLMM is fitted by maximum likelihood already."""
        return self
