"""Properties of PIRLS, the Laplace and AGQ deviances and the glmer pipeline, checked against direct computation."""

import pickle

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize, special, stats

import skmixed
from skmixed.exceptions import DataError
from skmixed.families import Binomial, Gaussian, NegativeBinomial, Poisson
from skmixed.laplace import agq, agq_constant, gauss_hermite, laplace
from skmixed.pirls import Pirls


def small_data(seed: int, n: int = 90) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 6, n)
    h = rng.integers(0, 4, n)
    x = rng.normal(size=n)
    eta = (
        -0.3
        + 0.6 * x
        + rng.normal(scale=0.8, size=6)[g]
        + 0.4 * rng.normal(size=6)[g] * x
        + 0.5 * rng.normal(size=4)[h]
    )
    return pd.DataFrame(
        {
            "x": x,
            "g": [f"g{i}" for i in g],
            "h": [f"h{i}" for i in h],
            "yb": rng.binomial(1, special.expit(eta)).astype(float),
            "yc": rng.poisson(np.exp(eta)).astype(float),
            "yn": eta + rng.normal(size=n),
            "w": rng.uniform(0.5, 2.0, n),
            "size": rng.integers(1, 8, n),
        }
    )


def engine(formula: str, df: pd.DataFrame, family, weights=None) -> Pirls:
    """The PIRLS of the model as the stages build it (X standardized: β in its coordinates)."""
    return skmixed.deviance(skmixed.build(formula, df, family=family, weights=weights)).pirls


@pytest.mark.parametrize("seed", [3, 4])
@pytest.mark.parametrize("weighted", [False, True])
def test_laplace_is_exact_for_a_gaussian_identity_model(seed, weighted):
    """y | u ~ N(Xβ + ZΛu, W⁻¹), u ~ N(0, I): ldL2 + pdev(û) + n log 2π − log|W| = −2 log N(y; Xβ, ZΛΛ'Z' + W⁻¹)."""
    df = small_data(seed)
    eng = engine("yn ~ x + (x | g) + (1 | h)", df, Gaussian(), weights="w" if weighted else None)
    Z, w = eng.Z.toarray(), eng.wt
    for theta, beta in [
        (np.array([0.8, 0.2, 0.5, 0.6]), np.array([-0.2, 0.5])),
        (np.array([1.5, -0.4, 0.1, 0.0]), np.array([0.3, 1.0])),
    ]:
        mode = eng.mode(theta, beta)
        assert mode.converged
        laplace = mode.ldL2 + mode.pdev + len(w) * np.log(2 * np.pi) - np.log(w).sum()
        Lam = eng.re.Lambda(theta).toarray()
        V = Z @ Lam @ Lam.T @ Z.T + np.diag(1 / w)
        exact = -2 * stats.multivariate_normal(eng.X @ beta, V).logpdf(eng.y)
        assert laplace == pytest.approx(exact, rel=1e-10)


def brute_force_deviance(eng: Pirls, theta: float, beta: np.ndarray) -> float:
    """−2 log ∏_j ∫ ∏_{i in j} p(y_i | b) N(b; 0, θ²) db by adaptive quadrature (scalar intercept term)."""
    codes = eng.re.terms[0].factor.codes
    fixed = eng.X @ beta + eng.offset
    total = 0.0
    for j in range(eng.re.terms[0].n_levels):
        rows = codes == j

        def integrand(b, rows=rows):
            mu = eng.family.linkinv(fixed[rows] + b)
            return np.exp(-0.5 * eng.family.aic(eng.y[rows], eng.trials[rows], mu, eng.wt[rows], 0.0)) * stats.norm.pdf(
                b, 0, theta
            )

        total += -2 * np.log(integrate.quad(integrand, -12 * theta, 12 * theta, epsabs=0, epsrel=1e-12, limit=200)[0])
    return total


@pytest.mark.parametrize(
    "family, response", [(Binomial(), "yb"), (Poisson(), "yc"), (Binomial(link="probit"), "cbind(yc, size)")]
)
def test_agq_with_many_nodes_is_the_exact_integral(family, response):
    df = small_data(5)
    eng = engine(f"{response} ~ x + (1 | g)", df, family)
    theta, beta = np.array([0.9]), np.array([-0.4, 0.5])
    exact = brute_force_deviance(eng, 0.9, beta)
    mode = eng.mode(theta, beta)
    constant = agq_constant(eng, mode)
    errors = [abs(agq(eng, mode, gauss_hermite(k)) + constant - exact) for k in (1, 5, 9, 15, 25)]
    assert errors[0] > 1e-3  # Laplace is an approximation here ...
    assert all(b < a for a, b in zip(errors, errors[1:-1]))  # ... that more nodes improve
    assert errors[-1] < 1e-10 * abs(exact)  # until the quadrature is exact to round-off
    # one node is the Laplace approximation, on the deviance-residual scale
    assert agq(eng, mode, gauss_hermite(1)) + constant == pytest.approx(laplace(eng, mode), rel=1e-12)


@pytest.mark.parametrize(
    "family, response",
    [
        (Poisson(), "yc"),  # canonical link: IRLS is Newton
        (NegativeBinomial(theta=2.0), "yc"),  # the rest: Newton steps on the observed information
        (Binomial(link="probit"), "yb"),
        (skmixed.families.Gamma(link="log"), "yc + 0.5"),
    ],
)
def test_pirls_finds_the_minimum_of_the_penalized_deviance(family, response):
    df = small_data(6)
    eng = engine(f"{response} ~ x + (x | g) + (1 | h)", df, family)
    theta, beta = np.array([0.7, 0.1, 0.3, 0.5]), np.array([-0.2, 0.4])
    lam = eng.lam_map.values(theta)

    def pdev(u, b=beta):
        mu = eng.family.linkinv(eng.X @ b + eng.Z @ eng.lam_map.dot(lam, u) + eng.offset)
        return eng.family.dev_resids(eng.y, mu, eng.wt).sum() + u @ u

    mode = eng.mode(theta, beta)
    assert mode.converged and mode.iterations <= 8
    direct = optimize.minimize(pdev, np.zeros(eng.q), method="BFGS", options={"gtol": 1e-10})
    np.testing.assert_allclose(mode.u, direct.x, atol=1e-5)
    assert mode.pdev == pytest.approx(direct.fun, rel=1e-9)
    joint = eng.joint_mode(theta)  # nAGQ = 0: β in the same iterations
    both = optimize.minimize(lambda v: pdev(v[2:], v[:2]), np.zeros(eng.q + 2), method="BFGS", options={"gtol": 1e-10})
    np.testing.assert_allclose(np.concatenate([joint.beta, joint.u]), both.x, atol=1e-5)


def test_z_w_z_update_on_the_fixed_pattern_equals_the_dense_product():
    df = small_data(7)
    eng = engine("yb ~ x + (x | g) + (1 | h)", df, Binomial())
    W = np.random.default_rng(0).uniform(0.1, 2.0, eng.n)
    ztz = eng._cross_products(W, np.zeros(eng.n)).ZtZ
    Z = eng.Z.toarray()
    np.testing.assert_allclose(ztz.toarray(), Z.T @ (W[:, None] * Z), rtol=1e-12, atol=1e-12)


def expanded_to_bernoulli(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in df.iterrows():
        rows += [dict(r, y=1.0)] * int(r.incidence) + [dict(r, y=0.0)] * int(r["size"] - r.incidence)
    return pd.DataFrame(rows).astype({"herd": df.herd.dtype, "period": df.period.dtype})


def test_binomial_response_forms_give_the_same_fit():
    from skmixed import datasets

    cbpp = datasets.load("cbpp")
    form = "~ period + (1 | herd)"
    a = skmixed.glmer("cbind(incidence, size - incidence) " + form, cbpp)
    b = skmixed.glmer("incidence / size " + form, cbpp, weights="size")
    long = expanded_to_bernoulli(cbpp)
    c = skmixed.glmer("y " + form, long)
    d = skmixed.glmer("yes " + form, long.assign(yes=long.y == 1))
    e = skmixed.glmer("f " + form, long.assign(f=pd.Categorical(np.where(long.y == 1, "ill", "healthy"))))
    assert b.objective == pytest.approx(a.objective, rel=1e-10)
    for m in (b, c, d, e):
        np.testing.assert_allclose(m.fixef, a.fixef, atol=2e-4)
        np.testing.assert_allclose(m.theta, a.theta, atol=2e-4)
    # Bernoulli rows have no binomial coefficients: −2 logLik differs by exactly −2 Σ log C(n, k)
    log_choose = (
        special.gammaln(cbpp["size"] + 1)
        - special.gammaln(cbpp.incidence + 1)
        - special.gammaln(cbpp["size"] - cbpp.incidence + 1)
    )
    assert c.objective - a.objective == pytest.approx(2 * log_choose.sum(), abs=1e-4)
    assert d.objective == pytest.approx(c.objective, rel=1e-10) and e.objective == pytest.approx(c.objective, rel=1e-10)


@pytest.fixture(scope="module")
def cbpp_fit():
    from skmixed import datasets

    return skmixed.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", datasets.load("cbpp"))


def test_fast_mode_and_laplace(cbpp_fit):
    from skmixed import datasets

    fast = skmixed.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", datasets.load("cbpp"), nAGQ=0)
    assert fast.objective >= cbpp_fit.objective - 1e-8  # Laplace also optimises β
    assert fast.objective - cbpp_fit.objective < 0.5
    np.testing.assert_allclose(fast.fixef, cbpp_fit.fixef, atol=0.05)
    assert fast.hessian_vcov is None and cbpp_fit.hessian_vcov is not None


def test_result_object(cbpp_fit):
    m = cbpp_fit
    data = m.frame.data
    np.testing.assert_allclose(m.predict(data, type="response"), m.fitted, rtol=1e-10)
    np.testing.assert_allclose(m.predict(data), special.logit(m.fitted), rtol=1e-8)
    new = pd.DataFrame({"period": pd.Categorical(["1", "2"], categories=["1", "2", "3", "4"]), "herd": ["1", "999"]})
    pred = m.predict(new, type="response")
    pop = m.predict(new, re_form="~0", type="response")
    assert pred[1] == pytest.approx(pop[1]) and pred[0] != pytest.approx(pop[0])
    d = m.residuals
    assert np.sum(d**2) == pytest.approx(np.sum(m.family.dev_resids(m.frame.y, m.fitted, m.frame.weights)))
    assert repr(m).startswith("Generalized linear mixed model") and "Family: binomial" in repr(m)
    text = str(m.summary())
    assert "Generalized linear mixed model" in text and "Family: binomial  ( logit )" in text
    assert "z value" in text and "Pr(>|z|)" in text and "Residual" not in text
    assert list(m.varcorr.grp) == ["herd"]
    assert m.aic == pytest.approx(m.objective + 2 * 5)
    back = pickle.loads(pickle.dumps(m))
    pd.testing.assert_frame_equal(back.ranef_sd["herd"], m.ranef_sd["herd"])
    assert m.icc()["herd"] == pytest.approx(m.varcorr.vcov[0] / (m.varcorr.vcov[0] + np.pi**2 / 3))
    with pytest.raises(ValueError, match="type must be 'link' or 'response'"):
        m.predict(type="probability")


def test_anova_compares_nested_glmms(cbpp_fit):
    from skmixed import datasets

    null = skmixed.glmer("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", datasets.load("cbpp"))
    table = skmixed.anova(null, cbpp_fit)
    assert table["Df"].iloc[1] == 3
    assert table["Chisq"].iloc[1] == pytest.approx(null.objective - cbpp_fit.objective)


def test_negative_binomial_with_known_theta_and_dispersion_families():
    rng = np.random.default_rng(11)
    g = np.repeat(np.arange(20), 12)
    x = rng.normal(size=g.size)
    mu = np.exp(0.5 + 0.4 * x + rng.normal(scale=0.5, size=20)[g])
    df = pd.DataFrame(
        {"y": rng.negative_binomial(3, 3 / (3 + mu)).astype(float), "x": x, "g": g, "pos": rng.gamma(2.0, mu / 2.0)}
    )
    est = skmixed.glmer("y ~ x + (1 | g)", df, family="negative_binomial")
    fixed = skmixed.glmer("y ~ x + (1 | g)", df, family=NegativeBinomial(theta=est.nb_theta))
    assert fixed.objective == pytest.approx(est.objective, abs=1e-6)
    assert fixed.npar == est.npar - 1  # a given θ is not a parameter
    for th in (0.5 * est.nb_theta, 2 * est.nb_theta):  # θ̂ maximises the profile likelihood
        assert skmixed.glmer("y ~ x + (1 | g)", df, family=NegativeBinomial(theta=th)).objective > est.objective
    gamma = skmixed.glmer("pos ~ x + (1 | g)", df, family=skmixed.families.Gamma(link="log"))
    assert gamma.has_dispersion and "Residual" in list(gamma.varcorr.grp) and gamma.npar == 4
    ig = skmixed.glmer("pos ~ x + (1 | g)", df, family=skmixed.families.InverseGaussian(link="log"))
    assert np.isfinite(ig.objective) and ig.sigma > 0


def test_gaussian_identity_is_fitted_by_lmer_with_ml():
    df = small_data(8)
    with pytest.warns(UserWarning, match="linear mixed model"):
        m = skmixed.glmer("yn ~ x + (1 | g)", df, family="gaussian")
    assert isinstance(m, skmixed.LmerResult) and not m.REML
    log = skmixed.glmer("yc + 1 ~ x + (1 | g)", df, family=Gaussian(link="log"))
    assert isinstance(log, skmixed.GlmerResult) and np.isfinite(log.objective)


def test_arithmetic_responses_are_evaluated_not_read_as_formula_terms():
    """formulaic reads ``a - b`` as 'a without b': responses with operators are evaluated as expressions."""
    df = small_data(9)
    df["half"] = df.yn / 2
    diff = skmixed.lmer("yn - half ~ x + (1 | g)", df)
    direct = skmixed.lmer("half ~ x + (1 | g)", df)
    assert diff.objective == pytest.approx(direct.objective, rel=1e-10)
    shifted = skmixed.glmer("yc + 0.5 ~ x + (1 | g)", df, family=skmixed.families.Gamma(link="log"))
    np.testing.assert_allclose(shifted.frame.y, df.yc + 0.5)


@pytest.mark.parametrize("expr", ["yn - 2 * half", "-yn / (half + 1)", "(yn + 1) - half * 0.5"])
def test_plain_arithmetic_responses_equal_the_formula_machinerys(expr):
    """+ − × ÷ of columns and numbers are evaluated directly (as R and formulaic's I() would), a column not in
    the data is named."""
    from skmixed.model_matrix import numeric_column
    from skmixed.response import _expression_vector

    df = small_data(9)
    df["half"] = df.yn / 2
    np.testing.assert_array_equal(_expression_vector(expr, df, "response"), numeric_column(f"I({expr})", df, "r"))
    with pytest.raises(DataError, match="'c' in the response 'yn - c' is not a column of the data"):
        skmixed.lmer("yn - c ~ x + (1 | g)", df)  # c, an R function's name, is no variable here


def test_without_derivatives_the_covariance_comes_from_rx(cbpp_fit, monkeypatch):
    """lme4 skips the finite-difference Hessian from 10⁴ rows on; then vcov is (RX'RX)⁻¹ at the mode."""
    import skmixed.glmm_fitting
    from skmixed import datasets

    monkeypatch.setattr(skmixed.glmm_fitting, "DERIVS_MAX_NOBS", 10)
    m = skmixed.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", datasets.load("cbpp"))
    assert m.hessian_vcov is None
    assert m.objective == pytest.approx(cbpp_fit.objective, abs=1e-6)
    RXinv = np.linalg.inv(m.solution.RX)
    np.testing.assert_allclose(m.vcov.to_numpy(), RXinv @ RXinv.T, rtol=1e-12)
    np.testing.assert_allclose(m.fixef_se, cbpp_fit.fixef_se, rtol=0.05)  # the Hessian also carries θ's uncertainty
