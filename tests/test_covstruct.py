"""Residual covariance structures (``lmer(..., residual=...)``) against nlme 3.1-162's gls and lme.

The references are tests/fixtures/covstruct/covstruct_reference.json, made by covstruct_reference.R there: the
objective (−2 logLik) to 1e-6 relative, β, their standard errors, σ and Σ to the 1e-5 relative nlme's
convergence gives, AIC and BIC, and the likelihood-ratio test between nested structures.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import skmixed
from skmixed import datasets
from skmixed.covstruct import STRUCTURES, Structure, levinson_acf, parse_structure
from skmixed.exceptions import DataError, FormulaError, OptionError
from skmixed.residual import bind
from skmixed.residual_deviance import GlsDeviance

HERE = Path(__file__).parent / "fixtures" / "covstruct"
REF = json.loads((HERE / "covstruct_reference.json").read_text())["fits"]
GENDER = "distance ~ age * Sex"


def _orthodont(unbalanced: bool = False) -> pd.DataFrame:
    if unbalanced:
        d = pd.read_csv(HERE / "orthodont_unbalanced.csv")
        d["Sex"] = pd.Categorical(d["Sex"], ["Male", "Female"])
        return d
    return datasets.load("Orthodont")


#: fixture id → (formula, residual, data)
GLS = {
    "us_gender_ml": (GENDER, "us(age | Subject)"),
    "us_gender_reml": (GENDER, "us(age | Subject)"),
    "us_equal_ml": ("distance ~ age", "us(age | Subject)"),
    "diag_gender_ml": (GENDER, "diag(age | Subject)"),
    "diag_equal_ml": ("distance ~ age", "diag(age | Subject)"),
    "diag_gender_reml": (GENDER, "diag(age | Subject)"),
    "cs_reml": (GENDER, "cs(age | Subject)"),
    "csh_ml": (GENDER, "csh(age | Subject)"),
    "ar1_reml": (GENDER, "ar1(age | Subject)"),
    "ar1h_ml": (GENDER, "ar1h(age | Subject)"),
    "exp_reml": (GENDER, "exp(age | Subject)"),
    "toep_reml": (GENDER, "toep(age | Subject)"),
    "toeph_ml": (GENDER, "toeph(age | Subject)"),
    "unbal_us_reml": (GENDER, "us(age | Subject)"),
    "unbal_exp_ml": (GENDER, "exp(age | Subject)"),
    "lme_ar1_reml": (GENDER + " + (1 | Subject)", "ar1(age | Subject)"),
    "lme_diag_ml": (GENDER + " + (1 | Subject)", "diag(age | Subject)"),
}

_FITS: dict = {}


def _fit(key: str):
    if key not in _FITS:
        formula, residual = GLS[key]
        _FITS[key] = skmixed.lmer(
            formula, _orthodont(key.startswith("unbal")), REML=REF[key]["REML"], residual=residual
        )
    return _FITS[key]


@pytest.mark.parametrize("key", list(GLS))
def test_matches_nlme(key):
    ref, m = REF[key], _fit(key)
    np.testing.assert_allclose(m.objective, -2 * ref["logLik"], rtol=1e-9)
    assert m.npar == ref["df"]
    np.testing.assert_allclose([m.aic, m.bic], [ref["AIC"], ref["BIC"]], rtol=1e-9)
    assert list(m.fixef.index) == ref["beta_names"]
    # nlme stops at a relative tolerance that leaves β 1e-5 off on the unbalanced data (where our objective is
    # 5e-9 below nlme's, with a gradient of 1e-9)
    np.testing.assert_allclose(m.fixef, ref["beta"], rtol=5e-5)
    # nlme's gls scales an ML fit's vcov by N/(N − p) (its varBeta); lme4's convention, σ̂²_ML(X'V⁻¹X)⁻¹, is ours
    scale = np.sqrt((m.nobs - len(m.fixef)) / m.nobs) if not ref["REML"] and not key.startswith("lme") else 1.0
    np.testing.assert_allclose(m.fixef_se, np.array(ref["se"]) * scale, rtol=1e-4)
    np.testing.assert_allclose(m.sigma, ref["sigma"], rtol=1e-4)
    # Σ over all four ages (nlme's getVarCov of a subject with every visit: M02 in the unbalanced data)
    np.testing.assert_allclose(m.residual_cov.to_numpy(), np.array(ref["Sigma"]), rtol=1e-4, atol=1e-5)


def test_random_effects_with_a_structure_match_nlme():
    m, ref = _fit("lme_ar1_reml"), REF["lme_ar1_reml"]
    np.testing.assert_allclose(m.ranef["Subject"].loc[ref["ranef_subject"]], ref["ranef_first"], rtol=1e-4)
    re_rows = m.varcorr[m.varcorr.grp == "Subject"]
    np.testing.assert_allclose(re_rows.sdcor, ref["re_sd"], rtol=1e-4)
    assert m.optsum.optimizer == "nlopt LN_BOBYQA"


def test_sleepstudy_random_intercept_with_ar1():
    ref = REF["lme_sleep_ar1_reml"]
    d = datasets.load("sleepstudy")
    m = skmixed.lmer("Reaction ~ Days + (1 | Subject)", d, residual="ar1(Days | Subject)")
    np.testing.assert_allclose(m.objective, -2 * ref["logLik"], rtol=1e-9)
    np.testing.assert_allclose(m.fixef, ref["beta"], rtol=1e-5)
    np.testing.assert_allclose(m.residual_cov.to_numpy(), np.array(ref["Sigma"]), rtol=1e-4)


def test_de_leeuw_tables_2_and_3():
    """De Leeuw, "Linear Multilevel Models": Table 2's deviances without n·log 2π, Table 3's Σ (gender/free)."""
    d = datasets.load("Orthodont")
    constant = len(d) * np.log(2 * np.pi)
    cells = {("distance ~ age", "diag"): 305, ("distance ~ age", "us"): 233, (GENDER, "diag"): 279, (GENDER, "us"): 221}
    fits = {k: skmixed.lmer(k[0], d, REML=False, residual=f"{k[1]}(age | Subject)") for k in cells}
    for k, printed in cells.items():
        assert round(fits[k].objective - constant) == printed
    S = fits[(GENDER, "us")].residual_cov.to_numpy()
    sd = np.sqrt(np.diag(S))
    np.testing.assert_array_equal(np.round(np.diag(S), 2), [5.12, 3.93, 5.98, 4.62])
    corr = (S / np.outer(sd, sd))[np.tril_indices(4, -1)]
    np.testing.assert_array_equal(np.round(corr, 2), [0.54, 0.65, 0.56, 0.52, 0.72, 0.73])


@pytest.mark.parametrize("free_sigma", ["diag", "us", "cs"])
def test_unbounded_likelihood_is_a_data_error(free_sigma):
    """Table 2's −∞ cells: a line per child leaves a free Σ without a maximum."""
    d = datasets.load("Orthodont")
    with pytest.raises(DataError, match="no maximum"):
        skmixed.lmer("distance ~ 0 + Subject + Subject:age", d, REML=False, residual=f"{free_sigma}(age | Subject)")


def test_too_few_subjects_for_an_unstructured_sigma():
    d = datasets.load("Orthodont")
    few = d[d["Subject"].isin(["M01", "M02", "F01"])]
    with pytest.raises(DataError, match="span 3 of the 4 dimensions"):
        skmixed.lmer("distance ~ 1", few, residual="us(age | Subject)")
    assert np.isfinite(skmixed.lmer("distance ~ age", few, residual="ar1(age | Subject)").objective)


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_gradient_is_exact(name):
    d = datasets.load("Orthodont")
    design = bind(parse_structure(f"{name}(age | Subject)"), d)
    age, girl = d["age"].to_numpy(float), (d["Sex"] == "Female").to_numpy(float)
    X = np.column_stack([np.ones(len(d)), age, girl, age * girl])
    for reml in (False, True):
        dev = GlsDeviance(design, X, d["distance"].to_numpy(float), reml)
        phi = np.linspace(-0.3, 0.4, design.structure.n_par)
        _, grad = dev.value_and_gradient(phi)
        h = 1e-5
        numeric = [(dev(phi + h * e) - dev(phi - h * e)) / (2 * h) for e in np.eye(len(phi))]
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_structures_are_positive_definite_and_jacobian_exact(name):
    s = Structure(name, np.array([0.0, 1.0, 2.5, 3.0, 7.0]))
    rng = np.random.default_rng(1)
    phi = rng.normal(scale=1.5, size=s.n_par)
    R = s.matrix(phi)
    assert np.all(np.linalg.eigvalsh(R) > 0) and R[0, 0] == pytest.approx(1.0)
    h = 1e-6
    numeric = np.array([(s.matrix(phi + h * e) - s.matrix(phi - h * e)) / (2 * h) for e in np.eye(s.n_par)])
    np.testing.assert_allclose(s.jacobian(phi), numeric, atol=1e-7)


def test_levinson_matches_yule_walker_of_an_ar2():
    """AR(2) with coefficients a = (0.5, 0.3): partial autocorrelations π₁ = a₁/(1 − a₂), π₂ = a₂."""
    r = levinson_acf(np.array([0.5 / 0.7, 0.3, 0.0]))
    np.testing.assert_allclose(r[2], 0.5 * r[1] + 0.3, rtol=1e-12)
    np.testing.assert_allclose(r[3], 0.5 * r[2] + 0.3 * r[1], rtol=1e-12)


def test_anova_between_structures_matches_nlme():
    cs, us = _fit("cs_reml"), _fit("us_gender_reml")
    table = skmixed.anova(cs, us, refit=False)
    ref = REF["anova_cs_us"]
    np.testing.assert_allclose(table["Chisq"].iloc[1], ref["L_Ratio"], rtol=1e-5)
    np.testing.assert_allclose(table["Pr(>Chisq)"].iloc[1], ref["p"], rtol=1e-5)
    with pytest.raises(OptionError, match="same fixed effects"):
        skmixed.anova(_fit("us_equal_ml").refit_ml(), us, refit=False)
    with pytest.warns(UserWarning, match="refitting"):
        ml = skmixed.anova(cs, us)
    np.testing.assert_allclose(ml["logLik"].iloc[1], REF["us_gender_ml"]["logLik"], rtol=1e-9)


def test_compare_table():
    models = [_fit("cs_reml"), _fit("ar1_reml"), _fit("toep_reml"), _fit("us_gender_reml")]
    table = skmixed.compare(*models, names=["cs", "ar1", "toep", "us"])
    np.testing.assert_allclose(
        table["AIC"], [REF[k]["AIC"] for k in ("cs_reml", "ar1_reml", "toep_reml", "us_gender_reml")]
    )
    assert table["dAIC"].min() == 0 and list(table.criterion) == ["REML"] * 4
    with pytest.raises(OptionError, match="same fixed effects"):
        skmixed.compare(
            _fit("us_gender_reml"),
            skmixed.lmer("distance ~ age", datasets.load("Orthodont"), residual="cs(age | Subject)"),
        )


def test_predictions_and_varcorr_layout():
    m = _fit("lme_ar1_reml")
    d = datasets.load("Orthodont")
    np.testing.assert_allclose(m.predict(), m.fitted)
    np.testing.assert_allclose(m.predict(d, re_form="~0"), m.frame.X @ m.fixef.to_numpy())
    vc = m.varcorr
    own = vc[vc.grp == "Residual"]
    assert len(own) == 4 + 6 and list(own.var1[:4]) == ["8", "10", "12", "14"]
    np.testing.assert_allclose(own.vcov[:4], np.diag(m.residual_cov))
    text = str(m.summary())
    assert "ar1(age | Subject)" in text and "Correlations:" in text


@pytest.mark.parametrize(
    "residual, error, match",
    [
        ("us(age Subject)", FormulaError, "not a structure"),
        ("spline(age | Subject)", FormulaError, "unknown covariance structure"),
        ("ar1(when | Subject)", DataError, "not a column"),
        ("exp(Sex | Subject)", DataError, "numeric time"),
    ],
)
def test_bad_structures(residual, error, match):
    with pytest.raises(error, match=match):
        skmixed.lmer(GENDER, datasets.load("Orthodont"), residual=residual)


def test_bad_data_for_a_structure():
    d = datasets.load("Orthodont")
    dup = pd.concat([d, d.iloc[:1]], ignore_index=True)
    with pytest.raises(DataError, match="one row per Subject and age"):
        skmixed.lmer(GENDER, dup, residual="ar1(age | Subject)")
    unshared = d.copy()
    unshared["age"] = unshared["age"] + np.where(unshared["Sex"] == "Female", 1, 0)  # girls at 9, 11, 13, 15
    with pytest.raises(DataError, match="not identified"):
        skmixed.lmer(GENDER, unshared, residual="us(age | Subject)")
    with pytest.raises(OptionError, match="weights= and residual="):
        skmixed.lmer(GENDER, d, weights=np.ones(len(d)), residual="ar1(age | Subject)")
    with pytest.raises(OptionError, match="linear mixed models"):
        skmixed.glmer("distance ~ age + (1 | Subject)", d, family="poisson", residual="ar1(age | Subject)")


def test_estimator_and_magic_take_the_structure():
    from IPython.core.interactiveshell import InteractiveShell

    from skmixed.estimators import MixedLM

    d = datasets.load("Orthodont")
    est = MixedLM(formula="~ age * Sex", residual="us(age | Subject)").fit(d, d["distance"])
    np.testing.assert_allclose(est.result_.objective, -2 * REF["us_gender_reml"]["logLik"], rtol=1e-9)
    np.testing.assert_allclose(est.predict(d), est.result_.fitted)
    with pytest.raises(OptionError, match="formula mode"):
        MixedLM(residual="us(age | Subject)").fit(d[["age"]].to_numpy(), d["distance"])
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "skmixed.magics")
    shell.user_ns["orth_cs"] = d
    cell = '%%lmer -d orth_cs --ml -q -o cs_magic --residual "us(age | Subject)"\ndistance ~ age * Sex'
    assert shell.run_cell(cell, store_history=False).success
    fit = shell.user_ns.pop("cs_magic")
    np.testing.assert_allclose(fit.objective, -2 * REF["us_gender_ml"]["logLik"], rtol=1e-9)
    shell.user_ns.pop("orth_cs")
