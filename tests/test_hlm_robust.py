"""Cluster-robust covariances (clubSandwich 0.5.8 fixtures; HLM's robust SEs) and HLM's reliabilities."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import skmixed
from skmixed import datasets
from skmixed.exceptions import OptionError
from skmixed.optimizers import OptSummary

FIXTURES = Path(__file__).parent / "fixtures" / "hlm"
REFERENCE = json.loads((FIXTURES / "clubsandwich.json").read_text())["models"]


def _at(formula: str, data: pd.DataFrame, theta, REML: bool, weights=None):
    """The model fitted at lme4's θ, so that the comparison does not depend on where two optimizers stopped."""
    model = skmixed.build(formula, data, REML=REML, weights=weights)
    devfun = skmixed.deviance(model)
    theta = np.atleast_1d(np.asarray(theta, dtype=float))
    objective = devfun(theta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return skmixed.make_result(model, devfun, OptSummary("lme4", theta, objective, theta, objective, 0, True, ""))


@pytest.fixture(scope="module", params=[r["id"] for r in REFERENCE])
def case(request):
    ref = next(r for r in REFERENCE if r["id"] == request.param)
    return ref, _at(ref["formula"], datasets.load(ref["data"]), ref["theta"], ref["REML"])


@pytest.mark.parametrize("type_", ["CR0", "CR1", "CR1S", "CR2"])
def test_vcov_matches_clubsandwich(case, type_):
    ref, m = case
    np.testing.assert_allclose(m.fixef, ref["beta"], rtol=1e-10)
    expected = np.array(ref[type_])
    got = m.robust_vcov(type_)
    assert list(got.index) == ref["names"] == list(got.columns)
    np.testing.assert_allclose(got.to_numpy(), expected, rtol=1e-10, atol=1e-12 * np.abs(expected).max())


def test_coef_table_matches_clubsandwich_coef_test(case):
    ref, m = case
    table = m.coef_table(vcov="CR2")
    assert list(table.columns) == ["estimate", "se", "df", "t", "p"]
    np.testing.assert_allclose(table["se"], ref["CR2_se"], rtol=1e-10)
    np.testing.assert_allclose(table["df"], ref["CR2_df"], rtol=1e-10)
    np.testing.assert_allclose(table["p"], ref["CR2_p"], rtol=1e-8)
    np.testing.assert_allclose(m.coef_table(vcov="cr0")["df"], ref["CR0_df"], rtol=1e-10)


def test_hlm_manual_robust_standard_errors_are_cr0():
    """The HLM 7 manual's High School and Beyond example (MATHACH on FEMALE, both coefficients random, REML) prints
    model-based SEs 0.261011 and 0.185852 and robust SEs 0.261027 and 0.185897; its τ (8.589, 0.647) differs from
    lme4's optimum (8.660, 0.684) in the third digit, which moves the SEs by up to 8e-5 relative."""
    m = skmixed.lmer("mAch ~ sx + (sx | school)", datasets.load("Hsb82"))
    np.testing.assert_allclose(m.fixef, [13.345654, -1.381355], rtol=3e-4)
    np.testing.assert_allclose(m.coef_table(vcov="CR0", ddf=None)["se"], [0.261027, 0.185897], rtol=1e-4)


def test_explicit_cluster_and_errors():
    sleep = datasets.load("sleepstudy")
    m = skmixed.lmer("Reaction ~ Days + (Days | Subject)", sleep)
    np.testing.assert_allclose(m.robust_vcov(cluster="Subject"), m.robust_vcov(), rtol=1e-14)
    np.testing.assert_allclose(m.robust_vcov(cluster=sleep["Subject"].to_numpy()), m.robust_vcov(), rtol=1e-14)
    with pytest.raises(OptionError, match="CR0, CR1, CR1S, CR2"):
        m.robust_vcov("HC3")
    with pytest.raises(OptionError, match="neither a grouping factor"):
        m.robust_vcov(cluster="nope")
    with pytest.raises(OptionError, match="not nested in the clusters 'Days'"):
        m.robust_vcov(cluster="Days")
    with pytest.raises(OptionError, match="one per row"):
        m.robust_vcov(cluster=np.arange(5))
    with pytest.raises(OptionError, match="Satterthwaite"):
        m.coef_table(ddf="Kenward-Roger", vcov="CR2")
    pen = skmixed.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", datasets.load("Penicillin"))
    with pytest.raises(OptionError, match="not nested"):
        pen.robust_vcov()


def test_constant_weights_leave_the_sandwich_unchanged():
    """Weights w = 4 with θ/2 is the same marginal model (σ² four times larger, W⁻¹ four times smaller), so the
    same robust covariance and df: the weights enter Θ_j as W_j⁻¹."""
    sleep = datasets.load("sleepstudy").assign(w=4.0)
    a = skmixed.lmer("Reaction ~ Days + (Days | Subject)", sleep)
    b = _at("Reaction ~ Days + (Days | Subject)", sleep, a.theta / 2.0, True, weights="w")
    np.testing.assert_allclose(b.sigma, 2 * a.sigma, rtol=1e-10)
    np.testing.assert_allclose(b.robust_vcov("CR2"), a.robust_vcov("CR2"), rtol=1e-10)
    np.testing.assert_allclose(b.coef_table(vcov="CR2")["df"], a.coef_table(vcov="CR2")["df"], rtol=1e-10)


# --- reliability -------------------------------------------------------------------------------------------------


def test_reliability_matches_hlm7_on_sleepstudy():
    """HLM 7 on lme4's sleepstudy (Reaction on Days, both random, REML) prints reliabilities 0.730 (intercept) and
    0.815 (Days): B. Mrozinski, "Computing Reliability for the Least Squares Estimates of Level 1 Coefficients",
    R-sig-mixed-models, January 2018 (also StackOverflow question 48438755)."""
    m = skmixed.lmer("Reaction ~ Days + (Days | Subject)", datasets.load("sleepstudy"))
    rel = m.reliability()
    assert list(rel.index) == [("Subject", "(Intercept)"), ("Subject", "Days")]
    assert list(rel.round(3)) == [0.730, 0.815]
    assert rel.attrs["units"] == {"Subject": (18, 18)}


def test_reliability_matches_hlm6_on_high_school_and_beyond():
    """HLM 6 on High School and Beyond, unconditional model (MATHACH, random intercept by school, REML) prints
    σ² = 39.14831, τ00 = 8.61431 and the reliability 0.901: UCLA statistical consulting group, "Annotated HLM
    output: unconditional model".  HLM stops iterating 3e-5 (relative) short of τ00's optimum."""
    m = skmixed.lmer("mAch ~ 1 + (1 | school)", datasets.load("Hsb82"))
    np.testing.assert_allclose(m.varcorr["vcov"], [8.61431, 39.14831], rtol=4e-5)
    assert round(m.reliability()[("school", "(Intercept)")], 3) == 0.901


def test_reliability_is_raudenbush_and_bryks_mean():
    """Eq. 3.58 by hand: λ_qj = τ_qq / (τ_qq + σ²[(X_j'X_j)⁻¹]_qq), averaged over schools; single-sex schools
    (X_j'X_j singular) are left out: 123 of 160, as the HLM manual's note on this model says."""
    hsb = datasets.load("Hsb82")
    m = skmixed.lmer("mAch ~ sx + (sx | school)", hsb)
    tau = np.diag(m.varcorr.iloc[:2]["vcov"].to_numpy())
    lam = []
    for _, g in hsb.groupby("school", observed=True):
        X = np.column_stack([np.ones(len(g)), (g["sx"] == "Female").to_numpy(float)])
        if np.linalg.matrix_rank(X) == 2:
            v = m.sigma**2 * np.diag(np.linalg.inv(X.T @ X))
            lam.append(tau.diagonal() / (tau.diagonal() + v))
    rel = m.reliability()
    np.testing.assert_allclose(rel.to_numpy(), np.mean(lam, axis=0), rtol=1e-12)
    assert rel.attrs["units"] == {"school": (123, 160)}


def test_level3_reliability_is_raudenbush_and_bryks():
    """A random intercept at level 3 (their chapter 8): λ_k = τ_β / (τ_β + [Σ_j (τ_π + σ²/n_jk)⁻¹]⁻¹)."""
    pastes = datasets.load("Pastes")
    m = skmixed.lmer("strength ~ 1 + (1 | batch/cask)", pastes)
    vc = m.varcorr.set_index("grp")["vcov"]
    tau_pi, tau_beta, sigma2 = vc["cask:batch"], vc["batch"], vc["Residual"]
    lam = []
    for _, b in pastes.groupby("batch", observed=True):
        n = b.groupby("cask", observed=True).size().to_numpy()
        v = 1.0 / np.sum(1.0 / (tau_pi + sigma2 / n))
        lam.append(tau_beta / (tau_beta + v))
    rel = m.reliability()
    np.testing.assert_allclose(rel[("batch", "(Intercept)")], np.mean(lam), rtol=1e-12)
    np.testing.assert_allclose(rel[("cask:batch", "(Intercept)")], tau_pi / (tau_pi + sigma2 / 2), rtol=1e-12)


def test_reliability_of_crossed_factors_is_an_error():
    pen = skmixed.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", datasets.load("Penicillin"))
    with pytest.raises(OptionError, match="crossed"):
        pen.reliability()
