"""Summaries that read as lme4's: abbreviated correlation headers, Python pointers, the user's names.

R's text: tests/fixtures/formula_forms.json, written by tests/fixtures/formula_forms.R (lme4 1.1-31).
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import skmixed
from skmixed import MixedLM, datasets
from skmixed.summary import SINGULAR, abbreviate

R = json.loads((Path(__file__).parent / "fixtures" / "formula_forms.json").read_text(encoding="utf-8"))


def _fit(ref):
    data = datasets.load(ref["data"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if ref["formula"].startswith("cbind"):
            return skmixed.glmer(ref["formula"], data, family="binomial")
        return skmixed.lmer(ref["formula"], data)


def _block(m) -> list[str]:
    text = str(m.summary())
    lines = text[text.index("Correlation of Fixed Effects:") :].splitlines()
    return [line.rstrip() for line in lines if line.strip()]


@pytest.mark.parametrize("minlength", [6, 11])
def test_abbreviate_is_r_abbreviate(minlength):
    assert abbreviate(R["abbreviate"]["names"], minlength) == R["abbreviate"][f"minlength{minlength}"]


@pytest.mark.parametrize("ref", R["correlation"][:3], ids=[r["formula"] for r in R["correlation"][:3]])
def test_correlation_block_is_lme4s(ref):
    assert _block(_fit(ref)) == [line.rstrip() for line in ref["lines"]]


def test_glmm_correlation_headers_are_lme4s():
    """cbpp: headers and row names as lme4's; the values differ in the third decimal, because lme4's
    glmer vcov comes from a finite-difference Hessian (use.hessian = TRUE) and ours does not."""
    ref = R["correlation"][3]
    ours, theirs = _block(_fit(ref)), [line.rstrip() for line in ref["lines"]]
    assert ours[:2] == theirs[:2]
    assert [line.split()[0] for line in ours[2:]] == [line.split()[0] for line in theirs[2:]]
    assert len(ours) == len(theirs)


def test_more_than_twelve_coefficients_get_a_note_not_a_matrix():
    m = skmixed.lmer("normexam ~ poly(standLRT, 12) + (1 | school)", datasets.load("Exam"))
    text = str(m.summary())
    assert "Correlation matrix not shown by default, as p = 13 > 12." in text
    assert m.summary().correlation.shape == (13, 13)


def test_singular_fit_points_to_python():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = skmixed.lmer("Yield ~ 1 + (1 | Batch)", datasets.load("Dyestuff2"))
    for text in (str(m.summary()), str(m), m._repr_html_()):
        assert "result.is_singular" in text and "result.varcorr" in text and "help(" not in text
    assert SINGULAR in str(m.summary())


def test_array_mode_summary_uses_the_users_names():
    d = datasets.load("sleepstudy")
    X = pd.DataFrame({"days (n)": d["Days"], "days.since": d["Days"] ** 2, "class": np.sqrt(d["Days"])})
    est = MixedLM(random_slopes=["days (n)"]).fit(X, d["Reaction"], groups=pd.DataFrame({"subject id": d["Subject"]}))
    text = str(est.summary())
    for name in ["`days (n)`", "days.since", "class", "subject id"]:
        assert name in text, name
    assert not any(f"x{j}" in text.split() for j in range(3)) and "g0" not in text
    assert list(est.random_effects_["subject id"].columns) == ["(Intercept)", "days (n)"]
    expected = skmixed.lmer("Reaction ~ Days + I(Days^2) + sqrt(Days) + (Days | Subject)", d).fixef.to_numpy()
    np.testing.assert_allclose(np.r_[est.intercept_, est.coef_], expected, rtol=1e-6)


def test_formula_is_printed_as_r_prints_it():
    m = skmixed.lmer("Reaction~Days+(Days|Subject)", datasets.load("sleepstudy"))
    assert "Formula: Reaction ~ Days + (Days | Subject)\n" in str(m.summary())
    assert "Formula: Reaction ~ Days + (Days | Subject)\n" in str(m)
