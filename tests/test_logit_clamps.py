"""The logit link's inverse and derivative keep R's clamps (C code of ``make.link("logit")``) past |η| = 30, whether
or not some η is there: the shortcut for in-range η gives the clamped formula's values exactly."""

import numpy as np
import pytest

from skmixed.links import EPS, Logit


def clamped(eta):
    e = np.exp(np.clip(eta, -30.0, 30.0))
    inv = np.where(eta < -30, EPS, np.where(eta > 30, 1 / (1 + EPS), e / (1 + e)))
    return inv, np.where(np.abs(eta) > 30, EPS, e / (1 + e) ** 2)


@pytest.mark.parametrize(
    "eta",
    [
        np.random.default_rng(0).normal(size=200) * 10,
        np.random.default_rng(1).normal(size=200) * 40,
        np.array([np.nan, 1.0, -31.0]),
        np.array([30.0, -30.0, 30.000001]),
        np.array([]),
    ],
)
def test_logit_matches_the_clamped_formula(eta):
    inv, deriv = clamped(eta)
    assert np.array_equal(Logit().linkinv(eta), inv, equal_nan=True)
    assert np.array_equal(Logit().mu_eta(eta), deriv, equal_nan=True)


def test_logit_keeps_the_type_of_other_inputs():
    """A Series or a scalar gives what the clamped formula gives (an array), as prediction relies on."""
    import pandas as pd

    for eta in (pd.Series([0.5, -1.0]), 2.0, np.float64(40.0), np.array(3.0)):
        inv, deriv = clamped(eta)
        got_inv, got_deriv = Logit().linkinv(eta), Logit().mu_eta(eta)
        assert type(got_inv) is type(inv) and np.array_equal(got_inv, inv)
        assert type(got_deriv) is type(deriv) and np.array_equal(got_deriv, deriv)
