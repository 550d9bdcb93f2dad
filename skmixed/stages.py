"""The public stages of a fit, as lme4 exposes them (``lFormula`` → ``mkLmerDevfun`` → ``optimizeLmer`` →
``mkMerMod``)::

    model  = build(formula, data, REML=..., family=..., weights=..., offset=...)   # skmixed.model
    devfun = deviance(model, nAGQ=...)                                             # skmixed.deviance
    optsum = optimize(devfun, start=..., check_conv=..., maxeval=...)              # skmixed.fitting
    result = make_result(model, devfun, optsum)                                    # skmixed.results

Each stage's output is plain data the next one reads (the deviance function keeps its last
evaluation, and a GLMM's its PIRLS warm starts); ``lmer`` and ``glmer`` are these four calls.
"""

from __future__ import annotations

from .blas import one_blas_thread
from .deviance import GlmmObjective, ProfiledDeviance, deviance
from .exceptions import OptionError
from .fitting import optimize
from .glmm_results import GlmerResult, glmer_result
from .model import GeneralizedLinearMixedModel, LinearMixedModel, build
from .optimizers import OptSummary
from .results import LmerResult, lmer_result

__all__ = [
    "build",
    "deviance",
    "optimize",
    "make_result",
    "LinearMixedModel",
    "GeneralizedLinearMixedModel",
    "ProfiledDeviance",
    "GlmmObjective",
    "OptSummary",
]


@one_blas_thread
def make_result(model, devfun, optsum: OptSummary) -> LmerResult | GlmerResult:
    """The fitted model at the optimum ``optsum`` found for ``devfun`` (lme4's ``mkMerMod``)."""
    if isinstance(model, LinearMixedModel) and isinstance(devfun, ProfiledDeviance):
        return lmer_result(model, devfun, optsum)
    if isinstance(model, GeneralizedLinearMixedModel) and isinstance(devfun, GlmmObjective):
        return glmer_result(model, devfun, optsum)
    raise OptionError("make_result takes a model from build() with the deviance function deviance() made of it")
