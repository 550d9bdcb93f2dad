"""The profile plots (skmixed.plotting.zeta_plot, .profile_pairs): the drawn data are read back and checked."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy.stats import chi2

import skmixed
from skmixed import datasets, plotting
from skmixed.exceptions import OptionError


@pytest.fixture(scope="module")
def fit():
    return skmixed.lmer("Reaction ~ Days + (Days | Subject)", datasets.load("sleepstudy"), REML=False)


@pytest.fixture(scope="module")
def prof(fit):
    return fit.profile()


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_zeta_plot_draws_zeta_and_the_intervals(prof, fit):
    axes = plotting.zeta_plot(prof, conf=(0.8, 0.95))
    assert len(axes) == 6
    exact = fit.confint()
    for ax, name in zip(axes, prof.names):
        (curve,) = [ln for ln in ax.get_lines() if ln.get_label() == "zeta"]
        x, y = curve.get_xdata(), curve.get_ydata()
        np.testing.assert_allclose(y, prof.forward(name)(x))
        assert np.all(np.diff(y[np.isfinite(y)]) > 0)
        (segments,) = [c for c in ax.collections if c.get_label() == "95% interval"]
        ends = sorted(seg[0][0] for seg in segments.get_segments())
        np.testing.assert_allclose(ends, exact.loc[name], rtol=2e-3)  # the spline's ends, near the exact ones
        assert ax.get_xlabel() == name


def test_zeta_plot_absolute_and_which(prof):
    (ax,) = plotting.zeta_plot(prof, absolute=True, which="sigma")
    (curve,) = [ln for ln in ax.get_lines() if ln.get_label() == "zeta"]
    y = curve.get_ydata()
    assert np.nanmin(y) >= 0 and ax.get_ylabel() == "|ζ|"
    with pytest.raises(OptionError, match="not profiled"):
        plotting.zeta_plot(prof, which="nope")


def test_profile_pairs_of_fixed_effects_are_the_wald_ellipses(prof, fit):
    """β's profiles of an LMM are nearly quadratic: on the ζ scales the pairwise region at level L is then the
    ellipse z'R⁻¹z = L², R the correlation of the estimates, and each trace the line ζ_a = ρζ_b."""
    axes = plotting.profile_pairs(prof, conf=(0.95,), which=["(Intercept)", "Days"])
    V = fit.vcov.to_numpy()
    rho = V[0, 1] / np.sqrt(V[0, 0] * V[1, 1])
    R_inv = np.linalg.inv(np.array([[1, rho], [rho, 1]]))
    lower = axes[1, 0]  # ζ of (Intercept) across, ζ of Days up
    (region,) = [ln for ln in lower.get_lines() if ln.get_label() == "95% region"]
    z = np.column_stack([region.get_xdata(), region.get_ydata()])
    L2 = chi2.ppf(0.95, 2)
    np.testing.assert_allclose(np.einsum("ij,jk,ik->i", z, R_inv, z), L2, rtol=0.05)
    (trace,) = [ln for ln in lower.get_lines() if ln.get_label() == "profile of (Intercept)"]
    x, y = trace.get_xdata(), trace.get_ydata()
    keep = np.abs(x) < 2
    np.testing.assert_allclose(y[keep], rho * x[keep], atol=0.05)
    upper = axes[0, 1]  # the same region on the parameters' own scales, transposed: Days across
    (region_up,) = [ln for ln in upper.get_lines() if ln.get_label() == "95% region"]
    np.testing.assert_allclose(region_up.get_xdata(), prof.backward("Days")(z[:, 1]))
    np.testing.assert_allclose(region_up.get_ydata(), prof.backward("(Intercept)")(z[:, 0]))


def test_profile_pairs_of_every_parameter(prof):
    axes = plotting.profile_pairs(prof)
    assert axes.shape == (6, 6)
    assert axes[2, 2].texts[0].get_text() == "sd_Days|Subject"
    for i in range(6):
        for j in range(i):
            regions = [ln for ln in axes[i, j].get_lines() if ln.get_label().endswith("region")]
            assert len(regions) == 5
            drawn = [np.column_stack([ln.get_xdata(), ln.get_ydata()]) for ln in regions]
            assert len(drawn[0]) > 0  # a region is left empty only where a profile stops at a bound before it
            for z in drawn:
                assert np.all(np.isfinite(z)) and (len(z) == 0 or np.max(np.abs(z)) <= np.sqrt(chi2.ppf(0.99, 2)))
    with pytest.raises(OptionError, match="at least two"):
        plotting.profile_pairs(prof, which=["sigma"])
