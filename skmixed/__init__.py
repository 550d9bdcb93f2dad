"""skmixed: mixed-effects models with lme4's numerics, native to scikit-learn and Jupyter."""
from . import families
from .anova import anova
from .exceptions import ConvergenceWarning, DataError, FormulaError, RankDeficiencyWarning, SingularFitWarning
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
    "ConvergenceWarning",
    "SingularFitWarning",
    "RankDeficiencyWarning",
    "FormulaError",
    "DataError",
]
__version__ = "0.1.0"
