"""Estimates, standard errors, degrees of freedom and intervals of linear functions ``l'β`` of a fit's fixed effects.

For the rows l of a matrix L: the estimate ``l'β̂``, its variance ``l'Vl`` and the df of its t statistic, by one of

- ``"asymptotic"``: V = vcov(β̂), df = ∞ (z statistics, normal intervals; the only choice for a GLMM);
- ``"Satterthwaite"``: V = vcov(β̂), df by Satterthwaite's approximation (lmerTest's ``contest1D``);
- ``"Kenward-Roger"``: V = Kenward and Roger's adjusted covariance Φ_A and their df (pbkrtest's ``vcovAdj`` and
  ``Lb_ddf``), as emmeans uses both for an lmer fit.

The two finite-df methods come from :mod:`skmixed.ddf`; :func:`covariance_and_df` is the one place that asks it.
``ddf=None`` chooses as emmeans 1.8 does for an lmer fit (its options ``lmer.df``, ``pbkrtest.limit`` and
``lmerTest.limit``): Kenward–Roger for up to 3000 observations, asymptotic beyond (emmeans disables the df
computations there, for pbkrtest's n × n matrices), asymptotic for a GLMM.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .exceptions import OptionError

#: emmeans' ``pbkrtest.limit`` and ``lmerTest.limit``: above this many observations its default df are asymptotic
EMMEANS_DF_LIMIT = 3000
_ALIASES = {
    "asymptotic": "asymptotic",
    "inf": "asymptotic",
    "z": "asymptotic",
    "satterthwaite": "Satterthwaite",
    "kenwardroger": "Kenward-Roger",
    "kr": "Kenward-Roger",
}


def emmeans_df_method(result, ddf) -> str:
    """``"asymptotic"``, ``"Satterthwaite"`` or ``"Kenward-Roger"`` for what the user wrote (None: emmeans' default)."""
    glmm = getattr(result, "family", None) is not None
    if ddf is None:
        return "asymptotic" if glmm or result.nobs > EMMEANS_DF_LIMIT else "Kenward-Roger"
    key = "".join(ch for ch in ddf.lower() if ch.isalnum()) if isinstance(ddf, str) else None
    if key not in _ALIASES:
        raise OptionError(
            f"ddf must be 'Kenward-Roger' ('kr'), 'Satterthwaite', 'asymptotic' or None (emmeans' default), not {ddf!r}"
        )
    method = _ALIASES[key]
    if glmm and method != "asymptotic":
        raise OptionError(
            f"ddf={ddf!r} is for linear mixed models: a GLMM's tests and intervals are asymptotic (z); "
            "pass ddf='asymptotic' or leave ddf=None"
        )
    return method


def covariance_and_df(result, L: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """The covariance of β̂ to use with ``method`` and the df of each row of L."""
    if method == "asymptotic":
        return result.vcov.to_numpy(), np.full(len(L), np.inf)
    from . import ddf  # Satterthwaite's and Kenward–Roger's df (lmerTest, pbkrtest); loaded on first use

    return np.asarray(ddf.fixef_vcov(result, method), dtype=float), np.asarray(
        ddf.contrast_df(result, L, method), dtype=float
    )


@dataclass(frozen=True)
class LinearFunctions:
    """``estimate``, ``se`` and ``df`` of each row of L (NaN for a row marked not estimable)."""

    estimate: np.ndarray
    se: np.ndarray
    df: np.ndarray

    def interval(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """estimate ∓ q·se with q the t (or, for df = ∞, normal) quantile of (1 + level)/2."""
        q = quantile(level, self.df)
        return self.estimate - q * self.se, self.estimate + q * self.se

    def statistic(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.estimate / self.se

    def p_values(self) -> np.ndarray:
        """Two-sided p-values of the t (z) statistics."""
        from scipy import stats  # imported on use: scipy.stats is heavy for `import skmixed`

        return 2 * stats.t.sf(np.abs(self.statistic()), self.df)


def quantile(level: float, df: np.ndarray) -> np.ndarray:
    """The t quantile of (1 + level)/2 with ``df`` degrees of freedom (scipy's t is the normal for df = ∞)."""
    from scipy import stats  # imported on use: scipy.stats is heavy for `import skmixed`

    return stats.t.ppf((1 + level) / 2, np.asarray(df, dtype=float))


def linear_functions(result, L: np.ndarray, method: str, estimable: np.ndarray | None = None) -> LinearFunctions:
    """Estimates, standard errors and df of the rows of ``L`` (p columns, the fit's fixed effects)."""
    L = np.atleast_2d(np.asarray(L, dtype=float))
    ok = np.ones(len(L), dtype=bool) if estimable is None else np.asarray(estimable, dtype=bool)
    est, se, df = (np.full(len(L), np.nan) for _ in range(3))
    if ok.any():
        V, df[ok] = covariance_and_df(result, L[ok], method)
        est[ok] = L[ok] @ result.fixef.to_numpy()
        se[ok] = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", L[ok], V, L[ok]), 0))
    return LinearFunctions(est, se, df)


def check_level(level) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise OptionError(f"level must be a number between 0 and 1, such as 0.95, not {level!r}")
    return float(level)
