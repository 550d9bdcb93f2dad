"""Per-level coefficients of a fit (lme4's ``coef``): the fixed effects plus each level's random effects."""

from __future__ import annotations

import pandas as pd


def coefficients(result) -> dict[str, pd.DataFrame]:
    """For each grouping factor, a DataFrame of its levels × coefficients: β̂ repeated on every row, with the
    level's conditional modes b̂ added to the coefficients they vary.

    As lme4's ``coef.merMod``: the columns are the fixed effects in their order, preceded by any random effect
    that has no fixed effect (a ``(Days | Subject)`` term in ``y ~ 1 + (Days | Subject)``), whose fixed part is 0.
    """
    fixef = result.fixef
    ranef = result.ranef
    missing = [c for c in dict.fromkeys(c for blups in ranef.values() for c in blups.columns) if c not in fixef.index]
    base = pd.concat([pd.Series(0.0, index=missing), fixef.astype(float)])
    out = {}
    for group, blups in ranef.items():
        table = pd.DataFrame([base.to_numpy()] * len(blups), index=blups.index, columns=base.index)
        table[blups.columns] += blups.to_numpy()
        out[group] = table
    return out
