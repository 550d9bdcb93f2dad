"""skmixed: mixed-effects models with lme4's numerics, native to scikit-learn and Jupyter."""
from .exceptions import ConvergenceWarning, DataError, FormulaError, RankDeficiencyWarning, SingularFitWarning
from .anova import anova
from .lmm import lmer
from .results import LmerResult

__all__ = [
    "lmer",
    "anova",
    "LmerResult",
    "ConvergenceWarning",
    "SingularFitWarning",
    "RankDeficiencyWarning",
    "FormulaError",
    "DataError",
]
__version__ = "0.1.0"
