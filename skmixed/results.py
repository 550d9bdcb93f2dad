"""Stage 4 for an LMM, and the fitted linear mixed model (lme4's ``mkMerMod`` and ``lmerMod``).

A result is built once, by :func:`lmer_result` from the model record, its deviance function and
the optimization summary, and not changed afterwards.  It holds plain data (no Cholesky factor), so
it pickles; the deviance function, needed for conditional variances and refits, is kept while the
result lives and rebuilt from the model record after unpickling.  Analyses that take a result live
in their own modules (:mod:`skmixed.prediction`, :mod:`skmixed.variance`, :mod:`skmixed.condvar`,
:mod:`skmixed.summary`, :mod:`skmixed.anova`); the accessors here delegate to them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from .condvar import conditional_variances
from .convergence import SINGULAR_TOL
from .deviance import ProfiledDeviance
from .exceptions import SingularFitWarning
from .fitting import optimize
from .model import LinearMixedModel
from .optimizers import OptSummary
from .pls import CrossProducts, PlsSolution
from .prediction import predict, predict_frame
from .variance import group_names, icc, term_covariances, varcorr_table


def lmer_result(model: LinearMixedModel, devfun: ProfiledDeviance, optsum: OptSummary) -> LmerResult:
    """The fitted LMM at ``optsum``'s θ: the PLS solution there (penalized RSS from the residuals), on the user's
    scale."""
    std = model.standardization
    solution = std.solution(devfun.standardized.final_solution(std.theta_tilde(optsum.theta)), model.REML)
    result = LmerResult(model=model, solution=solution, optsum=optsum, cp=model.cp)
    result._cache["devfun"] = devfun
    warn_if_singular(result)
    return result


def warn_if_singular(result) -> None:
    if result.is_singular:
        warnings.warn(
            "boundary (singular) fit: see result.is_singular and result.varcorr", SingularFitWarning, stacklevel=4
        )


@dataclass(frozen=True)
class LmerResult:
    """A linear mixed model fitted by ML or REML (lme4's ``lmerMod``).

    ``model``: the record :func:`skmixed.build` made; ``solution``: the PLS solution at the estimate,
    on the user's scale; ``optsum``: what the optimizer did; ``cp``: the cross-products of the
    (standardized) PLS problem whose solution it is.
    """

    model: object
    solution: PlsSolution
    optsum: OptSummary
    cp: CrossProducts
    _cache: dict = field(default_factory=dict, repr=False, compare=False)
    #: the deviance function :attr:`devfun` rebuilds from the model (a Dask fit's evaluates on the workers)
    _deviance_class = ProfiledDeviance

    # --- the model record ----------------------------------------------------
    @property
    def formula(self) -> str:
        """The formula as parsed (lme4's spelling)."""
        return self.model.formula

    @property
    def parsed(self):
        """The formula split into response, fixed part, random-effects terms and offsets."""
        return self.model.parsed

    @property
    def frame(self):
        """The model frame: y, X, offset and weights of the rows used, and the rows themselves."""
        return self.model.frame

    @property
    def re(self):
        """The random-effects terms: Z, the grouping factors and Λ's template."""
        return self.model.re

    @property
    def standardization(self):
        """The change of variables between the user's model and the one fitted (:mod:`skmixed.standardize`)."""
        return self.model.standardization

    @property
    def data_name(self) -> str | None:
        """The data's name, for the summary's "Data:" line (``data.attrs['name']``)."""
        return self.model.data_name

    @property
    def REML(self) -> bool:
        """Whether θ was estimated by REML (False for ML and for every GLMM)."""
        return getattr(self.model, "REML", False)

    # --- likelihood -------------------------------------------------------
    @property
    def objective(self) -> float:
        """REML criterion for REML fits, else −2 log-likelihood (lme4's scale)."""
        return self.solution.deviance

    @property
    def re_parameters(self) -> np.ndarray:
        """The terms' covariance structure parameters ψ (θ for unstructured terms; :mod:`skmixed.covstruct`)."""
        return self.re.psi_from_theta(self.theta)

    @property
    def nobs(self) -> int:
        """The number of observations used (rows with a missing value or weight 0 are left out)."""
        return self.cp.n

    @property
    def npar(self) -> int:
        """Number of parameters: fixed effects, θ (a structured term's ψ: :mod:`skmixed.re_structures`) and σ."""
        return len(self.fixef) + self.re.n_psi + 1

    @property
    def loglik(self) -> float:
        """The log-likelihood (for a REML fit, the REML criterion's: −objective/2, as lme4's logLik)."""
        return -0.5 * self.objective

    @property
    def aic(self) -> float:
        """Akaike's information criterion, objective + 2·npar."""
        return self.objective + 2 * self.npar

    @property
    def bic(self) -> float:
        """The Bayesian information criterion, objective + log(n)·npar."""
        return self.objective + np.log(self.nobs) * self.npar

    @property
    def deviance(self) -> float:
        """−2 log-likelihood; for a REML fit the profiled ML deviance at the REML estimate of θ."""
        s = self.solution
        if not self.REML:
            return s.deviance
        n = self.nobs
        log_det_w = float(np.log(self.frame.weights).sum())
        return s.ldL2 - log_det_w + n * (1.0 + np.log(2.0 * np.pi * s.pwrss / n))

    def profiled_deviance(self, theta) -> float:
        """The fit's criterion (REML or −2 log-likelihood, as ``objective``) profiled over β and σ at a θ of
        the user's scale: lme4's ``devfun`` (``mkLmerDevfun``)."""
        return self.devfun(theta)

    @property
    def devfun(self) -> ProfiledDeviance:
        """The deviance function of the fit (:func:`skmixed.deviance`), rebuilt from the model after unpickling."""
        if "devfun" not in self._cache:
            self._cache["devfun"] = self._deviance_class(self.model)
        return self._cache["devfun"]

    @property
    def df_resid(self) -> int:
        """Residual degrees of freedom, n − npar (lme4's df.resid)."""
        return self.nobs - self.npar

    # --- estimates --------------------------------------------------------
    @property
    def theta(self) -> np.ndarray:
        """θ: the relative covariance factors' elements, column-wise per term, as lme4's getME(m, "theta")."""
        return self.solution.theta

    @property
    def sigma(self) -> float:
        """The residual standard deviation σ."""
        return self.solution.sigma

    @property
    def fixef(self) -> pd.Series:
        """The fixed-effects estimates β̂, by R's column names."""
        return pd.Series(self.solution.beta, index=self.frame.x_names, name="Estimate")

    @property
    def vcov(self) -> pd.DataFrame:
        """σ² (RX'RX)⁻¹."""
        RXinv = np.linalg.inv(self.solution.RX) if len(self.fixef) else np.zeros((0, 0))
        names = self.frame.x_names
        return pd.DataFrame(self.sigma**2 * RXinv @ RXinv.T, index=names, columns=names)

    @property
    def fixef_se(self) -> pd.Series:
        """Standard errors of β̂: the square roots of vcov's diagonal."""
        return pd.Series(np.sqrt(np.diag(self.vcov)), index=self.frame.x_names, name="Std. Error")

    def _term_covariances(self) -> list[np.ndarray]:
        """σ² T_i T_i' for each term."""
        return term_covariances(self.re, self.theta, self.sigma)

    def _group_names(self) -> list[str]:
        return group_names(self.re)

    @property
    def varcorr(self) -> pd.DataFrame:
        """Variance components like lme4's ``as.data.frame(VarCorr(m))``: grp, var1, var2, vcov, sdcor."""
        return varcorr_table(self.re, self.theta, self.sigma)

    @property
    def is_singular(self) -> bool:
        """A diagonal element of some T_i at (or within 1e-4 of) zero: a zero variance or a ±1 correlation.

        Judged on θ of the fitted problem (weights of mean 1), so that it does not depend on the weights' units."""
        theta = self.standardization.theta_tilde(self.theta)
        return bool(np.any(np.abs(theta[self.re.theta_lower == 0]) < SINGULAR_TOL))

    def icc(self) -> pd.Series:
        """Intra-class correlation per grouping factor, for models whose terms are all random intercepts."""
        return icc(self.re, self.theta, self.sigma, self.sigma**2)

    @property
    def ngroups(self) -> dict[str, int]:
        """The number of levels of each grouping factor."""
        return {name: len(f.levels) for name, f in self.re.flist().items()}

    # --- random effects ---------------------------------------------------
    def _by_factor(self, arrays: list[np.ndarray]) -> dict[str, pd.DataFrame]:
        out: dict[str, pd.DataFrame] = {}
        for t, a in zip(self.re.terms, arrays):
            df = pd.DataFrame(a, index=pd.Index(t.factor.labels, name=t.group), columns=t.effects)
            out[t.group] = pd.concat([out[t.group], df], axis=1) if t.group in out else df
        return out

    @property
    def ranef(self) -> dict[str, pd.DataFrame]:
        """Conditional modes b̂ per grouping factor: a DataFrame of levels × effects."""
        return self._by_factor(self.re.split_b(self.solution.b))

    def _cholesky_at(self, theta_tilde: np.ndarray):
        """A Cholesky factor of the fitted PLS problem's A at θ̃."""
        return self.devfun.standardized.backend.cholesky_at(theta_tilde)

    def condvar(self) -> list[np.ndarray]:
        """Per term, ℓ × k × k conditional covariances of b given y (lme4's ``condVar``)."""
        if "condvar" not in self._cache:
            std = self.standardization
            # b = s·b̃ and σ = s√c·σ̃: σ²ΛA⁻¹Λ' in the user's units is (sσ̃)² Λ̃A⁻¹Λ̃' = (σ/√c)² Λ̃A⁻¹Λ̃'
            theta = std.theta_tilde(self.theta)
            chol = self._cholesky_at(theta)
            if chol is None:
                raise ArithmeticError("cannot factor A at the fitted θ")
            self._cache["condvar"] = conditional_variances(chol, self.re, theta, self.sigma / np.sqrt(std.c))
        return self._cache["condvar"]

    @property
    def ranef_sd(self) -> dict[str, pd.DataFrame]:
        """Conditional standard deviations of the random effects, shaped like :attr:`ranef`."""
        return self._by_factor([np.sqrt(np.maximum(np.diagonal(v, axis1=1, axis2=2), 0)) for v in self.condvar()])

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_cache"] = {k: v for k, v in self._cache.items() if k != "devfun"}
        return state

    # --- fitted values and prediction --------------------------------------
    @cached_property
    def fitted(self) -> np.ndarray:
        """Xβ̂ + Zb̂ + offset on the rows used by the fit."""
        return self.frame.X @ self.solution.beta + self.re.Z @ self.solution.b + self.frame.offset

    @property
    def residuals(self) -> np.ndarray:
        """y − ŷ on the rows used (response residuals)."""
        return self.frame.y - self.fitted

    @property
    def residuals_scaled(self) -> np.ndarray:
        """Pearson residuals divided by σ: (y − ŷ)·√w / σ."""
        return self.residuals * np.sqrt(self.frame.weights) / self.sigma

    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        re_form=None,
        allow_new_levels: bool = True,
        offset=None,
        se_fit: bool = False,
        interval: str | None = None,
        level: float = 0.95,
    ) -> np.ndarray | pd.DataFrame:
        """Predictions Xβ̂ + Zb̂ + offset; ``re_form='~0'`` gives the population (fixed-effects) prediction.

        New data are coded as the fit's data were: factors by the fitted levels and contrasts
        (a level of a fixed-effect factor the fit did not see is an error naming it, as in
        lme4), grouping factors by value.  Levels of a grouping factor not seen in the fit
        contribute nothing (the population prediction) when ``allow_new_levels`` is true;
        otherwise they raise an error naming them.  A row with a missing grouping value gets
        the population prediction; a missing covariate gives NaN.

        With ``se_fit=True`` or ``interval="confidence"`` / ``"prediction"`` (at ``level``) a DataFrame with
        columns ``fit`` (and ``se_fit``, ``lower``, ``upper``): the joint standard error of the prediction,
        defined in :mod:`skmixed.prediction`.
        """
        if se_fit or interval is not None:
            return predict_frame(self, newdata, re_form, allow_new_levels, offset, se_fit, interval, level)
        return predict(self, newdata, re_form=re_form, allow_new_levels=allow_new_levels, offset=offset)

    @property
    def coef(self) -> dict[str, pd.DataFrame]:
        """Per-level coefficients (lme4's ``coef``): for each grouping factor, β̂ plus each level's b̂."""
        from .coefficients import coefficients

        return coefficients(self)

    def update(self, formula: str | None = None, data: pd.DataFrame | None = None, **options):
        """This model refitted with its formula updated as R's ``update`` does (``". ~ . - x"``, ``"~ . + (1 | h)"``,
        ``"log(.) ~ ."``) and options (``REML=``, ``weights=``, ...) replaced: :func:`skmixed.update.update`."""
        from .update import update

        return update(self, formula, data, **options)

    def refit_ml(self) -> LmerResult:
        """This model fitted by maximum likelihood (itself if it already is), from the current θ."""
        if not self.REML:
            return self
        model = self.model.with_reml(False)
        devfun = ProfiledDeviance(model)
        return lmer_result(model, devfun, optimize(devfun, start=self.theta))

    # --- intervals, profiles, simulation and the bootstrap ---------------------------
    def confint(self, method: str = "profile", level: float = 0.95, nsim: int = 1000, seed=None) -> pd.DataFrame:
        """Intervals for the SDs, correlations, σ and fixed effects: ``"profile"`` (lme4's default), ``"Wald"`` or
        ``"boot"`` (``nsim`` replicates from ``seed``), as lme4's ``confint`` (:mod:`skmixed.confint`)."""
        from .confint import confint

        return confint(self, method, level, nsim, seed)

    def profile(self, which=None, alphamax: float = 0.01, delta: float | None = None, maxpts: int = 100):
        """The likelihood profiles (ζ) of the parameters ``which`` names, all by default (:mod:`skmixed.profile`)."""
        from .profile import profile

        return profile(self, which, alphamax, delta, maxpts)

    def simulate(self, nsim: int = 1, seed=None, newdata=None, re_form=None, use_u: bool = False) -> pd.DataFrame:
        """Responses simulated from the fit, with new random effects (lme4's ``simulate``; :mod:`skmixed.simulate`)."""
        from .simulate import simulate

        return simulate(self, nsim, seed, newdata, re_form, use_u)

    def bootstrap(self, nsim: int = 1000, seed=None, n_jobs=None):
        """A parametric bootstrap of ``nsim`` replicates (lme4's ``bootMer``; :mod:`skmixed.bootstrap`)."""
        from .bootstrap import bootstrap

        return bootstrap(self, nsim, seed, n_jobs)

    # --- display ------------------------------------------------------------
    def summary(self, ddf="Satterthwaite"):
        """lmerTest's summary (lme4's with ``ddf=None``): printed as R prints it, HTML in a notebook, its tables as
        DataFrames; ``ddf``: the t tests' df, ``"Satterthwaite"``, ``"Kenward-Roger"`` or None (no df)."""
        from .summary import Summary

        return Summary(self, ddf)

    def coef_table(self, ddf="Satterthwaite", vcov=None, cluster=None) -> pd.DataFrame:
        """The fixed effects' t tests by name: estimate, se, df, t, p (:func:`skmixed.summary.coef_table`); with
        ``vcov="CR2"`` (or CR0, CR1, CR1S) cluster-robust ones (:func:`skmixed.robust.robust_coef_table`)."""
        from .summary import coef_table

        if vcov is not None:
            from .robust import robust_coef_table

            return robust_coef_table(self, vcov, cluster, ddf)
        return coef_table(self, ddf)

    def robust_vcov(self, type: str = "CR2", cluster=None) -> pd.DataFrame:
        """Cluster-robust covariance of the fixed effects, by the outermost grouping factor unless ``cluster`` names
        another (clubSandwich's ``vcovCR``; :mod:`skmixed.robust`)."""
        from .robust import robust_vcov

        return robust_vcov(self, type, cluster)

    def reliability(self) -> pd.Series:
        """HLM's reliability of each random coefficient per grouping factor (:mod:`skmixed.reliability`)."""
        from .reliability import reliability

        return reliability(self)

    def equations(self, digits: int = 4):
        """The model as level-1/level-2 equations with the estimates in place, as HLM prints it (text, and LaTeX
        in Jupyter; :mod:`skmixed.equations`)."""
        from .equations import equations

        return equations(self, digits)

    def __str__(self) -> str:
        from .summary import format_short

        return format_short(self)

    def __repr__(self) -> str:
        return self.__str__()

    def _repr_html_(self) -> str:
        summary = self.summary(self._cache["summary_ddf"]) if "summary_ddf" in self._cache else self.summary()
        return summary._repr_html_()
