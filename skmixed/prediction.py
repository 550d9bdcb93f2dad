"""Predictions of a fitted mixed model on its own rows or on new data (lme4's ``predict.merMod``), with their
standard errors and intervals.

``Xβ̂ + Zb̂ + offset`` with the terms ``re_form`` keeps.  New data are coded as the fit's data were:
factors by the fitted levels and contrasts, grouping factors by value, offsets as the fit's.

Uncertainty (:func:`predict_frame`).  ``se_fit`` is the standard deviation of the prediction error
``x'β̂ + z'b̂ − (x'β + z'b)`` for the target ``x'β + z'b``, the terms ``re_form`` keeps, given the variance
parameters θ and σ (as lme4 ≥ 1.1-35's ``predict(se.fit = TRUE)``).  It is the joint one: with u spherical
(b = Λu), ``Var([ũ − u; β̂]) = σ² M⁻¹`` for the matrix of the mixed-model equations
``M = [[Λ'Z'WZΛ + I, Λ'Z'WX], [X'WZΛ, X'WX]]`` (Henderson's C⁻¹; lme4's ``vcov(full = TRUE)``), which counts
the uncertainty of β̂ and its correlation with the conditional modes, not vcov(β̂) and condVar added as if
independent.  With the factor of M, ``[[L, 0], [RZX', RX']]`` (``LL' = PAP'``), the error's variance for
``a = [Λ'z; x]`` is ``σ²(‖v₁‖² + ‖v₂‖²)``, ``v₁ = L⁻¹PΛ'z``, ``v₂ = RX'⁻¹(x − RZX'v₁)``: one sparse
triangular solve per row, no q × q inverse.  A level the fit did not see has b̂ = 0 and its b independent of the
data, so it adds its term's whole variance ``z'Σz`` (lme4 ≥ 1.1-38 pads with zeros instead, i.e. it takes the
population mean as the target for such rows).  For a GLMM the equations are those of the working response at the
mode (W the working weights, σ = 1 or the dispersion's root), as lme4 computes them.

``interval="confidence"`` is ``fit ∓ z·se_fit`` and, for an LMM, ``interval="prediction"`` is the interval of a
new observation, ``fit ∓ z·√(se_fit² + σ²)`` (unit prior weight), z the normal quantile: θ and σ are taken as
known, as in lme4's ``se.fit`` and merTools' ``predictInterval``.  On a GLMM's response scale the fit is
``g⁻¹(η̂)``, ``se_fit`` the delta method's ``|dμ/dη|·se(η̂)``, and the interval the link-scale interval's ends
mapped through ``g⁻¹`` (so it stays within the mean's range).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .exceptions import DataError, OptionError
from .formula import parse_formula
from .frame import row_values
from .linear_functions import check_level, quantile
from .model_matrix import encode_new, fixed_matrix, numeric_column
from .reterms import RandomEffects
from .variables import check_like_fit, model_variables, prepare_data
from .variance import term_covariances

#: the dense right-hand sides of one batch of solves hold at most this many numbers (160 MB)
MAX_BATCH_ENTRIES = 20_000_000


def select_terms(re: RandomEffects, re_form) -> list[int]:
    """The indices of the terms ``re_form`` keeps: None all, '~0' (or NA, 'population') none, a formula its bars."""
    if re_form is None:
        return list(range(len(re.terms)))
    if re_form is np.nan or (isinstance(re_form, str) and re_form.replace(" ", "") in ("~0", "NA", "population", "~1")):
        return []
    if not isinstance(re_form, str):
        raise OptionError("re_form must be None (all terms), '~0' / 'population' (none) or a formula like '~(1|g)'")
    text = re_form if re_form.strip().startswith("~") else f"~ {re_form}"
    bars = parse_formula(f"y {text.strip()}").bars
    wanted = {(b.group, b.lhs.replace(" ", "")) for b in bars}
    chosen = [i for i, t in enumerate(re.terms) if (t.group, t.bar.lhs.replace(" ", "")) in wanted]
    if len(chosen) != len(bars):
        known = ", ".join(str(t.bar) for t in re.terms)
        raise OptionError(f"re_form {re_form!r} names terms that are not in the model; its terms are {known}")
    return chosen


def new_offset(result, newdata: pd.DataFrame, offset) -> np.ndarray:
    """The offset of new data: ``offset`` (a column name or an array), the fit's offset column, and offset() terms."""
    off = np.zeros(len(newdata))
    if offset is not None:
        off += row_values(offset, newdata, "offset", fit=False)
    elif result.frame.offset_array:
        raise DataError("the model was fitted with an offset array: pass offset= for the new data")
    elif result.frame.offset_column is not None:
        off += row_values(result.frame.offset_column, newdata, "offset", fit=False)
    for expr in result.parsed.offsets:
        off += numeric_column(expr, newdata, "offset")
    return off


@dataclass
class _TermRows:
    """One kept random-effects term on the rows predicted: each row's level (−1: not in the fit) and values."""

    index: int
    codes: np.ndarray
    values: np.ndarray


@dataclass
class _Design:
    """The rows predicted: fixed-effects rows X, offsets, the kept terms' rows, and the rows' index."""

    X: np.ndarray
    offset: np.ndarray
    terms: list[_TermRows]
    index: pd.Index


def _design(result, newdata, re_form, allow_new_levels: bool, offset) -> _Design:
    re, frame = result.re, result.frame
    kept = select_terms(re, re_form)
    if newdata is None:
        terms = [_TermRows(i, re.terms[i].factor.codes, re.terms[i].values) for i in kept]
        return _Design(frame.X, frame.offset, terms, frame.data.index)
    if not isinstance(newdata, pd.DataFrame):
        raise DataError(f"newdata must be a pandas DataFrame, not {type(newdata).__name__}")
    bars = [re.terms[i].bar for i in kept]
    variables = model_variables(result.parsed, newdata, response=False, bars=bars)
    newdata, _ = prepare_data(variables, newdata, fit=False)
    check_like_fit(variables, newdata, frame.data)
    X = fixed_matrix(frame.x_spec, frame.x_names, result.parsed.text, newdata)
    terms = []
    for i in kept:
        t = re.terms[i]
        codes = t.factor.encode(newdata)
        if (codes < 0).any() and not allow_new_levels:
            unseen = t.factor.new_levels(newdata, codes)
            if unseen:
                raise DataError(
                    f"newdata has levels of {t.group!r} not in the fit ({', '.join(unseen[:5])}); "
                    "pass allow_new_levels=True to predict those at the population level"
                )
        values = np.nan_to_num(np.asarray(encode_new(t.spec, newdata, f"random-effects term {t.bar}"), dtype=float))
        terms.append(_TermRows(i, codes, values))
    return _Design(X, new_offset(result, newdata, offset), terms, newdata.index)


def _linear_predictor(result, design: _Design) -> np.ndarray:
    pred = design.X @ result.solution.beta + design.offset
    blocks = result.re.split_b(result.solution.b)
    for t in design.terms:
        seen = t.codes >= 0
        contrib = np.einsum("rk,rk->r", t.values, blocks[t.index][np.where(seen, t.codes, 0)])
        pred = pred + np.where(seen, contrib, 0.0)
    return pred


def predict(
    result, newdata: pd.DataFrame | None = None, re_form=None, allow_new_levels: bool = True, offset=None
) -> np.ndarray:
    """Predictions Xβ̂ + Zb̂ + offset (the rules for new data and new levels: :meth:`skmixed.LmerResult.predict`)."""
    return _linear_predictor(result, _design(result, newdata, re_form, allow_new_levels, offset))


def predict_frame(
    result,
    newdata=None,
    re_form=None,
    allow_new_levels: bool = True,
    offset=None,
    se_fit: bool = False,
    interval: str | None = None,
    level: float = 0.95,
    type: str = "link",
) -> pd.DataFrame:
    """Predictions with ``fit`` and, as asked, ``se_fit`` and ``lower``, ``upper`` (see the module docstring), in a
    DataFrame indexed as ``newdata`` (or the fit's rows)."""
    level = check_level(level)
    family = getattr(result, "family", None)
    if interval not in (None, "confidence", "prediction"):
        raise OptionError(f"interval must be None, 'confidence' or 'prediction', not {interval!r}")
    if interval == "prediction" and family is not None:
        raise OptionError(
            "a prediction interval of a GLMM's response is not a normal interval: use interval='confidence' for "
            "the mean, or simulate new responses from the fit"
        )
    design = _design(result, newdata, re_form, allow_new_levels, offset)
    eta = _linear_predictor(result, design)
    se = np.sqrt(prediction_error_variance(result, design))
    out = pd.DataFrame({"fit": eta}, index=design.index)
    if se_fit:
        out["se_fit"] = se
    if interval is not None:
        spread = se if interval == "confidence" else np.sqrt(se**2 + result.sigma**2)
        half = quantile(level, np.inf) * spread
        out["lower"], out["upper"] = eta - half, eta + half
    if type == "response" and family is not None:
        out["fit"] = family.linkinv(eta)
        if se_fit:
            out["se_fit"] = se * np.abs(family.mu_eta(eta))
        if interval is not None:
            ends = np.sort(np.vstack([family.linkinv(out.lower), family.linkinv(out.upper)]), axis=0)
            out["lower"], out["upper"] = ends
    return out


def prediction_error_variance(result, design: _Design) -> np.ndarray:
    """Var(x'β̂ + z'b̂ − x'β − z'b) for each row (see the module docstring)."""
    re, std = result.re, result.standardization
    theta_tilde = std.theta_tilde(result.theta)
    chol = result._cholesky_at(theta_tilde)
    if chol is None:
        raise ArithmeticError("cannot factor A at the fitted θ")
    # RZX = L⁻¹PΛ'Z'WX on the user's scale from the fitted problem's cross-products: Λ'Z'WX = √c Λ̃'(Z'W̃X̃)S
    lam_tilde_t = re.Lambda(theta_tilde).T.tocsc()
    RZX = np.sqrt(std.c) * chol.solve_L(np.asarray(lam_tilde_t @ result.cp.ZtX)) @ std.S if std.p else None
    RX = result.solution.RX
    if std.p and not np.all(np.isfinite(RX)):
        raise ArithmeticError("the fit has no RX (the working PLS problem at the mode) for standard errors")
    Zt = _seen_z(re, design).T.tocsc()  # q × n, the rows' z for levels seen in the fit
    lam_t = re.Lambda(result.theta).T.tocsc()
    variance = np.empty(len(design.X))
    batch = max(1, MAX_BATCH_ENTRIES // max(re.q, 1))
    for start in range(0, len(variance), batch):
        stop = min(len(variance), start + batch)
        v1 = chol.solve_L(np.asarray((lam_t @ Zt[:, start:stop]).todense()))
        total = np.einsum("ij,ij->j", v1, v1)
        if std.p:
            v2 = np.linalg.solve(RX.T, design.X[start:stop].T - RZX.T @ v1)
            total += np.einsum("ij,ij->j", v2, v2)
        variance[start:stop] = result.sigma**2 * total
    covariances = term_covariances(re, result.theta, result.sigma)
    for t in design.terms:  # a level not in the fit: its effect is independent of the data
        new = t.codes < 0
        if new.any():
            z = t.values[new]
            variance[new] += np.einsum("ij,jk,ik->i", z, covariances[t.index], z)
    return variance


def _seen_z(re: RandomEffects, design: _Design) -> sp.csr_matrix:
    """The rows' Z: for each kept term and each row whose level the fit saw, the row's values in its level's columns."""
    rows, cols, vals = [], [], []
    for t in design.terms:
        k = re.terms[t.index].k
        seen = np.flatnonzero(t.codes >= 0)
        for j in range(k):
            rows.append(seen)
            cols.append(re.col_offsets[t.index] + t.codes[seen] * k + j)
            vals.append(t.values[seen, j])
    if not rows:
        return sp.csr_matrix((len(design.X), re.q))
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(len(design.X), re.q)
    )
