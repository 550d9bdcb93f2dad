"""scikit-learn estimators around the ``lmer``/``glmer`` cores: ``MixedLM``, ``GLMM``, ``GLMMClassifier``."""

from .glmm import GLMM, GLMMClassifier
from .linear import MixedLM

__all__ = ["MixedLM", "GLMM", "GLMMClassifier"]
