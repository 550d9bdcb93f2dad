"""Factors in model matrices coded as R's ``model.matrix`` codes them, as a formulaic materializer.

formulaic's pandas materializer differs from R in five ways that change estimates or
predictions without a word; :class:`RMaterializer` does what R does:

* an ordered factor (an ordered pandas Categorical) gets R's polynomial contrasts
  :func:`contr_poly` (columns ``f.L``, ``f.Q``, ``f.C``, ``f^4``, ...), not treatment
  contrasts, and new data are coded with the same contrasts whatever their dtype;
* a level of new data that the fit did not see is an error naming the factor and the
  levels (formulaic warns and codes the row as missing, which is the reference level);
* a factor with a single level at fit is an error, as R's ``contrasts<-`` makes it
  (formulaic silently gives it no column);
* pandas' ``"string"`` dtype is a factor, as object columns of strings are;
* a logical column (numpy or pandas booleans) is a factor with levels FALSE and TRUE, as R's
  ``model.matrix`` codes a logical variable (columns ``flagTRUE``, or ``flagFALSE`` and ``flagTRUE``
  without an intercept); formulaic would read it as the number 0/1.

Unused levels are dropped before coding by the model frame (R's ``drop.unused.levels``),
see :func:`skmixed.variables.drop_unused_levels`.  This module imports formulaic, so it is
imported on first use (a model of plain numeric columns never needs it).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from formulaic.errors import DataMismatchWarning
from formulaic.materializers import PandasMaterializer
from formulaic.materializers.types import FactorValues
from formulaic.parser.types import Factor
from formulaic.transforms.contrasts import PolyContrasts, encode_contrasts
from formulaic.utils.cast import as_columns
from formulaic.utils.null_handling import drop_rows as drop_nulls
from interface_meta import override

from .exceptions import DataError
from .rfunctions import logical_factor


def contr_poly(k: int) -> np.ndarray:
    """R's ``contr.poly(k)``: k × (k−1) orthonormal polynomial contrasts on the scores 1..k.

    As R's ``make.poly``: the columns of the centred Vandermonde matrix ``[1, s, s², ...]``
    (s = scores − mean) are orthogonalised by QR and normalised, column j keeping the sign
    of ``R_jj`` (so the linear contrast increases); the constant column is dropped.
    """
    if k < 2:
        raise DataError(f"polynomial contrasts need at least 2 levels, not {k}")
    scores = np.arange(1.0, k + 1)
    V = np.vander(scores - scores.mean(), k, increasing=True)
    Q, R = np.linalg.qr(V)
    return (Q * np.sign(np.diag(R)))[:, 1:]


class RPolyContrasts(PolyContrasts):
    """formulaic's polynomial contrasts with R's ``contr.poly`` matrix and names (``.L``, ``.Q``, ``.C``, ``^4``).

    Never a dropped column: the full-rank coding of an ordered factor (no intercept) is the
    indicator of each level, as in R, and the reduced-rank one is :func:`contr_poly`.
    """

    @override
    def _get_coding_matrix(self, levels, reduced_rank=True, sparse=False):
        if not reduced_rank:
            return super()._get_coding_matrix(levels, reduced_rank=False, sparse=sparse)
        return contr_poly(len(levels))

    @override
    def get_drop_field(self, levels, reduced_rank=True):
        return None


def _raw(values: Any) -> Any:
    return values.__wrapped__ if isinstance(values, FactorValues) else values


def _is_ordered(values: Any) -> bool:
    dtype = getattr(values, "dtype", None)
    return isinstance(dtype, pd.CategoricalDtype) and bool(dtype.ordered)


class RMaterializer(PandasMaterializer):
    """formulaic's pandas materializer with R's factor coding (see the module docstring)."""

    REGISTER_NAME = "skmixed_r"

    @override
    def _is_categorical(self, values: Any) -> bool:
        if isinstance(getattr(values, "dtype", None), pd.StringDtype) or _is_logical(values):
            return True
        return super()._is_categorical(values)

    @override
    def _encode_evaled_factor(self, factor, spec, drop_rows, reduced_rank=False):
        if factor.metadata.kind is not Factor.Kind.CATEGORICAL or factor.metadata.encoded:
            return super()._encode_evaled_factor(factor, spec, drop_rows, reduced_rank=reduced_rank)
        state = spec.encoder_state.get(factor.expr)
        if _is_logical(_raw(factor.values)):
            factor.values = FactorValues(
                logical_factor(_raw(factor.values)).array, metadata=factor.values.__formulaic_metadata__
            )
        values = pd.Series(_raw(factor.values))
        _check_levels(factor.expr, values, state[1] if state else None)
        missing = values.isna().to_numpy()
        if not missing.any():  # always so at fit: incomplete rows are dropped before
            return super()._encode_evaled_factor(factor, spec, drop_rows, reduced_rank=reduced_rank)
        with warnings.catch_warnings():  # formulaic warns of the missing values as levels outside the fitted ones
            warnings.simplefilter("ignore", DataMismatchWarning)
            encoded = super()._encode_evaled_factor(factor, spec, drop_rows, reduced_rank=reduced_rank)
        # a missing value codes as no level, which is the reference level: make the row missing instead
        return {name: np.where(missing, np.nan, np.asarray(column, dtype=float)) for name, column in encoded.items()}

    @override
    def _encode_categorical(self, values, metadata, encoder_state, spec, drop_rows, reduced_rank=False):
        fitting = "categories" not in encoder_state
        if fitting and _is_ordered(_raw(values)):
            encoder_state["ordered"] = True
        if not encoder_state.get("ordered"):
            return super()._encode_categorical(
                values, metadata, encoder_state, spec, drop_rows, reduced_rank=reduced_rank
            )
        if drop_rows:
            values = drop_nulls(values, indices=drop_rows)
        return as_columns(
            encode_contrasts(
                values,
                contrasts=RPolyContrasts(),
                reduced_rank=reduced_rank,
                _metadata=metadata,
                _state=encoder_state,
                _spec=spec,
            )
        )


def _is_logical(values: Any) -> bool:
    dtype = getattr(values, "dtype", None)
    return dtype is not None and pd.api.types.is_bool_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype)


def _check_levels(name: str, values: pd.Series, state: dict | None) -> None:
    """At fit (no ``state``): at least two levels.  On new data: no level outside the fitted ones."""
    present = pd.unique(values.dropna())
    if state is None or "categories" not in state:
        if len(present) < 2:
            raise DataError(
                f"the factor {name!r} has {len(present)} level{'s' if len(present) != 1 else ''} "
                f"{[str(v) for v in present]} in the rows used: contrasts need a factor with 2 or more levels "
                "(R: 'contrasts can be applied only to factors with 2 or more levels'); drop it from the formula"
            )
        return
    fitted = state["categories"]
    known = set(fitted)
    new = [v for v in present if v not in known]
    if new:
        shown = ", ".join(sorted(map(str, new))[:10])
        raise DataError(
            f"factor {name!r} has new level{'s' if len(new) > 1 else ''} {shown} in the new data; the fit saw "
            f"{[str(v) for v in fitted][:10]}: a fixed effect cannot be predicted for a level it was not fitted on"
        )
