"""GLMs without random effects (skmixed.glm.fit_glm, the estimators' fit without groups) against R's glm() and
MASS's glm.nb() (fixtures/glm/glm_reference.R): binomial (proportions with trials, 0/1 with the logit and probit
links), Poisson, Gamma with zero prior weights, Gaussian with weights, and the negative binomial with θ estimated.

fit_glm runs R's glm.fit iterations with R's stopping rule, so it lands on R's estimates (to 2e-12), not only
near the maximum-likelihood estimate (R's stopping rule leaves the Gamma log-link fit 1.5e-5 from it).  The
negative binomial alternates θ and β as glm.nb does but stops when θ changes by less than 1e-6 relative:
θ agrees with glm.nb's to 3e-8, β to 1.4e-6."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from reference import load_data

from skmixed import GLMM, GLMMClassifier, MixedLM
from skmixed.families import Binomial, Gamma, Gaussian, NegativeBinomial, Poisson
from skmixed.glm import fit_glm

R = json.loads((Path(__file__).parent / "fixtures" / "glm" / "glm_reference.json").read_text())


def _cbpp():
    data = load_data("cbpp")
    X = pd.get_dummies(data["period"], prefix="period", prefix_sep="", drop_first=True, dtype=float)
    return X, (data["incidence"] / data["size"]).to_numpy(), data["size"].to_numpy(dtype=float)


def _contraception():
    data = load_data("Contraception")
    X = pd.DataFrame({"age": data["age"], "urbanY": (data["urban"] == "Y").astype(float)})
    return X, (data["use"] == "Y").to_numpy(dtype=float), np.ones(len(data))


def _grouseticks():
    data = load_data("grouseticks")
    X = pd.get_dummies(data["YEAR"], prefix="YEAR", prefix_sep="", drop_first=True, dtype=float).assign(
        cHEIGHT=data["cHEIGHT"]
    )
    return X, data["TICKS"].to_numpy(dtype=float), np.ones(len(data))


def _numeric(name, response, weights=None):
    def load():
        data = load_data(name)
        w = np.ones(len(data)) if weights is None else np.asarray(R[weights]["weights"], dtype=float)
        return data[[c for c in data.columns if c in ("x", "Days")]], data[response].to_numpy(dtype=float), w

    return load


CASES = {
    "cbpp_binomial": (_cbpp, Binomial()),
    "contraception_logit": (_contraception, Binomial()),
    "contraception_probit": (_contraception, Binomial(link="probit")),
    "grouseticks_poisson": (_grouseticks, Poisson()),
    "sim_gamma_log": (_numeric("sim_gamma", "y", "sim_gamma_log"), Gamma(link="log")),
    "sleepstudy_gaussian": (_numeric("sleepstudy", "Reaction", "sleepstudy_gaussian"), Gaussian()),
    "sim_negbin_nb": (_numeric("sim_negbin", "y"), NegativeBinomial()),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fit_glm_equals_rs_glm(case):
    load, family = CASES[case]
    X, y, w = load()
    ref = R[case]
    assert list(X.columns) == ref["coef_names"][1:]
    fit = fit_glm(X.to_numpy(dtype=float), y, w, family)
    negative_binomial = "theta" in ref
    np.testing.assert_allclose(fit.beta, ref["coef"], rtol=1.4e-6 if negative_binomial else 2e-12)
    assert fit.deviance == pytest.approx(ref["deviance"], rel=1.5e-8 if negative_binomial else 1e-14)
    assert fit.df_residual == ref["df_residual"]
    assert fit.dispersion == pytest.approx(ref["dispersion"], rel=1e-14)
    if negative_binomial:
        assert fit.family.theta == pytest.approx(ref["theta"], rel=3e-8)
        assert fit.family.name == ref["family"]


def test_estimators_without_groups_are_rs_glm():
    X, y, w = _cbpp()
    binomial = GLMM(family="binomial").fit(X, y, sample_weight=w)
    np.testing.assert_allclose([binomial.intercept_, *binomial.coef_], R["cbpp_binomial"]["coef"], rtol=2e-12)
    assert binomial.variance_components_.empty  # no dispersion, and no random effects

    X, y, _ = _contraception()
    labels = np.where(y == 1, "Y", "N")
    for link in ("logit", "probit"):
        classifier = GLMMClassifier(link=link).fit(X, labels)
        ref = R[f"contraception_{link}"]["coef"]
        np.testing.assert_allclose([classifier.intercept_, *classifier.coef_], ref, rtol=1e-13)

    X, y, w = CASES["sleepstudy_gaussian"][0]()
    linear = MixedLM().fit(X, y, sample_weight=w)
    ref = R["sleepstudy_gaussian"]
    np.testing.assert_allclose([linear.intercept_, *linear.coef_], ref["coef"], rtol=1e-14)
    assert linear.variance_components_["vcov"].iloc[0] == pytest.approx(ref["dispersion"], rel=1e-14)

    X, y, w = CASES["sim_gamma_log"][0]()
    gamma = GLMM(family=Gamma(link="log")).fit(X, y, sample_weight=w)
    assert gamma.variance_components_["vcov"].iloc[0] == pytest.approx(R["sim_gamma_log"]["dispersion"], rel=1e-14)

    X, y, _ = CASES["sim_negbin_nb"][0]()
    nb = GLMM(family="negative_binomial").fit(X, y)
    assert nb.family_.theta == pytest.approx(R["sim_negbin_nb"]["theta"], rel=3e-8)
