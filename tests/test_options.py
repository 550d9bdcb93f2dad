"""The options of lmer, glmer, anova and the estimators: a bad value is an error naming the option, the value and
what is accepted; never a raw traceback, never silently another model (Python reads REML="FALSE" as true)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import check_param_validation

import skmixed
from skmixed import DataError, OptionError, datasets

SLOPE = "Reaction ~ Days + (Days | Subject)"
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
LME4 = json.loads((Path(__file__).parent / "fixtures" / "options_lme4.json").read_text())  # by options_lme4.R


@pytest.fixture(scope="module")
def sleep():
    return datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def cbpp():
    return datasets.load("cbpp")


@pytest.fixture(scope="module")
def slope_fit(sleep):
    return skmixed.lmer(SLOPE, sleep)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("REML", "FALSE", r"REML must be True or False \(or 1/0\), not 'FALSE'"),
        ("REML", None, "REML must be True or False"),
        ("REML", 2, "REML must be True or False"),
        ("REML", np.array([True, False]), "REML must be True or False"),
        ("check_conv", "no", "check_conv must be True or False"),
        ("maxeval", "10", "maxeval must be an integer of at least 1, not '10'"),
        ("maxeval", 0, "maxeval must be an integer of at least 1"),
        ("maxeval", 1.5, "maxeval must be an integer"),
        ("maxeval", True, "maxeval must be an integer"),
        ("maxeval", float("inf"), "maxeval must be an integer"),
        ("weights", 3, r"weights must be a column name of the data or one number per row .*not 3 \(int\)"),
        ("weights", {"w": 1}, "weights must be a column name"),
        ("weights", np.ones((180, 2)), r"not a ndarray of shape \(180, 2\)"),
        ("offset", [[1.0], [1.0, 2.0]], "offset must be a column name"),
        ("start", "abc", "start must be a number or a sequence of numbers, or a dict with the keys 'theta'"),
        ("start", [1, 0, np.nan], r"start must be finite, not \[1.0, 0.0, nan\]"),
        ("start", [1, 0, np.inf], "start must be finite"),
        ("start", ["1", "0", "1"], "start must be a number or a sequence of numbers"),
        ("start", [True, False, True], "start must be a number or a sequence of numbers"),
        ("start", {"thetas": [1, 0, 1]}, r"start may have the keys 'theta', not \['thetas'\]"),
        ("start", {"theta": [1, 0, 1], "fixef": [250, 10]}, "lmer profiles β out of the deviance"),
        (
            "start",
            [1, 0],
            (
                r"start must have 3 values of θ.*\(Subject.\(Intercept\), "
                r"Subject.Days.\(Intercept\), Subject.Days\), not 2"
            ),
        ),
        ("start", [-1, 0, 1], r"negative diagonal elements \(Subject.\(Intercept\) = -1\)"),
        ("start", {"theta": [1, 0, -0.5]}, r"negative diagonal elements \(Subject.Days = -0.5\)"),
    ],
)
def test_lmer_refuses_bad_options(sleep, option, value, message):
    with pytest.raises(OptionError, match=message):
        skmixed.lmer(SLOPE, sleep, **{option: value})


def test_data_must_be_a_dataframe(sleep):
    with pytest.raises(DataError, match=r"data must be a pandas DataFrame, not \{'Reaction'"):
        skmixed.lmer(SLOPE, {"Reaction": [1.0]})


@pytest.mark.parametrize("value", [0, False, np.False_, np.int64(0)])
def test_reml_takes_r_style_zero_for_ml(sleep, value):
    """R's lmer(REML = 0) fits by ML (R coerces 0 to FALSE); so does ours, to lme4's deviance."""
    fit = skmixed.lmer(SLOPE, sleep, REML=value)
    assert fit.REML is False
    assert fit.objective == pytest.approx(LME4["sleepstudy_slope_reml0"], rel=1e-10)


def test_lmer_takes_lme4s_named_start_and_whole_float_counts(sleep):
    fit = skmixed.lmer(SLOPE, sleep, start={"theta": [0.5, 0.1, 0.3]}, maxeval=1e5, check_conv=np.True_)
    np.testing.assert_array_equal(fit.optsum.theta_init, [0.5, 0.1, 0.3])
    assert fit.objective == pytest.approx(LME4["sleepstudy_slope_start"], rel=1e-10)
    same = skmixed.lmer(SLOPE, sleep, start=np.array([0.5, 0.1, 0.3]))
    np.testing.assert_array_equal(same.optsum.theta_init, fit.optsum.theta_init)


def test_lmer_takes_numeric_and_boolean_weight_columns(sleep):
    df = sleep.assign(w=np.linspace(0.5, 2, len(sleep)), keep=True)
    by_name = skmixed.lmer(SLOPE, df, weights="w")
    by_values = skmixed.lmer(SLOPE, df, weights=list(df["w"]))
    assert by_name.objective == pytest.approx(by_values.objective, rel=1e-12)
    assert skmixed.lmer(SLOPE, df, weights="keep").objective == pytest.approx(LME4["sleepstudy_slope_reml"], rel=1e-10)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("family", 3, "family must be a name such as 'binomial'"),
        ("family", "binomal", "unknown family 'binomal'"),
        ("nAGQ", 1.5, r"nAGQ must be an integer from 0 to 100 \(0: fast, 1: Laplace, > 1: quadrature nodes\), not 1.5"),
        ("nAGQ", "1", "nAGQ must be an integer from 0 to 100"),
        ("nAGQ", True, "nAGQ must be an integer from 0 to 100"),
        ("nAGQ", 101, "nAGQ must be an integer from 0 to 100"),
        ("check_conv", "x", "check_conv must be True or False"),
        ("maxeval", -1, "maxeval must be an integer of at least 1"),
        ("start", "a", "start must be a number or a sequence of numbers, or a dict with the keys 'theta' and 'fixef'"),
        ("start", {"beta": [0, 0, 0, 0]}, r"start may have the keys 'theta' and 'fixef', not \['beta'\]"),
        ("start", {"theta": [-1]}, r"negative diagonal elements \(herd.\(Intercept\) = -1\)"),
        ("start", {"theta": [1, 1]}, r"start must have 1 values of θ.*\(herd.\(Intercept\)\), not 2"),
        ("start", {"fixef": [1, 2]}, r"start\['fixef'\] must have 4 values \(one per fixed effect\), not 2"),
        ("start", {"fixef": [np.nan, 0, 0, 0]}, r"start\['fixef'\] must be finite"),
        ("start", {"fixef": "0000"}, r"start\['fixef'\] must be a number or a sequence of numbers"),
    ],
)
def test_glmer_refuses_bad_options(cbpp, option, value, message):
    with pytest.raises(OptionError, match=message):
        skmixed.glmer(CBPP, cbpp, **{option: value})


def test_glmer_takes_lme4s_named_start(cbpp):
    """lme4: glmer(..., start = list(theta =, fixef =)); either part alone too."""
    default = skmixed.glmer(CBPP, cbpp)
    both = skmixed.glmer(CBPP, cbpp, start={"theta": [0.5], "fixef": [-1.4, -1.0, -1.1, -1.6]}, nAGQ=1.0)
    np.testing.assert_allclose(
        both.optsum.theta_init, [0.5, -1.4, -1.0, -1.1, -1.6], rtol=1e-14
    )  # via the standardized β
    assert 0 <= LME4["cbpp_start"] - both.objective < 6e-4  # at or below lme4's −2 log L (184.05313)
    assert both.objective == pytest.approx(default.objective, abs=1e-9)
    theta_only = skmixed.glmer(CBPP, cbpp, start=0.5)
    assert theta_only.objective == pytest.approx(default.objective, abs=1e-9)


def test_glmer_hands_only_theta_of_its_start_to_lmer(sleep):
    with pytest.warns(UserWarning, match="a Gaussian GLMM with the identity link is a linear mixed model"):
        fit = skmixed.glmer(SLOPE, sleep, family="gaussian", start={"theta": [0.5, 0.1, 0.3], "fixef": [250.0, 10.0]})
    np.testing.assert_array_equal(fit.optsum.theta_init, [0.5, 0.1, 0.3])
    assert fit.objective == pytest.approx(LME4["sleepstudy_slope_ml"], rel=1e-10)


# --- anova -------------------------------------------------------------------------
def test_anova_refuses_what_is_not_a_model(slope_fit):
    """lme4's anova(m, 3) ignores the 3 with a warning and prints m's F table; here it is an error."""
    with pytest.raises(OptionError, match=r"fitted by skmixed.lmer or skmixed.glmer; argument 2 is 3 \(int\)"):
        skmixed.anova(slope_fit, 3)
    est = skmixed.MixedLM(formula="~ Days + (1 | Subject)")
    with pytest.raises(OptionError, match="argument 1 is .*: pass the fitted estimator's result_"):
        skmixed.anova(est, slope_fit)


def test_anova_compares_two_models_or_tests_one(slope_fit):
    """One LMM gives lmerTest's F table (tests/test_lmertest.py checks its numbers)."""
    assert list(skmixed.anova(slope_fit).index) == ["Days"]
    with pytest.raises(OptionError, match="at least two nested models.*anova\\(m\\) of one linear mixed model"):
        skmixed.anova()


def test_anova_names_must_match_the_models(slope_fit, sleep):
    small = skmixed.lmer("Reaction ~ Days + (1 | Subject)", sleep, REML=False)
    big = slope_fit.refit_ml()
    with pytest.raises(OptionError, match="names must be 2 distinct labels"):
        skmixed.anova(small, big, names=["a"])
    with pytest.raises(OptionError, match="names must be 2 distinct labels"):
        skmixed.anova(small, big, names="ab")
    assert list(skmixed.anova(small, big, names=["small", "big"]).index) == ["small", "big"]


def test_anova_refuses_models_of_different_responses_or_data(slope_fit, sleep):
    """lme4 1.1-31 compares Reaction with log(Reaction) without a word (χ² = 2064.8 on 0 df) and refuses a
    data set of the same size but other values, or of fewer rows (its answers are in options_lme4.json)."""
    logged = skmixed.lmer("log(Reaction) ~ Days + (Days | Subject)", sleep)
    with pytest.raises(DataError, match=r"different responses \('Reaction', 'log\(Reaction\)'\)"):
        skmixed.anova(slope_fit, logged)
    shifted = sleep.assign(Reaction=sleep["Reaction"] + np.arange(len(sleep)) % 3)
    other = skmixed.lmer("Reaction ~ Days + (1 | Subject)", shifted)
    with pytest.raises(
        DataError, match=r"model 2 was fitted to different data than model 1 \(the values of 'Reaction' differ\)"
    ):
        skmixed.anova(slope_fit, other)
    fewer = skmixed.lmer("Reaction ~ Days + (1 | Subject)", sleep.iloc[1:])
    with pytest.raises(DataError, match=r"different numbers of observations \[179, 180\]"):
        skmixed.anova(slope_fit, fewer)


def test_anova_refuses_a_density_beside_a_probability(cbpp):
    with pytest.warns(skmixed.SingularFitWarning):  # as lme4's
        lmm = skmixed.lmer("incidence ~ period + (1 | herd)", cbpp)
    poisson = skmixed.glmer("incidence ~ period + (1 | herd)", cbpp, family="poisson")
    with pytest.raises(OptionError, match=r"model 1 \(a linear mixed model\) with model 2 \(a poisson GLMM\)"):
        skmixed.anova(lmm, poisson)


def test_anova_compares_poisson_with_negative_binomial_and_lmm_with_gamma(cbpp, sleep):
    offset = np.log(cbpp["size"])
    poisson = skmixed.glmer("incidence ~ period + (1 | herd)", cbpp, family="poisson", offset=offset)
    nb = skmixed.glmer("incidence ~ period + (1 | herd)", cbpp, family="negative_binomial", offset=offset)
    table = skmixed.anova(poisson, nb)
    assert table["Chisq"].iloc[1] == pytest.approx(poisson.deviance - nb.deviance)
    lmm = skmixed.lmer("Reaction ~ Days + (1 | Subject)", sleep, REML=False)
    gamma = skmixed.glmer("Reaction ~ Days + (1 | Subject)", sleep, family=skmixed.families.Gamma(link="log"))
    assert list(skmixed.anova(lmm, gamma)["npar"]) == [4, 4]


# --- estimators ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "estimator",
    [skmixed.MixedLM(), skmixed.GLMM(), skmixed.GLMM(family="gamma"), skmixed.GLMMClassifier()],
    ids=lambda e: repr(e),
)
def test_estimators_declare_every_parameter_for_sklearn_validation(estimator):
    """scikit-learn's own check: a constraint per parameter; a wrong type or value raises InvalidParameterError."""
    check_param_validation(type(estimator).__name__, estimator)


@pytest.mark.parametrize(
    ("estimator", "message"),
    [
        (skmixed.MixedLM(reml="FALSE"), "The 'reml' parameter of MixedLM must be an instance of 'bool'"),
        (skmixed.MixedLM(random_slopes=-1), "The 'random_slopes' parameter of MixedLM must be"),
        (skmixed.MixedLM(formula=3), "The 'formula' parameter of MixedLM must be an instance of 'str' or None"),
        (skmixed.GLMM(nAGQ=101), r"The 'nAGQ' parameter of GLMM must be an int in the range \[0, 100\]"),
        (skmixed.GLMM(family="poison"), "The 'family' parameter of GLMM must be a str among"),
        (skmixed.GLMMClassifier(link="identity"), "The 'link' parameter of GLMMClassifier must be a str among"),
    ],
)
def test_estimators_raise_sklearns_error_for_bad_hyper_parameters(sleep, estimator, message):
    X = pd.DataFrame({"Days": sleep["Days"], "Subject": sleep["Subject"]})
    with pytest.raises(InvalidParameterError, match=message):
        estimator.fit(X[["Days"]], (sleep["Reaction"] > 300).astype(int), groups=sleep["Subject"])
