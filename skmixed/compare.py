"""``compare``: an information-criterion table of fitted models, nested or not (nlme's ``anova`` without tests,
``AIC(m1, m2, ...)`` in R).

Where :func:`skmixed.anova` tests nested models by likelihood ratios, choosing among covariance structures that
are not nested (``ar1`` against ``cs``, say) is by AIC or BIC.  The table keeps the models' order and adds each
model's AIC less the smallest.  ML fits compare with anything fitted to the same rows; REML fits only with REML
fits of the same fixed effects (their REML likelihoods are then of the same error contrasts).
"""

from __future__ import annotations

import pandas as pd

from .anova import _names, check_comparable, same_fixed_part


def compare(*models, names: list[str] | None = None) -> pd.DataFrame:
    """A table with, per model: criterion (REML or ML), npar, logLik, AIC, BIC and ΔAIC (AIC − the smallest AIC).

    Models are checked as :func:`skmixed.anova` checks them (same response and rows); REML fits must share
    their fixed effects (refit with ``REML=False`` to compare fixed parts).
    """
    check_comparable(models)
    labels = _names(names, len(models))
    same_fixed_part(models)
    table = pd.DataFrame(
        {
            "criterion": ["REML" if getattr(m, "REML", False) else "ML" for m in models],
            "npar": [m.npar for m in models],
            "logLik": [m.loglik for m in models],
            "AIC": [m.aic for m in models],
            "BIC": [m.bic for m in models],
        },
        index=labels,
    )
    table["dAIC"] = table["AIC"] - table["AIC"].min()
    return table
