"""Predictions with standard errors and intervals (m.predict(se_fit=True, interval=...)) and the estimators'
predict(return_std=True), against Henderson's mixed-model equations solved densely in R on lme4's estimates and
against R's lm / glm (fixtures/inference/emmeans_r2.R)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from inference_reference import fit, model_data, references
from reference import as_list
from scipy import stats

from skmixed import GLMM, MixedLM
from skmixed.exceptions import OptionError

PREDICT = {r["model"]: r for r in references()["predict"]}
Z95 = stats.norm.ppf(0.975)


def _new_data(model: str) -> pd.DataFrame:
    """The script's rows for levels not in the fit, typed as the fit's data."""
    data, new = model_data(model), pd.DataFrame(PREDICT[model]["new"]["data"])
    for column in new:
        if isinstance(data[column].dtype, pd.CategoricalDtype) and column == "period":
            new[column] = pd.Categorical(new[column].astype(str), categories=data[column].cat.categories)
    return new


@pytest.mark.parametrize("model", ["sleepstudy_slope", "sleepstudy_weighted", "penicillin"])
def test_lmm_standard_errors_match_the_mixed_model_equations(model):
    """Rows of seen levels (random slopes; prior weights; crossed factors), the population prediction
    (re_form='~0': √(x'Vx)), and rows of unseen levels (plus the term's variance z'Σz): to 1e-6 (they agree to
    6e-8)."""
    ref, m = PREDICT[model], fit(model)
    rows = np.array(as_list(ref["rows"])) - 1
    data = model_data(model).iloc[rows]
    out = m.predict(data, se_fit=True)
    assert list(out.columns) == ["fit", "se_fit"] and out.index.equals(data.index)
    np.testing.assert_allclose(out.fit, as_list(ref["fit"]), rtol=1e-7)
    np.testing.assert_allclose(out.se_fit, as_list(ref["se_fit"]), rtol=1e-6)
    np.testing.assert_allclose(m.predict(se_fit=True).se_fit.iloc[rows], as_list(ref["se_fit"]), rtol=1e-6)
    population = m.predict(data, re_form="~0", se_fit=True)
    np.testing.assert_allclose(population.fit, as_list(ref["fit_population"]), rtol=1e-7)
    np.testing.assert_allclose(population.se_fit, as_list(ref["se_population"]), rtol=1e-6)
    new = m.predict(_new_data(model), se_fit=True)
    np.testing.assert_allclose(new.fit, as_list(ref["new"]["fit"]), rtol=1e-7)
    np.testing.assert_allclose(new.se_fit, as_list(ref["new"]["se_fit"]), rtol=1e-6)


def test_glmm_standard_errors_match_the_working_equations():
    """cbpp on the link scale: the equations of the working response at the mode.  Our mode and lme4's differ by
    5e-4 (see inference_reference), and so do the standard errors (to 3e-4 here)."""
    ref, m = PREDICT["cbpp"], fit("cbpp")
    rows = np.array(as_list(ref["rows"])) - 1
    out = m.predict(model_data("cbpp").iloc[rows], se_fit=True)
    np.testing.assert_allclose(out.se_fit, as_list(ref["se_fit"]), rtol=5e-4)
    population = m.predict(model_data("cbpp").iloc[rows], re_form="~0", se_fit=True)
    np.testing.assert_allclose(population.se_fit, as_list(ref["se_population"]), rtol=5e-4)
    np.testing.assert_allclose(m.predict(_new_data("cbpp"), se_fit=True).se_fit, ref["new"]["se_fit"], rtol=5e-4)


def test_intervals():
    """Confidence: fit ∓ z·se_fit; prediction (LMM): fit ∓ z·√(se_fit² + σ²); level sets z."""
    m = fit("sleepstudy_slope")
    data = model_data("sleepstudy_slope").head(4)
    conf = m.predict(data, se_fit=True, interval="confidence")
    assert list(conf.columns) == ["fit", "se_fit", "lower", "upper"]
    np.testing.assert_allclose(conf.upper - conf.fit, Z95 * conf.se_fit, rtol=1e-12)
    np.testing.assert_allclose(conf.fit - conf.lower, Z95 * conf.se_fit, rtol=1e-12)
    pred = m.predict(data, interval="prediction", level=0.9)
    assert list(pred.columns) == ["fit", "lower", "upper"]
    half = stats.norm.ppf(0.95) * np.sqrt(conf.se_fit**2 + m.sigma**2)
    np.testing.assert_allclose(pred.upper - pred.fit, half, rtol=1e-12)


def test_glmm_response_scale():
    """Response scale: g⁻¹(η̂), the delta method's |dμ/dη|·se, and the link interval's ends mapped by g⁻¹."""
    m = fit("cbpp")
    data = model_data("cbpp").head(5)
    link = m.predict(data, se_fit=True, interval="confidence")
    resp = m.predict(data, type="response", se_fit=True, interval="confidence")
    family = m.family
    np.testing.assert_allclose(resp.fit, family.linkinv(link.fit), rtol=1e-12)
    np.testing.assert_allclose(resp.se_fit, family.mu_eta(link.fit) * link.se_fit, rtol=1e-12)
    np.testing.assert_allclose(resp.lower, family.linkinv(link.lower), rtol=1e-12)
    np.testing.assert_allclose(resp.upper, family.linkinv(link.upper), rtol=1e-12)
    assert ((resp.lower > 0) & (resp.upper < 1)).all()


def test_bad_requests_are_named():
    with pytest.raises(OptionError, match="prediction interval of a GLMM"):
        fit("cbpp").predict(interval="prediction")
    with pytest.raises(OptionError, match="interval must be"):
        fit("sleepstudy_slope").predict(interval="credible")
    with pytest.raises(OptionError, match="level must be"):
        fit("sleepstudy_slope").predict(interval="confidence", level=1.5)


def test_missing_covariate_gives_nan():
    data = model_data("sleepstudy_slope").head(3).copy()
    data["Days"] = data["Days"].astype(float)
    data.loc[data.index[1], "Days"] = np.nan
    out = fit("sleepstudy_slope").predict(data, se_fit=True)
    assert np.isnan(out.se_fit.iloc[1]) and np.isfinite(out.se_fit.iloc[[0, 2]]).all()


def test_mixedlm_return_std_is_the_predictive_sd():
    """√(se_fit² + σ²), se_fit the joint one; in array mode without groups every row's level is unseen, so the
    random intercept's variance counts too."""
    data = model_data("sleepstudy_slope")
    est = MixedLM(formula="~ Days + (Days | Subject)").fit(data, data.Reaction)
    mean, std = est.predict(data.head(6), return_std=True)
    out = est.result_.predict(data.head(6), se_fit=True)
    np.testing.assert_allclose(mean, out.fit, rtol=1e-12)
    np.testing.assert_allclose(std, np.sqrt(out.se_fit**2 + est.result_.sigma**2), rtol=1e-12)
    X = data[["Days"]].to_numpy(float)
    arr = MixedLM().fit(X, data.Reaction, groups=data.Subject)
    mean, std = arr.predict(X[:3], return_std=True)
    result = arr.result_
    tau2 = result.varcorr.vcov.iloc[0]
    population = result.predict(arr.encoding_.frame(X[:3], None), re_form="~0", se_fit=True)
    np.testing.assert_allclose(std, np.sqrt(population.se_fit**2 + tau2 + result.sigma**2), rtol=1e-10)


def test_estimators_without_groups_match_r_lm_and_glm():
    """Fitted without groups the estimators are R's lm and glm: their predict(se.fit = TRUE) standard errors."""
    ref = references()["glm_se"]
    data = model_data("sleepstudy_slope")
    lm = MixedLM().fit(data[["Days"]].to_numpy(float), data.Reaction)
    mean, std = lm.predict(data[["Days"]].to_numpy(float)[:3], return_std=True)
    np.testing.assert_allclose(mean, ref["lm"]["fit"], rtol=1e-10)
    np.testing.assert_allclose(std, np.hypot(ref["lm"]["se_fit"], ref["lm"]["sigma"]), rtol=1e-10)
    grouse = model_data("grouseticks")
    glm = GLMM(family="poisson").fit(grouse[["cHEIGHT"]].to_numpy(float), grouse.TICKS)
    mean, std = glm.predict(grouse[["cHEIGHT"]].to_numpy(float)[:3], return_std=True)
    mu, se = np.exp(ref["poisson"]["fit"]), np.array(ref["poisson"]["se_fit"])
    np.testing.assert_allclose(mean, mu, rtol=1e-7)
    np.testing.assert_allclose(std, np.sqrt(mu + (mu * se) ** 2), rtol=1e-6)


def test_glmm_return_std_adds_the_family_variance():
    """GLMM: √(φV(μ̂) + (dμ/dη)² se²), the binomial's V(μ) = μ(1 − μ) for one trial and se the joint one of η̂."""
    data = model_data("cbpp").assign(p=lambda d: d.incidence / d["size"])
    est = GLMM(family="binomial", formula="~ period + (1 | herd)").fit(data, data.p, sample_weight=data["size"])
    mean, std = est.predict(data.head(4), return_std=True)
    link = est.result_.predict(data.head(4), se_fit=True)
    mu = 1 / (1 + np.exp(-link.fit.to_numpy()))
    np.testing.assert_allclose(mean, mu, rtol=1e-12)
    np.testing.assert_allclose(std, np.sqrt(mu * (1 - mu) + (mu * (1 - mu) * link.se_fit) ** 2), rtol=1e-10)
