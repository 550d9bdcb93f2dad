"""The selected inverse of a sparse Cholesky factor (skmixed.selected_inverse) and the sparse gradient from it."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import skmixed
from skmixed import _cholmod, backends
from skmixed import selected_inverse as selected_inverse_module
from skmixed.backends import SparseBackend
from skmixed.selected_inverse import WIDE, SelectedInverse, SupernodalPattern, selected_inverse, supernodes


def crossed_spd(rng, levels=(40, 15), k=2, n=120, nested=False) -> sp.csc_matrix:
    """Z'Z + I for vector terms (k effects each) on crossed (or, ``nested``, nested) factors: an SPD matrix with a
    mixed model's pattern."""
    a = rng.integers(0, levels[0], n)
    b = a % levels[1] if nested else rng.integers(0, levels[1], n)
    blocks = []
    for f, m in ((a, levels[0]), (b, levels[1])):
        cols = (f[:, None] * k + np.arange(k)).ravel()
        blocks.append(sp.csr_matrix((rng.normal(size=n * k), (np.repeat(np.arange(n), k), cols)), shape=(n, m * k)))
    Z = sp.hstack(blocks).tocsc()
    return (Z.T @ Z + sp.identity(Z.shape[1])).tocsc()


def dense_factor(A: np.ndarray, perm: np.ndarray) -> sp.csc_matrix:
    """L of P A P' = LL' with its structural pattern (a dense Cholesky: structural zeros stay exact zeros)."""
    return sp.csc_matrix(np.linalg.cholesky(A[np.ix_(perm, perm)]))


def on_pattern(L: sp.csc_matrix, M: np.ndarray) -> np.ndarray:
    cols = np.repeat(np.arange(L.shape[0]), np.diff(L.indptr))
    return M[L.indices, cols]


@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize("ordering", ["natural", "reversed", "random", "degree"])
def test_selected_inverse_equals_the_dense_inverse_on_the_pattern(nested, ordering):
    """Σ on L's pattern equals (PAP')⁻¹ there: crossed factors (fill) and nested ones in the natural order (none),
    orderings that put the wide factor's levels first or last, a random one, and one by increasing degree."""
    rng = np.random.default_rng(7 if nested else 8)
    A = crossed_spd(rng, nested=nested).toarray()
    q = len(A)
    perm = {
        "natural": np.arange(q),
        "reversed": np.arange(q)[::-1],
        "random": rng.permutation(q),
        "degree": np.argsort((A != 0).sum(axis=0), kind="stable"),
    }[ordering]
    L = dense_factor(A, perm)
    if nested and ordering == "natural":
        assert L.nnz == np.count_nonzero(np.tril(A))  # no fill
    elif not nested:
        assert L.nnz > np.count_nonzero(np.tril(A))
    pattern = SupernodalPattern(L.indptr, L.indices)
    assert pattern.n_supernodes < q  # the 2 × 2 blocks' columns at least are merged
    sigma = selected_inverse(pattern, L.data)
    expected = on_pattern(L, np.linalg.inv(A[np.ix_(perm, perm)]))
    np.testing.assert_allclose(sigma, expected, rtol=1e-12, atol=1e-13 * np.abs(expected).max())


def test_wide_and_stacked_supernodes():
    """A dense trailing block (many rows on few levels) makes a supernode of at least WIDE columns, done by LAPACK;
    the leaves are stacked; both give the dense inverse."""
    rng = np.random.default_rng(3)
    A = crossed_spd(rng, levels=(60, 30), n=900).toarray()
    perm = np.arange(len(A))
    L = dense_factor(A, perm)
    pattern = SupernodalPattern(L.indptr, L.indices)
    assert max(g.w for g in pattern.groups) >= WIDE and max(len(g.panel) for g in pattern.groups) > 1
    np.testing.assert_allclose(
        selected_inverse(pattern, L.data), on_pattern(L, np.linalg.inv(A)), rtol=1e-12, atol=1e-14
    )


def test_supernodes_of_a_tridiagonal_and_an_arrow_factor():
    """A tridiagonal factor nests nothing beyond its last two columns; an arrow (full last row) is one supernode per
    leading column, with the last two together."""
    q = 6
    tri = sp.csc_matrix(np.eye(q) + np.diag(np.full(q - 1, 0.5), -1))
    np.testing.assert_array_equal(supernodes(tri.indptr, tri.indices), [0, 1, 2, 3, 4, 6])
    arrow = np.eye(q)
    arrow[-1, :] = 0.3
    arrow = sp.csc_matrix(arrow)
    np.testing.assert_array_equal(supernodes(arrow.indptr, arrow.indices), [0, 1, 2, 3, 4, 6])
    full = sp.csc_matrix(np.tril(np.ones((q, q))))
    np.testing.assert_array_equal(supernodes(full.indptr, full.indices), [0, q])


@pytest.mark.parametrize("mode", ["simplicial", "supernodal"])
@pytest.mark.parametrize("ordering", ["natural", "amd", "metis"])
def test_from_cholmods_factor_at_a_s_entries(monkeypatch, mode, ordering):
    """SelectedInverse reads CHOLMOD's factor (LDL' or supernodal LL', any ordering) and gives A⁻¹ at A's stored
    entries, again after a refactorization with other values on the same pattern."""
    monkeypatch.setattr(_cholmod, "_candidates", lambda q: [(mode, ordering)])
    rng = np.random.default_rng(11)
    A = crossed_spd(rng, levels=(80, 25), n=400)
    lower = sp.tril(A, format="csc")
    chol = _cholmod.SparseCholesky(lower)
    assert chol.mode == mode and chol.ordering == ordering
    inverse = SelectedInverse(chol, lower)
    cols = np.repeat(np.arange(A.shape[0]), np.diff(lower.indptr))
    for scale in (1.0, 0.3):
        B = (scale * A + (1 - scale) * sp.identity(A.shape[0])).tocsc()
        chol.refactor(sp.tril(B, format="csc"))
        expected = np.linalg.inv(B.toarray())[lower.indices, cols]
        np.testing.assert_allclose(inverse.values(), expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(inverse.weight, np.where(lower.indices == cols, 1.0, 2.0))


def crossed_vector_data(seed=5, levels=(150, 60), n=900, third=None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, levels[0], n), rng.integers(0, levels[1], n)
    x = rng.normal(size=n)
    ua, ub = rng.normal(size=(levels[0], 2)) * [1.0, 0.5], rng.normal(size=(levels[1], 2)) * [0.7, 0.4]
    y = 1 + 0.5 * x + ua[a, 0] + ua[a, 1] * x + ub[b, 0] + ub[b, 1] * x + rng.normal(size=n)
    df = pd.DataFrame({"y": y, "x": x, "a": a, "b": b})
    if third is not None:
        df["c"] = rng.integers(0, third, n)
        df["y"] += rng.normal(size=third)[df["c"]] * (1 + 0.3 * x)
    return df


def fd_gradient(dev, theta, h=1e-4):
    """4th-order central differences of the deviance."""
    steps = np.eye(len(theta)) * h
    return np.array([(-dev(theta + 2 * e) + 8 * dev(theta + e) - 8 * dev(theta - e) + dev(theta - 2 * e)) / (12 * h)
                     for e in steps])  # fmt: skip


def on_sparse_path(monkeypatch):
    """Models on several grouping factors go to CHOLMOD's factor, whatever the dense paths would cost."""
    monkeypatch.setattr(backends, "_with_gradient", lambda *args: None)


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize(
    "formula, weighted",
    [
        ("y ~ x + (1 + x | a) + (1 + x | b)", False),
        ("y ~ x + (1 + x | a) + (1 + x | b) + (x | c)", False),
        ("y ~ x + (1 + x | a) + (1 | b) + (0 + x | c)", True),
    ],
)
def test_sparse_gradient_of_crossed_vector_terms(monkeypatch, reml, formula, weighted):
    """Crossed vector terms (two or three factors, with prior weights) on CHOLMOD's factor: the gradient from the
    selected inverse equals central differences of the profiled deviance."""
    on_sparse_path(monkeypatch)
    df = crossed_vector_data(third=12)
    weights = np.random.default_rng(3).uniform(0.5, 2.0, len(df)) if weighted else None
    dev = skmixed.deviance(skmixed.build(formula, df, REML=reml, weights=weights))
    backend = dev.standardized.backend
    assert isinstance(backend, SparseBackend) and backend.has_gradient and "selected inverse" in backend.reason
    rng = np.random.default_rng(1)
    for _ in range(2):
        theta = dev.model.re.theta_init + rng.uniform(-0.3, 0.3, len(dev.model.re.theta_init))
        value, grad = dev.value_and_gradient(theta)
        assert value == pytest.approx(dev(theta), rel=1e-13)
        np.testing.assert_allclose(grad, fd_gradient(dev, theta), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("reml", [False, True])
def test_fit_on_the_sparse_path_equals_the_dense_paths(monkeypatch, reml):
    """The same optimum by L-BFGS-B on CHOLMOD's factor with the selected inverse's gradient as on the path the
    cost rule chooses (the blocked dense factor here)."""
    formula, df = "y ~ x + (1 + x | a) + (1 + x | b)", crossed_vector_data()
    m = skmixed.lmer(formula, df, REML=reml)
    assert "blocked" in m.devfun.reason or "dense" in m.devfun.reason
    on_sparse_path(monkeypatch)
    s = skmixed.lmer(formula, df, REML=reml)
    assert "selected inverse" in s.devfun.reason and s.optsum.optimizer.startswith("scipy L-BFGS-B")
    assert s.objective == pytest.approx(m.objective, rel=1e-10)
    np.testing.assert_allclose(s.theta, m.theta, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(s.fixef, m.fixef, rtol=1e-6)


def test_no_selected_inverse_beyond_its_memory_bound(monkeypatch):
    """Where the gather indices would exceed MAX_GATHER the sparse path goes without a gradient, and says so."""
    on_sparse_path(monkeypatch)
    monkeypatch.setattr(selected_inverse_module, "MAX_GATHER", 10)
    dev = skmixed.deviance(skmixed.build("y ~ x + (1 + x | a) + (1 + x | b)", crossed_vector_data()))
    assert isinstance(dev.standardized.backend, SparseBackend) and not dev.has_gradient
    assert "no gradient" in dev.reason
