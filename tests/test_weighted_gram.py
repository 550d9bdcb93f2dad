"""G diag(w) G' for weights by count: the four ways (per-count Gram matrices dense and sparse, dense syrk, sparse
product) agree."""

import numpy as np
import pytest
import scipy.sparse as sp

from skmixed import weighted_gram
from skmixed.weighted_gram import WeightedGram


def _G(values, seed=3, q2=40, q1=300):
    rng = np.random.default_rng(seed)
    G = sp.random(q2, q1, density=0.08, format="csc", random_state=rng, data_rvs=values)
    n = np.asarray(G.sum(axis=0)).ravel().round() + rng.integers(1, 4, q1)  # counts shared by many columns
    return G, n


@pytest.mark.parametrize(
    "values, dtype",
    [
        (lambda size: np.ones(size), np.uint8),  # counts: bytes
        (lambda size: np.full(size, 30.0), np.uint16),  # products past 255: widened
        (lambda size: np.random.default_rng(1).random(size), np.float64),  # weighted: doubles
    ],
)
def test_the_four_ways_agree(values, dtype):
    G, n = _G(values)
    ways = {method: WeightedGram(G, n, method) for method in ("per count", "sparse per count", "dense", "sparse")}
    assert ways["per count"].blocks[0].dtype == dtype
    weights = np.vstack([1.0 / (1.0 + 0.3 * ways["sparse"].counts), 2.0 / (1.0 + ways["sparse"].counts) ** 2])
    column_w = weights[:, ways["sparse"].group]
    for w, expected in zip(weights, column_w):
        reference = np.tril((G.toarray() * expected) @ G.toarray().T)
        for method, way in ways.items():
            got = np.tril(way.lower(w)[0])
            np.testing.assert_allclose(got, reference, rtol=1e-13, atol=1e-12 * abs(reference).max(), err_msg=method)
    for method in ("per count", "sparse per count"):  # one pass gives both products
        both = ways[method].lower(weights)
        np.testing.assert_allclose(np.tril(both[1]), np.tril(ways["sparse"].lower(weights[1])[0]), rtol=1e-13)
    assert ways["sparse"].pattern_nnz == (abs(G) @ abs(G).T).nnz


def test_per_count_gives_way_when_widened_integers_pass_the_budget(monkeypatch):
    G, n = _G(lambda size: np.full(size, 30.0))
    entries = sum(block.size for block in WeightedGram(G, n, "per count").blocks)
    monkeypatch.setattr(weighted_gram, "MAX_GRAM_BYTES", entries)  # room for bytes, not for the 16-bit integers
    way = WeightedGram(G, n, "per count")
    assert way.method != "per count" and way.blocks is None
    np.testing.assert_allclose(np.tril(way.lower(np.ones(len(way.counts)))[0]), np.tril((G @ G.T).toarray()))


@pytest.mark.parametrize("bound", ["TABLE_CHUNK_WORK", "TABLE_CHUNK_ROWS"])
def test_the_sparse_table_is_the_same_formed_a_few_counts_at_a_time(monkeypatch, bound):
    G, n = _G(lambda size: np.random.default_rng(2).random(size))
    n = n + np.random.default_rng(3).random(len(n))  # weighted: a distinct count for every column
    whole = WeightedGram(G, n, "sparse per count")
    monkeypatch.setattr(weighted_gram, bound, 40.0 if bound == "TABLE_CHUNK_WORK" else 3 * G.shape[0])
    chunked = WeightedGram(G, n, "sparse per count")
    work = np.bincount(chunked.group, np.diff(G.indptr).astype(float) ** 2)  # each count's multiply-adds
    rows = np.arange(len(work)) * G.shape[0] // weighted_gram.TABLE_CHUNK_ROWS  # each count's rows of H
    chunks = np.maximum(np.floor(np.cumsum(work) / weighted_gram.TABLE_CHUNK_WORK), rows)
    assert len(np.unique(chunks)) > 5  # several products
    assert (whole.table != chunked.table).nnz == 0 and np.array_equal(whole.table.indptr, chunked.table.indptr)
    w = np.random.default_rng(4).random(len(chunked.counts))
    expected = np.tril((G.toarray() * w[chunked.group]) @ G.toarray().T)
    np.testing.assert_allclose(np.tril(chunked.lower(w)[0]), expected, rtol=1e-13, atol=1e-14)


def test_the_dense_way_takes_the_heavy_columns_and_leaves_the_rest_sparse():
    G, n = _G(lambda size: np.random.default_rng(4).random(size))
    G = sp.hstack([G, sp.random(40, 5, density=0.9, format="csc", random_state=5)]).tocsc()  # five heavy columns
    n = np.concatenate([n, [50, 60, 60, 70, 80]])
    way = WeightedGram(G, n, "dense")
    per_column = np.diff(G.indptr)
    heavy = weighted_gram.SPARSE_NS * per_column**2.0 >= weighted_gram.BLAS_NS * 40**2
    assert 0 < heavy.sum() < len(per_column) and np.array_equal(way.heavy, heavy)
    assert way.dense.shape == (40, heavy.sum()) and way.light.shape == (40, len(per_column) - heavy.sum())
    w = 1.0 / (1.0 + 0.3 * way.counts)
    expected = np.tril((G.toarray() * w[way.group]) @ G.toarray().T)
    np.testing.assert_allclose(np.tril(way.lower(w)[0]), expected, rtol=1e-13, atol=1e-14)
    assert not WeightedGram(G, n, "sparse").heavy.any()
