"""skmixed.plotting: each plot returns its Axes; the tests read the drawn data back and check it."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy import stats

import skmixed
from skmixed import datasets, plotting


@pytest.fixture(scope="module")
def sleep_fit():
    return skmixed.lmer("Reaction ~ Days + (Days | Subject)", datasets.load("sleepstudy"))


@pytest.fixture(scope="module")
def orthodont_fit():
    return skmixed.lmer("distance ~ age * Sex + (age | Subject)", datasets.load("Orthodont"))


@pytest.fixture(scope="module")
def dyestuff_fit():
    return skmixed.lmer("Yield ~ 1 + (1 | Batch)", datasets.load("Dyestuff"))


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def line(ax, label):
    found = [ln for ln in ax.get_lines() if ln.get_label() == label]
    assert len(found) == 1, f"expected one line labelled {label!r}, found {len(found)}"
    return np.asarray(found[0].get_xdata(), float), np.asarray(found[0].get_ydata(), float)


def collection(ax, label):
    found = [c for c in ax.collections if c.get_label() == label]
    assert len(found) == 1
    return found[0]


def own_lines(sleep_fit):
    """Per-subject intercepts and slopes β̂ + b̂_j, computed here from fixef and ranef."""
    b = sleep_fit.ranef["Subject"]
    return sleep_fit.fixef["(Intercept)"] + b["(Intercept)"], sleep_fit.fixef["Days"] + b["Days"]


def test_caterpillar_draws_sorted_modes_with_conditional_sd_intervals(sleep_fit):
    ax = plotting.caterpillar(sleep_fit, effect="Days", level=0.9)
    assert isinstance(ax, plt.Axes)
    modes = sleep_fit.ranef["Subject"]["Days"]
    sd = sleep_fit.ranef_sd["Subject"]["Days"]
    order = np.argsort(modes.to_numpy())
    x, y = line(ax, "conditional modes")
    np.testing.assert_allclose(x, modes.to_numpy()[order])
    np.testing.assert_array_equal(y, np.arange(18))
    z = stats.norm.ppf(0.95)
    segments = np.array(collection(ax, "90% interval").get_segments())
    np.testing.assert_allclose(segments[:, 0, 0], (modes - z * sd).to_numpy()[order])
    np.testing.assert_allclose(segments[:, 1, 0], (modes + z * sd).to_numpy()[order])
    assert [t.get_text() for t in ax.get_yticklabels()] == [str(s) for s in modes.index[order]]


def test_caterpillar_needs_a_group_when_there_are_several():
    fit = skmixed.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", datasets.load("Penicillin"))
    with pytest.raises(ValueError, match="several grouping factors"):
        plotting.caterpillar(fit)
    ax = plotting.caterpillar(fit, group="sample")
    assert len(line(ax, "conditional modes")[0]) == 6
    with pytest.raises(ValueError, match="not a random effect"):
        plotting.caterpillar(fit, group="sample", effect="Days")


def test_residuals_vs_fitted(sleep_fit):
    data = sleep_fit.frame.data
    a, b = own_lines(sleep_fit)
    subject = data["Subject"].astype(str).to_numpy()
    own_fitted = a[subject].to_numpy() + b[subject].to_numpy() * data["Days"].to_numpy()
    ax = plotting.residuals_vs_fitted(sleep_fit)
    x, y = line(ax, "residuals")
    np.testing.assert_allclose(x, own_fitted, rtol=1e-10)
    np.testing.assert_allclose(y, data["Reaction"].to_numpy() - own_fitted, atol=1e-8)


def test_qq_of_scaled_residuals_and_of_random_effects(sleep_fit):
    ax = plotting.qq(sleep_fit)
    x, y = line(ax, "sample quantiles")
    resid = (sleep_fit.frame.y - sleep_fit.fitted) / sleep_fit.sigma
    np.testing.assert_allclose(y, np.sort(resid), atol=1e-10)
    np.testing.assert_allclose(x, stats.norm.ppf((np.arange(1, 181) - 0.5) / 180))
    lx, ly = line(ax, "quartile line")  # through the quartiles, as R's qqline
    q1, q3 = np.quantile(resid, [0.25, 0.75])
    slope = (ly[1] - ly[0]) / (lx[1] - lx[0])
    np.testing.assert_allclose(ly[0] + slope * (stats.norm.ppf(0.25) - lx[0]), q1)
    np.testing.assert_allclose(ly[0] + slope * (stats.norm.ppf(0.75) - lx[0]), q3)

    ax = plotting.qq(sleep_fit, group="Subject", effect="(Intercept)")
    x, y = line(ax, "sample quantiles")
    np.testing.assert_allclose(y, np.sort(sleep_fit.ranef["Subject"]["(Intercept)"]))
    np.testing.assert_allclose(x, stats.norm.ppf((np.arange(1, 19) - 0.5) / 18))


def test_qq_plotting_positions_for_small_samples_follow_r():
    np.testing.assert_allclose(plotting._plotting_positions(4), [(i - 0.375) / 4.25 for i in range(1, 5)])


def test_group_lines_ols_are_separate_least_squares_fits(orthodont_fit):
    o = datasets.load("Orthodont")
    ax = plotting.group_lines(orthodont_fit, "age", kind="ols", by="Sex")
    for subject, rows in o.groupby("Subject", observed=True):
        slope, intercept = np.polyfit(rows["age"], rows["distance"], 1)
        x, y = line(ax, str(subject))
        assert x[0] == 8 and x[-1] == 14
        np.testing.assert_allclose(y, intercept + slope * x, rtol=1e-10)
    styles = {ln.get_label(): ln.get_linestyle() for ln in ax.get_lines()}
    assert (
        styles["M01"] == "-" and styles["F01"] == "--"
    )  # boys solid, girls dashed (de Leeuw, "Linear Multilevel Models", Figure 1)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["Male", "Female"]


def test_group_lines_blup_and_population(sleep_fit):
    a, b = own_lines(sleep_fit)
    ax = plotting.group_lines(sleep_fit, "Days", kind="blup", levels=["308", "309"], points=True)
    assert sorted(ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")) == ["308", "309"]
    for s in ("308", "309"):
        x, y = line(ax, s)
        assert x[0] == 0 and x[-1] == 9
        np.testing.assert_allclose(y, a[s] + b[s] * x, rtol=1e-10)
    ax = plotting.group_lines(sleep_fit, "Days", kind="population")
    x, y = line(ax, "330")
    np.testing.assert_allclose(y, sleep_fit.fixef["(Intercept)"] + sleep_fit.fixef["Days"] * x, rtol=1e-10)


def test_group_lines_bad_input(sleep_fit):
    with pytest.raises(ValueError, match="kind must be"):
        plotting.group_lines(sleep_fit, "Days", kind="spline")
    with pytest.raises(ValueError, match="'Dayz' is not a column"):
        plotting.group_lines(sleep_fit, "Dayz")
    with pytest.raises(ValueError, match="not levels of 'Subject'"):
        plotting.group_lines(sleep_fit, "Days", levels=["999"])


def test_shrinkage_of_group_means_is_gill_and_womack_equation_17(dyestuff_fit):
    """For y_ij = β0j + ε_ij the BLUP is (n_j/σ0² ȳ_j + 1/σ1² β̂0) / (n_j/σ0² + 1/σ1²), σ0 = σ, σ1 = the batch SD."""
    d = datasets.load("Dyestuff")
    means = d.groupby("Batch", observed=True)["Yield"].mean()
    n = d.groupby("Batch", observed=True).size()
    s0, s1 = dyestuff_fit.sigma**2, dyestuff_fit.varcorr["vcov"][0]
    beta0 = dyestuff_fit.fixef["(Intercept)"]
    eq17 = (n / s0 * means + beta0 / s1) / (n / s0 + 1 / s1)
    ax = plotting.shrinkage(dyestuff_fit)
    x, y = line(ax, "no pooling")
    np.testing.assert_array_equal(x, n.to_numpy())
    np.testing.assert_allclose(y, means.to_numpy(), rtol=1e-12)
    x, y = line(ax, "partial pooling")
    np.testing.assert_allclose(y, eq17.to_numpy(), rtol=1e-9)
    assert np.all(np.abs(y - beta0) < np.abs(means.to_numpy() - beta0))  # every batch moves towards β̂0
    segments = np.array(collection(ax, "shrinkage").get_segments())
    np.testing.assert_allclose(segments[:, 0, 1], means.to_numpy())
    np.testing.assert_allclose(segments[:, 1, 1], eq17.to_numpy(), rtol=1e-9)


def test_shrinkage_in_the_coefficient_plane(sleep_fit):
    sleep = datasets.load("sleepstudy")
    a, b = own_lines(sleep_fit)
    ax = plotting.shrinkage(sleep_fit)
    x, y = line(ax, "no pooling")
    ols = np.array([np.polyfit(r["Days"], r["Reaction"], 1)[::-1] for _, r in sleep.groupby("Subject", observed=True)])
    np.testing.assert_allclose(x, ols[:, 0], rtol=1e-10)
    np.testing.assert_allclose(y, ols[:, 1], rtol=1e-10)
    x, y = line(ax, "partial pooling")
    np.testing.assert_allclose(x, a.to_numpy())
    np.testing.assert_allclose(y, b.to_numpy())
    np.testing.assert_allclose(line(ax, "β̂")[0], [sleep_fit.fixef["(Intercept)"]])


def test_no_pooling_holds_other_fixed_effects_at_their_estimates(orthodont_fit):
    o = datasets.load("Orthodont")
    separate, partial = plotting.no_pooling(orthodont_fit)
    beta = orthodont_fit.fixef
    boy = o[o["Subject"] == "M01"]
    r = boy["distance"] - beta["SexFemale"] * 0 - beta["age:SexFemale"] * 0  # M01 is a boy: reference level
    slope, intercept = np.polyfit(boy["age"], r, 1)
    np.testing.assert_allclose(separate.loc["M01"], [intercept, slope], rtol=1e-10)
    girl = o[o["Subject"] == "F01"]
    r = girl["distance"] - beta["SexFemale"] - beta["age:SexFemale"] * girl["age"]
    slope, intercept = np.polyfit(girl["age"], r, 1)
    np.testing.assert_allclose(separate.loc["F01"], [intercept, slope], rtol=1e-10)
    np.testing.assert_allclose(
        partial.loc["F01"],
        beta[["(Intercept)", "age"]].to_numpy() + orthodont_fit.ranef["Subject"].loc["F01"].to_numpy(),
    )


def test_no_pooling_leaves_groups_too_small_for_their_own_fit_empty():
    sleep = datasets.load("sleepstudy")
    sleep = sleep[(sleep["Subject"] != "308") | (sleep["Days"] == 0)]  # subject 308 keeps one day only
    fit = skmixed.lmer("Reaction ~ Days + (Days | Subject)", sleep)
    separate, partial = plotting.no_pooling(fit)
    assert separate.loc["308"].isna().all() and partial.loc["308"].notna().all()
    assert separate.drop("308").notna().all().all()
    ax = plotting.shrinkage(fit)
    assert len(line(ax, "no pooling")[0]) == 17 and len(line(ax, "partial pooling")[0]) == 18


@pytest.fixture(scope="module")
def contraception_fit():
    return skmixed.glmer("use ~ age + urban + (1 | district)", datasets.load("Contraception"), family="binomial")


def test_glmm_residuals_are_pearson_against_fitted_probabilities(contraception_fit):
    y = (datasets.load("Contraception")["use"] == "Y").to_numpy(float)
    ax = plotting.residuals_vs_fitted(contraception_fit)
    x, r = line(ax, "residuals")
    b = contraception_fit.ranef["district"]["(Intercept)"]
    data = contraception_fit.frame.data
    beta = contraception_fit.fixef
    eta = (
        beta["(Intercept)"]
        + beta["age"] * data["age"]
        + beta["urbanY"] * (data["urban"] == "Y")
        + b[data["district"].astype(str)].to_numpy()
    )
    mu = 1 / (1 + np.exp(-eta.to_numpy()))
    np.testing.assert_allclose(x, mu, rtol=1e-9)
    np.testing.assert_allclose(r, (y - mu) / np.sqrt(mu * (1 - mu)), rtol=1e-8)


def test_glmm_group_lines_are_probabilities_and_no_pooling_is_refused(contraception_fit):
    ax = plotting.group_lines(contraception_fit, "age", kind="blup", levels=["1"])
    x, y = line(ax, "1")
    beta, b = contraception_fit.fixef, contraception_fit.ranef["district"].loc["1", "(Intercept)"]
    urban = contraception_fit.frame.data.query("district == '1'")["urban"].iloc[0] == "Y"
    np.testing.assert_allclose(
        y, 1 / (1 + np.exp(-(beta["(Intercept)"] + b + beta["age"] * x + beta["urbanY"] * urban))), rtol=1e-9
    )
    with pytest.raises(ValueError, match="need a linear mixed model"):
        plotting.group_lines(contraception_fit, "age", kind="ols")
    with pytest.raises(ValueError, match="need a linear mixed model"):
        plotting.shrinkage(contraception_fit)
