"""Properties of the sparse PLS fit checked against dense linear algebra on small random problems."""

import pickle

import numpy as np
import pandas as pd
import pytest

import skmixed
from skmixed.grouping import factor_codes
from skmixed.model_matrix import design_matrix, model_matrix, r_names
from skmixed.pls import cross_products
from skmixed.variables import present


def random_data(seed: int, n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 8, n)
    h = rng.integers(0, 5, n)
    x = rng.normal(size=n)
    y = (
        1
        + 0.5 * x
        + rng.normal(size=8)[g]
        + rng.normal(size=8)[g] * x
        + 0.7 * rng.normal(size=5)[h]
        + rng.normal(size=n)
    )
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g], "h": h, "w": rng.uniform(0.5, 2.0, n)})


FORMULA = "y ~ x + (x | g) + (1 | h)"


def dense_deviance(df: pd.DataFrame, theta: np.ndarray, reml: bool, weights=None) -> float:
    """−2 log-likelihood (or REML criterion) profiled over β and σ, from V = ZΛΛ'Z' + W⁻¹ directly."""
    model = skmixed.build(FORMULA, df, weights=weights)
    frame, re = model.frame, model.re
    Z = re.Z.toarray()
    Lam = re.Lambda(theta).toarray()
    X, y, w = frame.X, frame.y, frame.weights
    n, p = X.shape
    V = Z @ Lam @ Lam.T @ Z.T + np.diag(1.0 / w)
    Vi = np.linalg.inv(V)
    beta = np.linalg.solve(X.T @ Vi @ X, X.T @ Vi @ y)
    r = y - X @ beta
    dof = n - p if reml else n
    s2 = r @ Vi @ r / dof
    dev = np.linalg.slogdet(V)[1] + dof * (1 + np.log(2 * np.pi * s2))
    if reml:
        dev += np.linalg.slogdet(X.T @ Vi @ X)[1]
    return dev


def deviance_function(df, reml, weights=None):
    return skmixed.deviance(skmixed.build(FORMULA, df, REML=reml, weights=weights))


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", [1, 2])
def test_profiled_deviance_equals_dense_marginal_likelihood(seed, reml, weighted):
    df = random_data(seed)
    weights = "w" if weighted else None
    dev = deviance_function(df, reml, weights)
    rng = np.random.default_rng(seed + 10)
    for _ in range(3):
        theta = np.array([rng.uniform(0.1, 2), rng.normal(), rng.uniform(0.1, 2), rng.uniform(0.1, 2)])
        assert dev(theta) == pytest.approx(dense_deviance(df, theta, reml, weights), rel=1e-10)


def test_blups_and_conditional_variances_equal_dense_formulas():
    df = random_data(3)
    m = skmixed.lmer(FORMULA, df, REML=False)
    Z = m.re.Z.toarray()
    Lam = m.re.Lambda(m.theta).toarray()
    X, y = m.frame.X, m.frame.y
    G = Lam @ Lam.T
    V = Z @ G @ Z.T + np.eye(len(y))
    b = G @ Z.T @ np.linalg.solve(V, y - X @ m.fixef.to_numpy())
    np.testing.assert_allclose(m.solution.b, b, rtol=1e-8, atol=1e-10)
    cond = m.sigma**2 * Lam @ np.linalg.inv(Lam.T @ Z.T @ Z @ Lam + np.eye(Lam.shape[0])) @ Lam.T
    blocks = m.condvar()
    first = m.re.terms[0]
    for level in range(first.n_levels):
        idx = slice(level * first.k, (level + 1) * first.k)
        np.testing.assert_allclose(blocks[0][level], cond[idx, idx], rtol=1e-8, atol=1e-12)


def test_results_do_not_depend_on_row_order():
    df = random_data(4)
    a = skmixed.lmer(FORMULA, df)
    shuffled = df.sample(frac=1.0, random_state=0)
    b = skmixed.lmer(FORMULA, shuffled)
    assert a.objective == pytest.approx(b.objective, rel=1e-9)
    np.testing.assert_allclose(a.fixef, b.fixef, rtol=1e-5)
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        a.ranef["g"].to_numpy(), b.ranef["g"].loc[a.ranef["g"].index].to_numpy(), rtol=1e-4, atol=1e-6
    )


def test_ml_and_reml_relations():
    df = random_data(5)
    reml = skmixed.lmer(FORMULA, df, REML=True)
    ml = skmixed.lmer(FORMULA, df, REML=False)
    # ML maximises the likelihood: its deviance is below the ML deviance at the REML estimate
    assert ml.deviance <= reml.deviance + 1e-8
    assert reml.refit_ml().objective == pytest.approx(ml.objective, rel=1e-8)
    # at the same θ: the same β̂, and σ²(REML) = σ²(ML) · n / (n − p)
    at_ml, at_reml = deviance_function(df, reml=False).solve(ml.theta), deviance_function(df, reml=True).solve(ml.theta)
    np.testing.assert_allclose(at_ml.beta, at_reml.beta, rtol=1e-12)
    assert at_reml.sigma**2 == pytest.approx(at_ml.sigma**2 * ml.nobs / (ml.nobs - 2), rel=1e-12)
    # the deviance of a REML fit is the ML criterion at the REML θ
    dev = deviance_function(df, reml=False)
    assert reml.deviance == pytest.approx(dev(reml.theta), rel=1e-12)


def test_fit_is_picklable_and_predicts_after_unpickling():
    df = random_data(6)
    m = skmixed.lmer(FORMULA, df)
    _ = m.ranef_sd  # builds the CHOLMOD factor in the cache
    m2 = pickle.loads(pickle.dumps(m))
    np.testing.assert_allclose(m2.predict(df), m.fitted)
    np.testing.assert_allclose(m2.ranef_sd["g"], m.ranef_sd["g"])


def test_per_evaluation_work_is_independent_of_n():
    """The deviance function holds only cross-products: q×q, q×p and p×p, whatever the number of rows."""
    small, large = random_data(7, n=200), random_data(7, n=20000)
    for df in (small, large):
        dev = deviance_function(df, reml=True)
        backend, q = dev.standardized.backend, dev.model.re.q
        cp = backend.cp
        assert [cp.ZtZ.shape, cp.ZtX.shape, cp.XtX.shape, cp.Zty.shape] == [(q, q), (q, 2), (2, 2), (q,)]
        if hasattr(backend, "gram"):
            assert backend.gram.matrix.nnz <= q * q
    # what an evaluation reads: no array of length n (the model record keeps the data, the backend does not)
    assert not any(isinstance(v, np.ndarray) and v.shape and v.shape[0] == len(large) for v in vars(backend).values())


@pytest.mark.parametrize(
    "expr", ["1", "x", "x + 1", "0 + x", "w + x", "0 + h + x", "x - 1", "x + x", "g", "log(w)", "x:w"]
)
def test_design_matrix_equals_formulaic(expr):
    """Plain numeric columns are read directly (formulaic's spec is only built for new data); the rest, by formulaic."""
    df, new = random_data(8), random_data(9, n=10)
    design, mm = design_matrix(expr, df, "test"), model_matrix(expr, df, "test")
    np.testing.assert_array_equal(design.values, np.asarray(mm, dtype=float))
    assert design.names == r_names(mm.model_spec, expr)
    np.testing.assert_array_equal(
        np.asarray(design.spec.get_model_matrix(new)), np.asarray(mm.model_spec.get_model_matrix(new))
    )


def test_factor_and_missing_rows_from_codes_equal_pandas():
    s = pd.Series(pd.Categorical(["b", "a", None, "d", "b"], categories=["d", "c", "b", "a"]))
    codes, levels = factor_codes("f", s)
    expected = s.cat.remove_unused_categories()
    np.testing.assert_array_equal(codes, expected.cat.codes.to_numpy())
    assert list(levels) == list(expected.cat.categories)
    for column in [
        s,
        pd.Series([1.0, np.nan]),
        pd.Series([1, 2]),
        pd.Series(["a", None]),
        pd.Series([1, None], dtype="Int64"),
        pd.Series([True, False]),
    ]:
        np.testing.assert_array_equal(present(column), column.notna().to_numpy())


def test_z_and_weighted_cross_products_equal_dense_formulas():
    df = random_data(10)
    model = skmixed.build("y ~ x + (x || g) + (1 | h)", df, weights="w", offset=0.1 * df["x"].to_numpy())
    frame, re = model.frame, model.re
    Z = np.zeros((len(df), re.q))  # term i, level ℓ, effect j: column col_offsets[i] + ℓ·kᵢ + j
    for i, t in enumerate(re.terms):
        for j in range(t.k):
            Z[np.arange(len(df)), re.col_offsets[i] + t.factor.codes * t.k + j] = t.values[:, j]
    np.testing.assert_array_equal(re.Z.toarray(), Z)
    W, X, r = np.diag(frame.weights), frame.X, frame.y - frame.offset
    cp = cross_products(re.Z, X, frame.y, frame.weights, frame.offset)
    np.testing.assert_allclose(cp.ZtZ.toarray(), Z.T @ W @ Z, rtol=1e-12)
    np.testing.assert_allclose(cp.ZtX, Z.T @ W @ X, rtol=1e-12)
    np.testing.assert_allclose(cp.Zty, Z.T @ W @ r, rtol=1e-12)
    assert cp.yty == pytest.approx(r @ W @ r, rel=1e-12)
    assert cp.log_det_w == pytest.approx(np.log(frame.weights).sum(), rel=1e-12)
