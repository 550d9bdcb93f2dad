"""Random-effect covariance structures in the formula (``diag(1 + x | g)``, ``cs(...)``, ``ar1(...)``, the
homogeneous ``homdiag``, ``homcs``, ``homar1``) against glmmTMB 1.1.5 and nlme 3.1-162 (pdDiag, pdIdent,
pdCompSymm): tests/fixtures/covstruct/re_structures_reference.json, made by re_structures_reference.R there.
Objectives to 1e-6 relative (we reach 1e-9), SDs, correlations and σ to the 1e-5 the references converge to.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import skmixed
from skmixed import datasets
from skmixed.exceptions import FormulaError, OptionError
from skmixed.formula import parse_formula

HERE = Path(__file__).parent / "fixtures" / "covstruct"
REF = json.loads((HERE / "re_structures_reference.json").read_text())["fits"]

CASES = {
    "tmb_us": "Reaction ~ Days + us(1 + Days | Subject)",
    "tmb_diag": "Reaction ~ Days + diag(1 + Days | Subject)",
    "tmb_cs": "Reaction ~ Days + cs(1 + Days + Days2 | Subject)",
    "tmb_ar1": "Reaction ~ Days + ar1(0 + period | Subject)",
    "nlme_diag": "Reaction ~ Days + diag(Days | Subject)",
    "nlme_homdiag": "Reaction ~ Days + homdiag(Days | Subject)",
    "nlme_homcs": "Reaction ~ Days + homcs(1 + Days + Days2 | Subject)",
}


@pytest.fixture(scope="module")
def sleep():
    d = datasets.load("sleepstudy")
    d["Days2"] = (d["Days"] - 4.5) ** 2 / 10
    d["period"] = (d["Days"] // 4).astype(str)  # days 0-3, 4-7, 8-9
    return d


@pytest.mark.parametrize("key", list(CASES))
def test_matches_glmmtmb_and_nlme(key, sleep):
    ref = REF[key]
    m = skmixed.lmer(CASES[key], sleep)
    np.testing.assert_allclose(m.objective, -2 * ref["logLik"], rtol=1e-9)
    assert m.npar == ref["df"]
    np.testing.assert_allclose(m.fixef, ref["beta"], rtol=1e-5)
    np.testing.assert_allclose(m.sigma, ref["sigma"], rtol=1e-5)
    V = m._term_covariances()[0]
    sd = np.sqrt(np.diag(V))
    np.testing.assert_allclose(sd, ref["sd"], rtol=1e-4)
    np.testing.assert_allclose(V / np.outer(sd, sd), np.array(ref["corr"], dtype=float).reshape(V.shape), atol=1e-5)
    if key != "tmb_us":
        assert m.optsum.optimizer.startswith("nlopt LN_BOBYQA over the covariance structures' parameters")


def test_diag_is_lme4s_double_bar_and_us_the_default(sleep):
    diag = skmixed.lmer("Reaction ~ Days + diag(1 + Days | Subject)", sleep)
    double_bar = skmixed.lmer("Reaction ~ Days + (1 + Days || Subject)", sleep)
    np.testing.assert_allclose(diag.objective, double_bar.objective, rtol=1e-9)
    assert diag.npar == double_bar.npar
    us = skmixed.lmer("Reaction ~ Days + us(Days | Subject)", sleep)
    plain = skmixed.lmer("Reaction ~ Days + (Days | Subject)", sleep)
    assert us.objective == plain.objective and us.optsum.n_evaluations == plain.optsum.n_evaluations


def test_homar1_is_ar1_and_parameters(sleep):
    ar1 = skmixed.lmer("Reaction ~ Days + ar1(0 + period | Subject)", sleep)
    hom = skmixed.lmer("Reaction ~ Days + homar1(0 + period | Subject)", sleep)
    np.testing.assert_allclose(hom.objective, ar1.objective, rtol=1e-12)
    sd_rel, phi = ar1.re_parameters
    np.testing.assert_allclose(sd_rel * ar1.sigma, REF["tmb_ar1"]["sd"][0], rtol=1e-4)
    np.testing.assert_allclose(np.tanh(phi), REF["tmb_ar1"]["corr"][0][1], rtol=1e-4)
    text = str(ar1.summary(ddf=None))
    assert "(ar1)" in text and "ar1(0 + period | Subject)" in text


def test_refits_keep_the_structure(sleep):
    m = skmixed.lmer("Reaction ~ Days + homcs(1 + Days + Days2 | Subject)", sleep)
    ml = m.refit_ml()
    V = ml._term_covariances()[0]
    assert np.allclose(np.diag(V), V[0, 0]) and ml.npar == m.npar  # still one variance and one correlation
    with pytest.warns(UserWarning, match="refitting"):
        table = skmixed.anova(m, skmixed.lmer("Reaction ~ Days + (1 + Days + Days2 | Subject)", sleep, REML=False))
    assert list(table["npar"]) == [5, 9] and table["logLik"].iloc[0] == pytest.approx(ml.loglik, rel=1e-9)
    diag = skmixed.lmer("Reaction ~ Days + diag(Days | Subject)", sleep)
    boot = diag.bootstrap(3, seed=1)  # each replicate refitted with the structure: T's off-diagonal stays 0
    assert (boot.replicates["theta_2"] == 0).all() and boot.replicates["converged"].all()


def test_parse_and_errors(sleep):
    bars = parse_formula("y ~ x + diag(1 + x | g) + cs(0 + a + b | h)").bars
    assert [(b.structure, str(b)) for b in bars] == [("diag", "diag(1 + x | g)"), ("cs", "cs(0 + a + b | h)")]
    with pytest.raises(FormulaError, match="one effect"):
        skmixed.lmer("Reaction ~ Days + cs(1 | Subject)", sleep)
    with pytest.raises(FormulaError, match="for lmer only"):
        skmixed.glmer("I(Reaction > 300) ~ Days + diag(Days | Subject)", sleep, family="binomial")
    m = skmixed.lmer("Reaction ~ Days + diag(Days | Subject)", sleep)
    with pytest.raises(OptionError, match="covariance structure"):  # confint's profile intervals go through it
        m.profile()
    with pytest.raises(OptionError, match="Satterthwaite"):
        m.coef_table(ddf="Satterthwaite")
    assert "t tests without df" in str(m.summary())


def test_estimator_takes_structured_terms(sleep):
    from skmixed.estimators import MixedLM

    est = MixedLM(formula="~ Days + diag(Days | Subject)").fit(sleep, sleep["Reaction"])
    np.testing.assert_allclose(est.result_.objective, -2 * REF["nlme_diag"]["logLik"], rtol=1e-9)
    assert len(est.variance_components_) == 3  # two SDs and σ: no covariance row for a diagonal term
