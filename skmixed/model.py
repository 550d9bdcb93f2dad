"""Stage 1, ``build``: formula, data and options → a model record (lme4's ``lFormula`` / ``glFormula``).

The record is plain data (it pickles): the parsed formula, the model frame (y, X, offset,
weights, the rows used), the random-effects terms (Z and Λ's template), the change of variables
to the standardized problem (:mod:`skmixed.standardize`) with its X̃ (and, for an LMM, ỹ, w̃ and
the cross-products, formed once).  The later stages only read it:

    build(formula, data, ...) → deviance(model) → optimize(devfun) → make_result(model, devfun, optsum)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .blas import one_blas_thread
from .checks import check_glmm_terms, check_identifiable, check_not_constant, warn_if_separated
from .exceptions import FormulaError
from .families import Binomial, Family, NegativeBinomial, Poisson, get_family
from .formula import ParsedFormula, parse_formula
from .frame import ModelFrame, model_frame
from .options import check_data_options
from .pls import CrossProducts, cross_products
from .reterms import RandomEffects, random_effects
from .standardize import Standardization, standardize


@dataclass(frozen=True)
class LinearMixedModel:
    """``y = Xβ + Zb + ε``, ``b ~ N(0, σ²ΛΛ')``, ``ε ~ N(0, σ²W⁻¹)`` with its data, ready for :func:`~skmixed.deviance`.

    ``X``, ``y``, ``weights`` and ``cp`` are those of the standardized problem; ``frame`` holds the user's.
    """

    formula: str
    parsed: ParsedFormula
    frame: ModelFrame
    re: RandomEffects
    REML: bool
    standardization: Standardization
    X: np.ndarray
    y: np.ndarray
    weights: np.ndarray
    cp: CrossProducts
    data_name: str | None = None

    def with_reml(self, REML: bool) -> LinearMixedModel:
        """The same model for the other criterion (the data and cross-products are shared)."""
        return dataclasses.replace(self, REML=bool(REML))


@dataclass(frozen=True)
class GeneralizedLinearMixedModel:
    """``g(E[y | b]) = Xβ + Zb + offset``, ``b ~ N(0, ΛΛ')``, y | b from ``family``, with its data.

    ``X`` is the standardized X̃ (its columns orthonormal, ``X = X̃S``); the response cannot be rescaled.
    """

    formula: str
    parsed: ParsedFormula
    frame: ModelFrame
    re: RandomEffects
    family: Family
    standardization: Standardization
    X: np.ndarray
    data_name: str | None = None


@one_blas_thread
def build(formula: str, data: pd.DataFrame, *, REML: bool = True, family=None, weights=None, offset=None):
    """The model record of ``formula`` on ``data``: a :class:`LinearMixedModel`, or with ``family`` a
    :class:`GeneralizedLinearMixedModel` (fitted by PIRLS, whatever the family: ``glmer`` hands a Gaussian
    family with the identity link to ``lmer`` instead, as lme4 does).

    ``weights`` and ``offset`` are column names of ``data`` or arrays; rows with a missing value in a
    variable the formula reads, or with weight 0, are left out.
    """
    REML = check_data_options(data, REML, weights, offset)
    fam = None if family is None else get_family(family)
    parsed = parse_formula(formula)
    if not parsed.bars:
        alternative = (
            "by ordinary least squares (e.g. sklearn's LinearRegression or statsmodels' ols)"
            if fam is None
            else "as a GLM without random effects (e.g. statsmodels' glm)"
        )
        raise FormulaError(
            f"the formula {formula!r} has no random-effects term: add one such as (1 | group), or fit it {alternative}"
        )
    name = data.attrs.get("name")
    name = name if isinstance(name, str) else None
    frame = model_frame(parsed, data, weights=weights, offset=offset, binomial=isinstance(fam, Binomial))
    re = random_effects(parsed.bars, frame.data)
    if fam is None:
        return _linear(parsed, frame, re, REML, name)
    return _generalized(parsed, frame, re, fam, name)


def _linear(parsed: ParsedFormula, frame: ModelFrame, re: RandomEffects, REML: bool, name) -> LinearMixedModel:
    check_identifiable(re, len(frame.y))
    X, y, w, std = standardize(frame.X, frame.y - frame.offset, frame.weights)
    Z_rows, Z = re.Z_forms()
    scalar = re.col_offsets if all(t.k == 1 for t in re.terms) else None
    return LinearMixedModel(
        formula=parsed.text,
        parsed=parsed,
        frame=frame,
        re=re,
        REML=REML,
        standardization=std,
        X=X,
        y=y,
        weights=w,
        cp=cross_products(Z, X, y, w, Z_rows=Z_rows, scalar_offsets=scalar),
        data_name=name,
    )


def _generalized(
    parsed: ParsedFormula, frame: ModelFrame, re: RandomEffects, fam: Family, name
) -> GeneralizedLinearMixedModel:
    if re.structured:
        raise FormulaError(
            "covariance structures of random-effect terms (diag(...), cs(...), ar1(...), ...) are for lmer only; "
            "in a GLMM write diag(1 + x | g) as (1 + x || g)"
        )
    check_glmm_terms(re, len(frame.y))
    fam.check_response(frame.y, frame.weights)
    check_not_constant(frame.y, frame.weights, fam, parsed.response)
    if isinstance(fam, (Binomial, Poisson, NegativeBinomial)):
        warn_if_separated(frame.X, frame.y, frame.weights, frame.x_names, counts=not isinstance(fam, Binomial))
    X, _, _, std = standardize(frame.X, frame.y, frame.weights, response=False)
    return GeneralizedLinearMixedModel(
        formula=parsed.text,
        parsed=parsed,
        frame=frame,
        re=re,
        family=fam,
        standardization=std,
        X=X,
        data_name=name,
    )
