"""skmixed.r2 and skmixed.icc against performance 0.10.2 / insight 0.19.0 (fixtures/inference/emmeans_r2.R):
Nakagawa's R² and the ICC of LMMs with random intercepts, slopes and crossed factors, and of binomial (logit,
probit, observation-level effect) and Poisson GLMMs; and the two places where insight's variance is wrong."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
from inference_reference import at_r_estimates, fit, model_data, references

import skmixed
from skmixed.exceptions import OptionError
from skmixed.r2 import variance_components

R2 = {r["model"]: r for r in references()["r2"]}
LMMS = ["exam_additive", "orthodont", "sleepstudy_slope", "sleepstudy_slope_ml", "penicillin"]
GLMMS = ["cbpp", "cbpp_olre", "cbpp_probit", "grouseticks"]


def _check(m, ref: dict, rtol: float, **kwargs) -> None:
    """The variance components (a constant fixed part's variance is rounding: 1e-29 here, 0 in R), R² and ICC."""
    v = variance_components(m, **kwargs)
    for ours, theirs in (("fixed", "var_fixed"), ("random", "var_random"), ("distribution", "var_distribution")):
        np.testing.assert_allclose(v[ours], ref[theirs], rtol=rtol, atol=1e-20, err_msg=ours)
    np.testing.assert_allclose(v.dispersion, ref["var_dispersion"], rtol=rtol)
    np.testing.assert_allclose(v.residual, ref["var_residual"], rtol=rtol)
    _check_r2(m, ref, rtol, 1e-20, **kwargs)


def _check_r2(m, ref: dict, rtol: float, atol: float, **kwargs) -> None:
    r2, icc = skmixed.r2(m, **kwargs), skmixed.icc(m, **kwargs)
    assert list(r2.index) == ["marginal", "conditional"] and list(icc.index) == ["adjusted", "conditional"]
    np.testing.assert_allclose(r2.to_numpy(), [ref["marginal"], ref["conditional"]], rtol=rtol, atol=atol)
    np.testing.assert_allclose(icc.to_numpy(), [ref["icc_adjusted"], ref["icc_conditional"]], rtol=rtol, atol=atol)


@pytest.mark.parametrize("model", LMMS)
def test_lmm_r2_and_icc_match_performance(model):
    """Random intercepts (Exam), random slopes (sleepstudy, Orthodont: the random variance is the mean of zᵢ'Σzᵢ),
    an ML fit and crossed factors (Penicillin), to 1e-6."""
    _check(fit(model), R2[model], rtol=1e-6)


def _null_model_at_r(model_id: str):
    """Our fit of the null model with lme4's estimates of it (for grouseticks' λ = exp(β₀))."""
    ref = references()["null_models"][model_id]
    m = fit(model_id)
    null = skmixed.glmer(ref["formula"], model_data(model_id), family="poisson")
    solution = dataclasses.replace(null.solution, beta=np.array([ref["intercept"]]), theta=np.array(ref["theta"]))
    return dataclasses.replace(null, solution=solution, _cache={}), m


@pytest.mark.parametrize("model", GLMMS)
def test_glmm_r2_and_icc_match_performance_at_lme4_estimates(model):
    """π²/3 (logit) and 1 (probit), an observation-level effect counted as dispersion, and Poisson's lognormal
    log(1 + 1/λ) from the null model: at lme4's estimates (and its null model's), to 1e-10."""
    null = _null_model_at_r(model)[0] if model in references()["null_models"] else None
    _check(at_r_estimates(model), R2[model], rtol=1e-10, null_model=null)


def test_glmm_r2_at_our_estimates():
    """At our own fits: cbpp's observation-level and probit models agree with lme4's to 1e-5 in θ and β, and so
    do R² and the ICC (to 4e-6 here).  (grouseticks' null model does not: lme4's Laplace deviance there is 0.008
    above ours, and λ differs by 0.3%.)"""
    for model in ("cbpp_olre", "cbpp_probit"):
        _check_r2(fit(model), R2[model], rtol=0, atol=1e-5)


def test_uncorrelated_slopes_count_both_terms():
    """insight keeps one covariance per grouping factor, so (Days || Subject) loses its slope term (R: 627.6, the
    intercept's variance alone).  Here both terms count: the slope adds its variance times the mean of Days²."""
    m, ref = fit("sleepstudy_uncorrelated"), R2["sleepstudy_uncorrelated"]
    vc = references()["fits"]["sleepstudy_uncorrelated"]["varcorr"]
    slope = next(r["vcov"] for r in vc if r["var1"] == "Days")
    days = model_data("sleepstudy_uncorrelated").Days.to_numpy(float)
    expected = ref["var_random"] + slope * np.mean(days**2)
    np.testing.assert_allclose(variance_components(m).random, expected, rtol=1e-6)
    np.testing.assert_allclose(variance_components(m).fixed, ref["var_fixed"], rtol=1e-6)


def test_random_slope_without_fixed_effect_is_counted_and_warned():
    """Reaction ~ 1 + (Days | Subject): insight reads slopes from the fixed-effects matrix, which has no Days, and
    counts only the intercept's variance (with a warning).  Here the slope and covariance count: mean of zᵢ'Σzᵢ."""
    m, ref = fit("sleepstudy_no_fixed_slope"), R2["sleepstudy_no_fixed_slope"]
    vc = {(r["var1"], r["var2"]): r["vcov"] for r in references()["fits"]["sleepstudy_no_fixed_slope"]["varcorr"]}
    days = model_data("sleepstudy_no_fixed_slope").Days.to_numpy(float)
    expected = (
        vc[("(Intercept)", None)]
        + 2 * vc[("(Intercept)", "Days")] * days.mean()
        + vc[("Days", None)] * np.mean(days**2)
    )
    assert abs(vc[("(Intercept)", None)] / ref["var_random"] - 1) < 1e-6  # insight's value: the intercept alone
    with pytest.warns(UserWarning, match="random slopes on Days, which are not fixed effects"):
        v = variance_components(m)
    np.testing.assert_allclose(v.random, expected, rtol=1e-6)
    assert abs(v.fixed) < 1e-20


def test_singular_fit_warns_and_uses_the_estimate():
    data = skmixed.datasets.load("Dyestuff2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = skmixed.lmer("Yield ~ 1 + (1 | Batch)", data)
    with pytest.warns(UserWarning, match="singular"):
        r2 = skmixed.r2(m)
    np.testing.assert_allclose(r2.conditional, r2.marginal, atol=1e-8)


def test_unsupported_family_and_bad_null_model_are_named():
    data = model_data("grouseticks").assign(TICKS=lambda d: d.TICKS + 0.5)
    gamma = skmixed.glmer("TICKS ~ YEAR + (1 | LOCATION)", data, family="gamma")
    with pytest.raises(OptionError, match="not for the Gamma"):
        skmixed.r2(gamma)
    with pytest.raises(OptionError, match="null_model must be"):
        skmixed.r2(fit("grouseticks"), null_model=fit("grouseticks"))


def test_icc_method_of_random_intercept_models_is_unchanged():
    """m.icc() stays the per-factor ICC of random-intercept models; skmixed.icc is performance's."""
    m = fit("exam_additive")
    np.testing.assert_allclose(m.icc().iloc[0], skmixed.icc(m).adjusted, rtol=1e-12)
