"""Checks of a model against its data before fitting: what lme4 refuses, and what makes estimates diverge.

* Identifiability (lme4's ``checkNlevels`` and ``checkZdims``): every grouping factor has at least
  two levels and, for an LMM, fewer levels than observations; a term has fewer random effects
  than observations (at most as many for a GLMM, which has no residual variance to confuse them with).
* A GLMM's response is not constant (its intercept would be infinite).
* (Quasi-)complete separation of a binomial response, or of the zero counts of a count response,
  by the fixed effects: the estimates would diverge, which lme4 reports only as convergence trouble.
"""

from __future__ import annotations

import warnings

import numpy as np

from .exceptions import DataError
from .families import Binomial, Family
from .reterms import RandomEffects


def check_identifiable(re: RandomEffects, n: int) -> None:
    """lme4's checks for an LMM: each factor has >1 and < n levels, and each term has fewer than n effects."""
    for t in re.terms:
        if t.n_levels < 2:
            raise DataError(
                f"the grouping factor {t.group!r} has only {t.n_levels} level: a random effect needs at least 2 "
                f"levels; drop the term ({t.bar}) or use {t.group!r} as a fixed effect"
            )
        if t.n_levels >= n:
            raise DataError(
                f"the grouping factor {t.group!r} has {t.n_levels} levels for {n} observations: each level needs "
                "replicates for its variance to be told apart from the residual variance"
            )
        if t.q >= n:
            raise DataError(
                f"the term {t.bar} has {t.q} random effects for {n} observations: the random-effects parameters "
                "and the residual variance are unidentifiable"
            )


def check_glmm_terms(re: RandomEffects, n: int) -> None:
    """lme4's GLMM checks: each factor has ≥ 2 levels, each term ≤ n effects (a level per row is allowed)."""
    for t in re.terms:
        if t.n_levels < 2:
            raise DataError(
                f"the grouping factor {t.group!r} has only {t.n_levels} level: a random effect needs at least 2 "
                f"levels; drop the term ({t.bar}) or use {t.group!r} as a fixed effect"
            )
        if t.q > n:
            raise DataError(f"the term {t.bar} has {t.q} random effects for {n} observations: they are unidentifiable")


def check_not_constant(y: np.ndarray, w: np.ndarray, family: Family, response: str) -> None:
    used = y[w > 0]
    if used.size and np.ptp(used) == 0:
        if isinstance(family, Binomial):
            what = "a failure" if used[0] == 0 else "a success" if used[0] == 1 else f"the proportion {used[0]:g}"
            raise DataError(
                f"the response {response!r} is constant (every observation is {what}): a binomial model has nothing "
                "to estimate and its intercept would be infinite"
            )
        raise DataError(f"the response {response!r} is constant ({used[0]:g}): there is nothing to model")


def warn_if_separated(X: np.ndarray, y: np.ndarray, w: np.ndarray, names: list[str], counts: bool = False) -> None:
    """Warn about (quasi-)complete separation: a direction of β that never mispredicts and predicts some rows perfectly.

    Solved as a linear programme on the distinct rows: maximise Σ s_i x_i'β subject to
    s_i x_i'β ≥ 0 (s = +1 for all successes, −1 for all failures, equality for mixed rows), |β| ≤ 1.
    For ``counts`` (Poisson, negative binomial) a zero count plays a failure and a positive count a mixed row:
    along such a direction the likelihood of the zeros rises to its supremum as their mean goes to 0.
    """
    from scipy.optimize import linprog

    pos = w > 0
    if not X.shape[1]:  # no fixed effects: nothing to diverge
        return
    scale = np.max(np.abs(X[pos]), axis=0)
    Xs = X[pos] / np.where(scale > 0, scale, 1.0)
    s = np.where(y[pos] <= 0, -1.0, 0.0) if counts else np.where(y[pos] >= 1, 1.0, np.where(y[pos] <= 0, -1.0, 0.0))
    table = np.ascontiguousarray(np.column_stack([Xs, s]))
    # distinct rows: np.unique on rows seen as raw bytes sorts several times faster than np.unique(axis=0)
    _, first = np.unique(table.view(np.dtype((np.void, table.itemsize * table.shape[1]))).ravel(), return_index=True)
    rows = table[np.sort(first)]
    Xu, su = rows[:, :-1], rows[:, -1]
    strict = su != 0
    if not strict.any():
        return
    # a pattern x seen with both outcomes (or as a proportion) forces x'β = 0 on any separating β: when such
    # patterns span every direction, β = 0 is the only one and the programme is not needed
    keys = np.ascontiguousarray(Xu).view(np.dtype((np.void, Xu.itemsize * Xu.shape[1]))).ravel()
    forced = np.vstack([Xu[su > 0][np.isin(keys[su > 0], keys[su < 0])], Xu[~strict]])
    if len(forced) >= X.shape[1] and np.linalg.matrix_rank(forced) == X.shape[1]:
        return
    signed = su[strict, None] * Xu[strict]
    res = linprog(
        -signed.sum(axis=0),
        A_ub=-signed,
        b_ub=np.zeros(len(signed)),
        A_eq=Xu[~strict] if (~strict).any() else None,
        b_eq=np.zeros(int((~strict).sum())) if (~strict).any() else None,
        bounds=[(-1, 1)] * X.shape[1],
        method="highs",
    )
    if res.status != 0 or -res.fun <= 1e-7:
        return
    margin = (s[:, None] * Xs) @ res.x
    n_sep = int(np.sum(margin > 1e-7))
    involved = [names[j] for j in np.flatnonzero(np.abs(res.x) > 1e-7)]
    what = "a zero count (a mean of 0)" if counts else "the outcome"
    warnings.warn(
        f"complete or quasi-complete separation: a combination of the fixed effects {involved} predicts {what} "
        f"of at least {n_sep} observations perfectly, so these estimates diverge to ±infinity and their standard "
        "errors are meaningless; drop or merge the predictors or levels concerned, or use a penalized "
        "(e.g. Bayesian) model",
        UserWarning,
        stacklevel=3,
    )


# --- optimisation -------------------------------------------------------------------
