"""t and F tests of an LMM's fixed effects with Satterthwaite's or Kenward–Roger's df: lmerTest's ``contest``
(``contest1D``, ``contestMD``), its ``anova(m, type=)`` F table and ``drop1``.

A t test of l'β = rhs has estimate l'β̂, se √(l'Vl) and the method's df (:mod:`skmixed.ddf`); for Kenward–Roger V is
the adjusted Φ_A (:mod:`skmixed.kenward_roger`).  An F test of Lβ = rhs (L of q rows) with Satterthwaite's method
is lmerTest's: the eigenvectors of LVL' with eigenvalues above √ε times the largest give q' independent t
statistics tₘ with df νₘ; F = Σtₘ²/q' and its df is

    ν = 2E/(E − q'),  E = Σ νₘ/(νₘ − 2)     (2 if some νₘ ≤ 2; the mean if all νₘ agree to 10⁻⁸),

a 1-row L being its t test squared.  With Kenward–Roger's method F is pbkrtest's scaled statistic λ·F̃, with F̃
from Φ_A.  Tables report "Sum Sq" = F̃σ̂²q' and "Mean Sq" = F̃σ̂² as lmerTest does (F̃ = F for Satterthwaite).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .ddf import ddf_method, satterthwaite
from .exceptions import OptionError
from .options import describe_value

T_COLUMNS = ["estimate", "se", "df", "t", "p"]
F_COLUMNS = ["sum_sq", "mean_sq", "num_df", "den_df", "F", "p"]
_TYPES = {"1": 1, "I": 1, "2": 2, "II": 2, "3": 3, "III": 3}


def check_lmm(m, what: str):
    """``m`` if it is an LMM fitted by skmixed.lmer, else an OptionError naming the alternatives."""
    from .glmm_results import GlmerResult
    from .results import LmerResult

    if isinstance(m, GlmerResult):
        raise OptionError(
            f"{what} with Satterthwaite's or Kenward-Roger's df is for linear mixed models; a GLMM's fixed effects "
            "have Wald z tests (m.coef_table(), m.summary()) and likelihood-ratio tests (skmixed.anova(m0, m1))"
        )
    if not isinstance(m, LmerResult):
        hint = ": pass the fitted estimator's result_" if hasattr(m, "result_") or hasattr(m, "fit") else ""
        raise OptionError(f"{what} takes a model fitted by skmixed.lmer, not {describe_value(m)}{hint}")
    return m


def _contrast_matrix(m, L) -> np.ndarray:
    """L as a float matrix with one column per fixed effect (a Series or DataFrame with fixed-effect names is
    aligned by name, a missing name weighing 0)."""
    names = list(m.fixef.index)
    labels = L.columns if isinstance(L, pd.DataFrame) else L.index if isinstance(L, pd.Series) else None
    if labels is not None and not isinstance(labels, pd.RangeIndex):
        unknown = [str(x) for x in labels if x not in names]
        if unknown:
            raise OptionError(f"the contrast names {unknown}, which are not fixed effects of the model: {names}")
        frame = isinstance(L, pd.DataFrame)
        L = L.reindex(columns=names, fill_value=0.0) if frame else L.reindex(names, fill_value=0.0)
    try:
        L = np.array(L, dtype=float)
    except (TypeError, ValueError):
        raise OptionError(f"L must be numbers, one per fixed effect ({len(names)}), not {describe_value(L)}") from None
    if L.ndim == 1:
        L = L[None, :]
    if L.ndim != 2 or L.shape[1] != len(names):
        raise OptionError(f"L must have one column per fixed effect ({len(names)}: {names}), not shape {np.shape(L)}")
    if not np.all(np.isfinite(L)):
        raise OptionError("L has missing or infinite values")
    return L


def t_tests(m, L: np.ndarray, rhs: np.ndarray, method: str) -> pd.DataFrame:
    """One t test per row of L (lmerTest's ``contest1D``): estimate, se, df, t, p."""
    from scipy import stats

    beta = m.fixef.to_numpy()
    estimate = L @ beta
    if method == "Kenward-Roger":
        from .kenward_roger import kenward_roger

        kr = kenward_roger(m)
        variance = np.einsum("ij,jk,ik->i", L, kr.vcov_adjusted, L)
        df = kr.t_df(L)
    else:
        variance, df = satterthwaite(m).variance_and_df(L)
    se = np.sqrt(variance)
    t = (estimate - rhs) / se
    return pd.DataFrame({"estimate": estimate, "se": se, "df": df, "t": t, "p": 2 * stats.t.sf(np.abs(t), df)})


def fstat_ddf(nu: np.ndarray, tol: float = 1e-8) -> float:
    """lmerTest's ``get_Fstat_ddf``: the df of a mean of squared t statistics with df ``nu``."""
    if len(nu) == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < tol):
        return float(np.mean(nu))
    if np.any(nu <= 2):
        return 2.0
    E = np.sum(nu / (nu - 2))
    return float(2 * E / (E - len(nu)))


def f_test(m, L: np.ndarray, rhs: np.ndarray, method: str) -> dict:
    """One F test of Lβ = rhs (lmerTest's ``contestMD``): sum_sq, mean_sq, num_df, den_df, F, p."""
    from scipy import stats

    nan = dict.fromkeys(F_COLUMNS, np.nan)
    if L.shape[0] == 0 or not np.all(np.isfinite(L)):
        return nan
    beta = m.fixef.to_numpy()
    sigma2 = m.sigma**2
    if method == "Kenward-Roger":
        from .kenward_roger import kenward_roger

        F_unscaled, scaling, q, df = kenward_roger(m).ftest(L, beta, rhs)
        F = F_unscaled * scaling
    else:
        VL = L @ m.vcov.to_numpy() @ L.T
        values, vectors = np.linalg.eigh((VL + VL.T) / 2)
        values, vectors = values[::-1], vectors[:, ::-1]
        keep = values > max(np.sqrt(np.finfo(float).eps) * values[0], 0)
        q = int(keep.sum())
        if q == 0:
            return nan
        PL = vectors[:, keep].T @ L
        t = t_tests(m, PL, PL @ np.linalg.pinv(L) @ rhs, method)  # β − L⁺rhs, as lmerTest adjusts β
        F = F_unscaled = float(np.mean(t["t"] ** 2))
        df = fstat_ddf(t["df"].to_numpy())
    return {
        "sum_sq": F_unscaled * sigma2 * q,
        "mean_sq": F_unscaled * sigma2,
        "num_df": q,
        "den_df": df,
        "F": F,
        "p": float(stats.f.sf(F, q, df)),
    }


def contest(m, L, rhs=0.0, ddf: str = "Satterthwaite", joint: bool = True) -> pd.DataFrame:
    """Test contrasts of the fixed effects of an LMM with Satterthwaite's or Kenward–Roger's df (lmerTest's
    ``contest``).

    ``L`` is a vector (one weight per fixed effect, or a Series by name: the t test of l'β = rhs, lmerTest's
    ``contest1D``) or a matrix (a DataFrame with fixed-effect columns: the F test of Lβ = rhs, lmerTest's
    ``contestMD``; with ``joint=False``, a t test per row).  A t test returns the columns estimate, se, df, t,
    p; an F test sum_sq, mean_sq, num_df, den_df, F, p.  ``ddf`` is ``"Satterthwaite"`` or ``"Kenward-Roger"``.
    """
    m = check_lmm(m, "contest")
    method = ddf_method(ddf, allow_none=False)
    vector = np.ndim(L) == 1 or isinstance(L, pd.Series)
    Lm = _contrast_matrix(m, L)
    try:
        rhs = np.atleast_1d(np.asarray(rhs, dtype=float))
    except (TypeError, ValueError):
        raise OptionError(f"rhs must be numbers, not {rhs!r}") from None
    if not np.all(np.isfinite(rhs)):
        raise OptionError("rhs must be finite numbers")
    if rhs.ndim != 1 or len(rhs) not in (1, Lm.shape[0]):
        raise OptionError(f"rhs must be one number or one per row of L ({Lm.shape[0]}), not {len(rhs)}")
    rhs = np.broadcast_to(rhs, (Lm.shape[0],)).copy()
    index = list(L.index) if isinstance(L, pd.DataFrame) else None
    if vector or not joint:
        table = t_tests(m, Lm, rhs, method)
        if index is not None:
            table.index = index
        return table
    return pd.DataFrame([f_test(m, Lm, rhs, method)], columns=F_COLUMNS)


def anova_table(m, type=3, ddf: str = "Satterthwaite") -> pd.DataFrame:
    """lmerTest's ``anova(m, type=, ddf=)``: an F test per term (see :func:`skmixed.anova`)."""
    from . import hypotheses
    from .fixed_terms import FixedTerms

    m = check_lmm(m, "anova of one model")
    key = str(type).upper()
    if key not in _TYPES:
        raise OptionError(f"type must be 1, 2 or 3 (or 'I', 'II', 'III'), not {type!r}")
    method = ddf_method(ddf, allow_none=False)
    ft = FixedTerms(m)
    build = {1: hypotheses.type1, 2: hypotheses.type2, 3: hypotheses.type3}[_TYPES[key]]
    return _table(m, build(ft), method)


def _table(m, hypotheses: dict, method: str) -> pd.DataFrame:
    rows = [f_test(m, L, np.zeros(L.shape[0]), method) for L in hypotheses.values()]
    return pd.DataFrame(rows, index=pd.Index(list(hypotheses), dtype=object), columns=F_COLUMNS)


def drop1(m, ddf: str = "Satterthwaite") -> pd.DataFrame:
    """lmerTest's ``drop1``: the F test of each term that may be dropped (no other term contains its variables:
    R's ``drop.scope``) against the model without it, with the columns of the F table."""
    from . import hypotheses
    from .fixed_terms import FixedTerms

    m = check_lmm(m, "drop1")
    method = ddf_method(ddf, allow_none=False)
    ft = FixedTerms(m)
    labels = ft.marginal()
    if m.frame.dropped_columns:
        design, owner = ft.design_with_aliased()
        tests = hypotheses.drop1_hypotheses(ft, design, owner, labels)
    else:
        tests = hypotheses.marginal(ft, labels) if labels else {}
    return _table(m, tests, method)
