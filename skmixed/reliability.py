"""Reliability of the random coefficients, as HLM prints it ("Random level-1 coefficient — Reliability estimate").

Raudenbush and Bryk (*Hierarchical Linear Models*, 2nd ed., eqs. 3.53 and 3.58) define the reliability of group
j's least-squares estimate β̂_qj of its coefficient q as the share of its variance that is parameter variance,

    λ_qj = τ_qq / (τ_qq + v_qqj),   v_j = σ² (X_j'X_j)⁻¹   (the sampling covariance of the group's OLS fit),

and HLM prints the mean of λ_qj over the groups whose X_j'X_j is invertible ("based on only ... units that had
sufficient data").  X_j holds the group's rows of the random-effects columns of the factor.  The same definition
serves every level of a nested model: for a grouping factor g, v_j is the covariance of the GLS estimate of g's
coefficients from group j's data, (X_j'V_j⁻¹X_j)⁻¹, where V_j = σ²(W_j⁻¹ + Σ_h Z_hjΛ_hΛ_h'Z_hj') holds the
residual and the random effects of the factors nested in g; for a random intercept at level 3 this is Raudenbush
and Bryk's [Σ_j (τ_π + σ²/n_jk)⁻¹]⁻¹ (their chapter 8).  With prior weights, W_j enters V_j as above.

For crossed factors a group's data do not separate its coefficients from the other factor's, and no reliability
is defined: the function says so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .exceptions import OptionError


def nesting(m) -> dict[str, set[str]]:
    """For each grouping factor, the factors nested in it (each of whose levels lies within one of its levels)."""
    flist = m.re.flist()
    inside: dict[str, set[str]] = {g: set() for g in flist}
    for g, outer in flist.items():
        for h, inner in flist.items():
            if h != g and (pd.Series(outer.codes).groupby(inner.codes).nunique() == 1).all():
                inside[g].add(h)
    return inside


def _check_hierarchical(m, inside: dict[str, set[str]]) -> None:
    names = list(inside)
    for i, g in enumerate(names):
        for h in names[i + 1 :]:
            if h not in inside[g] and g not in inside[h]:
                raise OptionError(
                    f"the grouping factors {g!r} and {h!r} are crossed: a group's data do not separate its "
                    "coefficients from the other factor's, and reliabilities are defined for nested (hierarchical) "
                    "models only"
                )


def _factor_reliability(m, g: str, lower: set[str]) -> tuple[np.ndarray, int]:
    """Mean λ_q over the groups of ``g`` with enough data, and how many groups that is."""
    re = m.re
    idx = [i for i, t in enumerate(re.terms) if t.group == g]
    X = np.hstack([re.terms[i].values for i in idx])
    tau = _block_diag([m._term_covariances()[i] for i in idx])
    lower_cols = np.concatenate(
        [np.arange(re.col_offsets[i], re.col_offsets[i + 1]) for i, t in enumerate(re.terms) if t.group in lower]
        or [np.zeros(0, dtype=int)]
    )
    ZL = (re.Z @ re.Lambda(m.theta)).tocsc()[:, lower_cols].tocsr()
    codes = re.flist()[g].codes
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(codes.max() + 2))
    sigma2, weights, k = m.sigma**2, m.frame.weights, X.shape[1]
    total, used = np.zeros(k), 0
    for j in range(len(bounds) - 1):
        rows = order[bounds[j] : bounds[j + 1]]
        info = _information(X[rows], ZL[rows], weights[rows]) / sigma2
        if len(rows) <= k or np.linalg.matrix_rank(info, tol=1e-10 * max(np.abs(info).max(), 1e-300)) < k:
            continue
        v = np.diag(np.linalg.inv(info))
        total += np.diag(tau) / (np.diag(tau) + v)
        used += 1
    return (total / used if used else np.full(k, np.nan)), used


def _information(X: np.ndarray, zl, w: np.ndarray) -> np.ndarray:
    """X'(W⁻¹ + UU')⁻¹X by Woodbury's identity, U = the group's rows of ZΛ of the nested factors: the group's
    outer factors can be large (a district's students) while U has few columns (its schools' effects)."""
    U = zl[:, np.unique(zl.indices)].toarray()
    WX = w[:, None] * X
    if U.shape[1] == 0:
        return X.T @ WX
    UWX = U.T @ WX
    S = np.eye(U.shape[1]) + U.T @ (w[:, None] * U)
    return X.T @ WX - UWX.T @ np.linalg.solve(S, UWX)


def _block_diag(blocks: list[np.ndarray]) -> np.ndarray:
    k = sum(b.shape[0] for b in blocks)
    out, start = np.zeros((k, k)), 0
    for b in blocks:
        out[start : start + b.shape[0], start : start + b.shape[0]] = b
        start += b.shape[0]
    return out


def reliability(m) -> pd.Series:
    """The mean reliability of each random coefficient per grouping factor: a Series indexed by (group,
    coefficient), ``.attrs["units"]`` the number of groups with enough data and in all, per factor."""
    inside = nesting(m)
    _check_hierarchical(m, inside)
    values, index, units = [], [], {}
    for g, factor in m.re.flist().items():
        lam, used = _factor_reliability(m, g, inside[g])
        effects = [e for t in m.re.terms if t.group == g for e in t.effects]
        values.extend(lam)
        index.extend((g, e) for e in effects)
        units[g] = (used, len(factor.levels))
    out = pd.Series(values, index=pd.MultiIndex.from_tuples(index, names=["group", "coefficient"]), name="reliability")
    out.attrs["units"] = units
    return out
