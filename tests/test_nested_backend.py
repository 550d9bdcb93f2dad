"""Two terms on nested grouping factors: the level-by-level factor (skmixed.nested_cholesky, skmixed.nested_pls)
against lme4 (tests/fixtures/nested/lme4_nested.R: lmer with BOBYQA run to rhoend = 1e-10) and against the general
sparse path (CHOLMOD, with A⁻¹ on A's pattern for the gradient), which it replaces for these models."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import skmixed
from skmixed import backends, stages
from skmixed.backends import DenseBackend, NestedBackend, SparseBackend
from skmixed.condvar import conditional_variances
from skmixed.pls import cross_products
from skmixed.reterms import RandomEffects

HERE = Path(__file__).parent / "fixtures" / "nested"
REFERENCE = json.loads((HERE / "lme4_nested.json").read_text())["models"]
DATA = pd.read_csv(HERE / "nested.csv")
SMALL = DATA[DATA.g.isin([f"g{i}" for i in range(1, 13)])]  # 12 groups, 96 subgroups: the dense path's q = 204


def fit(formula, reml, data=DATA, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", skmixed.SingularFitWarning)
        return skmixed.lmer(formula, data, REML=reml, **kwargs)


@pytest.mark.parametrize("key", sorted(REFERENCE))
def test_fits_match_lme4(key):
    """Vector, scalar and mixed k (1, 2, 3), ``a/b`` and ``a:b`` written either way: lme4's optimum."""
    ref = REFERENCE[key]
    m = fit(ref["formula"], ref["REML"])
    backend = m.devfun.standardized.backend
    assert isinstance(backend, NestedBackend) and "nested grouping factors" in backend.reason
    assert m.optsum.optimizer.startswith("scipy L-BFGS-B")
    assert m.objective <= ref["objective"] + 1e-13 * abs(ref["objective"])
    assert m.objective == pytest.approx(ref["objective"], rel=1e-13)
    np.testing.assert_allclose(m.theta, ref["theta"], rtol=0, atol=2e-6)
    np.testing.assert_allclose(m.fixef.to_numpy(), ref["fixef"], rtol=1e-7)
    assert m.sigma == pytest.approx(ref["sigma"], rel=1e-7)


def both_backends(formula, reml, data=DATA, weights=None):
    model = stages.build(formula, data, REML=reml, weights=weights)
    nested = stages.deviance(model).standardized.backend
    assert isinstance(nested, NestedBackend)
    return nested, SparseBackend(model.cp, model.re, reml)


def random_thetas(re, count=3, seed=4):
    rng = np.random.default_rng(seed)
    init = re.theta_init
    return [init * rng.uniform(0.2, 1.5, len(init)) + (init == 0) * rng.normal(0, 0.3, len(init)) for _ in range(count)]


def assert_same(nested, sparse, theta):
    (a, ga), (b, gb) = nested.solve_with_gradient(theta), sparse.solve_with_gradient(theta)
    assert a.deviance == pytest.approx(b.deviance, rel=1e-13)
    for x, y in ((a.beta, b.beta), (a.u, b.u), (a.b, b.b), (ga, gb)):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-10 * max(1.0, np.abs(y).max()))
    assert a.pwrss == pytest.approx(b.pwrss, rel=1e-12) and a.ldL2 == pytest.approx(b.ldL2, rel=1e-12)


@pytest.mark.parametrize("key", sorted(REFERENCE))
def test_solution_and_gradient_equal_the_sparse_path(key):
    ref = REFERENCE[key]
    nested, sparse = both_backends(ref["formula"], ref["REML"])
    assert sparse.has_gradient
    for theta in random_thetas(nested.re):
        assert_same(nested, sparse, theta)


def test_weights_and_the_benchmark_shape_equal_the_sparse_path():
    """Prior weights (Z'WZ's blocks), and the benchmark's 300 groups × 20 subgroups at 60,000 rows."""
    weights = np.random.default_rng(2).uniform(0.5, 2.0, len(DATA))
    nested, sparse = both_backends("y ~ x + (1 + x | g) + (1 + x | g:s)", True, weights=weights)
    for theta in random_thetas(nested.re, 2):
        assert_same(nested, sparse, theta)
    from benchmarks.data import nested_vector

    nested, sparse = both_backends("y ~ x + (1 + x | a) + (1 + x | a:b)", True, nested_vector())
    for theta in random_thetas(nested.re, 2):
        assert_same(nested, sparse, theta)


def test_the_outer_term_first_and_unsorted_parents():
    """Terms given outer first (lme4's order never does, the factor allows it) and inner levels whose outer levels
    are not in order ("g10:s1" sorts before "g2:s1"): the factor's permutation P.  (The sparse path has no gradient
    for this order: the dense one is the reference.)"""
    model = stages.build("y ~ x + (1 + x | g:s) + (1 | g)", SMALL, REML=True)
    re = RandomEffects(list(reversed(model.re.terms)))
    cp = cross_products(re.Z, model.X, model.y, model.weights)
    structure = backends.nested_structure(cp.ZtZ, re)
    assert structure.inner == 1 and not structure.identity
    nested = NestedBackend(cp, re, True, structure)
    sparse = DenseBackend(cp, re, True, "test")
    for theta in random_thetas(re):
        assert_same(nested, sparse, theta)
        chol_n, chol_s = nested.cholesky_at(theta), sparse.cholesky_at(theta)
        for vn, vs in zip(conditional_variances(chol_n, re, theta, 1.3), conditional_variances(chol_s, re, theta, 1.3)):
            np.testing.assert_allclose(vn, vs, rtol=1e-11, atol=1e-14)
        rhs = np.random.default_rng(1).normal(size=(re.q, 2))
        np.testing.assert_allclose(chol_n.solve(rhs), chol_s.solve(rhs), rtol=1e-11, atol=1e-13)
        assert chol_n.logdet() == pytest.approx(chol_s.logdet(), rel=1e-13)


@pytest.mark.parametrize("shape", ["fixture", "benchmark"])
def test_whole_fit_equals_the_sparse_path(monkeypatch, shape):
    """The same optimum (and the same results downstream) with the sparse path forced: on the fixture, and on the
    benchmark's 60,000 rows (there without the conditional variances, O(q²) on the sparse path)."""
    if shape == "fixture":
        formula, data, groups = "y ~ x + (1 + x | g) + (1 + x | g:s)", DATA, ("g", "g:s")
    else:
        from benchmarks.data import nested_vector

        formula, data, groups = "y ~ x + (1 + x | a) + (1 + x | a:b)", nested_vector(), ("a", "a:b")
    m = fit(formula, True, data)
    monkeypatch.setattr(backends, "nested_structure", lambda *args: None)
    monkeypatch.setattr(backends, "_with_gradient", lambda *args: None)  # not the blocked path either
    ref = fit(formula, True, data)
    assert isinstance(ref.devfun.standardized.backend, SparseBackend) and ref.devfun.standardized.backend.has_gradient
    assert m.optsum.n_evaluations == ref.optsum.n_evaluations
    assert m.objective == pytest.approx(ref.objective, rel=1e-12)
    np.testing.assert_allclose(m.theta, ref.theta, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(m.fixef, ref.fixef, rtol=1e-9)
    np.testing.assert_allclose(m.fixef_se, ref.fixef_se, rtol=1e-7)
    for group in groups:
        np.testing.assert_allclose(m.ranef[group], ref.ranef[group], rtol=1e-6, atol=1e-8)
        if shape == "fixture":
            np.testing.assert_allclose(m.ranef_sd[group], ref.ranef_sd[group], rtol=1e-7)


def test_other_structures_are_not_taken():
    """Partly nested factors, one factor twice, three terms: the other backends."""
    leaky = DATA.assign(sub=DATA.g + DATA.s)
    leaky.loc[0, "g"] = "g2"  # a row of subgroup g1s1 in group g2: g1s1 is then in two groups
    cases = [
        ("y ~ x + (1 + x | g) + (1 + x | sub)", leaky),
        ("y ~ x + (1 | g:s) + (0 + x | g:s)", DATA),
        ("y ~ x + (1 | g) + (1 | g:s) + (0 + x | g:s)", DATA),
    ]
    for formula, data in cases:
        model = stages.build(formula, data)
        assert backends.nested_structure(model.cp.ZtZ, model.re) is None
        assert not isinstance(stages.deviance(model).standardized.backend, NestedBackend)


@pytest.mark.parametrize("group", ["g9", "g12"])
def test_an_outer_level_that_meets_no_inner_level(group):
    """A group whose slope covariate is 0 throughout: Z'Z stores no coupling for its level (exact zeros are not
    kept), so it has no inner level in the factor's sums ("g9" sorts last of g1–g12: the final segment)."""
    data = SMALL.copy()
    data.loc[data.g == group, "x"] = 0.0
    model = stages.build("y ~ 1 + (0 + x | g) + (1 | g:s)", data)
    nested = stages.deviance(model).standardized.backend
    assert isinstance(nested, NestedBackend) and not nested._nested.s.has_inner.all()
    dense = DenseBackend(model.cp, model.re, True, "test")
    for theta in random_thetas(model.re):
        assert_same(nested, dense, theta)
