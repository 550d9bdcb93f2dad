"""The bordered Cholesky with the first term factored by level (skmixed.blocked_pls): the same solution, deviance and
gradient as the dense path's (skmixed.dense_pls), on KB07's shape and on models whose other terms share the first
term's factor, have no fixed effects or carry weights; the fits it drives equal the dense path's and reach lme4's
optimum on crossed vector terms (tests/fixtures/crossed_vector, lme4 1.1-31)."""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import skmixed
from skmixed.backends import MAX_DENSE_GRADIENT_Q, BlockedDenseBackend, DenseBackend
from skmixed.blas import single_blas_thread

FIXTURE = Path(__file__).parent / "fixtures" / "crossed_vector"


def kb07_shape(seed: int = 11) -> pd.DataFrame:
    """56 subjects × 32 items, three ±½ conditions counterbalanced, three cells missing (KB07's design)."""
    rng = np.random.default_rng(seed)
    subj, item = np.repeat(np.arange(56), 32), np.tile(np.arange(32), 56)
    cell = (subj + item) % 8
    a, b, c = (((cell >> k) & 1) - 0.5 for k in range(3))
    X = np.column_stack([np.ones(len(subj)), a, b, c])
    effects = rng.normal(size=(56, 4)) * [1.0, 0.4, 0.3, 0.2]
    effects_item = rng.normal(size=(32, 4)) * [0.8, 0.3, 0.2, 0.3]
    y = X @ [7.5, 0.2, -0.3, 0.1] + (X * (effects[subj] + effects_item[item])).sum(axis=1) + rng.normal(0, 0.7, 1792)
    df = pd.DataFrame({"y": y, "a": a, "b": b, "c": c, "subj": subj, "item": item, "w": rng.uniform(0.5, 2, 1792)})
    return df.drop(index=rng.choice(len(df), 3, replace=False))


def small_crossed(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 300
    g, h = rng.integers(0, 30, n), rng.integers(0, 8, n)
    x, z = rng.normal(size=n), rng.uniform(0, 3, n)
    y = 1 + x + rng.normal(size=30)[g] * (1 + 0.3 * z) + 0.5 * rng.normal(size=8)[h] * (1 + x) + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "z": z, "g": g, "h": h, "w": rng.uniform(0.5, 2.0, n)})


def both_paths(formula, df, reml, weights=None):
    model = skmixed.build(formula, df, REML=reml, weights=weights)
    args = (model.cp, model.re, reml, "compared")
    return model, BlockedDenseBackend(*args), DenseBackend(*args)


def random_theta(re, rng, zero_diagonal: bool) -> np.ndarray:
    lower = re.theta_lower
    theta = np.where(lower == 0, rng.uniform(0.2, 1.5, len(lower)), rng.normal(0, 0.5, len(lower)))
    if zero_diagonal:  # a singular T: an ordinary point for the blocked formulas, which never invert T
        theta[np.flatnonzero(lower == 0)[[1, -1]]] = 0.0
    return theta


def assert_same_solutions(model, blocked, dense, points: int, seed: int):
    with single_blas_thread():  # as in a fit: threaded BLAS on these small matrices only contends for the cores
        compare_solutions(model, blocked, dense, points, seed)


def compare_solutions(model, blocked, dense, points: int, seed: int):
    rng = np.random.default_rng(seed)
    for i in range(points):
        theta = random_theta(model.re, rng, zero_diagonal=i == points - 1)
        (sb, gb), (sd, gd) = blocked.solve_with_gradient(theta), dense.solve_with_gradient(theta)
        assert sb.deviance == pytest.approx(sd.deviance, rel=1e-13)
        for name in ("pwrss", "ldL2", "ldRX2"):
            assert getattr(sb, name) == pytest.approx(getattr(sd, name), rel=1e-11, abs=1e-11), name
        for name in ("beta", "u", "b", "RX"):
            np.testing.assert_allclose(getattr(sb, name), getattr(sd, name), rtol=1e-10, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(gb, gd, rtol=1e-10, atol=1e-10 * np.abs(gd).max())


@pytest.mark.parametrize("reml", [True, False])
def test_kb07_shape_equals_the_dense_path(reml):
    df = kb07_shape()
    formula = "y ~ 1 + a + b + c + (1 + a + b + c | subj) + (1 + a + b + c | item)"
    model, blocked, dense = both_paths(formula, df, reml, weights=None if reml else "w")
    assert_same_solutions(model, blocked, dense, points=3, seed=1)
    chosen = skmixed.deviance(model).standardized.backend
    assert isinstance(chosen, BlockedDenseBackend) and "56 levels factored as blocks" in chosen.reason


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ x + (z | g) + (x | h)",
        "y ~ x + (z || g) + (1 + x | h)",  # the first factor's second term lies in the dense part
        "y ~ 0 + (1 + x | g) + (1 | h) + (0 + z | h)",  # p = 0, two terms on the second factor
    ],
)
@pytest.mark.parametrize("reml", [True, False])
def test_other_shapes_equal_the_dense_path(formula, reml):
    model, blocked, dense = both_paths(formula, small_crossed(2), reml, weights="w")
    assert_same_solutions(model, blocked, dense, points=3, seed=3)


FITS = json.loads((FIXTURE / "crossed_vector.json").read_text())["fits"]


def crossed_vector_data() -> pd.DataFrame:
    df = pd.read_csv(FIXTURE / "crossed_vector.csv")
    return df.astype({"subj": "category", "item": "category"})


@pytest.mark.parametrize("key", sorted(FITS))
def test_crossed_vector_fits_reach_lme4(key):
    ref, df = FITS[key], crossed_vector_data()
    weights = "w" if ref["weights"] else None
    assert isinstance(
        skmixed.deviance(skmixed.build(ref["formula"], df, weights=weights)).standardized.backend, BlockedDenseBackend
    )
    m = skmixed.lmer(ref["formula"], df, REML=ref["REML"], weights=weights)
    assert m.optsum.optimizer.startswith("scipy L-BFGS-B")
    assert m.objective <= ref["objective"]
    assert m.nobs == ref["nobs"]
    np.testing.assert_allclose(m.fixef, ref["fixef"], atol=2e-6)
    np.testing.assert_allclose(m.theta, ref["theta"], atol=5e-4)  # the ML fit: lme4 stops short (max|grad| 0.004)


@pytest.mark.parametrize("key", ["reml_weighted", "three_terms_ml"])
def test_fits_equal_the_dense_paths(key, monkeypatch):
    ref, df = FITS[key], crossed_vector_data()
    weights = "w" if ref["weights"] else None
    blocked = skmixed.lmer(ref["formula"], df, REML=ref["REML"], weights=weights)
    monkeypatch.setattr(
        sys.modules["skmixed.deviance"],
        "choose_backend",
        lambda cp, re, reml, krylov=None: DenseBackend(cp, re, reml, "forced"),
    )
    dense = skmixed.lmer(ref["formula"], df, REML=ref["REML"], weights=weights)
    assert blocked.objective == pytest.approx(dense.objective, rel=1e-14)
    np.testing.assert_allclose(blocked.theta, dense.theta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(blocked.fixef, dense.fixef, rtol=1e-10)


def test_many_subjects_take_the_blocked_path_beyond_the_dense_size():
    """q = 3,212 > MAX_DENSE_GRADIENT_Q: the blocked path's size is its complement's (order 15), not q; its gradient
    equals 4th-order central differences of its deviance."""
    rng = np.random.default_rng(4)
    subj, item = np.repeat(np.arange(1600), 6), np.tile(np.arange(6), 1600)
    a = ((subj + item) % 2) - 0.5
    effects = rng.normal(0, [1.0, 0.5], (1600, 2))[subj] + rng.normal(0, [0.7, 0.3], (6, 2))[item]
    df = pd.DataFrame({"y": effects[:, 0] + (1 + effects[:, 1]) * a + rng.normal(size=len(a)), "a": a})
    dev = skmixed.deviance(skmixed.build("y ~ a + (1 + a | subj) + (1 + a | item)", df.assign(subj=subj, item=item)))
    backend = dev.standardized.backend
    assert isinstance(backend, BlockedDenseBackend) and backend.re.q == 3212 > MAX_DENSE_GRADIENT_Q
    theta, h = np.array([1.1, 0.2, 0.5, 0.9, -0.1, 0.4]), 1e-4
    steps = np.eye(len(theta)) * h
    fd = [
        (-dev(theta + 2 * e) + 8 * dev(theta + e) - 8 * dev(theta - e) + dev(theta - 2 * e)) / (12 * h) for e in steps
    ]
    np.testing.assert_allclose(dev.value_and_gradient(theta)[1], fd, rtol=1e-6, atol=1e-6)
