"""Every LMM in the lme4 reference sets: criterion, estimates, variance components, BLUPs, predictions."""

import numpy as np
import pytest
from conftest import fit_reference
from reference import array, as_list, fixed_names, references

import skmixed

LMMS = references("gaussian")
REL = 3e-3  # lme4 stops BOBYQA at ftol_abs = 1e-8; its estimates carry about 4 significant digits


@pytest.fixture(scope="module", params=sorted(LMMS))
def fitted(request):
    m, caught = fit_reference(request.param)
    return m, caught, LMMS[request.param]


def test_objective_matches_or_beats_lme4(fitted):
    m, _, ref = fitted
    rel = (m.objective - ref["objective"]) / abs(ref["objective"])
    assert rel <= 1e-6, f"objective {m.objective} above lme4's {ref['objective']}"
    assert rel > -1e-5, f"objective {m.objective} far below lme4's {ref['objective']}: not the same model"
    assert m.nobs == ref["nobs"]
    assert m.loglik == pytest.approx(ref["logLik"], rel=1e-6)
    assert m.aic == pytest.approx(ref["AIC"], rel=1e-6)
    assert m.bic == pytest.approx(ref["BIC"], rel=1e-6)


def test_fixed_effects(fitted):
    m, _, ref = fitted
    assert list(m.fixef.index) == fixed_names(ref)
    se = array(ref, "fixef_se")
    assert np.all(np.abs(m.fixef.to_numpy() - array(ref, "fixef")) <= 0.01 * se)
    np.testing.assert_allclose(m.fixef_se.to_numpy(), se, rtol=REL)


def test_covariance_parameters(fitted):
    m, _, ref = fitted
    theta = array(ref, "theta")
    np.testing.assert_allclose(m.theta, theta, rtol=REL, atol=REL * max(1.0, np.abs(theta).max()))
    assert m.sigma == pytest.approx(ref["sigma"], rel=REL)
    assert m.is_singular == ref["singular"]
    vc = m.varcorr
    for row in ref["varcorr"]:
        sel = (
            (vc.grp == row["grp"])
            & (vc.var1.fillna("") == row.get("var1", ""))
            & (vc.var2.fillna("") == row.get("var2", ""))
        )
        assert sel.sum() == 1, f"no varcorr row for {row}"
        got = vc.loc[sel].iloc[0]
        assert got.sdcor == pytest.approx(row["sdcor"], rel=REL, abs=1e-6)
        assert got.vcov == pytest.approx(row["vcov"], rel=2 * REL, abs=1e-6)


def test_conditional_modes_and_sds(fitted):
    m, _, ref = fitted
    modes, sds = m.ranef, m.ranef_sd
    scale = max(max(abs(r["condsd"]) for r in ref["ranef"]), 1e-8)
    for r in ref["ranef"]:
        assert modes[r["grpvar"]].loc[r["grp"], r["term"]] == pytest.approx(r["condval"], abs=REL * scale)
        assert sds[r["grpvar"]].loc[r["grp"], r["term"]] == pytest.approx(r["condsd"], rel=REL, abs=1e-8)


def test_fitted_and_population_predictions(fitted):
    m, _, ref = fitted
    np.testing.assert_allclose(m.fitted[:5], array(ref, "fitted_head"), rtol=0, atol=1e-3 * m.sigma)
    np.testing.assert_allclose(
        m.predict(re_form="~0")[:5], array(ref, "predict_population_head"), rtol=1e-6, atol=1e-3 * m.sigma
    )


def test_messages_like_lme4(fitted):
    m, caught, ref = fitted
    dropped = as_list(ref.get("fixef_dropped"))
    rank_msgs = [w for w in caught if issubclass(w.category, skmixed.RankDeficiencyWarning)]
    assert bool(rank_msgs) == bool(dropped)
    for name in dropped:
        assert name in str(rank_msgs[0].message)
    singular = [w for w in caught if issubclass(w.category, skmixed.SingularFitWarning)]
    assert bool(singular) == ref["singular"]
    assert not [w for w in caught if issubclass(w.category, skmixed.ConvergenceWarning)]
