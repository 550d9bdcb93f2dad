"""Variance components of a fit: each term's covariance σ²TT', lme4's VarCorr table, and the ICC."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .exceptions import OptionError
from .reterms import RandomEffects


def term_covariances(re: RandomEffects, theta: np.ndarray, sigma: float) -> list[np.ndarray]:
    """σ² T_i T_i' for each term (``Var(b)`` of one level; σ = 1 for a GLMM without dispersion)."""
    out = []
    for i, t in enumerate(re.terms):
        T = t.T(re.term_theta(theta, i))
        out.append(sigma**2 * T @ T.T)
    return out


def group_names(re: RandomEffects) -> list[str]:
    """lme4's names for terms: a factor seen again gets ``.1``, ``.2``, ..."""
    seen: dict[str, int] = {}
    names = []
    for t in re.terms:
        c = seen.get(t.group, 0)
        names.append(t.group if c == 0 else f"{t.group}.{c}")
        seen[t.group] = c + 1
    return names


def varcorr_table(re: RandomEffects, theta: np.ndarray, sigma: float, residual: bool = True) -> pd.DataFrame:
    """lme4's ``as.data.frame(VarCorr(m))``: grp, var1, var2, vcov, sdcor (variances and SDs, then
    covariances and correlations), and the residual row when the model has one."""
    rows = []
    for name, t, V in zip(group_names(re), re.terms, term_covariances(re, theta, sigma)):
        sd = np.sqrt(np.diag(V))
        for j in range(t.k):
            rows.append((name, t.effects[j], None, V[j, j], sd[j]))
        for j in range(t.k if t.structure not in ("diag", "homdiag") else 0):  # as lme4's (x || g): no covariances
            for i in range(j + 1, t.k):
                corr = V[i, j] / (sd[j] * sd[i]) if sd[j] > 0 and sd[i] > 0 else np.nan
                rows.append((name, t.effects[j], t.effects[i], V[i, j], corr))
    if residual:
        rows.append(("Residual", None, None, sigma**2, sigma))
    return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])


def icc(re: RandomEffects, theta: np.ndarray, sigma: float, residual_variance: float) -> pd.Series:
    """Intra-class correlation per grouping factor: τ²ᵢ / (Σ τ² + residual variance), random intercepts only."""
    if any(t.effects != ["(Intercept)"] for t in re.terms):
        raise OptionError("the ICC is defined here for random-intercept models only, e.g. y ~ x + (1 | g)")
    variances = [V[0, 0] for V in term_covariances(re, theta, sigma)]
    total = sum(variances) + residual_variance
    return pd.Series([v / total for v in variances], index=group_names(re), name="ICC")
