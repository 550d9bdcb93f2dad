"""scikit-learn's own estimator checks, in array mode without groups (no random effects: OLS / GLM by IRLS).

Every check passes: no estimator opts out of any (sklearn 1.9 takes opt-outs as
``expected_failed_checks``; there are none to give).
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skmixed import GLMM, GLMMClassifier, MixedLM


@parametrize_with_checks([MixedLM(), GLMM(), GLMM(family="gamma"), GLMMClassifier(), GLMMClassifier(link="probit")])
def test_sklearn_compatible(estimator, check):
    check(estimator)
