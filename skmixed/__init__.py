"""skmixed: mixed-effects models with lme4's numerics, native to scikit-learn and Jupyter."""
from . import families
from .anova import anova
from .exceptions import (
    ConvergenceWarning,
    DataError,
    FormulaError,
    InputError,
    OptionError,
    RankDeficiencyWarning,
    SingularFitWarning,
)
from .glmm import glmer
from .glmm_results import GlmerResult
from .lmm import lmer
from .results import LmerResult

__all__ = [
    "lmer",
    "glmer",
    "families",
    "anova",
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


def __getattr__(name: str):
    """The scikit-learn estimators, imported on first use: scikit-learn costs more to import than all the rest."""
    if name in _ESTIMATORS:
        from . import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module 'skmixed' has no attribute {name!r}")
