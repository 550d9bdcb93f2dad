"""What every skmixed estimator shares: input checks, the two input modes, fitted attributes, the linear predictor.

A subclass says only what differs: how the target is checked (:meth:`_check_target`),
which core fits the mixed model (:meth:`_fit_mixed`: ``lmer`` or ``glmer``), how the model
without random effects is fitted (:meth:`_fit_fixed`), and how the linear predictor
``η = Xβ̂ + Zb̂`` becomes a prediction.
"""

from __future__ import annotations

import warnings
from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import (
    _check_sample_weight,
    check_array,
    check_consistent_length,
    check_is_fitted,
    validate_data,
)

from ..dask import is_dask_frame
from ..exceptions import DataError, OptionError, SingularFitWarning
from ..formula import parse_formula
from ..glm import GlmFit
from ..variables import column, model_variables, present
from .encoding import (
    ArrayEncoding,
    FormulaEncoding,
    check_columns,
    estimable_grouping_factors,
    formula_columns,
    group_frame,
    random_slope_indices,
)

INTERCEPT = "(Intercept)"


def glm_covariance(X: np.ndarray, weights: np.ndarray, fit: GlmFit) -> np.ndarray:
    """Cov(β̂) of a GLM with an intercept: φ (X₁'WX₁)⁻¹, X₁ = [1, X], W = w μ'(η)²/V(μ) at the fit (R's
    ``vcov.glm``); a pseudo-inverse where X₁ is rank deficient."""
    X1 = np.column_stack([np.ones(len(X)), X])
    eta = X1 @ fit.beta
    family = fit.family
    W = weights * family.mu_eta(eta) ** 2 / family.variance(family.linkinv(eta))
    return fit.dispersion * np.linalg.pinv(X1.T @ (W[:, None] * X1), hermitian=True)


class MixedModelEstimator(BaseEstimator):
    """Shared machinery of :class:`MixedLM`, :class:`GLMM` and :class:`GLMMClassifier`.

    Model: ``η = Xβ + Zb``, ``b ~ N(0, σ²ΛΛ')``; Z holds, per grouping factor, a random
    intercept (and the ``random_slopes`` columns of X) for each of its levels.

    Hyper-parameters are checked by scikit-learn against ``_parameter_constraints`` when ``fit``
    starts (an ``InvalidParameterError``, a ValueError); subclasses extend these constraints.
    """

    _parameter_constraints: dict = {
        "formula": [str, None],
        "random_slopes": [None, str, Interval(Integral, 0, None, closed="left"), "array-like"],
    }

    # --- hooks ------------------------------------------------------------------
    def _check_target(self, y: np.ndarray) -> np.ndarray:
        """The validated target as the float response the core fits (classifiers also set ``classes_``).

        A regressor's y must be finite numbers (booleans count as 0/1)."""
        y = np.asarray(y)
        if y.dtype.kind not in "biuf":
            try:
                y = y.astype(float)
            except (TypeError, ValueError):
                raise DataError(f"y must hold numbers, not values of dtype {y.dtype}: convert it first") from None
        y = y.astype(float)
        if not np.all(np.isfinite(y)):
            raise DataError("y has missing or infinite values: remove those rows first")
        return y

    def _fit_mixed(self, formula: str, data: pd.DataFrame, weights):
        """Fit the mixed model ``formula`` on ``data`` with ``lmer``/``glmer``; return its result."""
        raise NotImplementedError

    def _fit_fixed(self, X: np.ndarray, y: np.ndarray, weights: np.ndarray) -> GlmFit:
        """Fit ``η = β₀ + Xβ`` with no random effects (:func:`skmixed.glm.fit_glm` with the estimator's family)."""
        raise NotImplementedError

    def _max_levels(self, n: int) -> int:
        """Most levels a grouping factor may have in a fit on n rows."""
        return n - 1

    def _validate_X_y(self, X, y):
        return validate_data(self, X, y, y_numeric=True)

    # --- fit --------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, groups=None, sample_weight=None):
        """Fit the model; ``groups`` (array mode) holds one column per grouping factor.

        Without ``groups`` in array mode the model has no random effects: an ordinary
        (generalised) linear model, so that the estimator works in any sklearn setting.
        """
        self.results_ = None  # set by a formula-mode fit to several responses
        if self.formula is not None:
            return self._fit_formula(X, y, groups, sample_weight)
        X, y = self._validate_X_y(X, y)
        if X.dtype.kind not in "biuf":
            raise DataError(
                f"X must hold numbers in array mode, not values of dtype {X.dtype}: convert its columns, "
                "or pass a DataFrame and a formula"
            )
        y = self._check_target(y)
        weights = None if sample_weight is None else _check_sample_weight(sample_weight, X, ensure_non_negative=True)
        n, p = X.shape
        named = hasattr(self, "feature_names_in_")
        feature_names = [str(c) for c in self.feature_names_in_] if named else [f"x{j}" for j in range(p)]
        slopes = random_slope_indices(self.random_slopes, feature_names if named else None, p)
        if groups is None:
            if slopes:
                raise OptionError(
                    "random_slopes needs groups: pass fit(X, y, groups=...) (in a Pipeline: step__groups=..., "
                    "or set_fit_request(groups=True) with metadata routing)"
                )
            return self._finish_fixed(X, y, weights, ArrayEncoding(feature_names, [], [], []))
        gframe, gnames = group_frame(groups, n)
        kept = estimable_grouping_factors(gframe, gnames, n, self._max_levels(n))
        encoding = ArrayEncoding(feature_names, gnames, slopes, kept)
        if not kept:
            return self._finish_fixed(X, y, weights, encoding)
        result = self._fit_mixed(encoding.formula(), encoding.frame(X, gframe, y), weights)
        return self._finish_mixed(result, encoding)

    def _fit_formula(self, X, y, groups, sample_weight):
        if groups is not None:
            raise OptionError(
                "in formula mode the grouping columns travel inside X and the formula names them: "
                "do not pass groups (and do not request it with set_fit_request)"
            )
        if self.random_slopes is not None:
            raise OptionError(
                "random_slopes is for array mode; in formula mode write the slopes in the formula, e.g. (1 + x | g)"
            )
        if is_dask_frame(X):  # the rows stay on the workers (skmixed.dask.estimators)
            from ..dask.estimators import fit_formula

            result, encoding = fit_formula(self, FormulaEncoding, X, y, sample_weight)
            encoding.columns = formula_columns(result, X._meta)
            return self._finish_mixed(result, encoding)
        encoding = FormulaEncoding.from_text(self.formula, X)
        validate_data(self, X, skip_check_array=True)
        self._check_no_missing(X, encoding.formula)
        names = list(y.columns) if isinstance(y, pd.DataFrame) else None
        y = check_array(y, ensure_2d=False, dtype=None, input_name="y")
        many = y.ndim == 2 and hasattr(self, "_fit_many")
        if y.ndim != 1 and not many:
            raise DataError(f"y must be 1-D (one response value per row of X), not of shape {y.shape}")
        check_consistent_length(X, y)
        y = self._check_target(y)
        weights = None if sample_weight is None else _check_sample_weight(sample_weight, X, ensure_non_negative=True)
        if many:  # several responses, one column each (a multi-output regressor): the design is shared
            return self._fit_many(encoding, X, pd.DataFrame(y, columns=names), weights)
        result = self._fit_mixed(encoding.formula, encoding.frame(X, y), weights)
        encoding.columns = formula_columns(result)
        return self._finish_mixed(result, encoding)

    def _check_no_missing(self, X: pd.DataFrame, formula: str) -> None:
        """Formula mode: no missing value in the columns of X the formula reads, in ``fit`` as in ``predict``.

        scikit-learn's convention for an estimator that cannot predict a row with a missing
        value: raise a ValueError naming NaN, so that ``fit`` cannot quietly drop rows that
        ``predict`` would then have to answer with NaN (and ``cross_val_score`` score as NaN).
        """
        variables = model_variables(parse_formula(formula), X, response=False)
        missing = {}
        for name in [*variables.values, *variables.groups]:
            n_missing = int((~present(column(X, name, "formula variable"))).sum())
            if n_missing:
                missing[name] = n_missing
        if missing:
            where = ", ".join(f"{name!r} ({n} row{'s' if n > 1 else ''})" for name, n in missing.items())
            raise DataError(
                f"X has missing values (NaN) in the columns {where}: {type(self).__name__} does not accept NaN in the "
                "columns its formula reads, in fit as in predict; impute them (e.g. SimpleImputer in a Pipeline) or "
                "drop those rows (skmixed.lmer / glmer drop incomplete rows themselves)"
            )

    def _finish_fixed(self, X, y, weights, encoding: ArrayEncoding):
        weights = np.ones(len(y)) if weights is None else weights
        fit = self._fit_fixed(X, y, weights)
        self._beta_cov, self._dispersion = glm_covariance(X, weights, fit), fit.dispersion
        self.encoding_ = encoding
        self.result_ = None
        self.intercept_, self.coef_ = float(fit.beta[0]), np.asarray(fit.beta[1:], dtype=float)
        self.random_effects_ = {}
        self.variance_components_ = pd.DataFrame(
            [("Residual", None, None, fit.dispersion, np.sqrt(fit.dispersion))],
            columns=["grp", "var1", "var2", "vcov", "sdcor"],
        )
        return self

    def _finish_mixed(self, result, encoding):
        self.encoding_ = encoding
        self.result_ = result
        self._dispersion = result.sigma**2  # σ² of an LMM; a GLMM's dispersion (1 for binomial and Poisson)
        fixef = result.fixef
        self.intercept_ = float(fixef.get(INTERCEPT, 0.0))
        if isinstance(encoding, ArrayEncoding):
            self.coef_ = np.array([fixef.get(c, 0.0) for c in encoding.feature_columns], dtype=float)
            rename = encoding.user_name
        else:
            self.coef_ = fixef.drop(INTERCEPT, errors="ignore").to_numpy(dtype=float)
            rename = str
        self.random_effects_ = {}
        for group, blups in result.ranef.items():
            blups = blups.rename(columns=rename)
            blups.index.name = rename(group)
            self.random_effects_[rename(group)] = blups
        vc = result.varcorr.copy()
        for col in ("grp", "var1", "var2"):
            vc[col] = [rename(v) if isinstance(v, str) else None for v in vc[col]]
        self.variance_components_ = vc
        return self

    # --- prediction -------------------------------------------------------------
    def _linear_predictor(self, X, groups=None) -> np.ndarray:
        """η̂ = Xβ̂ + Zb̂ with the BLUPs of levels seen in the fit; unseen levels (or no groups) add nothing.

        ``result_.predict`` gives η: lmer's predictions, glmer's on its default link scale.
        """
        check_is_fitted(self)
        encoding = self.encoding_
        if isinstance(encoding, FormulaEncoding):
            if groups is not None:
                raise OptionError("in formula mode the grouping columns travel inside X: do not pass groups to predict")
            if is_dask_frame(X):  # a lazy Dask Series
                check_columns(X._meta, encoding.columns)
                return self.result_.predict(X, allow_new_levels=True)
            data = encoding.frame(X)
            check_columns(data, encoding.columns)
            self._check_no_missing(data, encoding.formula)
            if getattr(self, "results_", None) is not None:  # one column per response
                with warnings.catch_warnings():  # the fits' singularity is in results_.table, not news here
                    warnings.simplefilter("ignore", SingularFitWarning)
                    return np.column_stack([fit.predict(data, allow_new_levels=True) for fit in self.results_])
            return self.result_.predict(data, allow_new_levels=True)
        X = validate_data(self, X, reset=False)
        if groups is None or self.result_ is None:
            return X @ self.coef_ + self.intercept_
        gframe, _ = group_frame(groups, X.shape[0])
        return self.result_.predict(encoding.frame(X, gframe), allow_new_levels=True)

    def _linear_predictor_se(self, X, groups=None) -> tuple[np.ndarray, np.ndarray]:
        """η̂ as :meth:`_linear_predictor` gives it, and its standard error: the joint one of x'β̂ + z'b̂ for a mixed
        fit (:mod:`skmixed.prediction`; a level not seen in the fit, or no groups given, adds its term's variance),
        √(x'Vx) for the fit without groups."""
        check_is_fitted(self)
        encoding = self.encoding_
        if getattr(self, "results_", None) is not None:
            raise OptionError("return_std is for a single response; for one of several use results_[j].predict")
        if isinstance(encoding, FormulaEncoding):
            eta = self._linear_predictor(X, groups)  # checks X as predict does
            frame = self.result_.predict(encoding.frame(X), allow_new_levels=True, se_fit=True)
        else:
            X = validate_data(self, X, reset=False)
            if self.result_ is None:
                X1 = np.column_stack([np.ones(len(X)), X])
                se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", X1, self._beta_cov, X1), 0))
                return X @ self.coef_ + self.intercept_, se
            if groups is None:  # no group known: every row's level is unseen (its prediction the population's)
                groups = pd.DataFrame({k: [None] * len(X) for k in range(len(encoding.group_names))})
            gframe = group_frame(groups, X.shape[0])[0]
            frame = self.result_.predict(encoding.frame(X, gframe), allow_new_levels=True, se_fit=True)
            eta = frame.fit.to_numpy()
        return eta, frame.se_fit.to_numpy()

    def summary(self):
        """The lme4-style summary of the fitted mixed model (``result_.summary()``)."""
        check_is_fitted(self)
        if getattr(self, "results_", None) is not None:
            raise OptionError(
                "this estimator was fitted to several responses: summarise one with results_[j].summary()"
            )
        if self.result_ is None:
            raise OptionError(
                "this estimator was fitted without groups (no random effects), so it has no mixed-model summary; "
                "fit it with groups=... or a formula"
            )
        return self.result_.summary()
