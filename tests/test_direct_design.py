"""The model matrices read directly from the data (sums of numeric columns and unordered factors) are formulaic's,
bit for bit and with the same R names; anything else is left to formulaic."""

import numpy as np
import pandas as pd
import pytest

from skmixed.model_matrix import _direct_columns, design_matrix, model_matrix, r_names


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    n = 40
    levels = ["b", "a", "c c", "Z"]
    return pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "k": rng.integers(0, 5, n),
            "f": pd.Categorical(rng.choice(levels, n), categories=levels),
            "g": pd.Categorical(rng.choice(["lo", "hi"], n)),
            "period": pd.Categorical(rng.choice(list("1234"), n)),
            "o": pd.Categorical(rng.choice(list("abc"), n), ordered=True),
            "s": rng.choice(["u", "v"], n),
            "flag": rng.random(n) < 0.5,
            "sparse": pd.Categorical(rng.choice(["a", "b"], n), categories=["a", "b", "unused"]),
            "one": pd.Categorical(["a"] * n),
        }
    )


@pytest.mark.parametrize(
    "expr",
    [
        "1 + x", "x + f", "f + x + g", "period", "1 + period + k", "g + f + 1", "x + 0 + k", "0 + x",
        "(x + f + g)", "(x + f) + ((g))", "1 + (k + (x))",
    ],
)  # fmt: skip
def test_direct_matrix_is_formulaics(data, expr):
    direct = _direct_columns(expr, data)
    assert direct is not None
    mm = model_matrix(expr, data, "fixed-effects part")
    assert direct[1] == r_names(mm.model_spec, expr)
    assert np.array_equal(direct[0], np.asarray(mm, dtype=float))
    design = design_matrix(expr, data, "fixed-effects part")
    assert design.names == direct[1]
    # the spec built later from the rows encodes the fit's data as they were read
    assert np.array_equal(np.asarray(design.spec.get_model_matrix(data), dtype=float), design.values)


@pytest.mark.parametrize(
    "expr",
    [
        "0 + f", "f - 1", "o", "s", "flag", "x + sparse", "one", "f:g", "f * x", "log(k + 1)", "x + x",
        "(x + f):g", "x - (k + f)", "(x) * (k)", "(x + x)", "k + (x + 0)",
    ],
)  # fmt: skip
def test_other_terms_are_left_to_formulaic(data, expr):
    assert _direct_columns(expr, data) is None
