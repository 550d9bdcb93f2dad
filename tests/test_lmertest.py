"""lmerTest's tests of an LMM's fixed and random effects: summaries with Satterthwaite's and Kenward–Roger's df,
type 1/2/3 F tables, contest, drop1 and ranova, against lmerTest 3.1-3 and pbkrtest 0.5.2 on lme4 1.1-31
(tests/fixtures/inference/lmertest.json, written by lmertest.R beside it).

The fixed-effect tests are compared at lme4's estimate: the result is built by the public stages at the θ lme4
reports, so that the numbers compare the methods and not the two optimizers (lme4 stops a little short of the
optimum: on Hsb82 the F values of our own fit and lmerTest's differ by 2·10⁻⁴, which is the fits', not the
tests').  There the df agree to 10⁻⁷ (lmerTest differentiates numerically; ours are exact up to 10⁻⁸), and
everything else (estimates, se, F, sums of squares, p) to rounding.  ranova refits models, so it is compared on
our own fits, whose log-likelihoods are at least lme4's.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import skmixed
from skmixed import OptionError, datasets
from skmixed.ddf import satterthwaite, varpar_derivatives
from skmixed.kenward_roger import kenward_roger
from skmixed.optimizers import OptSummary

REF = json.loads((Path(__file__).parent / "fixtures" / "inference" / "lmertest.json").read_text())
LMMS = [k for k in REF if k != "cbpp_binomial"]
METHODS = {"satterthwaite": "Satterthwaite", "kenward_roger": "Kenward-Roger"}
#: Satterthwaite's df: lmerTest's numerical derivatives (numDeriv) against ours
DF_RTOL = 1e-7
#: everything computed the same way in both (estimates, se, F, sums of squares, Kenward-Roger's df)
RTOL = 1e-9
P_ATOL = 1e-10
F_COLUMNS = {
    "sum_sq": "Sum Sq",
    "mean_sq": "Mean Sq",
    "num_df": "NumDF",
    "den_df": "DenDF",
    "F": "F value",
    "p": "Pr(>F)",
}
T_COLUMNS = {"estimate": "Estimate", "se": "Std. Error", "df": "df", "t": "t value", "p": "Pr(>|t|)"}


def _list(value) -> list:
    return value if isinstance(value, list) else [value]


def _numbers(value) -> np.ndarray:
    return np.array([np.nan if v == "NA" else v for v in _list(value)], dtype=float)


def _data(ref) -> pd.DataFrame:
    d = datasets.load(ref["data"])
    if ref["prep"] == "first2000":
        return d.iloc[:2000].reset_index(drop=True)
    if ref["prep"] == "ordered_vr":
        return d.assign(vro=pd.Categorical(d["vr"], categories=d["vr"].cat.categories, ordered=True))
    if ref["prep"] == "weights_days":
        return d.assign(w=1 + d["Days"] % 3)
    if ref["prep"] == "logical_hi":
        return d.assign(hi=d["standLRT"] > 0)
    return d


def _weights(ref):
    return ref["weights"] if isinstance(ref.get("weights"), str) else None


_FITS: dict = {}


def at_lme4(key: str):
    """The model of ``key`` at lme4's θ, by the public stages (build → deviance → make_result)."""
    if ("lme4", key) not in _FITS:
        ref = REF[key]
        model = skmixed.build(ref["formula"], _data(ref), REML=ref["REML"], weights=_weights(ref))
        devfun = skmixed.deviance(model)
        theta = np.array(_list(ref["theta"]), dtype=float)
        objective = devfun(theta)
        optsum = OptSummary("lme4's estimate", theta, objective, theta, objective, 0, True, "lme4")
        _FITS["lme4", key] = skmixed.make_result(model, devfun, optsum)
    return _FITS["lme4", key]


def own_fit(key: str):
    if ("own", key) not in _FITS:
        ref = REF[key]
        _FITS["own", key] = skmixed.lmer(ref["formula"], _data(ref), REML=ref["REML"], weights=_weights(ref))
    return _FITS["own", key]


def _compare(ours: pd.DataFrame, theirs: dict, columns: dict, df_rtol: float) -> None:
    assert list(ours.index) == _list(theirs["rows"])
    for ours_name, r_name in columns.items():
        expected, got = _numbers(theirs[r_name]), ours[ours_name].to_numpy(dtype=float)
        if ours_name == "p":
            np.testing.assert_allclose(got, expected, rtol=0, atol=P_ATOL, err_msg=ours_name)
        else:
            rtol = df_rtol if ours_name in ("df", "den_df") else RTOL
            np.testing.assert_allclose(got, expected, rtol=rtol, atol=0, err_msg=ours_name)


def _cases(part: str):
    return [(k, m) for k in LMMS for m in METHODS if m in REF[k] and (part == "" or part in REF[k][m])]


@pytest.mark.parametrize("key, method", _cases("coefficients"))
def test_summary_coefficients_are_lmertests(key, method):
    m = at_lme4(key)
    table = m.coef_table(ddf=METHODS[method])
    assert list(table.columns) == list(T_COLUMNS)
    df_rtol = DF_RTOL if method == "satterthwaite" else RTOL
    _compare(table, REF[key][method]["coefficients"], T_COLUMNS, df_rtol)


@pytest.mark.parametrize("type", [1, 2, 3])
@pytest.mark.parametrize("key, method", _cases("anova3"))
def test_f_tables_are_lmertests(key, method, type):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # missing cells of a type 3 design, as lmerTest's message
        table = skmixed.anova(at_lme4(key), type=type, ddf=METHODS[method])
    assert list(table.columns) == list(F_COLUMNS)
    df_rtol = DF_RTOL if method == "satterthwaite" else RTOL
    _compare(table, REF[key][method][f"anova{type}"], F_COLUMNS, df_rtol)


@pytest.mark.parametrize("key", [k for k in LMMS if "drop1" in REF[k]["satterthwaite"]])
def test_drop1_is_lmertests(key):
    _compare(skmixed.drop1(at_lme4(key)), REF[key]["satterthwaite"]["drop1"], F_COLUMNS, DF_RTOL)


@pytest.mark.parametrize("key", [k for k in LMMS if "contests" in REF[k]])
def test_contests_are_lmertests(key):
    m = at_lme4(key)
    for test in REF[key]["contests"]:
        L = np.array(test["L"], dtype=float)
        for method in METHODS:
            if method not in test:
                continue
            ours = skmixed.contest(m, L, rhs=test["rhs"], ddf=METHODS[method])
            columns = T_COLUMNS if L.ndim == 1 else F_COLUMNS
            expected = dict(test[method], rows=list(ours.index))  # R's row name is "1"
            _compare(ours, expected, columns, DF_RTOL if method == "satterthwaite" else RTOL)


@pytest.mark.parametrize("key", [k for k in LMMS if "ranova" in REF[k]])
def test_ranova_is_lmertests(key):
    """Refits of the reduced models by both optimizers: log-likelihoods agree to 10⁻⁹ (relative), and ours of
    the full model is never below lme4's."""
    theirs = REF[key]["ranova"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular reduced fits, as lme4 warns
        table = skmixed.ranova(own_fit(key))
    assert list(table.columns) == ["npar", "loglik", "aic", "lrt", "df", "p"]
    assert list(table.index) == _list(theirs["rows"])
    np.testing.assert_array_equal(table["npar"], _numbers(theirs["npar"]))
    np.testing.assert_allclose(table["loglik"], _numbers(theirs["logLik"]), rtol=1e-9)
    assert table["loglik"].iloc[0] >= _numbers(theirs["logLik"])[0] - 1e-9
    np.testing.assert_allclose(table["lrt"], _numbers(theirs["LRT"]), rtol=1e-6)
    np.testing.assert_allclose(table["p"], _numbers(theirs["Pr(>Chisq)"]), atol=1e-6)


@pytest.mark.parametrize("key", ["sleep_slope", "exam_slope", "hsb", "insteval_vector"])
def test_covariance_of_the_variance_parameters_is_lmertests(key):
    """lmerTest's vcov_varpar, 2H⁻¹ for the Hessian of the deviance in (θ, σ), at lme4's estimate."""
    ours = satterthwaite(at_lme4(key)).vcov_varpar
    theirs = np.array(REF[key]["satterthwaite"]["vcov_varpar"], dtype=float)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7 * np.abs(theirs).max())


@pytest.mark.parametrize("key", ["sleep_slope", "exam", "insteval_crossed"])
def test_kenward_roger_covariance_is_pbkrtests(key):
    """pbkrtest's vcovAdj, from n x n matrices; ours from q x q ones."""
    theirs = np.array(REF[key]["kenward_roger"]["vcov_adjusted"], dtype=float)
    np.testing.assert_allclose(kenward_roger(at_lme4(key)).vcov_adjusted, theirs, rtol=1e-9)


def test_satterthwaite_df_of_the_balanced_sleepstudy_design_are_17():
    """Both coefficients of the random-slope model of the balanced sleepstudy design have 17 df (18 subjects).
    Our fit gives 17 to 10⁻⁸; lmerTest's summary prints 16.99973 and 16.99998 because lme4's optimizer stops
    short of the optimum (at lme4's θ ours are lmerTest's, see above)."""
    df = own_fit("sleep_slope").coef_table()["df"].to_numpy()
    np.testing.assert_allclose(df, 17.0, rtol=1e-8)
    lmertest = _numbers(REF["sleep_slope"]["satterthwaite"]["coefficients"]["df"])
    assert np.all(np.abs(lmertest - 17) > 1e-6)


@pytest.mark.parametrize("key", ["sleep_slope", "exam_slope"])
def test_gradient_and_value_differences_agree(key):
    """The two ways of differentiating (central differences of the analytic gradient, Richardson-extrapolated
    second differences of values) give the same H and ∂V/∂φ."""
    m = at_lme4(key)
    H1, J1, _ = varpar_derivatives(m, use_gradient=True)
    H2, J2, _ = varpar_derivatives(m, use_gradient=False)
    A1, A2 = np.linalg.inv(H1), np.linalg.inv(H2)
    np.testing.assert_allclose(A2, A1, rtol=1e-6, atol=1e-9 * np.abs(A1).max())
    np.testing.assert_allclose(J2, J1, rtol=1e-6, atol=1e-9 * np.abs(J1).max())


def _at(formula: str, data: pd.DataFrame, theta: np.ndarray):
    model = skmixed.build(formula, data)
    devfun = skmixed.deviance(model)
    objective = devfun(theta)
    return skmixed.make_result(model, devfun, OptSummary("given", theta, objective, theta, objective, 0, True, ""))


def test_tests_do_not_depend_on_units_or_location():
    """Reaction in µs + 10⁹ and Days in hours, at the equivalent θ (the slope's row of T divided by 24): the
    same t, df, F and p."""
    sleep = datasets.load("sleepstudy")
    shifted = sleep.assign(Reaction=sleep["Reaction"] * 1000 + 1e9, Days=sleep["Days"] * 24)
    formula = "Reaction ~ Days + (Days | Subject)"
    a = own_fit("sleep_slope")
    b = _at(formula, shifted, a.theta / [1.0, 24.0, 24.0])
    for method in METHODS.values():
        ta, tb = a.coef_table(ddf=method), b.coef_table(ddf=method)
        np.testing.assert_allclose(tb.loc["Days", ["df", "t", "p"]], ta.loc["Days", ["df", "t", "p"]], rtol=1e-8)
        fa, fb = skmixed.anova(a, ddf=method), skmixed.anova(b, ddf=method)
        np.testing.assert_allclose(fb[["den_df", "F", "p"]], fa[["den_df", "F", "p"]], rtol=1e-8)


def test_glmm_z_tests_are_lme4s():
    """cbpp: the table has lme4's columns and its p-values are lme4's for lme4's z.  The z values themselves
    differ from lme4's in the third digit: lme4's vcov of a glmer fit comes from its own finite-difference
    Hessian (use.hessian = TRUE), which differs from ours."""
    ref = REF["cbpp_binomial"]["coefficients"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = skmixed.glmer(REF["cbpp_binomial"]["formula"], datasets.load("cbpp"), family="binomial")
    table = g.coef_table()
    assert list(table.columns) == ["estimate", "se", "z", "p"] and list(table.index) == ref["rows"]
    np.testing.assert_allclose(table["estimate"], ref["Estimate"], rtol=2e-3)
    np.testing.assert_allclose(table["z"], table["estimate"] / table["se"], rtol=1e-14)
    from scipy import stats

    np.testing.assert_allclose(2 * stats.norm.sf(np.abs(ref["z value"])), ref["Pr(>|z|)"], rtol=1e-12)
    np.testing.assert_allclose(table["p"], 2 * stats.norm.sf(np.abs(table["z"])), rtol=1e-14)
    assert "Pr(>|z|)" in str(g.summary()) and "z value" in g.summary()._repr_html_()


def test_summaries_print_as_lmertest_and_lme4():
    m = own_fit("sleep_slope")
    text = str(m.summary())
    assert text.startswith("Linear mixed model fit by REML. t-tests use Satterthwaite's method ['lmerModLmerTest']")
    assert "Estimate Std. Error      df t value Pr(>|t|)" in text
    assert "Kenward-Roger's method" in str(m.summary(ddf="Kenward-Roger"))
    assert "['lmerMod']" in str(m.summary(ddf=None)) and "Pr(>|t|)" not in str(m.summary(ddf=None))
    assert list(m.coef_table(ddf=None).columns) == ["estimate", "se", "t"]
    html = m._repr_html_()
    assert "Pr(&gt;|t|)" in html and "3.26e-06" in html
    ml = str(own_fit("sleep_slope_ml").summary())
    assert ml.startswith("Linear mixed model fit by maximum likelihood . t-tests use Satterthwaite's method")


def test_inference_of_a_glmm_or_ml_fit_is_refused_with_the_alternatives():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = skmixed.glmer(REF["cbpp_binomial"]["formula"], datasets.load("cbpp"), family="binomial")
    for ddf in ["Kenward-Roger", "Satterthwaite"]:
        with pytest.raises(OptionError, match="Wald z tests.*likelihood-ratio"):
            g.summary(ddf=ddf)
        with pytest.raises(OptionError, match="Wald z tests.*likelihood-ratio"):
            g.coef_table(ddf=ddf)
    for call in (lambda: skmixed.anova(g), lambda: skmixed.contest(g, [0, 1, 0, 0]), lambda: skmixed.drop1(g)):
        with pytest.raises(OptionError, match="for linear mixed models; a GLMM's fixed effects have Wald z tests"):
            call()
    with pytest.raises(OptionError, match="ranova .* for linear mixed models"):
        skmixed.ranova(g)
    with pytest.raises(OptionError, match="needs a REML fit.*REML=True, or use ddf='Satterthwaite'"):
        own_fit("sleep_slope_ml").summary(ddf="kr")


def test_bad_options_are_named():
    m = own_fit("sleep_slope")
    with pytest.raises(OptionError, match="ddf must be 'Satterthwaite'.*'Kenward-Roger'.*not 'kenward'"):
        m.coef_table(ddf="kenward")
    with pytest.raises(OptionError, match="type must be 1, 2 or 3"):
        skmixed.anova(m, type=4)
    with pytest.raises(OptionError, match=r"one column per fixed effect \(2: \['\(Intercept\)', 'Days'\]\)"):
        skmixed.contest(m, [0, 1, 0])
    with pytest.raises(OptionError, match="not fixed effects of the model"):
        skmixed.contest(m, pd.Series({"days": 1.0}))
    with pytest.raises(OptionError, match="rhs must be one number or one per row of L"):
        skmixed.contest(m, np.eye(2), rhs=[1, 2, 3])
    with pytest.raises(OptionError, match="rhs must be numbers"):
        skmixed.contest(m, [0, 1], rhs="one")
    with pytest.raises(OptionError, match="rhs must be finite"):
        skmixed.contest(m, [0, 1], rhs=np.nan)
    with pytest.raises(OptionError, match="contest takes a model fitted by skmixed.lmer.*result_"):
        skmixed.contest(skmixed.MixedLM(), [0, 1])


def test_contest_reads_names_and_rows():
    """A Series by name is the t test of that combination; a DataFrame's rows are tested jointly, or one by one
    with joint=False (lmerTest's contest(joint = FALSE)), keeping its index."""
    m = at_lme4("exam")
    days = skmixed.contest(m, pd.Series({"schgendboys": 1.0, "schgendgirls": -1.0}))
    theirs = REF["exam"]["contests"][1]["satterthwaite"]
    np.testing.assert_allclose(days["t"], theirs["t value"], rtol=RTOL)
    L = pd.DataFrame({"schgendboys": [1.0, 0.0], "schgendgirls": [0.0, 1.0]}, index=["boys", "girls"])
    rows = skmixed.contest(m, L, joint=False)
    assert list(rows.index) == ["boys", "girls"]
    np.testing.assert_allclose(rows["t"], m.coef_table().loc[["schgendboys", "schgendgirls"], "t"], rtol=1e-12)
    joint = skmixed.contest(m, L)
    np.testing.assert_allclose(joint["F"], REF["exam"]["satterthwaite"]["anova3"]["F value"][2], rtol=RTOL)


@pytest.mark.parametrize("ddf", list(METHODS.values()))
def test_a_repeated_row_does_not_change_an_f_test(ddf):
    """L with a row repeated (rank 2 of 3 rows) tests the same hypothesis, rhs included, with 2 numerator df.
    Kenward-Roger's df depend on the hypothesis only; Satterthwaite's for several rows, as lmerTest computes them
    (from the eigenvectors of LVL'), also on how its rows are written."""
    m = at_lme4("exam")
    L = np.zeros((2, 6))
    L[0, 3] = L[1, 4] = 1.0
    once = skmixed.contest(m, L, rhs=[0.1, 0.2], ddf=ddf)
    twice = skmixed.contest(m, np.vstack([L, L[:1]]), rhs=[0.1, 0.2, 0.1], ddf=ddf)
    assert twice["num_df"].iloc[0] == 2
    same = ["F", "den_df", "p"] if ddf == "Kenward-Roger" else ["F"]
    np.testing.assert_allclose(twice[same], once[same], rtol=1e-9)
