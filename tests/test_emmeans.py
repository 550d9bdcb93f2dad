"""skmixed.emmeans against emmeans 1.8.4 (fixtures/inference/emmeans_r2.R): marginal means, intervals and pairwise
comparisons with Tukey's and Holm's adjustments, on LMMs (additive, rank-deficient, transformed covariates, at=,
an offset) and GLMMs on both scales; and the errors a user can fix."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from inference_reference import at_r_estimates, fit, frame, references

import skmixed
from skmixed.emmeans import EmmeansFrame
from skmixed.exceptions import OptionError

CASES = references()["emmeans"]
EMM_NUMBERS = ("emmean", "se", "df", "lower", "upper")
PAIR_NUMBERS = ("estimate", "se", "df", "stat", "p")


def _case_id(case: dict) -> str:
    parts = [case["model"], case["spec"]]
    parts += [f"by_{case['by']}"] if case["by"] else []
    parts += [f"at_{'_'.join(case['at'])}"] if case["at"] else []
    parts += [case["ddf"]] if case["ddf"] else []
    return "-".join(parts + [case["type"]])


def _run(m, case: dict):
    at = dict(case["at"]) if case["at"] else None
    return skmixed.emmeans(m, case["spec"], by=case["by"], ddf=case["ddf"], type=case["type"], at=at)


def _compare(emm: pd.DataFrame, case: dict, rtol: float) -> None:
    ref = frame(case["emmeans"], EMM_NUMBERS)
    factors = [case["spec"]] + ([case["by"]] if case["by"] else [])
    for name in factors:
        if emm[name].dtype == float:  # a covariate's values
            np.testing.assert_array_equal(emm[name], ref[name].astype(float))
        else:
            assert [str(v) for v in emm[name]] == list(ref[name]), name
    assert list(emm.columns) == factors + list(EMM_NUMBERS)
    for column in EMM_NUMBERS:
        np.testing.assert_allclose(emm[column].to_numpy(float), ref[column], rtol=rtol, atol=rtol * ref.se.min())


def _compare_pairs(emm, case: dict, rtol: float) -> None:
    for adjust in ("tukey", "holm", "none"):
        ours, ref = emm.pairs(adjust=adjust), frame(case["pairs"][adjust], PAIR_NUMBERS)
        assert list(ours.contrast) == list(ref.contrast), adjust
        name = {"estimate": "estimate", "odds.ratio": "odds_ratio", "ratio": "ratio"}[ref.estimate_name[0]]
        stat = "t" if _finite_df(case) else "z"
        assert list(ours.columns) == ["contrast"] + ([case["by"]] if case["by"] else []) + [name, "se", "df", stat, "p"]
        for column, theirs in ((name, ref.estimate), ("se", ref.se), ("df", ref.df), (stat, ref.stat)):
            np.testing.assert_allclose(ours[column].to_numpy(float), theirs, rtol=rtol, atol=rtol * ref.se.min())
        np.testing.assert_allclose(ours.p.to_numpy(float), ref.p, rtol=rtol, atol=1e-7, err_msg=adjust)


def _finite_df(case: dict) -> bool:
    """Kenward–Roger or Satterthwaite: asked for, or emmeans' default for Orthodont (108 rows)."""
    return case["ddf"] in ("kenward-roger", "satterthwaite") or (case["model"] == "orthodont" and case["ddf"] is None)


LMM_CASES = [c for c in CASES if references()["fits"][c["model"]]["family"] is None and not _finite_df(c)]


@pytest.mark.parametrize("case", LMM_CASES, ids=_case_id)
def test_lmm_means_and_pairs_match_emmeans(case):
    """Exam (4059 rows: emmeans' default df are asymptotic there) and Orthodont with ddf='asymptotic' agree with
    emmeans to 1e-6: the fits agree to ~1e-7; non-estimable means of the rank-deficient model are NaN."""
    emm = _run(fit(case["model"]), case)
    _compare(emm, case, rtol=1e-6)
    _compare_pairs(emm, case, rtol=1e-6)


GLMM_CASES = [c for c in CASES if references()["fits"][c["model"]]["family"] is not None]


@pytest.mark.parametrize("case", GLMM_CASES, ids=_case_id)
def test_glmm_means_and_pairs_match_emmeans_at_lme4_estimates(case):
    """Link and response scale (delta-method SEs, back-transformed interval ends, odds ratios and ratios with the
    tests on the link scale), at lme4's β and vcov(β̂): to 1e-6."""
    emm = _run(at_r_estimates(case["model"]), case)
    _compare(emm, case, rtol=1e-6)
    _compare_pairs(emm, case, rtol=1e-6)


@pytest.mark.parametrize("case", [c for c in GLMM_CASES if c["model"] == "grouseticks"], ids=_case_id)
def test_glmm_means_match_emmeans_at_our_estimates(case):
    """On our own grouseticks fit: its β agrees with lme4's to 3e-6, its Hessian-based vcov(β̂) to 2.4e-3 (finite
    differences of two Laplace deviances), so the standard errors to 1e-4."""
    emm = _run(fit(case["model"]), case)
    _compare(emm, case, rtol=1e-4)


FINITE_DF_CASES = [c for c in CASES if _finite_df(c)]


@pytest.mark.parametrize("case", FINITE_DF_CASES, ids=_case_id)
def test_finite_df_match_emmeans(case):
    """Kenward–Roger (emmeans' default for Orthodont's 108 rows: adjusted covariance and df) and Satterthwaite:
    means, SEs and df to 1e-6."""
    emm = _run(fit(case["model"]), case)
    _compare(emm, case, rtol=1e-6)
    _compare_pairs(emm, case, rtol=1e-6)


def test_averaging_over_an_interacting_factor_warns():
    """emmeans' note "Results may be misleading due to involvement in interactions"; none with by= or no interaction."""
    with pytest.warns(UserWarning, match=r"sex interacts with schgend \(the term schgend:sex\)"):
        skmixed.emmeans(fit("exam_interaction"), "sex")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        skmixed.emmeans(fit("exam_interaction"), "sex", by="schgend")
        skmixed.emmeans(fit("exam_additive"), "sex")


def test_default_df_follow_emmeans_limits():
    """emmeans' defaults: asymptotic beyond 3000 observations (Exam) and for a GLMM; Kenward–Roger below."""
    exam = skmixed.emmeans(fit("exam_additive"), "sex")
    assert exam.attrs["ddf"] == "asymptotic" and np.isinf(exam.df).all()
    assert skmixed.emmeans(fit("cbpp"), "period").attrs["ddf"] == "asymptotic"
    from skmixed.linear_functions import emmeans_df_method

    assert emmeans_df_method(fit("orthodont"), None) == "Kenward-Roger"


def test_emmeans_frame_and_attrs():
    emm = skmixed.emmeans(fit("exam_additive"), "sex", level=0.9)
    assert isinstance(emm, pd.DataFrame) and emm.attrs["averaged_over"] == ["schgend"]
    assert list(emm.sex.cat.categories) == ["F", "M"]
    wide = skmixed.emmeans(fit("exam_additive"), "sex")
    assert (emm.upper - emm.lower < wide.upper - wide.lower).all()
    assert type(emm[emm.sex == "F"]) is pd.DataFrame  # derived frames are plain DataFrames
    with pytest.raises(OptionError, match="as skmixed.emmeans returned them"):
        EmmeansFrame(emm.copy()).pairs()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"specs": "school"}, r"'school' is not a variable of the model's fixed effects: its factors are sex, schgend"),
        ({"specs": "sexx"}, r"covariates: standLRT"),
        ({"specs": "sex", "by": "sex"}, "different variables"),
        ({"specs": "sex", "type": "probability"}, "type must be"),
        ({"specs": "sex", "ddf": "wald"}, "ddf must be"),
        ({"specs": "sex", "level": 95}, "level must be"),
        ({"specs": "sex", "at": {"vr": "top 25%"}}, "do not read"),
        ({"specs": "sex", "at": {"schgend": "coed"}}, "must list levels of 'schgend'"),
        ({"specs": 3}, "name or a list of names"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(OptionError, match=message):
        skmixed.emmeans(fit("exam_additive"), **kwargs)


def test_glmm_refuses_finite_df_and_adjustments_are_checked():
    with pytest.raises(OptionError, match="pass ddf='asymptotic'"):
        skmixed.emmeans(fit("cbpp"), "period", ddf="Kenward-Roger")
    with pytest.raises(OptionError, match="adjust must be"):
        skmixed.emmeans(fit("cbpp"), "period").pairs(adjust="bonferroni")


def test_transformed_lmm_response_is_not_back_transformed_silently(sleepstudy):
    m = skmixed.lmer("log(Reaction) ~ Days + (1 | Subject)", sleepstudy.assign(Days=sleepstudy.Days.astype(str)))
    assert len(skmixed.emmeans(m, "Days", ddf="asymptotic")) == 10
    with pytest.raises(OptionError, match="transformed"):
        skmixed.emmeans(m, "Days", ddf="asymptotic", type="response")
