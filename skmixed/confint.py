"""Confidence intervals for every parameter of a fit (lme4's ``confint.merMod``): Wald, profile or bootstrap.

The rows are lme4's: each random-effects term's SDs and correlations (on the sdcor scale of
:mod:`skmixed.sdcor`, named ``sd_<effect>|<group>`` and ``cor_<effect1>.<effect2>|<group>``), then
``sigma`` (an LMM's, or a GLMM's dispersion), then the fixed effects by name.

* ``"Wald"``: β̂ ± z·SE for the fixed effects; NaN for the covariance parameters, as lme4 (a Wald interval
  for an SD is a poor guide, its sampling distribution being far from normal).
* ``"profile"`` (lme4's default): the likelihood-ratio intervals {p : |ζ(p)| ≤ z} of :mod:`skmixed.profiler`,
  ends solved exactly.  A parameter estimated on its bound (a zero SD or a ±1 correlation: a singular fit)
  has that end at the bound, with a warning naming it.
* ``"boot"``: percentile intervals of a parametric bootstrap (:mod:`skmixed.bootstrap`) of ``nsim``
  replicates from ``seed``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

from .blas import single_blas_thread
from .exceptions import OptionError
from .sdcor import SdCor

METHODS = {"wald": "Wald", "profile": "profile", "boot": "boot"}


def parameter_names(result) -> list[str]:
    """lme4's rows of ``confint``: the SDs and correlations, σ (where the model has one), the fixed effects."""
    from .glmm_results import GlmerResult

    has_sigma = not isinstance(result, GlmerResult) or result.has_dispersion
    return SdCor(result.re, has_sigma).names + list(result.frame.x_names)


def _check(method, level: float) -> str:
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise OptionError(f"method must be 'Wald', 'profile' or 'boot', not {method!r}")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise OptionError(f"level must be a number between 0 and 1 (0.95 for 95% intervals), not {level!r}")
    return method.lower()


def confint(result, method: str = "profile", level: float = 0.95, nsim: int = 1000, seed=None) -> pd.DataFrame:
    """Intervals at ``level`` for every parameter (see the module docstring), as a DataFrame with columns
    ``lower`` and ``upper``."""
    method = _check(method, level)
    names = parameter_names(result)
    z = float(norm.ppf((1 + level) / 2))
    if method == "wald":
        out = pd.DataFrame(np.nan, index=names, columns=["lower", "upper"])
        beta, se = result.fixef, result.fixef_se
        out.loc[beta.index, "lower"] = (beta - z * se).to_numpy()
        out.loc[beta.index, "upper"] = (beta + z * se).to_numpy()
        return out
    if method == "boot":
        from .bootstrap import bootstrap

        return bootstrap(result, nsim, seed).confint("percentile", level).loc[names]
    return _profile_intervals(result, z)


def _profile_intervals(result, z: float) -> pd.DataFrame:
    from .profiler import Profiler, warn_singular

    profiler = Profiler(result)
    rows, on_bound = [], []
    with single_blas_thread():
        for i, name in enumerate(profiler.names):
            if profiler.on_bound(i, -1) or profiler.on_bound(i, 1):
                on_bound.append(name)
            rows.append([profiler.end(i, z, -1), profiler.end(i, z, 1)])
    if on_bound:
        warn_singular(on_bound)
    return pd.DataFrame(rows, index=profiler.names, columns=["lower", "upper"])
