"""Bad input to glmer gets a clear error (or warning) naming the problem and the fix."""

import warnings

import numpy as np
import pandas as pd
import pytest

import skmixed
from skmixed import DataError, FormulaError
from skmixed.families import Binomial, NegativeBinomial, Poisson, get_family


@pytest.fixture
def counts() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(10), 8)
    x = rng.normal(size=g.size)
    return pd.DataFrame(
        {
            "y": rng.poisson(np.exp(0.3 + 0.5 * x + rng.normal(scale=0.5, size=10)[g])).astype(float),
            "b": rng.binomial(1, 0.4, g.size).astype(float),
            "x": x,
            "g": [f"g{i}" for i in g],
            "h": [f"h{i % 4}" for i in range(g.size)],
            "n": rng.integers(2, 9, g.size),
        }
    )


def test_negative_counts(counts):
    df = counts.assign(y=counts.y - 3)
    with pytest.raises(DataError, match=r"poisson family models counts.*negative values"):
        skmixed.glmer("y ~ x + (1 | g)", df, family="poisson")
    with pytest.raises(DataError, match=r"negative binomial family models counts"):
        skmixed.glmer("y ~ x + (1 | g)", df, family="negative_binomial")


def test_non_integer_counts_warn(counts):
    with pytest.warns(UserWarning, match="non-integer values for the poisson family"):
        m = skmixed.glmer("y ~ x + (1 | g)", counts.assign(y=counts.y + 0.5), family="poisson")
    assert np.isfinite(m.objective)


def test_binomial_response_outside_zero_one(counts):
    with pytest.raises(DataError, match=r"binomial response must be 0/1.*outside \[0, 1\]"):
        skmixed.glmer("I(y / 2) ~ x + (1 | g)", counts.assign(y=counts.n + 1.0), family="binomial")
    with pytest.raises(DataError, match="must be non-negative"):
        skmixed.glmer("cbind(y, n - y - 20) ~ x + (1 | g)", counts, family="binomial")
    with pytest.warns(UserWarning, match="non-integer number of successes"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", skmixed.SingularFitWarning)
            skmixed.glmer("I(b / 3 + 0.1) ~ x + (1 | g)", counts, family="binomial")


def test_positive_families_reject_non_positive_values(counts):
    with pytest.raises(DataError, match=r"Gamma family needs a positive response.*values <= 0"):
        skmixed.glmer("y ~ x + (1 | g)", counts, family="gamma")
    with pytest.raises(DataError, match=r"inverse.gaussian family needs a positive response"):
        skmixed.glmer("y ~ x + (1 | g)", counts, family="inverse_gaussian")


def test_factor_response_needs_two_levels(counts):
    df = counts.assign(f=pd.Categorical(np.array(["a", "b", "c"])[np.arange(len(counts)) % 3]))
    with pytest.raises(DataError, match=r"'f' has 3 levels.*needs two"):
        skmixed.glmer("f ~ x + (1 | g)", df)


def test_constant_response(counts):
    with pytest.raises(DataError, match=r"constant \(every observation is a failure\)"):
        skmixed.glmer("b ~ x + (1 | g)", counts.assign(b=0.0))
    with pytest.raises(DataError, match="constant"):
        skmixed.glmer("y ~ x + (1 | g)", counts.assign(y=0.0), family="poisson")


def test_separation_is_named(counts):
    df = counts.assign(b=(counts.x > 0).astype(float))
    with pytest.warns(UserWarning, match=r"separation.*\['\(Intercept\)', 'x'\].*at least 79 observations"):
        with pytest.warns(skmixed.ConvergenceWarning, match="PIRLS did not converge"):
            skmixed.glmer("b ~ x + (1 | g)", df, nAGQ=0)
    empty_cell = counts.assign(b=np.where(counts.h == "h2", 0.0, counts.b))  # a level with no successes
    with pytest.warns(UserWarning, match=r"separation.*\['hh2'\].*at least 20 observations"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", skmixed.SingularFitWarning)
            warnings.simplefilter("ignore", skmixed.ConvergenceWarning)
            skmixed.glmer("b ~ h + (1 | g)", empty_cell, nAGQ=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        skmixed.glmer("b ~ h + (1 | g)", counts, nAGQ=0)
    assert not [w for w in caught if "separation" in str(w.message)]


def test_nagq_above_one_needs_one_scalar_term(counts):
    with pytest.raises(ValueError, match=r"single scalar random-effects term.*\(x \| g\).*nAGQ=1"):
        skmixed.glmer("b ~ x + (x | g)", counts, nAGQ=5)
    with pytest.raises(ValueError, match=r"single scalar.*\(1 \| g\) \+ \(1 \| h\)"):
        skmixed.glmer("b ~ x + (1 | g) + (1 | h)", counts, nAGQ=9)
    for bad in (-1, 1.5, True, 101):
        with pytest.raises(ValueError, match="nAGQ must be an integer from 0 to 100"):
            skmixed.glmer("b ~ x + (1 | g)", counts, nAGQ=bad)


def test_unknown_family_or_link():
    with pytest.raises(ValueError, match=r"unknown family 'poison'.*'poisson'"):
        get_family("poison")
    with pytest.raises(ValueError, match=r"link 'logit' is not available for the poisson family; use one of log, sqrt"):
        Poisson(link="logit")
    with pytest.raises(ValueError, match="link 'probit' is not available for the Gamma"):
        get_family('Gamma(link = "probit")')
    with pytest.raises(ValueError, match="family must be a name"):
        get_family(3)
    with pytest.raises(ValueError, match="θ must be a positive number"):
        NegativeBinomial(theta=-1.0)
    assert get_family('binomial(link = "cloglog")') == Binomial(link="cloglog")
    assert get_family("negative.binomial").theta is None


def test_formula_and_start_problems(counts):
    with pytest.raises(FormulaError, match=r"no random-effects term.*statsmodels"):
        skmixed.glmer("b ~ x", counts)
    with pytest.raises(DataError, match="'one' has only 1 level"):
        skmixed.glmer("b ~ x + (1 | one)", counts.assign(one="a"))
    with pytest.raises(ValueError, match="start must have 1 values"):
        skmixed.glmer("b ~ x + (1 | g)", counts, start=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"start\['fixef'\] must have 2 values"):
        skmixed.glmer("b ~ x + (1 | g)", counts, start={"fixef": [0.0]})


def test_cbind_response_in_lmer_points_to_glmer(counts):
    with pytest.raises(DataError, match=r"binomial response.*skmixed.glmer"):
        skmixed.lmer("cbind(y, n) ~ x + (1 | g)", counts)


def test_an_observation_level_effect_is_allowed(counts):
    """lme4 allows a level per row in a GLMM (overdispersion); lmer's check must not apply."""
    m = skmixed.glmer("y ~ x + (1 | obs)", counts.assign(obs=np.arange(len(counts))), family="poisson")
    assert m.ngroups["obs"] == len(counts)
