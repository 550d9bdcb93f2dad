"""Starting values of θ for the gradient path: moment estimates from the cross-products, no factorization.

lme4 starts every fit at Λ = I.  With a gradient, L-BFGS-B's first steps are spent walking from there to the
right scale, so we start from moment estimates instead (the objective reached is the same; only the path to it
changes).  Both estimators work on the standardized problem, whose response ỹ is the residual of the fixed
effects (:mod:`skmixed.standardize`), and need only Z'Z, Z'ỹ and ỹ'ỹ.

* Random-intercept terms, jointly (:func:`intercept_starts`): Henderson's method of fitting constants for a
  design of K intercept terms.  With P_k = Z_k N_k⁻¹Z_k' − 11'/n (N_k = diag of term k's level counts), the
  between-level sum of squares SS_k = ỹ'P_kỹ and the total SS_T = ỹ'(I − 11'/n)ỹ have expectations linear in the
  variances τ_m² (relative to nothing: on ỹ's scale) and σ²:

      E[SS_k] = Σ_m τ_m² (c_km − s_m/n) + σ²(ℓ_k − 1),     E[SS_T] = Σ_m τ_m² (n − s_m/n) + σ²(n − 1),

  with c_km = tr(Z_k N_k⁻¹Z_k' Z_mZ_m') = Σ_jl (Z_k'Z_m)²_jl / n_kj (c_kk = n), s_m = Σ_l n_ml² and ℓ_k term k's
  number of levels.  Solving these K + 1 equations gives θ_k = τ_k/σ.  Each term's own one-way analysis would take
  the other terms' variance for noise (on crossed factors it halves the smaller term's θ, and the optimizer spends
  most of its evaluations recovering it); the joint equations separate them, crossed or nested.
* Vector terms (:func:`vector_start`): per-level least squares.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .reterms import RandomEffects

#: a start keeps each τ² at least this fraction of σ², and σ² at least this fraction of ỹ's variance: inside the
#: parameter space, where the optimizer's first steps have room to move
TAU2_FLOOR, SIGMA2_FLOOR = 1e-4, 1e-3


def moment_theta(cp, re: RandomEffects, scale: np.ndarray) -> np.ndarray:
    """A starting θ (of the standardized problem): intercept terms from :func:`intercept_starts`, vector terms
    from :func:`vector_start`, other terms (a slope alone) at T = diag(1/scale), the identity in the preconditioned
    coordinates of :func:`~skmixed.pls.theta_scale`."""
    theta = re.theta_init / scale
    for i, t in enumerate(re.terms):
        if t.k > 1:
            start = vector_start(cp, re, i)
            if start is not None:
                theta[re.theta_offsets[i] : re.theta_offsets[i + 1]] = start
    terms, values = intercept_starts(cp.ZtZ, re, cp.Zty[:, None], np.array([cp.yty]))
    theta[re.theta_offsets[terms]] = values[:, 0]
    return theta


def intercept_starts(ZtZ: sp.spmatrix, re: RandomEffects, Zty: np.ndarray, yty: np.ndarray):
    """θ of the random-intercept terms for each column of ``Zty`` (q × m; ``yty``: m), by the equations of the
    module docstring.  Returns the terms' indices and their θ (terms × m).  Where the equations are singular or
    give no positive σ², each term falls back on its own one-way analysis (the others' variance then counts as
    noise)."""
    terms = np.array([i for i, t in enumerate(re.terms) if t.effects == ["(Intercept)"]], dtype=int)
    K = len(terms)
    if K == 0:
        return terms, np.zeros((0, Zty.shape[1]))
    counts = ZtZ.diagonal()
    spans = [slice(re.col_offsets[i], re.col_offsets[i + 1]) for i in terms]
    n = counts[spans[0]].sum()  # Σ of the weights: each row is at one level of every intercept term
    total = Zty[spans[0]].sum(axis=0)  # Σ wỹ
    SS = np.array([np.sum(Zty[c] ** 2 / np.maximum(counts[c], 1e-300)[:, None], axis=0) for c in spans])
    SS -= total**2 / n
    SS_T = yty - total**2 / n
    s = np.array([np.sum(counts[c] ** 2) for c in spans])
    levels = np.array([re.terms[i].n_levels for i in terms], dtype=float)
    M = np.empty((K + 1, K + 1))
    M[:K, :K] = _trace_products(_csc(ZtZ), re, terms, counts) - s[None, :] / n
    M[:K, K] = levels - 1
    M[K, :K], M[K, K] = n - s / n, n - 1
    sigma2 = np.maximum((SS_T[None, :] - SS) / n, 1e-12)  # one-way: the rest of the variance is noise ...
    tau2 = SS / n - sigma2 * levels[:, None] / n  # ... and the level means' variance less theirs is the term's
    if np.linalg.cond(M) < 1e10:
        solution = np.linalg.solve(M, np.vstack([SS, SS_T]))
        joint = solution[K] > SIGMA2_FLOOR * SS_T / (n - 1)
        tau2 = np.where(joint, solution[:K], tau2)
        sigma2 = np.where(joint, solution[K], sigma2)
    return terms, np.sqrt(np.maximum(tau2, TAU2_FLOOR * sigma2) / sigma2)


def _csc(A: sp.spmatrix) -> sp.spmatrix:
    """A in compressed columns: itself if it is (the cross-products' Z'Z is), else converted."""
    return A if getattr(A, "format", None) == "csc" else sp.csc_matrix(A)


def _trace_products(ZtZ: sp.csc_matrix, re: RandomEffects, terms: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """c_km = Σ_jl (Z_k'Z_m)²_jl / n_kj for the intercept terms k, m (c_kk = n): one pass over their columns."""
    K = len(terms)
    c = np.zeros((K, K))
    starts = np.asarray(re.col_offsets)[terms]
    ends = np.asarray(re.col_offsets)[terms + 1]
    term_of_row = np.full(ZtZ.shape[0], K)  # the intercept term whose span holds the row, K if none
    for a, (lo, hi) in enumerate(zip(starts, ends)):
        term_of_row[lo:hi] = a
    for a, (lo, hi) in enumerate(zip(starts, ends)):
        entries = slice(ZtZ.indptr[lo], ZtZ.indptr[hi])
        rows = ZtZ.indices[entries]
        column = np.repeat(np.arange(lo, hi), np.diff(ZtZ.indptr[lo : hi + 1]))
        which = term_of_row[rows]
        inside = which < K
        values = ZtZ.data[entries][inside] ** 2 / counts[column[inside]]
        c[a] = np.bincount(which[inside], values, minlength=K)  # row m, column k: (Z_k'Z_m)_jl over n_kj
    return c


def vector_start(cp, re: RandomEffects, i: int) -> np.ndarray | None:
    """Term i's θ (k > 1) from per-level least squares on the fixed effects' residuals r = y − Xβ̂ (β̂: OLS).

    With Gⱼ = Zⱼ'Zⱼ and b̂ⱼ = Gⱼ⁻¹Zⱼ'r over the m levels whose Gⱼ is well conditioned, E[b̂ⱼb̂ⱼ'] ≈ Σ + σ²Gⱼ⁻¹, so

        σ̂² = (r'r − Σⱼ r'Zⱼb̂ⱼ) / (n − p − mk),   Σ̂ = mean b̂ⱼb̂ⱼ' − σ̂² mean Gⱼ⁻¹,   T = chol(Σ̂/σ̂²)

    with Σ̂'s eigenvalues floored at 1% of its largest (a start inside the parameter space, correlations included,
    where lme4 starts from T = I).  None where too few levels or no positive variance leave an estimate.
    """
    t = re.terms[i]
    g, k, offset = t.n_levels, t.k, int(re.col_offsets[i])
    span = slice(offset, offset + t.q)
    ZtZ = _csc(cp.ZtZ)
    entries = slice(ZtZ.indptr[offset], ZtZ.indptr[offset + t.q])  # the term's columns, then its rows among them
    rows = ZtZ.indices[entries] - offset
    cols = np.repeat(np.arange(t.q), np.diff(ZtZ.indptr[offset : offset + t.q + 1]))
    inside = (rows >= 0) & (rows < t.q)
    rows, cols = rows[inside], cols[inside]
    G = np.zeros((g, k, k))  # no entry joins two levels: each row of the data is at one level of the factor
    np.add.at(G, (rows // k, rows % k, cols % k), ZtZ.data[entries][inside])  # duplicates, if any, summed
    beta = np.linalg.lstsq(cp.XtX, cp.Xty, rcond=None)[0] if cp.XtX.size else np.zeros(0)
    Zr = (cp.Zty[span] - cp.ZtX[span] @ beta).reshape(g, k)
    usable = np.linalg.det(G) > 1e-8 * np.trace(G, axis1=1, axis2=2) ** k  # λ_min/λ_max ≥ |G|/tr(G)^k > 1e-8
    m = int(usable.sum())
    if m <= k or cp.n - len(beta) - m * k <= 0:
        return None
    G_inv = np.linalg.inv(G[usable])
    b = (G_inv @ Zr[usable][:, :, None])[:, :, 0]
    sigma2 = (cp.yty - beta @ cp.Xty - np.sum(Zr[usable] * b)) / (cp.n - len(beta) - m * k)
    if not sigma2 > 0:
        return None
    w, V = np.linalg.eigh((b.T @ b / m - sigma2 * G_inv.mean(axis=0)) / sigma2)
    if not w[-1] > 0:
        return None
    T = np.linalg.cholesky((V * np.maximum(w, 1e-2 * w[-1])) @ V.T)
    return np.array([T[r, c] for r, c in t.tril])
