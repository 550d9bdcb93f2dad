"""lmerTest's ``ranova``: likelihood-ratio tests of the random-effects terms of an LMM, each reduced in turn.

As lmerTest reduces them: a term ``(lhs | g)`` whose left side has terms beyond the intercept loses each of its
marginal terms (R's ``drop.scope``) in turn, the last one leaving ``(1 | g)`` (so ``(Days | Subject)`` becomes
``(1 | Subject)``, in a row named ``Days in (Days | Subject)``); an intercept-only term is removed (a row named
``(1 | g)``).  Terms are listed as lme4's ``findbars`` lists them (``(1 | a/b)`` as ``1 | b:a`` then ``1 | a``,
``(x || g)`` as ``1 | g`` and ``0 + x | g``), and a reduction that repeats a term already in the formula leaves
one copy, as R's formula simplification does.  Each reduced model is refitted by the same criterion (REML or ML)
on the same rows, weights and offset; without random effects left, it is a linear model, whose (REML)
log-likelihood is R's ``logLik.lm``.  The statistic is 2(ℓ − ℓ₀) on the difference in parameters.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .formula import _groups, _is_bar, _join, _signed_terms, _strip, _term_factors, _union
from .rnames import from_python
from .rsyntax import Num, deparse, parse

COLUMNS = ["npar", "loglik", "aic", "lrt", "df", "p"]


def ranova(m, reduce_terms: bool = True) -> pd.DataFrame:
    """Likelihood-ratio tests of each random-effects term of the LMM ``m`` against the model with the term
    reduced (``reduce_terms=True``, lmerTest's default) or removed: rows ``<none>`` (the model itself) and one per
    reduction, columns npar, loglik, aic, lrt, df, p (lmerTest's ``ranova``)."""
    from scipy import stats

    from .ftests import check_lmm

    m = check_lmm(m, "ranova")
    response, fixed, bars = _formula_parts(m.formula)
    rows = {"<none>": (m.npar, m.loglik)}
    for name, reduced in _reductions(bars, reduce_terms):
        rows[name] = _refit(m, response, fixed, reduced)
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["npar", "loglik"])
    table["npar"] = table["npar"].astype(int)
    table["aic"] = -2 * table["loglik"] + 2 * table["npar"]
    full_npar, full_loglik = rows["<none>"]
    table["lrt"] = 2 * (full_loglik - table["loglik"])
    table["df"] = full_npar - table["npar"]
    table.loc["<none>", ["lrt", "df"]] = np.nan
    df = table["df"].where(table["df"] > 0)
    table["p"] = stats.chi2.sf(table["lrt"], df)
    table.index = pd.Index(table.index, dtype=object)
    return table[COLUMNS]


def _r(code: str) -> str:
    """A factor of formulaic's Python code as R writes it."""
    return deparse(from_python(code))


def _formula_parts(text: str) -> tuple[str, str, list[tuple[str, str]]]:
    """The response and fixed part (without offsets) as R text, and the random-effects terms as (left side,
    group) in R text, in lme4's ``findbars`` order (double bars expanded)."""
    tree = parse(text)
    fixed, bars = [], []
    for sign, term in _signed_terms(tree.right):
        if not _is_bar(term):
            if getattr(term, "func", None) != "offset":  # the model's whole offset is passed as values instead
                fixed.append((sign, deparse(term)))
            continue
        bar = _strip(term)
        groups = list(reversed(_groups(bar.right, text)))
        if bar.op == "||":
            intercept, terms = _left_terms(_strip(bar.left), text)
            lefts = (["1"] if intercept else []) + [f"0 + {label}" for label in sorted(terms, key=_order)]
        else:
            lefts = [deparse(_strip(bar.left))]
        bars += [(left, group) for group in groups for left in lefts]
    return deparse(tree.left), _join(fixed), bars


def _order(label: str) -> int:
    return label.count(":")


def _left_terms(node, text: str) -> tuple[bool, list[str]]:
    """Whether the left side of a bar has an intercept, and its term labels (R's ``terms``)."""
    intercept, terms = True, []
    for sign, term in _signed_terms(node):
        if isinstance(term, Num) and term.value in (0, 1):
            intercept = term.value == 1 and sign == "+"
        elif sign == "-":
            gone = {frozenset(f) for f in _term_factors(term, text)}
            terms = [t for t in terms if frozenset(t) not in gone]
        else:
            terms = _union(terms, _term_factors(term, text))
    return intercept, [":".join(_r(f) for f in t) for t in terms]


def _reductions(bars: list[tuple[str, str]], reduce_terms: bool):
    """(row name, the random-effects terms of the reduced model) for each reduction, in lmerTest's order."""
    for i, (left, group) in enumerate(bars):
        others = bars[:i] + bars[i + 1 :]
        intercept, terms = _left_terms(_strip(parse(left)), left)
        sets = [set(t.split(":")) for t in terms]
        scope = [t for j, t in enumerate(terms) if not any(sets[j] <= s for k, s in enumerate(sets) if k != j)]
        if not reduce_terms or not scope:
            yield f"({left} | {group})", others
            continue
        for dropped in scope:
            rest = [t for t in terms if t != dropped]
            new_left = " + ".join(([] if intercept else ["0"]) + rest) if rest else "1"
            reduced = bars[:i] + [(new_left, group)] + bars[i + 1 :]
            yield f"{dropped} in ({left} | {group})", list(dict.fromkeys(reduced))


def _refit(m, response: str, fixed: str, bars: list[tuple[str, str]]) -> tuple[int, float]:
    """npar and log-likelihood of the model with these random-effects terms, by the criterion of ``m``."""
    from .lmm import lmer

    frame = m.frame
    if not bars:
        return _linear_model(m)
    formula = f"{response} ~ {' + '.join([fixed] + [f'({a} | {g})' for a, g in bars])}"
    weights = None if np.all(frame.weights == 1) else frame.weights
    offset = frame.offset if np.any(frame.offset) else None
    fit = lmer(formula, frame.data, REML=m.REML, weights=weights, offset=offset)  # the full model's rows
    return fit.npar, fit.loglik


def _linear_model(m) -> tuple[int, float]:
    """npar and R's ``logLik.lm`` (REML if ``m`` is) of the fixed part alone, by weighted least squares."""
    frame = m.frame
    w = frame.weights
    sw = np.sqrt(w)
    X, y = frame.X * sw[:, None], (frame.y - frame.offset) * sw
    n, p = X.shape
    R = np.linalg.qr(X, mode="r") if p else np.zeros((0, 0))
    resid = y - X @ np.linalg.lstsq(X, y, rcond=None)[0] if p else y
    N = n - p if m.REML else n
    loglik = 0.5 * (np.log(w).sum() - N * (np.log(2 * np.pi) + 1 - np.log(N) + np.log(resid @ resid)))
    if m.REML and p:
        loglik -= np.log(np.abs(np.diag(R))).sum()
    return p + 1, float(loglik)
