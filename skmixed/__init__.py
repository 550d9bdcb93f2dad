"""skmixed: mixed-effects models with lme4's numerics, native to scikit-learn and Jupyter."""

import importlib

from . import families
from .anova import anova
from .compare import compare
from .emmeans import EmmeansFrame, emmeans
from .exceptions import (
    ConvergenceWarning,
    DataError,
    FormulaError,
    InputError,
    OptionError,
    RankDeficiencyWarning,
    SingularFitWarning,
)
from .ftests import contest, drop1
from .glmm import glmer
from .glmm_results import GlmerResult
from .hlm import hlm
from .lmm import lmer
from .many import lmer_many
from .many_result import ManyResult
from .r2 import icc, r2
from .ranova import ranova
from .results import LmerResult
from .stages import (
    GeneralizedLinearMixedModel,
    GlmmObjective,
    LinearMixedModel,
    OptSummary,
    ProfiledDeviance,
    build,
    deviance,
    make_result,
    optimize,
)

__all__ = [
    "lmer",
    "lmer_many",
    "ManyResult",
    "glmer",
    "hlm",
    "build",
    "deviance",
    "optimize",
    "make_result",
    "LinearMixedModel",
    "GeneralizedLinearMixedModel",
    "ProfiledDeviance",
    "GlmmObjective",
    "OptSummary",
    "families",
    "anova",
    "compare",
    "emmeans",
    "EmmeansFrame",
    "r2",
    "icc",
    "contest",
    "drop1",
    "ranova",
    "LmerResult",
    "GlmerResult",
    "MixedLM",
    "GLMM",
    "GLMMClassifier",
    "ConvergenceWarning",
    "SingularFitWarning",
    "RankDeficiencyWarning",
    "InputError",
    "FormulaError",
    "DataError",
    "OptionError",
]
__version__ = "0.1.0"

_ESTIMATORS = {"MixedLM", "GLMM", "GLMMClassifier"}
#: subpackages loaded on first access (``skmixed.datasets.load(...)`` after a plain ``import skmixed``):
#: plotting needs matplotlib, magics IPython, estimators scikit-learn, none of which ``import skmixed`` should pay for
_SUBMODULES = {"datasets", "plotting", "magics", "estimators"}


def __getattr__(name: str):
    """The scikit-learn estimators and the subpackages above, imported on first use (PEP 562)."""
    if name in _ESTIMATORS:
        from . import estimators

        return getattr(estimators, name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'skmixed' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _ESTIMATORS | _SUBMODULES)
