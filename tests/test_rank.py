"""Aliased fixed-effect columns are found by R's rule in a few QRs; more columns than rows is an input error."""

import warnings

import numpy as np
import pandas as pd
import pytest

import skmixed
from skmixed.rank import drop_aliased


def sequential_rank_rule(X: np.ndarray, tol: float = 1e-7) -> list[int]:
    """R's dqrdc2 rule stated directly: keep a column unless its residual on the kept ones is below tol·norm."""
    keep = []
    for j in range(X.shape[1]):
        col, norm = X[:, j], np.linalg.norm(X[:, j])
        if norm == 0:
            continue
        if keep:
            Q = np.linalg.qr(X[:, keep])[0]
            if np.linalg.norm(col - Q @ (Q.T @ col)) <= tol * norm:
                continue
        keep.append(j)
    return keep


def test_aliased_columns_follow_rs_rule():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 12))
    X[:, 4] = X[:, 1] - 2 * X[:, 3]  # aliased with earlier columns
    X[:, 6] = 0.0  # an empty column
    X[:, 9] = X[:, 4] + X[:, 8]  # aliased through a column that is itself aliased
    X[:, 11] = X[:, 10] * (1 + 1e-9)  # aliased up to 1e-9 < tol
    names = [f"c{j}" for j in range(12)]
    kept, kept_names, dropped = drop_aliased(X, names)
    assert kept_names == [names[j] for j in sequential_rank_rule(X)]
    assert dropped == ["c4", "c6", "c9", "c11"]
    np.testing.assert_array_equal(kept, X[:, sequential_rank_rule(X)])


def test_more_columns_than_rows():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(10, 25))
    kept, names, dropped = drop_aliased(X, [f"c{j}" for j in range(25)])
    assert kept.shape == (10, 10) and names == [f"c{j}" for j in range(10)] and len(dropped) == 15


def test_more_fixed_effects_than_observations_is_an_input_error():
    """p > n raised a numpy broadcasting error."""
    rng = np.random.default_rng(2)
    df = pd.DataFrame(rng.normal(size=(30, 40)), columns=[f"x{j}" for j in range(40)])
    df["g"], df["y"] = np.repeat(np.arange(10), 3), rng.normal(size=30)
    formula = "y ~ " + " + ".join(f"x{j}" for j in range(40)) + " + (1 | g)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(skmixed.DataError, match="the fixed effects have 30 columns for 30 observations"):
            skmixed.lmer(formula, df)
