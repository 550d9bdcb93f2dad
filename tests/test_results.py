"""The result object: predictions, re_form, new levels, summaries, ICC and anova."""

import numpy as np
import pandas as pd
import pytest
from reference import load_data, references

import skmixed
from skmixed import DataError
from skmixed.pls import theta_scale
from skmixed.starts import moment_theta

REFS = references(None)


@pytest.fixture(scope="module")
def slope():
    return skmixed.lmer("Reaction ~ Days + (Days | Subject)", load_data(REFS["sleepstudy_slope_reml"]))


def test_predict_on_training_data_equals_fitted(slope):
    data = slope.frame.data
    np.testing.assert_allclose(slope.predict(data), slope.fitted, rtol=1e-12)
    np.testing.assert_allclose(slope.predict(), slope.fitted, rtol=1e-12)
    np.testing.assert_allclose(slope.residuals, slope.frame.y - slope.fitted)


def test_population_prediction_and_re_form(slope):
    data = slope.frame.data
    pop = slope.fixef["(Intercept)"] + slope.fixef["Days"] * data["Days"].to_numpy()
    for form in ("~0", "population", np.nan):
        np.testing.assert_allclose(slope.predict(data, re_form=form), pop)
    np.testing.assert_allclose(slope.predict(data, re_form="~(Days | Subject)"), slope.fitted)
    with pytest.raises(ValueError, match="not in the model"):
        slope.predict(data, re_form="~(1 | Other)")


def test_new_levels_get_the_population_prediction(slope):
    new = pd.DataFrame({"Days": [0.0, 5.0, 5.0], "Subject": ["999", "308", "998"]})
    pred = slope.predict(new)
    pop = slope.predict(new, re_form="~0")
    b = slope.ranef["Subject"].loc["308"]
    assert pred[0] == pytest.approx(pop[0]) and pred[2] == pytest.approx(pop[2])
    assert pred[1] == pytest.approx(pop[1] + b["(Intercept)"] + 5 * b["Days"])
    with pytest.raises(DataError, match=r"levels of 'Subject' not in the fit \(998, 999\)"):
        slope.predict(new, allow_new_levels=False)


def test_stateful_transforms_encode_new_data_like_the_fit():
    df = load_data(REFS["extra/sleepstudy_poly2"])
    m = skmixed.lmer("Reaction ~ poly(Days, 2) + (1 | Subject)", df)
    np.testing.assert_allclose(m.predict(df.iloc[:7]), m.fitted[:7], rtol=1e-10)


def test_offsets_in_new_data():
    ref = REFS["extra/offset_formula_lmm"]
    df = load_data(ref)
    m = skmixed.lmer(ref["formula"], df)
    np.testing.assert_allclose(m.predict(df), m.fitted, rtol=1e-10)
    arg = skmixed.lmer("y ~ x + (1 | g)", df, offset="off")
    np.testing.assert_allclose(arg.predict(df), m.fitted, rtol=1e-8)
    arr = skmixed.lmer("y ~ x + (1 | g)", df, offset=df["off"].to_numpy())
    with pytest.raises(DataError, match="pass offset="):
        arr.predict(df)
    np.testing.assert_allclose(arr.predict(df, offset=df["off"].to_numpy()), m.fitted, rtol=1e-8)


def test_summary_reads_like_lme4(slope):
    text = str(slope.summary())
    for fragment in [
        "Linear mixed model fit by REML. t-tests use Satterthwaite's method ['lmerModLmerTest']",
        "REML criterion at convergence: 1743.6",
        "Scaled residuals:",
        "Subject  (Intercept)",
        "Residual",
        "Number of obs: 180, groups:  Subject, 18",
        "Estimate Std. Error      df t value Pr(>|t|)",
        "Correlation of Fixed Effects:",
    ]:
        assert fragment in text, fragment
    assert "<table" in slope._repr_html_()
    assert "REML criterion at convergence: 1743.6283" in str(slope)
    table = slope.summary().coefficients
    assert table.loc["Days", "t value"] == pytest.approx(slope.fixef["Days"] / slope.fixef_se["Days"])
    lme4 = str(slope.summary(ddf=None))
    assert "Linear mixed model fit by REML ['lmerMod']" in lme4 and "Estimate Std. Error t value\n" in lme4


def test_optimization_summary_is_kept(slope):
    opt = slope.optsum
    assert opt.optimizer == "scipy L-BFGS-B (analytic gradient)" and opt.converged
    assert opt.n_evaluations > 3 and opt.objective == pytest.approx(slope.objective)
    model = skmixed.build("Reaction ~ Days + (Days | Subject)", load_data(REFS["sleepstudy_slope_reml"]))
    start = moment_theta(model.cp, model.re, theta_scale(model.cp, model.re))  # the moment estimates, user's scale
    np.testing.assert_allclose(opt.theta_init, model.standardization.theta(start), rtol=1e-14)
    assert opt.objective < opt.objective_init
    assert "evaluations" in str(opt)


def test_icc_of_a_random_intercept_model():
    m = skmixed.lmer("Yield ~ 1 + (1 | Batch)", load_data(REFS["dyestuff"]))
    vc = m.varcorr.set_index("grp")["vcov"]
    assert m.icc()["Batch"] == pytest.approx(vc["Batch"] / (vc["Batch"] + vc["Residual"]))
    with pytest.raises(ValueError, match="random-intercept"):
        skmixed.lmer("Reaction ~ Days + (Days | Subject)", load_data(REFS["sleepstudy_slope_reml"])).icc()


def test_anova_refits_with_ml_and_matches_lme4():
    df = load_data(REFS["sleepstudy_slope_reml"])
    small = skmixed.lmer("Reaction ~ Days + (1 | Subject)", df)
    big = skmixed.lmer("Reaction ~ Days + (Days | Subject)", df)
    with pytest.warns(UserWarning, match="refitting model"):
        table = skmixed.anova(big, small)
    expected = REFS["extra/sleepstudy_int_ml"]["objective"] - REFS["sleepstudy_slope_ml"]["objective"]
    assert list(table.index) == ["m2", "m1"]
    assert table["Chisq"].iloc[1] == pytest.approx(expected, rel=1e-6)
    assert table["Df"].iloc[1] == 2
    assert table["AIC"].iloc[0] == pytest.approx(REFS["extra/sleepstudy_int_ml"]["AIC"], rel=1e-8)
    assert list(skmixed.anova(big).columns) == ["sum_sq", "mean_sq", "num_df", "den_df", "F", "p"]  # one model: F tests
