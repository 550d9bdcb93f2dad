"""``anova``: lmerTest's F table of one LMM (:mod:`skmixed.ftests`), or the likelihood-ratio comparison of nested
mixed models (lme4's ``anova(m1, m2, ...)``)."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pandas as pd

from .dask.rows import RowsOnWorkers
from .exceptions import DataError, OptionError
from .options import describe_value


def anova(
    *models, names: list[str] | None = None, type=3, ddf: str = "Satterthwaite", refit: bool = True
) -> pd.DataFrame:
    """One LMM: lmerTest's F table, an F test per fixed-effect term of the given ``type`` (1: sequential, 2, 3:
    lmerTest's marginal hypotheses) with ``ddf`` ``"Satterthwaite"`` or ``"Kenward-Roger"``, as a DataFrame by
    term with columns sum_sq, mean_sq, num_df, den_df, F, p (:func:`skmixed.ftests.anova_table`).

    Several models: the table of npar, AIC, BIC, logLik, deviance and χ² tests between successive models
    (sorted by npar), as lme4's.  REML fits are refitted by ML first, as lme4 does, because REML criteria of
    models with different fixed effects are not comparable.  The models must be fits to the same response on the
    same rows, all of a continuous or all of a discrete distribution (see :func:`check_comparable`).
    ``refit=False`` (lme4's) compares REML fits by their REML criteria, as nlme's anova does: allowed only
    between models with the same fixed effects (e.g. residual covariance structures of
    ``lmer(..., residual=...)``), whose REML likelihoods are of the same data.
    """
    if len(models) == 1:
        from .ftests import anova_table
        from .residual_result import StructuredLmerResult

        if isinstance(models[0], StructuredLmerResult):
            raise OptionError(
                "the F table of a model with residual= is not available; compare structures or fixed parts "
                "with anova(m0, m1) or skmixed.compare(m0, m1, ...)"
            )

        return anova_table(models[0], type=type, ddf=ddf)
    check_comparable(models)
    names = _names(names, len(models))
    if not refit:
        return _likelihood_ratios(models, names, same_fixed_part(models))
    if any(getattr(m, "REML", False) for m in models):
        warnings.warn("refitting model(s) with ML (instead of REML)", UserWarning, stacklevel=2)
        models = tuple(m.refit_ml() if getattr(m, "REML", False) else m for m in models)
    return _likelihood_ratios(models, names, [m.deviance for m in models])


def same_fixed_part(models) -> list[float]:
    """−2 logLik of each model (the REML criterion of a REML fit), after checking that REML fits share X."""
    if any(getattr(m, "REML", False) for m in models):
        first = models[0]
        for k, m in enumerate(models[1:], start=2):
            if not (
                getattr(m, "REML", False) == getattr(first, "REML", False)
                and m.frame.x_names == first.frame.x_names
                and np.array_equal(m.frame.X, first.frame.X)
            ):
                raise OptionError(
                    f"model {k} and model 1 differ in their fixed effects or criterion: REML likelihoods are "
                    "comparable only between REML fits with the same fixed effects; use refit=True (ML refits)"
                )
    return [-2.0 * m.loglik for m in models]


def _likelihood_ratios(models, names, deviances) -> pd.DataFrame:
    """lme4's table: npar, AIC, BIC, logLik, deviance and χ² tests between successive models by npar."""
    from scipy import stats  # imported here: scipy.stats alone costs more than the rest of `import skmixed`

    order = np.argsort([m.npar for m in models], kind="stable")
    rows = []
    prev = None
    for i in order:
        m = models[i]
        row = {
            "npar": m.npar,
            "AIC": m.aic,
            "BIC": m.bic,
            "logLik": m.loglik,
            "deviance": deviances[i],
            "Chisq": np.nan,
            "Df": np.nan,
            "Pr(>Chisq)": np.nan,
        }
        if prev is not None:
            chisq = max(deviances[prev] - deviances[i], 0.0)
            df = m.npar - models[prev].npar
            row.update({"Chisq": chisq, "Df": df, "Pr(>Chisq)": stats.chi2.sf(chisq, df) if df > 0 else np.nan})
        rows.append(row)
        prev = i
    return pd.DataFrame(rows, index=[names[i] for i in order])


def check_comparable(models) -> None:
    """Raise unless ``models`` are two or more fits whose likelihoods a χ² test may compare.

    lme4 refuses models fitted to different numbers of rows or to different data objects;
    it lets through models of different responses (whose likelihoods measure different
    things) and LMMs beside binomial or Poisson GLMMs (a density beside a probability),
    giving a meaningless test.  Here all of these are errors; models of a continuous
    response (LMMs, Gaussian, Gamma and inverse Gaussian GLMMs) may be compared.
    """
    from .residual_result import StructuredLmerResult
    from .results import LmerResult

    for k, m in enumerate(models, start=1):
        if not isinstance(m, (LmerResult, StructuredLmerResult)):
            estimators = sys.modules.get("skmixed.estimators.base")  # loaded if m is an estimator
            is_estimator = estimators is not None and isinstance(m, estimators.MixedModelEstimator)
            hint = ": pass the fitted estimator's result_" if is_estimator else ""
            raise OptionError(
                f"anova compares models fitted by skmixed.lmer or skmixed.glmer; argument {k} is "
                f"{describe_value(m)}{hint}"
            )
    if len(models) < 2:
        raise OptionError(
            "anova compares at least two nested models fitted to the same data, e.g. anova(m0, m1); anova(m) of "
            "one linear mixed model gives its F tests"
        )
    discrete = [_discrete(m) for m in models]
    if len(set(discrete)) > 1:
        k = discrete.index(not discrete[0]) + 1
        raise OptionError(
            f"anova cannot compare model 1 ({_kind(models[0])}) with model {k} ({_kind(models[k - 1])}): one "
            "likelihood is a density of a continuous response, the other a probability of a discrete one"
        )
    nobs = {m.nobs for m in models}
    if len(nobs) > 1:
        raise DataError(
            f"models were fitted to different numbers of observations {sorted(nobs)}: "
            "compare models fitted to the same rows"
        )
    responses = list(dict.fromkeys(m.parsed.response for m in models))
    if len(responses) > 1:
        raise DataError(
            f"the models have different responses ({', '.join(map(repr, responses))}): "
            "their likelihoods are not comparable"
        )
    first = models[0]
    for m in models:  # a fit on a Dask DataFrame: its response stays on the workers (skmixed.dask)
        if isinstance(m.frame.y, RowsOnWorkers):
            raise m.frame.y.error()
    for k, m in enumerate(models[1:], start=2):
        if not np.array_equal(m.frame.y, first.frame.y):
            raise DataError(
                f"model {k} was fitted to different data than model 1 (the values of {responses[0]!r} differ): "
                "compare models fitted to the same data set"
            )


def _discrete(m) -> bool:
    from .families import Binomial, NegativeBinomial, Poisson

    return isinstance(getattr(m, "family", None), (Binomial, Poisson, NegativeBinomial))


def _kind(m) -> str:
    family = getattr(m, "family", None)
    return "a linear mixed model" if family is None else f"a {family.name} GLMM"


def _names(names, n: int) -> list[str]:
    if names is None:
        return [f"m{i + 1}" for i in range(n)]
    if not isinstance(names, (list, tuple)) or len(names) != n or len(set(names)) != n:
        raise OptionError(f"names must be {n} distinct labels, one per model, not {names!r}")
    return [str(x) for x in names]
