"""The fitted LMM with a residual covariance structure (``lmer(..., residual=...)``): nlme's ``gls`` / ``lme`` with
``correlation=`` and ``weights=``, mmrm's fit.

Its accessors are those of :class:`~skmixed.LmerResult` that make sense here: fixef, fixef_se, vcov (σ²(RX'RX)⁻¹,
from the whitened problem), varcorr, ranef (the BLUPs E[b | y] under the structure), fitted values, residuals,
predict, logLik / AIC / BIC as nlme reports them (for REML fits the REML log-likelihood, and BIC with log(n − p),
as nlme's), ``refit_ml`` for :func:`skmixed.anova`, and the summary.  Σ = σ²R(φ̂) over the time levels is
:attr:`StructuredLmerResult.residual_cov`; ``varcorr`` adds it after the random-effect rows: one row per level
(grp "Residual", var1 the level, variance and SD), then one per pair (var1, var2 the levels, covariance and
correlation), in lme4's layout of a vector term.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .convergence import SINGULAR_TOL
from .optimizers import OptSummary
from .pls import PlsSolution
from .prediction import predict
from .residual_fit import StructuredModel, refit
from .variance import group_names, varcorr_table


@dataclass(frozen=True)
class StructuredLmerResult:
    """An LMM fitted with ``residual=`` (see the module docstring); ``optsum.theta`` holds (θ, φ)."""

    model: StructuredModel
    solution: PlsSolution
    optsum: OptSummary
    devfun: object = field(repr=False, compare=False)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    # --- the model record ----------------------------------------------------
    formula = property(lambda self: self.model.formula, doc="The formula as parsed.")
    parsed = property(lambda self: self.model.parsed, doc="The formula split into its parts.")
    frame = property(lambda self: self.model.frame, doc="The model frame (y, X, the rows used).")
    re = property(lambda self: self.model.re, doc="The random-effects terms (none for a gls model).")
    REML = property(lambda self: self.model.REML, doc="Whether the fit is by REML.")
    data_name = property(lambda self: self.model.data_name, doc="The data's name (``data.attrs['name']``).")

    @property
    def structure(self) -> str:
        """The residual structure as written, e.g. ``us(visit | subject)``."""
        return str(self.model.design.spec)

    @property
    def theta(self) -> np.ndarray:
        """θ of the random effects (empty without them)."""
        return self.optsum.theta[: self.re.n_theta]

    @property
    def is_singular(self) -> bool:
        """A random effect's relative SD (a diagonal element of its T) at 0, as lme4's isSingular."""
        lower = self.re.theta_lower if self.re.terms else np.zeros(0)
        return bool(np.any(np.abs(self.theta[lower == 0]) < SINGULAR_TOL))

    @property
    def phi(self) -> np.ndarray:
        """φ of the residual structure (:mod:`skmixed.covstruct` says what each entry is)."""
        return self.optsum.theta[self.re.n_theta :]

    @property
    def start(self) -> dict:
        """The estimates as a ``start=`` for another fit of the same model."""
        return {"theta": self.theta.copy(), "phi": self.phi.copy()}

    # --- likelihood -------------------------------------------------------
    @property
    def objective(self) -> float:
        """REML criterion for REML fits, else −2 log-likelihood."""
        return self.solution.deviance

    deviance = objective
    nobs = property(lambda self: len(self.frame.y), doc="The number of observations used.")

    @property
    def ngroups(self) -> dict[str, int]:
        """Levels per grouping factor: the structure's subjects, then the random effects' factors."""
        out = {self.model.design.spec.group: len(self.model.design.subjects)}
        out.update({name: len(f.levels) for name, f in self.re.flist().items()})
        return out

    @property
    def npar(self) -> int:
        """Fixed effects, θ, the structure's φ and σ (nlme's df of logLik)."""
        return len(self.fixef) + self.re.n_theta + self.model.design.structure.n_sigma_par

    @property
    def loglik(self) -> float:
        """The log-likelihood (the REML one for a REML fit, as nlme's logLik)."""
        return -0.5 * self.objective

    @property
    def aic(self) -> float:
        return self.objective + 2 * self.npar

    @property
    def bic(self) -> float:
        """−2 logLik + npar·log(n), with n − p for a REML fit as nlme counts it."""
        n = self.nobs - (len(self.fixef) if self.REML else 0)
        return self.objective + np.log(n) * self.npar

    # --- estimates -------------------------------------------------------
    @property
    def sigma(self) -> float:
        """σ̂: Σ = σ²R(φ̂), so for a heterogeneous structure the SD at the first level."""
        return self.solution.sigma

    @property
    def fixef(self) -> pd.Series:
        return pd.Series(self.solution.beta, index=self.frame.x_names, name="Estimate")

    @property
    def vcov(self) -> pd.DataFrame:
        """σ²(X'V⁻¹X)⁻¹ with V the marginal covariance: σ²(RX'RX)⁻¹ of the whitened problem.  σ̂ is the criterion's
        (lme4's convention and nlme's lme's); nlme's gls scales an ML fit's by N/(N − p)."""
        RXinv = np.linalg.inv(self.solution.RX)
        names = self.frame.x_names
        return pd.DataFrame(self.sigma**2 * RXinv @ RXinv.T, index=names, columns=names)

    @property
    def fixef_se(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.vcov)), index=self.frame.x_names, name="Std. Error")

    def coef_table(self) -> pd.DataFrame:
        """Estimate, Std. Error and t value of each fixed effect (nlme's and lme4's Wald t)."""
        est, se = self.fixef, self.fixef_se
        return pd.DataFrame({"Estimate": est, "Std. Error": se, "t value": est / se})

    @property
    def residual_cov(self) -> pd.DataFrame:
        """Σ = σ²R(φ̂) over the levels of the time variable."""
        return self.model.design.covariance(self.phi, self.sigma)

    @property
    def residual_cor(self) -> pd.DataFrame:
        """The correlation matrix of Σ."""
        S = self.residual_cov
        sd = np.sqrt(np.diag(S))
        return S / np.outer(sd, sd)

    @property
    def varcorr(self) -> pd.DataFrame:
        """lme4's ``as.data.frame(VarCorr(m))`` of the random effects, then Σ's rows (module docstring)."""
        rows = varcorr_table(self.re, self.theta, self.sigma, residual=False) if self.re.terms else None
        S, C = self.residual_cov, self.residual_cor
        labels = list(S.index)
        own = [("Residual", a, None, S.iloc[i, i], np.sqrt(S.iloc[i, i])) for i, a in enumerate(labels)]
        own += [
            ("Residual", labels[j], labels[i], S.iloc[i, j], C.iloc[i, j])
            for j in range(len(labels))
            for i in range(j + 1, len(labels))
        ]
        table = pd.DataFrame(own, columns=["grp", "var1", "var2", "vcov", "sdcor"])
        return table if rows is None else pd.concat([rows, table], ignore_index=True)

    @property
    def ranef(self) -> dict[str, pd.DataFrame]:
        """The conditional modes of the random effects by grouping factor (empty without random effects)."""
        out = {}
        for name, t, block in zip(group_names(self.re), self.re.terms, self.re.split_b(self.solution.b)):
            frame = pd.DataFrame(block, index=t.factor.labels, columns=t.effects)
            out[name] = frame if name not in out else out[name].join(frame)
        return out

    @property
    def fitted(self) -> np.ndarray:
        """Xβ̂ + Zb̂ + offset on the rows used."""
        out = self.frame.X @ self.solution.beta + self.frame.offset
        return out + self.re.Z @ self.solution.b if self.re.terms else out

    @property
    def residuals(self) -> np.ndarray:
        return self.frame.y - self.fitted

    def predict(self, newdata=None, re_form=None, allow_new_levels: bool = True, offset=None) -> np.ndarray:
        """Xβ̂ + Zb̂ + offset for ``newdata`` (default: the fit's rows); ``re_form`` as in
        :meth:`skmixed.LmerResult.predict`.  As nlme's ``predict.gls``/``predict.lme``, the residual structure
        adds nothing (no prediction of a new visit from a subject's other residuals)."""
        return predict(self, newdata, re_form=re_form, allow_new_levels=allow_new_levels, offset=offset)

    def refit_ml(self) -> StructuredLmerResult:
        """The same model fitted by ML (itself if it is an ML fit), for likelihood-ratio tests of fixed effects."""
        return self if not self.REML else refit(self.model, False, start=self.start)

    def summary(self):
        """The fit as nlme and mmrm print it: criterion, random effects, Σ's variances and correlations, the
        fixed effects' table."""
        from .residual_summary import StructuredSummary

        return StructuredSummary(self)

    def __str__(self) -> str:
        return str(self.summary())

    def __repr__(self) -> str:
        return self.__str__()
