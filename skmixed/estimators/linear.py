"""``MixedLM``: the linear mixed model ``y = Xβ + Zb + ε`` as a scikit-learn regressor (wraps ``lmer``)."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.utils._param_validation import StrOptions

from ..exceptions import OptionError, SingularFitWarning
from ..families import Gaussian
from ..glm import GlmFit, fit_glm
from ..lmm import lmer
from ..many import lmer_many
from ..options import SOLVERS
from .base import INTERCEPT, MixedModelEstimator
from .encoding import formula_columns


class MixedLM(RegressorMixin, MixedModelEstimator):
    """Linear mixed model ``y = Xβ + Zb + ε``, ``b ~ N(0, σ²ΛΛ')``, ``ε ~ N(0, σ²)``, fitted by ``skmixed.lmer``.

    Parameters
    ----------
    formula : str or None
        Formula mode: the right-hand side of an lme4 formula, e.g. ``"~ x1 + x2 + (1 + x1 | school)"``.
        ``X`` is then a DataFrame holding every column it names, grouping columns included, and
        ``y`` is passed separately: ``fit(df, y)``, ``predict(df)``. Because the groups travel
        inside X, predictions use the BLUPs in any stock sklearn CV loop.
    random_slopes : column name, index, or a list of them
        Array mode: columns of X that also get a random slope, correlated with the random
        intercept, in every grouping factor.
    reml : bool
        Fit by REML (default, as lme4) or by maximum likelihood.
    residual : str or None
        Formula mode: a residual covariance structure within a grouping column of X, e.g.
        ``"us(visit | subject)"`` or ``"ar1(visit | subject)"`` (``skmixed.lmer``'s ``residual=``; the formula may
        then have no random-effects term, as an MMRM).  ``result_`` is then a ``StructuredLmerResult``.
    solver : {"auto", "krylov"}
        ``skmixed.lmer``'s ``solver=``: ``"auto"`` (default) the exact path chosen by cost; ``"krylov"`` conjugate
        gradients with stochastic log-determinants, for random intercepts on crossed factors with many levels
        (:mod:`skmixed.krylov_pls`).

    Notes
    -----
    Array mode: ``fit(X, y, groups=g)`` gives each grouping factor (a column of ``g``; crossed
    factors as separate columns, nested factors coded uniquely across their parents) a random
    intercept. Without ``groups`` it fits ordinary (weighted) least squares: no random effects.
    A grouping factor with a single level, or one level per row, gets no random effect (with a
    warning) because its variance cannot be estimated.

    Missing values: X (in formula mode, the columns the formula reads, grouping columns
    included) must have none; ``fit`` and ``predict`` both raise a ValueError naming NaN (and,
    in formula mode, the columns), as scikit-learn estimators without NaN support do, since a
    row dropped in ``fit`` could not be predicted either. y, ``sample_weight`` and ``groups``
    must have none in ``fit``; in array-mode ``predict`` a missing group, like an unseen one,
    gets the population prediction. Impute (e.g. ``SimpleImputer`` in a ``Pipeline``) or drop
    such rows first; ``skmixed.lmer`` itself drops incomplete rows as R does.

    ``predict(X, groups=g)`` adds the BLUPs b̂ of the levels seen in the fit and nothing for
    unseen levels (their population prediction Xβ̂); without ``groups`` it gives the population
    prediction. ``score`` is R² of ``predict(X)``: population predictions in array mode, BLUPs
    in formula mode.

    Groups in pipelines and searches: without metadata routing pass ``mixedlm__groups=g`` to
    ``Pipeline.fit`` / ``GridSearchCV.fit`` (the latter also takes ``groups=g`` for a
    ``GroupKFold``); with routing enabled call ``set_fit_request(groups=True)`` (array mode) or
    ``set_fit_request(groups=False)`` (formula mode, when groups are routed to the splitter).

    Several responses (formula mode): ``fit(df, Y)`` with a 2-D ``Y`` (one column per response, as
    scikit-learn's multi-output regressors take it) fits each column as its own model on the shared design,
    by :func:`skmixed.lmer_many`; ``predict`` then returns one column per response, ``coef_`` is
    responses × features and ``intercept_`` one per response, ``results_`` holds the
    :class:`~skmixed.ManyResult` (``results_[j]`` the full fit of response j), and ``result_`` and
    ``random_effects_`` are None.

    Attributes
    ----------
    coef_, intercept_ : ndarray, float
        Fixed effects β̂ (``coef_`` follows X's columns; in formula mode the non-intercept columns of
        ``result_.fixef``).
    random_effects_ : dict of DataFrames
        BLUPs b̂ per grouping factor (levels × effects).
    variance_components_ : DataFrame
        Like lme4's ``as.data.frame(VarCorr(m))``.
    result_ : LmerResult or None
        The full :class:`skmixed.LmerResult` (``summary()``, ``anova``...); None without groups.
    results_ : ManyResult or None
        With a 2-D y: the fits of every response (:func:`skmixed.lmer_many`); None otherwise.
    encoding_ : object
        How X and groups became the model's columns, reused by ``predict``.
    n_features_in_, feature_names_in_ : int, ndarray
        As in scikit-learn.
    """

    _parameter_constraints: dict = {
        **MixedModelEstimator._parameter_constraints,
        "reml": ["boolean"],
        "residual": [str, None],
        "solver": [StrOptions(set(SOLVERS))],
    }

    def __init__(self, formula=None, random_slopes=None, reml=True, residual=None, solver="auto"):
        self.formula = formula
        self.random_slopes = random_slopes
        self.reml = reml
        self.residual = residual
        self.solver = solver

    def _fit_mixed(self, formula, data, weights):
        return lmer(formula, data, REML=self.reml, weights=weights, residual=self.residual, solver=self.solver)

    def _validate_X_y(self, X, y):
        if self.residual is not None:
            raise OptionError(
                "residual= names columns of X (its time and grouping variables): use formula mode, e.g. "
                "MixedLM(formula='~ visit * arm', residual='us(visit | subject)')"
            )
        return super()._validate_X_y(X, y)

    def _fit_many(self, encoding, X, Y, weights):
        """Formula mode with a 2-D y: ``skmixed.lmer_many`` on its columns, a multi-output regressor's attributes."""
        if self.residual is not None:
            raise OptionError("residual= fits one response at a time: pass y as one column (a 1-D array)")
        if self.solver != "auto":
            raise OptionError("solver='krylov' fits one response at a time: pass y as one column (a 1-D array)")
        many = lmer_many(encoding.rhs, encoding.frame(X), Y, REML=self.reml, weights=weights)
        with warnings.catch_warnings():  # a singular fit shows in many.table
            warnings.simplefilter("ignore", SingularFitWarning)
            encoding.columns = formula_columns(many[0])
        self.encoding_, self.results_, self.result_ = encoding, many, None
        fixef = many.fixef
        self.intercept_ = fixef[INTERCEPT].to_numpy(dtype=float) if INTERCEPT in fixef else np.zeros(len(many))
        self.coef_ = fixef.drop(columns=INTERCEPT, errors="ignore").to_numpy(dtype=float)
        self.random_effects_ = None
        self.variance_components_ = many.varcorr
        self._dispersion = many.table["sigma"].to_numpy() ** 2
        return self

    def _fit_fixed(self, X, y, weights) -> GlmFit:
        """Weighted least squares ``min Σ wᵢ (yᵢ − β₀ − xᵢ'β)²``, the Gaussian GLM (one IRLS step solves it);
        the residual variance on n − rank degrees of freedom."""
        return fit_glm(X, y, weights, Gaussian())

    def predict(self, X, groups=None, return_std: bool = False):
        """Xβ̂ + Zb̂: BLUPs for levels seen in the fit, the population prediction Xβ̂ for the others.

        With ``return_std=True`` (as scikit-learn's GaussianProcessRegressor and BayesianRidge) also the standard
        deviation of the predictive distribution of a new observation, √(se² + σ²): se the joint standard error of
        the prediction (:mod:`skmixed.prediction`; a level not seen in the fit, or no groups, carries its full
        random-effect variance), σ the residual SD.  Returns ``(mean, std)``.
        """
        if not return_std:
            return self._linear_predictor(X, groups)
        eta, se = self._linear_predictor_se(X, groups)
        return eta, np.sqrt(se**2 + self._dispersion)
