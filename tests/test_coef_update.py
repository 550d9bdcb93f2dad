"""m.coef against lme4's coef(), update_formula against R's update.formula, and m.update's refits
(fixtures/inference/emmeans_r2.R)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from inference_reference import fit, model_data, references
from reference import as_list

import skmixed
from skmixed.exceptions import FormulaError, OptionError
from skmixed.update import random_part, update_formula


@pytest.mark.parametrize("case", references()["coef"], ids=lambda c: c["model"])
def test_coef_matches_lme4(case):
    """Fixed effects repeated per level plus its conditional modes; a random effect without a fixed effect
    (Reaction ~ 1 + (Days | Subject)) comes first with fixed part 0, as lme4 prints it; uncorrelated terms on one
    factor share its table; crossed factors each have theirs.  To 1e-6 for the LMMs; cbpp's GLMM fit agrees with
    lme4's to 5e-4 (see inference_reference), and so do its coefficients."""
    coef = fit(case["model"]).coef
    rtol = 1e-6 if references()["fits"][case["model"]]["family"] is None else 1e-3
    assert list(coef) == list(case["coef"])
    for group, ref in case["coef"].items():
        table = coef[group]
        assert list(table.columns) == as_list(ref["columns"])
        assert [str(v) for v in table.index] == ref["levels"]
        np.testing.assert_allclose(table.to_numpy(), np.array(ref["values"], dtype=float), rtol=rtol)


@pytest.mark.parametrize("case", references()["update"], ids=lambda c: f"{c['old']} | {c['new']}")
def test_update_formula_matches_r(case):
    """Dots on either side, removal and addition of fixed and random terms, interactions written in the
    formula's variable order, terms ordered by degree, offsets kept, the intercept removed with '- 1'."""
    assert update_formula(case["old"], case["new"]) == case["result"]


def test_update_refits_as_lme4():
    """update(m, . ~ . - schgend, REML = FALSE): the formula, ML objective and estimates of lme4's refit."""
    ref = references()["refit"]
    m = fit(ref["model"]).update(ref["new"], REML=ref["REML"])
    assert m.formula == ref["formula"] and not m.REML
    np.testing.assert_allclose(m.objective, ref["objective"], rtol=1e-10)
    np.testing.assert_allclose(m.fixef.to_numpy(), list(ref["fixef"].values()), rtol=1e-6)
    np.testing.assert_allclose(m.theta, np.atleast_1d(ref["theta"]), rtol=1e-5)


def test_update_keeps_the_fits_options():
    """REML stays as fitted unless replaced; a GLMM keeps its family and nAGQ; no formula refits as it was."""
    m = fit("sleepstudy_slope")
    same = m.update()
    assert same.REML and same.formula == m.formula
    np.testing.assert_allclose(same.objective, m.objective, rtol=1e-12)
    gm = fit("cbpp_probit").update(". ~ . - period")
    assert gm.family.link.name == "probit" and gm.nAGQ == 1 and list(gm.fixef.index) == ["(Intercept)"]
    with pytest.raises(OptionError, match="maximum likelihood"):
        fit("cbpp").update(REML=False)


def test_update_carries_weights_and_offsets():
    """The fit's weights (trials of cbind taken out) and an offset array follow its rows; new data need them."""
    data = model_data("sleepstudy_slope")
    w = np.linspace(0.5, 2.0, len(data))
    m = skmixed.lmer("Reaction ~ Days + (1 | Subject)", data, weights=w, offset=np.full(len(data), 3.0))
    refit = m.update("~ . + (0 + Days | Subject)")
    direct = skmixed.lmer(
        "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", data, weights=w, offset=np.full(len(data), 3.0)
    )
    np.testing.assert_allclose(refit.objective, direct.objective, rtol=1e-12)
    with pytest.raises(OptionError, match="weights="):
        m.update(data=data)
    with pytest.raises(OptionError, match="offset="):
        m.update(data=data, weights=w)


def test_update_on_rows_used_warns_when_rows_were_dropped():
    data = model_data("sleepstudy_slope").copy()
    data.loc[[0, 5], "Days"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = skmixed.lmer("Reaction ~ Days + (1 | Subject)", data)
    with pytest.warns(UserWarning, match="dropped 2 rows"):
        refit = m.update(". ~ . - Days")
    assert refit.nobs == 178
    assert m.update(". ~ . - Days", data=data).nobs == 180


def test_random_part_is_the_null_model():
    assert (
        random_part("y ~ x * z + offset(log(e)) + (x || g) + (1 | a/b)") == "y ~ (x || g) + (1 | a/b) + offset(log(e))"
    )


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("y ~ x + (1 | g)", "x", "must be a formula"),
        ("y ~ . + (1 | g)", ". ~ . - x", "cannot be updated"),
        ("y ~ x + (1 | g)", ". ~ . + x^z", "cannot expand"),
    ],
)
def test_update_formula_errors(old, new, message):
    with pytest.raises(FormulaError, match=message):
        update_formula(old, new)


def test_coef_of_a_glmm_adds_modes_to_fixed_effects():
    m = fit("cbpp")
    coef = m.coef["herd"]
    expected = m.fixef.to_numpy()[None, :] + np.column_stack(
        [m.ranef["herd"].to_numpy()[:, 0], np.zeros((len(coef), 3))]
    )
    np.testing.assert_allclose(coef.to_numpy(), expected, rtol=1e-12)
    assert isinstance(coef, pd.DataFrame) and coef.index.equals(m.ranef["herd"].index)
