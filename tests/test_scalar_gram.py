"""Z'WZ of scalar terms by counting (skmixed.scalar_gram) against scipy's general sparse product."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from skmixed.formula import parse_formula
from skmixed.pls import cross_products
from skmixed.reterms import random_effects


def _data(n=3000, seed=7):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    x[rng.random(n) < 0.1] = 0.0  # structural entries holding 0 stay entries
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": x,
            "g": pd.Categorical(rng.integers(0, 200, n)),
            "h": pd.Categorical(rng.integers(0, 30, n)),
        }
    )


def _canonical(A):
    A = sp.csc_matrix(A, copy=True)
    A.sort_indices()
    return A


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(
    "formula", ["y ~ 1 + (1 | g) + (1 | h)", "y ~ x + (1 | g) + (0 + x | g) + (1 | h)", "y ~ 1 + (0 + x | h)"]
)
def test_counted_gram_is_the_general_product_bit_for_bit(formula, weighted):
    data = _data()
    re = random_effects(parse_formula(formula).bars, data)
    assert all(t.k == 1 for t in re.terms)
    n = len(data)
    X, y = np.column_stack([np.ones(n), data["x"]]), data["y"].to_numpy()
    w = np.random.default_rng(1).uniform(0.2, 3.0, n) if weighted else np.ones(n)
    Z_rows, Z = re.Z_forms()
    general = cross_products(Z, X, y, w)  # scipy's product, Z converted to its compressed rows
    counted = cross_products(Z, X, y, w, Z_rows=Z_rows.copy(), scalar_offsets=re.col_offsets)
    G, C = _canonical(general.ZtZ), counted.ZtZ
    assert C.has_sorted_indices and C.shape == G.shape
    assert np.array_equal(C.indptr, G.indptr) and np.array_equal(C.indices, G.indices)
    assert np.array_equal(C.data, G.data)  # the same sums in the same order
    for name in ("ZtX", "Zty", "XtX", "Xty", "yty", "log_det_w"):
        assert np.array_equal(getattr(counted, name), getattr(general, name))
    Zw = sp.diags(np.sqrt(w)) @ Z  # and both are Z'WZ
    np.testing.assert_allclose(C.toarray(), (Zw.T @ Zw).toarray(), rtol=1e-13, atol=1e-12)


def test_compressed_row_input_gives_the_same_products():
    data = _data(500)
    re = random_effects(parse_formula("y ~ x + (1 + x | g) + (1 | h)").bars, data)
    n = len(data)
    X, y, w = np.ones((n, 1)), data["y"].to_numpy(), np.random.default_rng(2).uniform(0.5, 2.0, n)
    from_columns = cross_products(re.Z, X, y, w)
    from_rows = cross_products(re.Z_rows(), X, y, w)
    assert np.array_equal(_canonical(from_rows.ZtZ).data, _canonical(from_columns.ZtZ).data)
    assert np.array_equal(from_rows.ZtX, from_columns.ZtX) and np.array_equal(from_rows.Zty, from_columns.Zty)
