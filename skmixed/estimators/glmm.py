"""``GLMM`` (mean of the response) and ``GLMMClassifier`` (binomial): generalized linear mixed models for sklearn.

Model: ``η = Xβ + Zb``, ``μ = g⁻¹(η)``, y | b from the family, ``b ~ N(0, ΛΛ')``; fitted by
``skmixed.glmer``. Without groups (array mode) there is no b: a GLM fitted by IRLS
(:func:`skmixed.glm.fit_glm`) with the same families.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import validate_data

from ..dask import is_dask_frame
from ..exceptions import DataError
from ..families import Binomial, Family, Gaussian, get_family
from ..glm import GlmFit, fit_glm
from ..glmm import glmer
from ..links import EPS
from ..options import FAMILY_NAMES, NAGQ_MAX
from .base import MixedModelEstimator


class _GeneralizedMixedModel(MixedModelEstimator):
    """What GLMM and GLMMClassifier share: the family, ``glmer`` for mixed fits, IRLS without groups."""

    _parameter_constraints: dict = {
        **MixedModelEstimator._parameter_constraints,
        "nAGQ": [Interval(Integral, 0, NAGQ_MAX, closed="both")],
    }

    def _family(self) -> Family:
        raise NotImplementedError

    def _max_levels(self, n: int) -> int:
        """A GLMM may have one level per row (an observation-level random effect), as lme4's glmer allows."""
        return n

    def _fit_mixed(self, formula, data, weights):
        family = self._family()
        result = glmer(formula, data, family=family, nAGQ=int(self.nAGQ), weights=weights)
        self.family_ = getattr(result, "family", family)  # glmer hands a Gaussian identity model to lmer
        return result

    def _fit_fixed(self, X, y, weights) -> GlmFit:
        family = self._family()
        family.check_response(y, weights)
        fit = fit_glm(X, y, weights, family)
        self.family_ = fit.family
        return fit

    def _finish_fixed(self, X, y, weights, encoding):
        super()._finish_fixed(X, y, weights, encoding)
        if not self.family_.has_dispersion:
            self.variance_components_ = self.variance_components_.iloc[:0]
        return self

    def _mean(self, X, groups=None) -> np.ndarray:
        eta = self._linear_predictor(X, groups)  # checks that the estimator is fitted
        if is_dask_frame(eta):  # a lazy Dask Series stays one
            from ..dask.estimators import rowwise

            return rowwise(eta, self.family_.linkinv)
        return self.family_.linkinv(eta)


class GLMM(RegressorMixin, _GeneralizedMixedModel):
    """Generalized linear mixed model predicting the mean ``μ = g⁻¹(Xβ̂ + Zb̂)``, fitted by ``skmixed.glmer``.

    Parameters
    ----------
    family : str or skmixed.families.Family
        ``"poisson"`` (default), ``"binomial"`` (y a proportion), ``"gamma"``, ``"inverse_gaussian"``,
        ``"gaussian"``, ``"negative_binomial"``, or an object such as ``Poisson(link="sqrt")``.
    formula, random_slopes : as for :class:`skmixed.MixedLM` (formula mode, or array mode with ``groups``).
    nAGQ : int
        1 (Laplace, default), 0 (fast: β inside PIRLS) or > 1 adaptive Gauss–Hermite nodes
        (a single scalar random-effects term only).

    Notes
    -----
    Array mode without ``groups`` fits a GLM (no random effects) by IRLS with the same family.
    Missing values are refused in ``fit`` and ``predict`` alike, as for :class:`skmixed.MixedLM`.
    ``predict(X, groups=g)`` returns μ with the BLUPs of levels seen in the fit and the population
    mean ``g⁻¹(Xβ̂)`` for unseen levels (or without groups). ``score`` is R² of ``predict(X)``.
    Fitted attributes as :class:`MixedLM`, plus ``family_`` (with θ for an estimated negative binomial).
    """

    _parameter_constraints: dict = {
        **_GeneralizedMixedModel._parameter_constraints,
        "family": [StrOptions(set(FAMILY_NAMES)), Family],
    }

    def __init__(self, family="poisson", formula=None, random_slopes=None, nAGQ=1):
        self.family = family
        self.formula = formula
        self.random_slopes = random_slopes
        self.nAGQ = nAGQ

    def _family(self) -> Family:
        return get_family(self.family)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            family = self._family()
        except ValueError:
            return tags
        tags.target_tags.positive_only = not isinstance(family, (Gaussian, Binomial))
        return tags

    def predict(self, X, groups=None, return_std: bool = False):
        """μ̂ = g⁻¹(Xβ̂ + Zb̂): BLUPs for levels seen in the fit, the population mean for the others.

        With ``return_std=True`` also the standard deviation of the predictive distribution of a new observation
        (unit weight), √(φ V(μ̂) + (dμ/dη)² se²): the family's variance at μ̂ (φ the dispersion, 1 for binomial and
        Poisson) and the delta method's variance of μ̂ from the joint standard error se of η̂
        (:mod:`skmixed.prediction`).  Returns ``(mean, std)``.
        """
        if not return_std:
            return self._mean(X, groups)
        eta, se = self._linear_predictor_se(X, groups)
        family = self.family_
        mu = family.linkinv(eta)
        return mu, np.sqrt(self._dispersion * family.variance(mu) + (family.mu_eta(eta) * se) ** 2)


class GLMMClassifier(ClassifierMixin, _GeneralizedMixedModel):
    """Binomial GLMM classifier: ``P(y = classes_[1]) = g⁻¹(Xβ̂ + Zb̂)``, fitted by ``skmixed.glmer``.

    Parameters
    ----------
    formula, random_slopes : as for :class:`skmixed.MixedLM`.
    link : str
        ``"logit"`` (default), ``"probit"``, ``"cloglog"``, ``"cauchit"`` or ``"log"``.
    nAGQ : int
        As for :class:`GLMM`.

    Notes
    -----
    Missing values are refused in ``fit`` and ``predict`` alike, as for :class:`skmixed.MixedLM`.
    Two classes only; ``classes_[1]`` is the success. Array mode without ``groups`` fits a
    binomial GLM (for the logit link, logistic regression without penalty) by IRLS. ``predict_proba`` and
    ``predict`` use the BLUPs of levels seen in the fit and the population prediction for
    unseen levels (or without groups); ``decision_function`` is the log-odds of
    ``classes_[1]`` (the linear predictor for the logit link), so ``predict`` picks
    ``classes_[1]`` where it is positive.
    """

    _parameter_constraints: dict = {
        **_GeneralizedMixedModel._parameter_constraints,
        "link": [StrOptions(set(Binomial.links))],
    }

    def __init__(self, formula=None, random_slopes=None, link="logit", nAGQ=1):
        self.formula = formula
        self.random_slopes = random_slopes
        self.link = link
        self.nAGQ = nAGQ

    def _family(self) -> Family:
        return Binomial(link=self.link)

    def _validate_X_y(self, X, y):
        return validate_data(self, X, y)

    def _check_target(self, y):
        check_classification_targets(y)
        y_type = type_of_target(y, input_name="y", raise_unknown=True)
        if y_type != "binary":
            raise DataError(f"Only binary classification is supported. The type of the target is {y_type}.")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise DataError(
                f"GLMMClassifier needs two classes in y to fit; y has only one class ({self.classes_[0]!r})"
            )
        return (y == self.classes_[1]).astype(float)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def _check_dask_target(self, y):
        """On a Dask Series: the classes found in one pass, checked as in memory; the lazy 0/1 response."""
        seen = y.map_partitions(lambda part: part.dropna().drop_duplicates(), meta=y._meta).compute()
        classes = np.unique(seen.to_numpy())  # each partition's values, merged on the client: no shuffle
        if len(classes) > 2:
            raise DataError(f"Only binary classification is supported; y has {len(classes)} classes")
        if len(classes) < 2:
            raise DataError(f"GLMMClassifier needs two classes in y to fit; y has only one class ({classes[0]!r})")
        self.classes_ = classes
        return (y == classes[1]).astype(float)

    def _log_odds(self, eta: np.ndarray) -> np.ndarray:
        if self.family_.link.name == "logit":
            return eta
        mu = np.clip(self.family_.linkinv(eta), EPS, 1 - EPS)
        return np.log(mu) - np.log1p(-mu)

    def decision_function(self, X, groups=None):
        """Log-odds of ``classes_[1]``: log(μ/(1 − μ)), which is η for the logit link (a lazy Dask Series for a Dask
        DataFrame X)."""
        eta = self._linear_predictor(X, groups)
        if is_dask_frame(eta):
            from ..dask.estimators import rowwise

            return rowwise(eta, self._log_odds)
        return self._log_odds(eta)

    def predict_proba(self, X, groups=None):
        """Columns P(classes_[0]), P(classes_[1]) with the BLUPs of seen levels (for a Dask DataFrame X, a lazy Dask
        DataFrame with those two columns, named by the classes)."""
        mu = self._mean(X, groups)
        if is_dask_frame(mu):
            first, second = (str(c) for c in self.classes_)
            return (1 - mu).to_frame(name=first).assign(**{second: mu})
        return np.column_stack([1 - mu, mu])

    def predict(self, X, groups=None):
        """The more probable class (a lazy Dask Series for a Dask DataFrame X)."""
        decision = self.decision_function(X, groups)  # checks that the estimator is fitted
        if is_dask_frame(decision):
            from ..dask.estimators import rowwise

            return rowwise(decision, lambda d: self.classes_[(d > 0).astype(int)])
        return self.classes_[(decision > 0).astype(int)]
