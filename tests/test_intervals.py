"""Confidence intervals and likelihood profiles against lme4 1.1-31 (tests/fixtures/inference/intervals.R).

lme4 reads profile intervals off interpolating splines through its grid; we solve ζ(p) = ±z exactly.  So
our ζ is compared with lme4's at lme4's own grid points (the same function, to ~1e-6), and the interval ends
within what lme4's interpolation allows: 2e-4 relative here, 1.7e-4 being the largest gap, at Dyestuff's
lower end for the batch SD, where lme4's end is itself off (test_lme4_spline_end_is_approximate).
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import skmixed
from skmixed import datasets
from skmixed.exceptions import ConvergenceWarning, OptionError, SingularFitWarning
from skmixed.profiler import Profiler

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "inference" / "intervals.json").read_text())
MODELS = FIXTURE["models"]
LMMS = [k for k, v in MODELS.items() if v["family"] is None]
Z95 = 1.959963984540054

_FITS: dict = {}


def fit(key: str):
    if key not in _FITS:
        spec = MODELS[key]
        data = datasets.load(spec["data"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SingularFitWarning)
            if spec["family"]:
                _FITS[key] = skmixed.glmer(spec["formula"], data, family=spec["family"])
            else:
                _FITS[key] = skmixed.lmer(spec["formula"], data, REML=spec["REML"])
    return _FITS[key]


def lme4_table(key: str, which: str) -> pd.DataFrame:
    table = MODELS[key][which]
    lower = [np.nan if v is None else v for v in table["lower"]]
    upper = [np.nan if v is None else v for v in table["upper"]]
    return pd.DataFrame({"lower": lower, "upper": upper}, index=table["names"])


def our_name(lme4_name: str) -> str:
    """lme4's profile names write a correlation's effects row first (cor_Days.(Intercept)); ours as varcorr."""
    if not lme4_name.startswith("cor_"):
        return lme4_name
    effects, group = lme4_name[4:].rsplit("|", 1)
    second, first = effects.split(".", 1) if not effects.startswith("(") else effects.rsplit(".", 1)
    return f"cor_{first}.{second}|{group}"


def test_row_names_and_order_are_lme4s():
    m = fit("sleepstudy_reml")
    expected = [our_name(n) for n in MODELS["sleepstudy_reml"]["profile_95"]["names"]]
    assert expected == [
        "sd_(Intercept)|Subject",
        "cor_(Intercept).Days|Subject",
        "sd_Days|Subject",
        "sigma",
        "(Intercept)",
        "Days",
    ]
    assert list(m.confint("Wald").index) == expected
    cbpp_rows = ["sd_(Intercept)|herd", "(Intercept)", "period2", "period3", "period4"]
    assert list(fit("cbpp").confint("Wald").index) == cbpp_rows


@pytest.mark.parametrize("key", list(MODELS))
def test_wald_is_estimate_plus_minus_z_se_and_nan_for_variances(key):
    m = fit(key)
    ours = m.confint("Wald", level=0.9)
    assert np.isnan(ours.iloc[: -len(m.fixef)].to_numpy()).all()  # as lme4's
    z = 1.6448536269514722
    np.testing.assert_allclose(ours.loc[m.fixef.index, "lower"], m.fixef - z * m.fixef_se, rtol=1e-14)
    np.testing.assert_allclose(ours.loc[m.fixef.index, "upper"], m.fixef + z * m.fixef_se, rtol=1e-14)


@pytest.mark.parametrize("key", list(MODELS))
def test_wald_matches_lme4(key):
    """To 3e-5 of the standard errors for the LMMs (lme4 stops its optimizer at ftol_abs = 1e-8).  For cbpp
    lme4's Laplace deviance takes log|L| from the weights of its next-to-last PIRLS iteration (skmixed.laplace):
    its Hessian-based standard errors, and so the Wald intervals' widths, differ from ours by up to 1.3%."""
    m, ours, ref = fit(key), fit(key).confint("Wald"), lme4_table(key, "wald")
    assert ours.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(ours.to_numpy()), np.isnan(ref.to_numpy()))
    beta = m.fixef.to_numpy()
    rtol = 1.5e-2 if MODELS[key]["family"] else 5e-5
    np.testing.assert_allclose(ours.iloc[-len(beta) :, 1] - beta, ref.iloc[-len(beta) :, 1] - beta, rtol=rtol)
    np.testing.assert_allclose(beta - ours.iloc[-len(beta) :, 0], beta - ref.iloc[-len(beta) :, 0], rtol=rtol)


@pytest.mark.parametrize("level", [0.95, 0.80])
@pytest.mark.parametrize("key", list(MODELS))
def test_profile_intervals_match_lme4(key, level):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularFitWarning)
        ours = fit(key).confint("profile", level=level)
    ref = lme4_table(key, "profile_95" if level == 0.95 else "profile_80")
    ref.index = [our_name(n) for n in ref.index]
    assert list(ours.index) == list(ref.index)
    np.testing.assert_allclose(ours.to_numpy(), ref.to_numpy(), rtol=2e-4, atol=1e-12)


@pytest.mark.parametrize("key", list(MODELS))
def test_zeta_matches_lme4_on_its_grid(key):
    """Our ζ at the parameter values of lme4's profile, compared as ζ|ζ| (the deviance above the optimum: near
    the estimate ζ itself magnifies the optimizers' last digits): to 1e-4 for the LMMs, 1e-3 for cbpp (whose
    deviance differs from lme4's by up to 6e-4 by design, see skmixed.laplace)."""
    profiler = Profiler(fit(key))
    grid = MODELS[key]["grid"]
    worst = 0.0
    for par, focal, zeta in zip(grid["par"], grid["focal"], grid["zeta"]):
        if abs(zeta) > 2.5:  # lme4's far points can miss the optimum (sleepstudy at a correlation of 1)
            continue
        point = profiler.point(profiler.names.index(our_name(par)), focal)
        worst = max(worst, abs(point.zeta * abs(point.zeta) - zeta * abs(zeta)))
    assert worst < (1e-3 if MODELS[key]["family"] else 1e-4)


def test_lme4_spline_end_is_approximate():
    """lme4's lower end for Dyestuff's batch SD, 12.1985, is where its spline crosses −1.96; ζ there is −1.95984.
    Ours, 12.19651, has ζ = −1.96 to 1e-7."""
    profiler = Profiler(fit("dyestuff"))
    lme4_end = lme4_table("dyestuff", "profile_95").iloc[0, 0]
    ours = fit("dyestuff").confint().iloc[0, 0]
    assert abs(profiler.point(0, lme4_end).zeta + Z95) > 1e-4
    assert abs(profiler.point(0, ours).zeta + Z95) < 1e-6
    assert ours == pytest.approx(12.196505, abs=1e-5)


def test_reml_fit_is_profiled_on_its_ml_refit():
    reml, ml = fit("sleepstudy_reml").confint(), fit("sleepstudy_ml").confint()
    np.testing.assert_allclose(reml.to_numpy(), ml.to_numpy(), rtol=1e-6)


def test_singular_fit_lower_bound_is_zero_with_a_warning():
    m = fit("dyestuff2")
    with pytest.warns(SingularFitWarning, match=r"sd_\(Intercept\)\|Batch"):
        ci = m.confint()
    assert ci.loc["sd_(Intercept)|Batch", "lower"] == 0.0
    assert ci.loc["sd_(Intercept)|Batch", "upper"] > 0


def test_profile_object_agrees_with_confint():
    m = fit("sleepstudy_reml")
    prof = m.profile()
    np.testing.assert_allclose(prof.confint(0.95).to_numpy(), m.confint().to_numpy(), rtol=1e-7)
    frame = prof.to_frame()
    assert list(frame.columns) == [".zeta", *m.confint("Wald").index, ".par", ".focal"]
    for name, rows in frame.groupby(".par"):
        rows = rows.sort_values(".focal")
        assert np.all(np.diff(rows[".zeta"]) > 0)  # ζ increases with the parameter
        assert rows[".zeta"].min() < -2.5 and rows[".zeta"].max() > 2.5
        np.testing.assert_allclose(rows[name], rows[".focal"])  # the profiled parameter is held at .focal
    at_estimate = frame[frame[".zeta"] == 0]
    assert len(at_estimate) == 6  # one estimate point per parameter


def test_profile_which_and_its_errors():
    m = fit("sleepstudy_reml")
    assert m.profile(which="beta_").names == ["(Intercept)", "Days"]
    assert m.profile(which=["sigma"]).names == ["sigma"]
    with pytest.raises(OptionError, match="no parameter 'Dayz'"):
        m.profile(which="Dayz")


def test_a_profile_short_of_the_level_gives_nan_with_a_warning():
    prof = fit("sleepstudy_reml").profile(which="sigma", alphamax=0.6)  # cutoff √χ²₆(0.4) ≈ 2.2 < z(0.99)
    with pytest.warns(ConvergenceWarning, match="the profile of sigma does not reach"):
        ci = prof.confint(0.99)
    assert np.isnan(ci.to_numpy()).all()


def test_an_end_that_cannot_be_bracketed_is_nan_with_a_warning_naming_the_parameter():
    """Where the fits beyond some value fail (here: the deviance made infinite above an SD of 30, short of the
    upper end 37.7), that end is NaN with a warning; the other end is unaffected."""
    profiler = Profiler(fit("sleepstudy_reml"))

    class Failing:
        def __init__(self, deviance):
            self.deviance, self.beta = deviance, deviance.beta

        def __call__(self, phi):
            return (np.inf, np.full(len(phi), np.nan)) if phi[0] > 30 else self.deviance(phi)

    profiler.deviance = Failing(profiler.deviance)
    with pytest.warns(ConvergenceWarning, match=r"upper end of the profile interval of sd_\(Intercept\)\|Subject"):
        assert np.isnan(profiler.end(0, Z95, 1))
    assert profiler.end(0, Z95, -1) == pytest.approx(14.381385, rel=1e-6)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.confint("bogus"), "method must be 'Wald', 'profile' or 'boot'"),
        (lambda m: m.confint("Wald", level=95), "level must be a number between 0 and 1"),
        (lambda m: m.profile(alphamax=2), "alphamax must be between 0 and 1"),
        (lambda m: m.profile().confint(level=0), "level must be between 0 and 1"),
    ],
)
def test_bad_options_are_option_errors(call, message):
    with pytest.raises(OptionError, match=message):
        call(fit("dyestuff"))


def test_glmm_profiles_need_the_ml_fit_and_no_dispersion():
    cbpp = datasets.load("cbpp")
    formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    with pytest.raises(OptionError, match="nAGQ=1"):
        skmixed.glmer(formula, cbpp, family="binomial", nAGQ=0).confint()
    sleep = datasets.load("sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gamma = skmixed.glmer("Reaction ~ Days + (1 | Subject)", sleep, family="gamma")
    with pytest.raises(OptionError, match="dispersion"):
        gamma.confint()
    wald = gamma.confint("Wald")
    assert list(wald.index) == ["sd_(Intercept)|Subject", "sigma", "(Intercept)", "Days"]
    assert np.isnan(wald.iloc[:2].to_numpy()).all() and np.isfinite(wald.iloc[2:].to_numpy()).all()


def test_profile_intervals_follow_the_units_of_y_and_the_weights():
    """y·10 + 1000 scales the SDs and σ by 10 and moves the intercept; weights·3 leaves the SDs (σ²ΛΛ' with
    σ√3 and θ/√3) and β alone and scales σ by √3 (Var(ε) = σ²/w): the standardized problem must not show."""
    sleep = datasets.load("sleepstudy")
    sleep["w"] = np.linspace(0.5, 2.0, len(sleep))
    formula = "Reaction ~ Days + (Days | Subject)"
    base = skmixed.lmer(formula, sleep, weights="w").confint()
    shifted = skmixed.lmer(formula, sleep.assign(Reaction=10 * sleep["Reaction"] + 1000), weights="w").confint()
    heavier = skmixed.lmer(formula, sleep.assign(w=3 * sleep["w"]), weights="w").confint()
    scale = np.array([10, 1, 10, 10, 10, 10])[:, None]
    shift = np.array([0, 0, 0, 0, 1000, 0])[:, None]
    np.testing.assert_allclose(shifted.to_numpy(), scale * base.to_numpy() + shift, rtol=1e-6)
    root3 = np.array([1, 1, 1, np.sqrt(3), 1, 1])[:, None]
    np.testing.assert_allclose(heavier.to_numpy(), root3 * base.to_numpy(), rtol=1e-6)


def test_sdcor_map_round_trips_and_its_jacobian_is_the_derivative():
    from skmixed.profile_deviance import central_gradient
    from skmixed.sdcor import SdCor

    data = datasets.load("sleepstudy").assign(D2=lambda d: (d["Days"] - 4.5) ** 2 / 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = skmixed.lmer("Reaction ~ Days + (Days + D2 | Subject)", data)
    sdcor = SdCor(m.re, has_sigma=True)
    assert sdcor.names[:3] == ["sd_(Intercept)|Subject", "cor_(Intercept).Days|Subject", "cor_(Intercept).D2|Subject"]
    theta = np.array([0.9, 0.2, -0.3, 0.5, 0.1, 0.4])
    phi = sdcor.phi(theta, 2.0)
    np.testing.assert_allclose(sdcor.theta(phi), theta, rtol=1e-12)
    vc = skmixed.variance.varcorr_table(m.re, theta, 2.0)  # the SDs and correlations varcorr reports
    np.testing.assert_allclose(sorted(phi[:6]), sorted(vc["sdcor"][:6]), rtol=1e-12)
    for i in range(len(theta)):  # ∂θ_i/∂φ by the analytic Cholesky derivative, against central differences
        numeric = central_gradient(lambda p, i=i: sdcor.theta(p)[i], phi)
        np.testing.assert_allclose(sdcor.jacobian(phi)[i], numeric, atol=1e-7)
    bad = phi.copy()
    bad[[1, 2, 4]] = [0.9, -0.9, 0.9]  # correlations that cannot belong to one correlation matrix
    assert sdcor.theta(bad) is None
