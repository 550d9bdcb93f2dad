"""The blocked factor of scalar terms refactored from Λ and Z'WZ directly (a GLMM's PIRLS) equals the factor of the
assembled A (D and L₂₁ to the last bit); A's pattern for a diagonal Λ and the marked-key unique agree with the
general ones."""

import numpy as np
import pandas as pd
import pytest

import skmixed
from skmixed.cholesky import BlockedCholesky
from skmixed.pls import PenalizedCholesky, ScaledGram, cross_products, unique_inverse


def crossed(levels, n, seed=0, full=False):
    """Scalar terms on crossed factors with ``levels`` levels each (every combination once when ``full``)."""
    rng = np.random.default_rng(seed)
    if full:
        codes = np.array(np.meshgrid(*[np.arange(m) for m in levels], indexing="ij")).reshape(len(levels), -1)
    else:
        codes = np.array([rng.permutation(np.arange(n) % m) for m in levels])  # every level seen
    df = pd.DataFrame({f"g{i}": c for i, c in enumerate(codes)})
    df["y"] = rng.normal(size=len(df))
    formula = "y ~ 1 + " + " + ".join(f"(1 | g{i})" for i in range(len(levels)))
    return skmixed.build(formula, df, REML=False)


CASES = {  # L₂₁ dense and full / dense with holes / sparse; three terms (two in the Schur complement)
    "full": dict(levels=(40, 8), n=None, full=True),
    "holes": dict(levels=(40, 8), n=150),
    "sparse": dict(levels=(300, 30), n=600),
    "three terms": dict(levels=(60, 9, 5), n=400),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refactor_from_weights_equals_the_assembled_factor(case):
    spec = CASES[case]
    model = crossed(spec["levels"], spec["n"], full=spec.get("full", False))
    re, Z, X, y = model.re, model.re.Z, model.X, model.frame.y
    weights = np.random.default_rng(1).uniform(0.05, 0.25, len(y))  # binomial IRLS weights μ(1 − μ)
    ztwz = cross_products(Z, X, y, weights).ZtZ.sorted_indices()  # canonical, as PIRLS's Z'Z pattern
    ztz = cross_products(Z, X, y, np.ones(len(y))).ZtZ.sorted_indices()
    assert np.array_equal(ztwz.indices, ztz.indices) and np.array_equal(ztwz.indptr, ztz.indptr)
    penalized = PenalizedCholesky(ztz, re)
    assert penalized._scaled
    assert penalized.chol._dense_l21 == (case != "sparse") and penalized.chol._l21_full == (case == "full")
    theta = np.array([0.7, -1.3, 0.4][: len(re.terms)])  # BFGS's search may try a negative θ
    lam = penalized.lam.values(theta)
    assert penalized.refactor(lam, ztwz.data)

    reference = ScaledGram(ztz, re)
    reference.reweight(ztwz.data)
    A = reference.update(lam)
    expected = BlockedCholesky(A, re.terms[0].q)
    chol = penalized.chol
    np.testing.assert_array_equal(chol._root, expected._root)
    L21 = chol._L21 if isinstance(chol._L21, np.ndarray) else chol._L21.toarray()
    L21_expected = expected._L21 if isinstance(expected._L21, np.ndarray) else expected._L21.toarray()
    np.testing.assert_array_equal(L21, L21_expected)
    np.testing.assert_allclose(chol._L22, expected._L22, rtol=1e-14, atol=1e-15)  # L₂₁L₂₁' by BLAS either way
    assert chol.logdet() == pytest.approx(expected.logdet(), rel=1e-14)
    b = np.random.default_rng(2).normal(size=(re.q, 3))
    np.testing.assert_allclose(chol.solve(b), expected.solve(b), rtol=1e-13, atol=0)
    # the Laplace gradient's part of A⁻¹, from the factor alone
    A_inverse = np.linalg.inv(A.toarray() + np.tril(A.toarray(), -1).T)
    columns, diagonal = chol.trailing_inverse()
    q1 = re.terms[0].q
    np.testing.assert_allclose(columns, A_inverse[:, q1:], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(diagonal, np.diag(A_inverse)[:q1], rtol=1e-12)
    # A itself is assembled only when read, for the Λ and Z'WZ of the last refactorization
    matrix = penalized.gram.matrix
    np.testing.assert_array_equal(matrix.data, A.data)
    np.testing.assert_array_equal(matrix.indices, A.indices)
    # a Z'WZ that makes A indefinite (negative observed weights) is reported, not factored
    assert not penalized.refactor(lam, -100 * ztwz.data)


def test_diagonal_lambda_pattern_equals_the_general_enumeration(monkeypatch):
    model = crossed((60, 9, 5), 400)
    ztz = model.cp.ZtZ.sorted_indices()
    direct = ScaledGram(ztz, model.re)
    assert direct.diagonal_lambda
    monkeypatch.setattr(ScaledGram, "_index_diagonal", lambda self, coo, re: False)
    general = ScaledGram(ztz, model.re)
    assert not general.diagonal_lambda
    for name in ("z", "l1", "l2", "target", "diag_pos"):
        np.testing.assert_array_equal(getattr(direct, name), getattr(general, name))
    lam = np.linspace(0.5, 2.0, model.re.q)
    np.testing.assert_array_equal(direct.update(lam).toarray(), general.update(lam).toarray())


@pytest.mark.parametrize("size", [5000, 10**7])  # marked; sorted (beyond MAX_MARKED_KEYS)
def test_unique_inverse_equals_numpy_unique(size):
    keys = np.random.default_rng(3).integers(0, 5000, 20_000) * (size // 5000)
    uniq, inverse = unique_inverse(keys, size)
    expected_uniq, expected_inverse = np.unique(keys, return_inverse=True)
    np.testing.assert_array_equal(uniq, expected_uniq)
    np.testing.assert_array_equal(inverse, expected_inverse)
