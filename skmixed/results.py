"""The fitted linear mixed model: estimates, likelihood, random effects, predictions.

Holds plain data only (no CHOLMOD factor), so results pickle; the factor needed for
conditional variances is rebuilt from the stored cross-products on first use.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from .design import ModelFrame, _column_or_array, _numeric_vector, encode_new, fixed_matrix
from .exceptions import DataError, OptionError
from .formula import ParsedFormula, parse_formula
from .optimize import SINGULAR_TOL, OptSummary
from .pls import CrossProducts, PlsSolution, ProfiledDeviance
from .reterms import RandomEffects
from .standardize import Standardization
from .variables import check_like_fit, model_variables, prepare_data



@dataclass
class LmerResult:
    """A linear mixed model fitted by ML or REML (lme4's ``lmerMod``)."""

    formula: str
    parsed: ParsedFormula
    frame: ModelFrame
    re: RandomEffects
    cp: CrossProducts | None  # of the standardized problem (see :mod:`skmixed.standardize`)
    solution: PlsSolution | None  # on the user's scale
    optsum: OptSummary | None
    REML: bool
    data_name: str | None = None
    standardization: Standardization | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    # --- likelihood -------------------------------------------------------
    @property
    def objective(self) -> float:
        """REML criterion for REML fits, else −2 log-likelihood (lme4's scale)."""
        return self.solution.deviance

    @property
    def nobs(self) -> int:
        return self.cp.n

    @property
    def npar(self) -> int:
        """Number of parameters: fixed effects, θ and σ."""
        return len(self.fixef) + self.re.n_theta + 1

    @property
    def loglik(self) -> float:
        return -0.5 * self.objective

    @property
    def aic(self) -> float:
        return self.objective + 2 * self.npar

    @property
    def bic(self) -> float:
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
        the user's scale: lme4's ``devfun`` (``mkLmerDevfun``), evaluated on the standardized problem."""
        std = self.standardization
        theta = np.asarray(theta, dtype=float)
        value = self._deviance_function()(theta if std is None else std.theta_tilde(theta))
        return value if std is None else std.objective(value, self.REML)

    @property
    def df_resid(self) -> int:
        return self.nobs - self.npar

    # --- estimates --------------------------------------------------------
    @property
    def theta(self) -> np.ndarray:
        return self.solution.theta

    @property
    def sigma(self) -> float:
        return self.solution.sigma

    @property
    def fixef(self) -> pd.Series:
        return pd.Series(self.solution.beta, index=self.frame.x_names, name="Estimate")

    @property
    def vcov(self) -> pd.DataFrame:
        """σ² (RX'RX)⁻¹."""
        RXinv = np.linalg.inv(self.solution.RX) if len(self.fixef) else np.zeros((0, 0))
        names = self.frame.x_names
        return pd.DataFrame(self.sigma**2 * RXinv @ RXinv.T, index=names, columns=names)

    @property
    def fixef_se(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.vcov)), index=self.frame.x_names, name="Std. Error")

    def _term_covariances(self) -> list[np.ndarray]:
        """σ² T_i T_i' for each term."""
        out = []
        for i, t in enumerate(self.re.terms):
            T = t.T(self.re.term_theta(self.theta, i))
            out.append(self.sigma**2 * T @ T.T)
        return out

    def _group_names(self) -> list[str]:
        """lme4's names for terms: a factor seen again gets ``.1``, ``.2``, ..."""
        seen: dict[str, int] = {}
        names = []
        for t in self.re.terms:
            c = seen.get(t.group, 0)
            names.append(t.group if c == 0 else f"{t.group}.{c}")
            seen[t.group] = c + 1
        return names

    @property
    def varcorr(self) -> pd.DataFrame:
        """Variance components like lme4's ``as.data.frame(VarCorr(m))``: grp, var1, var2, vcov, sdcor."""
        rows = []
        for name, t, V in zip(self._group_names(), self.re.terms, self._term_covariances()):
            sd = np.sqrt(np.diag(V))
            for j in range(t.k):
                rows.append((name, t.effects[j], None, V[j, j], sd[j]))
            for j in range(t.k):
                for l in range(j + 1, t.k):
                    corr = V[l, j] / (sd[j] * sd[l]) if sd[j] > 0 and sd[l] > 0 else np.nan
                    rows.append((name, t.effects[j], t.effects[l], V[l, j], corr))
        rows.append(("Residual", None, None, self.sigma**2, self.sigma))
        return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])

    @property
    def is_singular(self) -> bool:
        """A diagonal element of some T_i at (or within 1e-4 of) zero: a zero variance or a ±1 correlation.

        Judged on θ of the fitted problem (weights of mean 1), so that it does not depend on the weights' units."""
        lower = self.re.theta_lower
        theta = self.standardization.theta_tilde(self.theta) if self.standardization is not None else self.theta
        return bool(np.any(np.abs(theta[lower == 0]) < SINGULAR_TOL))

    def icc(self) -> pd.Series:
        """Intra-class correlation per grouping factor, for models whose terms are all random intercepts."""
        if any(t.effects != ["(Intercept)"] for t in self.re.terms):
            raise OptionError("the ICC is defined here for random-intercept models only, e.g. y ~ x + (1 | g)")
        variances = [V[0, 0] for V in self._term_covariances()]
        total = sum(variances) + self.sigma**2
        return pd.Series([v / total for v in variances], index=self._group_names(), name="ICC")

    @property
    def ngroups(self) -> dict[str, int]:
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

    def _deviance_function(self) -> ProfiledDeviance:
        if "devfun" not in self._cache:
            self._cache["devfun"] = ProfiledDeviance(self.cp, self.re, self.REML)
        return self._cache["devfun"]

    def condvar(self) -> list[np.ndarray]:
        """Per term, ℓ × k × k conditional covariances of b given y (lme4's ``condVar``)."""
        if "condvar" not in self._cache:
            std = self.standardization
            theta, sigma = (self.theta, self.sigma) if std is None else (std.theta_tilde(self.theta), self.sigma / np.sqrt(std.c))
            # b = s·b̃ and σ = s√c·σ̃: σ²ΛA⁻¹Λ' in the user's units is (sσ̃)² Λ̃A⁻¹Λ̃' = (σ/√c)² Λ̃A⁻¹Λ̃'
            self._cache["condvar"] = self._deviance_function().conditional_variances(theta, sigma)
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
        return self.frame.y - self.fitted

    @property
    def residuals_scaled(self) -> np.ndarray:
        """Pearson residuals divided by σ: (y − ŷ)·√w / σ."""
        return self.residuals * np.sqrt(self.frame.weights) / self.sigma

    def _select_terms(self, re_form) -> list[int]:
        if re_form is None:
            return list(range(len(self.re.terms)))
        if re_form is np.nan or (isinstance(re_form, str) and re_form.replace(" ", "") in ("~0", "NA", "population", "~1")):
            return []
        if not isinstance(re_form, str):
            raise OptionError("re_form must be None (all terms), '~0' / 'population' (none) or a formula like '~(1|g)'")
        text = re_form if re_form.strip().startswith("~") else f"~ {re_form}"
        bars = parse_formula(f"y {text.strip()}").bars
        wanted = {(b.group, b.lhs.replace(" ", "")) for b in bars}
        chosen = [i for i, t in enumerate(self.re.terms) if (t.group, t.bar.lhs.replace(" ", "")) in wanted]
        if len(chosen) != len(bars):
            known = ", ".join(str(t.bar) for t in self.re.terms)
            raise OptionError(f"re_form {re_form!r} names terms that are not in the model; its terms are {known}")
        return chosen

    def _new_offset(self, newdata: pd.DataFrame, offset) -> np.ndarray:
        """The offset of new data: ``offset`` (a column name or an array), the fit's offset column, and offset() terms."""
        off = np.zeros(len(newdata))
        if offset is not None:
            off += _column_or_array(offset, newdata, "offset", fit=False)
        elif self.frame.offset_array:
            raise DataError("the model was fitted with an offset array: pass offset= for the new data")
        elif self.frame.offset_column is not None:
            off += _column_or_array(self.frame.offset_column, newdata, "offset", fit=False)
        for expr in self.parsed.offsets:
            off += _numeric_vector(expr, newdata, "offset")
        return off

    def predict(self, newdata: pd.DataFrame | None = None, re_form=None, allow_new_levels: bool = True, offset=None) -> np.ndarray:
        """Predictions Xβ̂ + Zb̂ + offset; ``re_form='~0'`` gives the population (fixed-effects) prediction.

        New data are coded as the fit's data were: factors by the fitted levels and contrasts
        (a level of a fixed-effect factor the fit did not see is an error naming it, as in
        lme4), grouping factors by value.  Levels of a grouping factor not seen in the fit
        contribute nothing (the population prediction) when ``allow_new_levels`` is true;
        otherwise they raise an error naming them.  A row with a missing grouping value gets
        the population prediction; a missing covariate gives NaN.
        """
        terms = self._select_terms(re_form)
        if newdata is None:
            pred = self.frame.X @ self.solution.beta + self.frame.offset
            blocks = self.re.split_b(self.solution.b)
            for i in terms:
                t = self.re.terms[i]
                pred = pred + np.einsum("rk,rk->r", t.values, blocks[i][t.factor.codes])
            return pred
        if not isinstance(newdata, pd.DataFrame):
            raise DataError(f"newdata must be a pandas DataFrame, not {type(newdata).__name__}")
        bars = [self.re.terms[i].bar for i in terms]
        variables = model_variables(self.parsed, newdata, response=False, bars=bars)
        newdata, _ = prepare_data(variables, newdata, fit=False)
        check_like_fit(variables, newdata, self.frame.data)
        pred = fixed_matrix(self.frame.x_spec, self.frame.x_names, self.parsed.text, newdata) @ self.solution.beta
        pred = pred + self._new_offset(newdata, offset)
        blocks = self.re.split_b(self.solution.b)
        for i in terms:
            t = self.re.terms[i]
            codes = t.factor.encode(newdata)
            new = codes < 0
            if new.any() and not allow_new_levels:
                unseen = t.factor.new_levels(newdata, codes)
                if unseen:
                    raise DataError(
                        f"newdata has levels of {t.group!r} not in the fit ({', '.join(unseen[:5])}); "
                        "pass allow_new_levels=True to predict those at the population level"
                    )
            values = np.nan_to_num(np.asarray(encode_new(t.spec, newdata, f"random-effects term {t.bar}"), dtype=float))
            contrib = np.einsum("rk,rk->r", values, blocks[i][np.where(new, 0, codes)])
            pred = pred + np.where(new, 0.0, contrib)
        return pred

    def refit_ml(self) -> "LmerResult":
        """This model fitted by maximum likelihood (itself if it already is)."""
        from .lmm import refit

        return refit(self, REML=False)

    # --- display ------------------------------------------------------------
    def summary(self):
        from .summary import Summary

        return Summary(self)

    def __str__(self) -> str:
        from .summary import format_short

        return format_short(self)

    def __repr__(self) -> str:
        return self.__str__()

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()
