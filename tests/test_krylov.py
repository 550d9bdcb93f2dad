"""``solver="krylov"``: conjugate gradients and stochastic Lanczos quadrature (skmixed.krylov_pls) against the exact
paths on a small crossed model (3,000 rows, 300 × 200 levels), and its options."""

import numpy as np
import pandas as pd
import pytest

import skmixed
from skmixed.backends import choose_backend
from skmixed.exceptions import OptionError
from skmixed.krylov import batched_cg, lanczos_log_quadrature, rademacher
from skmixed.krylov_pls import KrylovPls, KrylovSettings
from skmixed.stages import build, deviance

FORMULA = "y ~ x + (1 | a) + (1 | b)"


@pytest.fixture(scope="module")
def crossed():
    rng = np.random.default_rng(15)
    a, b = rng.integers(0, 300, 3000), rng.integers(0, 200, 3000)
    x = rng.normal(size=3000)
    y = 5.0 + 0.3 * x + rng.normal(0, 1.0, 300)[a] + rng.normal(0, 0.5, 200)[b] + rng.normal(0, 1.0, 3000)
    return pd.DataFrame({"y": y, "x": x, "a": a.astype(str), "b": b.astype(str)})


@pytest.mark.parametrize("REML", [False, True])
def test_krylov_optimum_is_the_exact_optimum(crossed, REML):
    """The exact objective at the iterative fit's θ is the exact optimum's to 1e-10 relative (achieved: 4e-12); θ to
    2e-5 (achieved 9e-6: the stochastic log-determinant moves the optimum that little), β to 2e-7, σ to 3e-6."""
    exact = skmixed.lmer(FORMULA, crossed, REML=REML)
    fit = skmixed.lmer(FORMULA, crossed, REML=REML, solver="krylov")
    assert fit.devfun.reason.startswith("solver='krylov'")
    assert "the objective reported is the exact one at the final θ" in fit.devfun.reason
    assert fit.objective == pytest.approx(exact.devfun(fit.theta), rel=1e-14)  # reported: the exact objective
    assert fit.objective >= exact.objective - 1e-12 * abs(exact.objective)
    assert fit.objective == pytest.approx(exact.objective, rel=1e-10)
    np.testing.assert_allclose(fit.theta, exact.theta, rtol=2e-5)
    np.testing.assert_allclose(fit.fixef, exact.fixef, rtol=2e-7)
    assert fit.sigma == pytest.approx(exact.sigma, rel=3e-6)


def test_past_the_affordable_exact_factor_the_estimate_is_reported(crossed, monkeypatch):
    import skmixed.krylov_pls

    monkeypatch.setattr(skmixed.krylov_pls, "EXACT_FINAL_FLOPS", 0.0)
    fit = skmixed.lmer(FORMULA, crossed, REML=False, solver="krylov")
    assert "the objective reported is the stochastic estimate" in fit.devfun.reason
    assert fit.objective == pytest.approx(fit.devfun(fit.theta), rel=1e-12)  # the iterative deviance
    assert fit.objective != pytest.approx(skmixed.lmer(FORMULA, crossed, REML=False).devfun(fit.theta), rel=1e-9)


def test_deviance_and_gradient_against_the_exact_path(crossed):
    """At fixed θ the PLS part (β̂, r², log|RX'RX|) is exact to CG's tolerance, and log|A| and the gradient approach
    the exact ones as the probes grow (the error falls as 1/√probes): with 8,000 probes log|A| within 0.01 (of 910) and
    the gradient within 5e-5 relative (achieved: 0.003 and 9e-6; with 5 probes 0.32 and 2e-3)."""
    model = build(FORMULA, crossed, REML=True)
    exact = choose_backend(model.cp, model.re, True)
    theta = np.array([0.9, 0.45])
    sol, grad = exact.solve_with_gradient(theta)
    errors = []
    for probes in (5, 8000):
        est, est_grad = KrylovPls(model.cp, model.re, True, KrylovSettings(probes=probes)).solve(theta, gradient=True)
        np.testing.assert_allclose(est.beta, sol.beta, rtol=1e-10)
        assert est.pwrss == pytest.approx(sol.pwrss, rel=1e-12)
        assert est.ldRX2 == pytest.approx(sol.ldRX2, rel=1e-10)
        np.testing.assert_allclose(est.u, sol.u, rtol=1e-8, atol=1e-10)
        errors.append((abs(est.ldL2 - sol.ldL2), np.abs(est_grad - grad).max() / np.abs(grad).max()))
    assert errors[1][0] < 0.01 and errors[1][1] < 5e-5
    assert errors[1][0] < errors[0][0] and errors[1][1] < errors[0][1]


def test_lanczos_quadrature_of_a_converged_cg_run_is_the_quadratic_form():
    """z'log(M)z from CG's coefficients equals the dense matrix function's to rounding when CG has converged."""
    rng = np.random.default_rng(3)
    B = rng.normal(size=(60, 60))
    M = np.eye(60) + B @ B.T / 60
    w, V = np.linalg.eigh(M)
    log_m = (V * np.log(w)) @ V.T
    z = rademacher(60, 4, 1)
    cg = batched_cg(lambda P: M @ P, z, 1e-12, 200)
    np.testing.assert_allclose(cg.X, np.linalg.solve(M, z), rtol=1e-9)
    quadratic_forms = np.einsum("ij,ij->j", z, log_m @ z)
    np.testing.assert_allclose(60 * lanczos_log_quadrature(cg.alpha, cg.beta, cg.steps), quadratic_forms, rtol=1e-10)


def test_same_seed_same_fit_other_seed_other_estimate(crossed):
    settings = {"probes": 20, "seed": 7}
    one = deviance(build(FORMULA, crossed, REML=False), solver="krylov", krylov=settings)
    two = deviance(build(FORMULA, crossed, REML=False), solver="krylov", krylov=settings)
    other = deviance(build(FORMULA, crossed, REML=False), solver="krylov", krylov={"probes": 20, "seed": 8})
    theta = np.array([0.8, 0.4])
    assert one(theta) == two(theta)
    np.testing.assert_array_equal(one.value_and_gradient(theta)[1], two.value_and_gradient(theta)[1])
    assert one(theta) != other(theta)
    a = skmixed.lmer(FORMULA, crossed, REML=False, solver="krylov", krylov=settings)
    b = skmixed.lmer(FORMULA, crossed, REML=False, solver="krylov", krylov=settings)
    np.testing.assert_array_equal(a.theta, b.theta)
    assert a.objective == b.objective


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"solver": "cholmod"}, "solver must be one of 'auto', 'krylov'"),
        ({"solver": None}, "solver must be one of"),
        ({"krylov": {"probes": 10}}, "needs solver='krylov'"),
        ({"solver": "krylov", "krylov": {"probes": 0}}, "krylov\\['probes'\\] must be an integer"),
        ({"solver": "krylov", "krylov": {"seed": -1}}, "krylov\\['seed'\\] must be an integer"),
        ({"solver": "krylov", "krylov": {"tol": 0.1}}, "krylov\\['tol'\\] must be a number in"),
        ({"solver": "krylov", "krylov": {"probe": 10}}, "krylov may have the keys"),
        ({"solver": "krylov", "krylov": 10}, "krylov must be a dict"),
    ],
)
def test_option_errors(crossed, kwargs, message):
    with pytest.raises(OptionError, match=message):
        skmixed.lmer(FORMULA, crossed, **kwargs)


def test_conjugate_gradients_short_of_the_tolerance_is_an_error(crossed):
    model = build(FORMULA, crossed, REML=False)
    pls = KrylovPls(model.cp, model.re, False, KrylovSettings(maxiter=3))
    with pytest.raises(OptionError, match=r"solver='krylov' at θ = .*short of 1e-10 after 3 steps; use solver='auto'"):
        pls.solve(np.array([1.0, 0.5]))


def test_weights_and_a_single_term(crossed):
    """Weights enter through the weighted cross-products; with one term A is diagonal and the path is exact."""
    weights = np.random.default_rng(4).uniform(0.5, 2.0, len(crossed))
    exact = skmixed.lmer(FORMULA, crossed, REML=False, weights=weights)
    fit = skmixed.lmer(FORMULA, crossed, REML=False, weights=weights, solver="krylov")
    assert fit.objective == pytest.approx(exact.objective, rel=2e-10)  # achieved: 6e-11
    exact = skmixed.lmer("y ~ x + (1 | a)", crossed)
    fit = skmixed.lmer("y ~ x + (1 | a)", crossed, solver="krylov")
    assert fit.objective == pytest.approx(exact.objective, rel=1e-14)
    np.testing.assert_allclose(fit.theta, exact.theta, rtol=1e-12)


def test_models_the_iterative_path_cannot_take(crossed):
    with pytest.raises(OptionError, match=r"cannot take this model: .*\(1 \+ x \| a\) has several effects"):
        skmixed.lmer("y ~ x + (1 + x | a) + (1 | b)", crossed, solver="krylov")
    with pytest.raises(OptionError, match="solver='krylov' fits an in-memory lmer without residual="):
        skmixed.lmer("y ~ x", crossed.assign(t=1), residual="cs(t | a)", solver="krylov")
    binary = crossed.assign(z=(crossed.y > 5).astype(int))
    glmm = build("z ~ x + (1 | a)", binary, family="binomial")
    with pytest.raises(OptionError, match="a GLMM's deviance has no iterative path"):
        deviance(glmm, solver="krylov")


def test_estimator_passes_the_solver(crossed):
    est = skmixed.MixedLM(formula="~ x + (1 | a) + (1 | b)", reml=False, solver="krylov").fit(crossed, crossed.y)
    assert est.result_.devfun.reason.startswith("solver='krylov'")
    exact = skmixed.lmer(FORMULA, crossed, REML=False)
    assert est.result_.objective == pytest.approx(exact.objective, rel=1e-10)
