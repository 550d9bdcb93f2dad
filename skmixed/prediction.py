"""Predictions of a fitted mixed model on its own rows or on new data (lme4's ``predict.merMod``).

``Xβ̂ + Zb̂ + offset`` with the terms ``re_form`` keeps.  New data are coded as the fit's data were:
factors by the fitted levels and contrasts, grouping factors by value, offsets as the fit's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .exceptions import DataError, OptionError
from .formula import parse_formula
from .frame import row_values
from .model_matrix import encode_new, fixed_matrix, numeric_column
from .reterms import RandomEffects
from .variables import check_like_fit, model_variables, prepare_data


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


def predict(
    result, newdata: pd.DataFrame | None = None, re_form=None, allow_new_levels: bool = True, offset=None
) -> np.ndarray:
    """Predictions Xβ̂ + Zb̂ + offset; ``re_form='~0'`` gives the population (fixed-effects) prediction.

    New data are coded as the fit's data were: factors by the fitted levels and contrasts
    (a level of a fixed-effect factor the fit did not see is an error naming it, as in
    lme4), grouping factors by value.  Levels of a grouping factor not seen in the fit
    contribute nothing (the population prediction) when ``allow_new_levels`` is true;
    otherwise they raise an error naming them.  A row with a missing grouping value gets
    the population prediction; a missing covariate gives NaN.
    """
    re = result.re
    terms = select_terms(re, re_form)
    if newdata is None:
        pred = result.frame.X @ result.solution.beta + result.frame.offset
        blocks = re.split_b(result.solution.b)
        for i in terms:
            t = re.terms[i]
            pred = pred + np.einsum("rk,rk->r", t.values, blocks[i][t.factor.codes])
        return pred
    if not isinstance(newdata, pd.DataFrame):
        raise DataError(f"newdata must be a pandas DataFrame, not {type(newdata).__name__}")
    bars = [re.terms[i].bar for i in terms]
    variables = model_variables(result.parsed, newdata, response=False, bars=bars)
    newdata, _ = prepare_data(variables, newdata, fit=False)
    check_like_fit(variables, newdata, result.frame.data)
    pred = fixed_matrix(result.frame.x_spec, result.frame.x_names, result.parsed.text, newdata) @ result.solution.beta
    pred = pred + new_offset(result, newdata, offset)
    blocks = re.split_b(result.solution.b)
    for i in terms:
        t = re.terms[i]
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
