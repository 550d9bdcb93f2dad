"""The blocked Cholesky factor and the analytic gradient of the profiled deviance."""

import numpy as np
import pandas as pd
import pytest

import skmixed
from skmixed import cholesky as cholesky_module
from skmixed._cholmod import NotPositiveDefinite, SparseCholesky
from skmixed.backends import ScalarTermsBackend
from skmixed.cholesky import BlockedCholesky, make_cholesky
from skmixed.optimizers import bobyqa
from skmixed.pls import PenalizedCholesky
from skmixed.scalar_cholesky import ScalarTermsCholesky


def crossed_data(seed=0, n=600):
    rng = np.random.default_rng(seed)
    s, d, dept = rng.integers(0, 120, n), rng.integers(0, 40, n), rng.integers(0, 6, n)
    y = rng.normal(0, 0.6, 120)[s] + rng.normal(0, 0.9, 40)[d] + rng.normal(0, 0.3, 6)[dept] + rng.normal(size=n)
    return pd.DataFrame({"y": y + 3, "x": rng.normal(size=n), "s": s, "d": d, "dept": dept})


def fully_crossed_data(seed=0):
    """Every s meets every d and dept: L₂₁ is full, and the blocked factor keeps it dense."""
    rng = np.random.default_rng(seed)
    s, d = np.meshgrid(np.arange(30), np.arange(8), indexing="ij")
    s, d = np.tile(s.ravel(), 2), np.tile(d.ravel(), 2)
    dept = d % 3
    y = rng.normal(0, 0.6, 30)[s] + rng.normal(0, 0.9, 8)[d] + rng.normal(size=len(s))
    return pd.DataFrame({"y": y + 3, "x": rng.normal(size=len(s)), "s": s, "d": d, "dept": dept})


FORMULA = "y ~ x + (1 | s) + (1 | d) + (1 | dept)"


def deviance(df, reml, formula=FORMULA):
    return skmixed.deviance(skmixed.build(formula, df, REML=reml))


def A_at(dev, theta):
    """A = Λ'Z'ZΛ + I of the model at θ (lower triangle, on its fixed pattern)."""
    penalized = PenalizedCholesky(dev.model.cp.ZtZ, dev.model.re)
    return penalized.gram.update(penalized.lam.values(np.asarray(theta, dtype=float)))


@pytest.mark.parametrize("data, dense_l21", [(crossed_data, False), (fully_crossed_data, True)])
def test_blocked_factor_equals_cholmod(data, dense_l21):
    dev = deviance(data(), reml=True)
    A = A_at(dev, [0.7, 1.3, 0.4])
    blocked, sparse = BlockedCholesky(A, dev.model.re.terms[0].q), SparseCholesky(A)
    assert isinstance(blocked._L21, np.ndarray) == dense_l21
    assert blocked.logdet() == pytest.approx(sparse.logdet(), rel=1e-12)
    b = np.random.default_rng(1).normal(size=(A.shape[0], 3))
    dense = A.toarray() + np.tril(A.toarray(), -1).T
    np.testing.assert_allclose(blocked.solve(b), np.linalg.solve(dense, b), rtol=1e-9, atol=1e-12)
    # L⁻¹ and L'⁻¹ are those of one factor: ‖L⁻¹b‖² = b'A⁻¹b, and L'⁻¹L⁻¹ = A⁻¹
    np.testing.assert_allclose(
        (blocked.solve_L(b) ** 2).sum(0), np.einsum("ij,ij->j", b, np.linalg.solve(dense, b)), rtol=1e-9
    )
    np.testing.assert_allclose(blocked.solve_Lt(blocked.solve_L(b)), np.linalg.solve(dense, b), rtol=1e-9, atol=1e-12)
    tr1, diag2 = blocked.inverse_traces()
    inv = np.linalg.inv(dense)
    q1 = dev.model.re.terms[0].q
    assert tr1 == pytest.approx(np.trace(inv[:q1, :q1]), rel=1e-10)
    np.testing.assert_allclose(diag2, np.diag(inv)[q1:], rtol=1e-10)


@pytest.mark.parametrize("method", ["sparse", "per count", "sparse per count", "dense"])
def test_scalar_terms_factor_equals_blocked(method):
    """The factor refactored from λ alone (G diag(w) G' by each of WeightedGram's ways) equals the one from A."""
    dev = deviance(crossed_data(), reml=True)
    theta = np.array([0.7, 1.3, 0.4])
    A = A_at(dev, theta)
    q1 = dev.model.re.terms[0].q
    blocked = BlockedCholesky(A, q1)
    scalar = ScalarTermsCholesky(dev.model.cp.ZtZ, q1, method)
    assert scalar.gram.method == method
    scalar.refactor_lambda(np.repeat(theta, [t.q for t in dev.model.re.terms]))
    assert scalar.logdet() == pytest.approx(blocked.logdet(), rel=1e-12)
    b = np.random.default_rng(1).normal(size=(A.shape[0], 3))
    for method in ("solve_L", "solve_Lt", "solve"):
        np.testing.assert_allclose(getattr(scalar, method)(b), getattr(blocked, method)(b), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(
            getattr(scalar, method)(b[:, 0]), getattr(blocked, method)(b[:, 0]), rtol=1e-10, atol=1e-12
        )
    tr_s, diag_s = scalar.inverse_traces()
    tr_b, diag_b = blocked.inverse_traces()
    assert tr_s == pytest.approx(tr_b, rel=1e-11)
    np.testing.assert_allclose(diag_s, diag_b, rtol=1e-11)


def test_factor_choice_follows_structure():
    dev = deviance(crossed_data(), reml=True)
    A = A_at(dev, np.ones(3))
    assert isinstance(make_cholesky(A, dev.model.re.terms[0].q), BlockedCholesky)  # crossed: dense Schur complement
    assert isinstance(make_cholesky(A, 0), SparseCholesky)  # first term not scalar


def fd_gradient(dev, theta, h=1e-4):
    """4th-order central differences of the deviance."""
    return np.array(
        [
            (-dev(theta + 2 * h * e) + 8 * dev(theta + h * e) - 8 * dev(theta - h * e) + dev(theta - 2 * h * e))
            / (12 * h)
            for e in np.eye(len(theta))
        ]
    )


@pytest.mark.parametrize("reml", [False, True])
def test_analytic_gradient_matches_finite_differences(reml):
    dev = deviance(crossed_data(2), reml)
    assert dev.has_gradient
    for theta in ([0.7, 1.3, 0.4], [1.0, 0.2, 2.0], [0.5, 0.0, 1.1]):
        theta = np.array(theta)
        value, grad = dev.value_and_gradient(theta)
        assert value == pytest.approx(dev(theta), rel=1e-14)
        np.testing.assert_allclose(grad, fd_gradient(dev, theta), rtol=1e-6, atol=1e-6)


def test_gradient_path_reaches_the_bobyqa_optimum():
    df = crossed_data(3)
    m = skmixed.lmer(FORMULA, df)
    assert m.optsum.optimizer.startswith("scipy L-BFGS-B")
    dev = deviance(df, reml=True)
    ref = bobyqa(dev, np.ones(3), np.zeros(3), xtol_abs=1e-10, ftol_abs=1e-12)
    assert m.objective <= ref.objective + 1e-7
    np.testing.assert_allclose(m.theta, ref.theta, rtol=1e-4, atol=1e-5)


def test_moment_start_is_near_the_optimum_and_reaches_it():
    df = crossed_data(4)
    m = skmixed.lmer(FORMULA, df)
    start = m.optsum.theta_init
    assert np.all(np.abs(np.log(start / m.theta)) < np.log(3))  # within a factor of 3 of θ̂
    from_identity = skmixed.lmer(FORMULA, df, start=np.ones(3))
    assert m.objective == pytest.approx(from_identity.objective, rel=1e-10)
    np.testing.assert_allclose(m.theta, from_identity.theta, rtol=1e-4)


def nested_data(seed=5, n=1500, leak=False):
    """300 schools nested in 30 areas: the Schur complement S (30 × 30) is diagonal; ``leak``: one school also has a
    row in another area (only partly nested, S nearly diagonal)."""
    rng = np.random.default_rng(seed)
    school = rng.integers(0, 300, n)
    area = school // 10
    if leak:
        area[0] = (area[0] + 1) % 30
    y = rng.normal(0, 0.7, 300)[school] + rng.normal(0, 0.5, 30)[area] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": rng.normal(size=n), "s": school, "d": area})


@pytest.mark.parametrize("reml", [False, True])
def test_partly_nested_scalar_terms_use_the_small_dense_schur_complement(reml):
    """A partly nested model's S is sparse but small: the blocked factor still applies, and with it the gradient
    (fully nested factors take :class:`~skmixed.backends.NestedBackend`, tests/test_nested_backend.py)."""
    df = nested_data(leak=True)
    formula = "y ~ x + (1 | s) + (1 | d)"
    dev = deviance(df, reml, formula)
    backend = dev.standardized.backend
    assert isinstance(backend, ScalarTermsBackend) and backend.chol.density < cholesky_module.MIN_DENSITY
    theta = np.array([0.8, 0.6])
    value, grad = dev.value_and_gradient(theta)
    np.testing.assert_allclose(grad, fd_gradient(dev, theta), rtol=1e-6, atol=1e-6)
    m = skmixed.lmer(formula, df, REML=reml)
    ref = bobyqa(dev, np.ones(2), np.zeros(2), xtol_abs=1e-10, ftol_abs=1e-12)
    assert m.optsum.optimizer.startswith("scipy L-BFGS-B") and m.objective <= ref.objective + 1e-7


def two_factor_data(n_a, n_b, n, nested, seed=6, leak=False):
    rng = np.random.default_rng(seed)
    b = rng.permutation(np.arange(n) % n_b)  # every level of b seen
    a = b // (n_b // n_a) if nested else rng.integers(0, n_a, n)
    if leak:  # one row of a level of b in another level of a: only partly nested
        a[0] = (a[0] + 1) % n_a
    y = rng.normal(0, 0.7, n_a)[a] + rng.normal(0, 0.5, n_b)[b] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "a": a, "b": b})


@pytest.mark.parametrize("reml", [False, True])
def test_sparse_but_filling_schur_complement_is_factored_dense_by_cost(reml):
    """300 × 1,500 crossed levels, two rows per level of b: S (order 300) is under MIN_DENSITY full but its CHOLMOD
    factor fills in, so the dense complement (with the gradient) costs less; a nearly nested S of the same order is
    nearly diagonal and stays with CHOLMOD."""
    formula = "y ~ 1 + (1 | a) + (1 | b)"
    crossed = deviance(two_factor_data(300, 1500, 3000, nested=False), reml, formula)
    backend = crossed.standardized.backend
    assert isinstance(backend, ScalarTermsBackend) and backend.chol.q2 == 300
    assert backend.chol.density < cholesky_module.MIN_DENSITY
    theta = np.array([0.6, 0.9])
    np.testing.assert_allclose(crossed.value_and_gradient(theta)[1], fd_gradient(crossed, theta), rtol=1e-6, atol=1e-6)
    nested = deviance(two_factor_data(300, 1500, 3000, nested=True, leak=True), reml, formula)
    assert not isinstance(nested.standardized.backend, ScalarTermsBackend)
    assert nested.standardized.backend.reason.startswith("the sparse factor")


def test_sparse_factor_choice_is_structural(monkeypatch):
    """CHOLMOD's ordering and mode come from the factor's structure (the same every time), supernodal where its
    columns are long (flops / nnz ≥ 40, CHOLMOD's own switch).  (The candidates are weighed from order
    ``MEASURE_FROM``, lowered here to keep the test small.)"""
    from skmixed import _cholmod

    monkeypatch.setattr(_cholmod, "MEASURE_FROM", 200)
    rng = np.random.default_rng(7)
    n = 300
    dense_ish = rng.random((n, n)) < 0.2
    M = (np.triu(dense_ish) | np.triu(dense_ish).T) * 0.01 + np.eye(n) * n
    import scipy.sparse as sp

    long_columns = sp.tril(sp.csc_matrix(M), format="csc")
    first, second = SparseCholesky(long_columns), SparseCholesky(long_columns)
    assert (first.mode, first.ordering, first.flops) == (second.mode, second.ordering, second.flops)
    assert first.mode == "supernodal" and first.flops >= 40 * first.nnz
    path = sp.diags([np.full(n, 4.0), np.full(n - 1, -1.0)], [0, -1], format="csc")  # L has two entries per column
    short = SparseCholesky(path)
    assert short.mode == "simplicial" and short.flops == 4 * (n - 1) + 1 and short.nnz == 2 * n - 1


def test_crossed_vector_terms_take_the_dense_path_for_its_gradient():
    """Correlated slopes by subject and by item (q = 110 > MAX_DENSE_Q): the sparse factor would have no gradient,
    the dense one costs less than its BOBYQA evaluations, and its gradient is the deviance's."""
    from skmixed.backends import MAX_DENSE_Q, DenseBackend

    rng = np.random.default_rng(8)
    subj, item = np.repeat(np.arange(30), 25), np.tile(np.arange(25), 30)
    a = ((subj + item) % 2) - 0.5
    by_subj, by_item = rng.normal(0, [1.0, 0.8], (30, 2)), rng.normal(0, [0.7, 0.6], (25, 2))
    effects = by_subj[subj] + by_item[item]
    y = effects[:, 0] + (1 + effects[:, 1]) * a + rng.normal(0, 0.5, len(a))
    df = pd.DataFrame({"y": y, "a": a, "subj": subj, "item": item})
    formula = "y ~ a + (1 + a | subj) + (1 + a | item)"
    dev = deviance(df, reml=True, formula=formula)
    backend = dev.standardized.backend
    assert isinstance(backend, DenseBackend) and backend.re.q == 110 > MAX_DENSE_Q
    assert "several grouping factors" in backend.reason
    theta = np.array([1.1, 0.2, 0.5, 0.9, -0.1, 0.4])
    np.testing.assert_allclose(dev.value_and_gradient(theta)[1], fd_gradient(dev, theta), rtol=1e-6, atol=1e-6)
    m = skmixed.lmer(formula, df)
    ref = bobyqa(dev, m.optsum.theta_init, dev.model.re.theta_lower, xtol_abs=1e-10, ftol_abs=1e-12)
    assert m.optsum.optimizer.startswith("scipy L-BFGS-B") and m.objective <= ref.objective + 1e-7


def nested_vector_data(n_a=25, per_a=8, rows=6, seed=9, leak=False):
    """Subgroups b nested in groups a, random intercepts and slopes at both levels; ``leak``: one subgroup also
    has a row in another group (only partly nested)."""
    rng = np.random.default_rng(seed)
    sub = np.repeat(np.arange(n_a * per_a), rows)
    a = sub // per_a
    if leak:
        a = a.copy()
        a[0] = n_a - 1
    x = rng.normal(size=len(sub))
    by_a, by_sub = rng.normal(0, [1.0, 0.6], (n_a, 2)), rng.normal(0, [0.7, 0.4], (n_a * per_a, 2))
    eff = by_a[a] + by_sub[sub]
    y = eff[:, 0] + (0.5 + eff[:, 1]) * x + rng.normal(size=len(sub))
    return pd.DataFrame({"y": y, "x": x, "a": a, "sub": sub})


@pytest.mark.parametrize("reml", [False, True])
def test_nested_vector_terms_have_a_gradient_from_their_blocks(reml):
    """(1 + x | a) + (1 + x | sub), sub nested in a (q = 450 > MAX_DENSE_Q): A⁻¹ on A's pattern from 2 × 2 blocks
    gives the deviance's gradient; a subgroup seen in two groups breaks the nesting, and the gradient then comes from
    the selected inverse of CHOLMOD's factor."""
    formula = "y ~ x + (1 + x | a) + (1 + x | sub)"
    dev = deviance(nested_vector_data(), reml, formula)
    backend = dev.standardized.backend
    assert backend.has_gradient and "nested" in backend.reason and backend.re.q == 450
    for theta in ([0.8, 0.1, 0.5, 1.1, -0.2, 0.6], [0.3, 0.0, 0.2, 0.9, 0.4, 0.0]):
        theta = np.array(theta)
        value, grad = dev.value_and_gradient(theta)
        assert value == pytest.approx(dev(theta), rel=1e-13)
        np.testing.assert_allclose(grad, fd_gradient(dev, theta), rtol=1e-6, atol=1e-6)
    m = skmixed.lmer(formula, nested_vector_data(), REML=reml)
    ref = bobyqa(dev, m.optsum.theta_init, dev.model.re.theta_lower, xtol_abs=1e-10, ftol_abs=1e-12)
    assert m.optsum.optimizer.startswith("scipy L-BFGS-B") and m.objective <= ref.objective + 1e-7
    leaky = deviance(nested_vector_data(leak=True), reml, formula)
    assert leaky.has_gradient and "selected inverse" in leaky.reason
    theta = np.array([0.8, 0.1, 0.5, 1.1, -0.2, 0.6])
    np.testing.assert_allclose(leaky.value_and_gradient(theta)[1], fd_gradient(leaky, theta), rtol=1e-6, atol=1e-6)


def test_inverse_traces_from_the_triangular_inverse_equal_those_from_s_inverse(monkeypatch):
    """The gradient's traces tr((A⁻¹)₁₁) and diag((A⁻¹)₂₂) by ‖L₂₂⁻¹L₂₁D^-½‖² (chosen where the sparse product is
    cheap) equal those from S⁻¹."""
    dev = deviance(two_factor_data(300, 1500, 3000, nested=False), True, "y ~ 1 + (1 | a) + (1 | b)")
    chol = ScalarTermsCholesky(dev.model.cp.ZtZ, dev.model.re.terms[0].q, "sparse")
    chol.refactor_lambda(np.repeat([0.7, 1.3], [chol.q1, chol.q2]))
    assert not isinstance(chol._L21, np.ndarray)  # the sparse L₂₁ this is about
    monkeypatch.setattr(cholesky_module, "SPARSE_DENSE_NS", 0.0)
    monkeypatch.setattr(cholesky_module, "DENSE_PASS_NS", 0.0)
    by_triangle = chol.inverse_traces()
    monkeypatch.setattr(cholesky_module, "MAX_TRIANGULAR_PRODUCT", 0)
    by_inverse = chol.inverse_traces()
    assert by_triangle[0] == pytest.approx(by_inverse[0], rel=1e-12)
    np.testing.assert_allclose(by_triangle[1], by_inverse[1], rtol=1e-12)


def test_one_random_intercept_has_a_diagonal_factor():
    """A of a single scalar term is diagonal: its factor is diag(√a), with CHOLMOD's results (and none of its calls)."""
    from skmixed.cholesky import DiagonalCholesky

    df = nested_data()
    dev = deviance(df, True, "y ~ x + (1 | s)")
    A = A_at(dev, [0.8])
    chol = make_cholesky(A, dev.model.re.terms[0].q)
    assert isinstance(chol, DiagonalCholesky)
    reference = SparseCholesky(A)
    b = np.random.default_rng(3).normal(size=(A.shape[0], 2))
    assert chol.logdet() == pytest.approx(reference.logdet(), rel=1e-14)
    np.testing.assert_allclose(chol.solve(b), reference.solve(b), rtol=1e-14)
    np.testing.assert_allclose(chol.solve_Lt(chol.solve_L(b[:, 0])), reference.solve(b[:, 0]), rtol=1e-14)
    np.testing.assert_allclose((chol.solve_L(b) ** 2).sum(0), (reference.solve_L(b) ** 2).sum(0), rtol=1e-14)
    A.data[0] = -1.0
    with pytest.raises(NotPositiveDefinite):
        chol.refactor(A)


def test_large_sparse_schur_complement_is_judged_by_its_degree(monkeypatch):
    """Past COUNTED_UP_TO (where CHOLMOD's flop count would need a numeric factor of a filling S) a sparse S is
    factored dense when its rows average at least √q₂ entries (crossed levels: 20,000 × 2,000 at three rows per
    level, degree ~60 ≥ 45) and left to CHOLMOD when it is block diagonal (nested levels)."""
    from skmixed import scalar_cholesky

    monkeypatch.setattr(scalar_cholesky, "COUNTED_UP_TO", 1000)
    formula = "y ~ 1 + (1 | a) + (1 | b)"
    crossed = skmixed.build(formula, two_factor_data(2000, 20000, 60000, nested=False), REML=False)
    chol = scalar_cholesky.make_scalar_cholesky(crossed.cp.ZtZ, crossed.re.terms[0].q)
    assert isinstance(chol, ScalarTermsCholesky) and chol.q2 == 2000
    assert chol.density < cholesky_module.MIN_DENSITY and chol.density * chol.q2 >= np.sqrt(chol.q2)
    nested = skmixed.build(formula, two_factor_data(2000, 20000, 60000, nested=True), REML=False)
    assert scalar_cholesky.make_scalar_cholesky(nested.cp.ZtZ, nested.re.terms[0].q) is None
