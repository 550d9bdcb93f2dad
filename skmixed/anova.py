"""Likelihood-ratio comparison of nested mixed models (lme4's ``anova(m1, m2, ...)``)."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd


def anova(*models, names: list[str] | None = None) -> pd.DataFrame:
    """Table of npar, AIC, BIC, logLik, deviance and χ² tests between successive models (sorted by npar).

    REML fits are refitted by ML first, as lme4 does, because REML criteria of models
    with different fixed effects are not comparable.
    """
    from scipy import stats  # imported here: scipy.stats alone costs more than the rest of `import skmixed`

    if len(models) < 2:
        raise ValueError("anova needs at least two fitted models to compare")
    nobs = {m.nobs for m in models}
    if len(nobs) > 1:
        raise ValueError(f"models were fitted to different numbers of observations {sorted(nobs)}: compare models fitted to the same rows")
    names = names or [f"m{i + 1}" for i in range(len(models))]
    if any(getattr(m, "REML", False) for m in models):
        warnings.warn("refitting model(s) with ML (instead of REML)", UserWarning, stacklevel=2)
        models = tuple(m.refit_ml() if getattr(m, "REML", False) else m for m in models)
    order = np.argsort([m.npar for m in models], kind="stable")
    rows = []
    prev = None
    for i in order:
        m = models[i]
        row = {"npar": m.npar, "AIC": m.aic, "BIC": m.bic, "logLik": m.loglik, "deviance": m.deviance,
               "Chisq": np.nan, "Df": np.nan, "Pr(>Chisq)": np.nan}
        if prev is not None:
            chisq = max(prev.deviance - m.deviance, 0.0)
            df = m.npar - prev.npar
            row.update({"Chisq": chisq, "Df": df, "Pr(>Chisq)": stats.chi2.sf(chisq, df) if df > 0 else np.nan})
        rows.append(row)
        prev = m
    return pd.DataFrame(rows, index=[names[i] for i in order])
