"""Property-based checks (hypothesis): generated data and formulas.

* Invariance: the fit does not depend on row order, the labels or dtype of the grouping levels, the location and
  units of y and x, or the units of the weights (each transformation's exact effect is accounted for).
* Bad input: whatever is generated, an exception raised to the user is an :class:`skmixed.InputError`
  (or, in the estimators, scikit-learn's own validation error), never a raw error from deep code.

``make test`` runs a bounded number of examples (the ``default`` profile of conftest.py); ``make fuzz`` many more.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import skmixed

TOL = 1e-6
FORMULAS = ["y ~ 1 + (1 | g)", "y ~ x + (1 | g)", "y ~ x + (1 | g) + (1 | h)", "y ~ x + (x | g)", "y ~ x + (1 | g/h)"]


@st.composite
def datasets(draw):
    """A grouped data set: 3–12 levels of g with 2–7 rows each, a crossed factor h, a covariate and weights."""
    seed = draw(st.integers(0, 2**31 - 1))
    levels = draw(st.integers(3, 12))
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 8, levels)
    g = np.repeat(np.arange(levels), sizes)
    n = len(g)
    h = rng.integers(0, 4, n)
    x = rng.normal(size=n) * draw(st.sampled_from([1e-3, 1.0, 1e3]))
    tau, sigma = draw(st.sampled_from([0.0, 0.3, 1.0, 3.0])), draw(st.sampled_from([0.1, 1.0]))
    y = (
        1.0
        + 0.5 * x / np.std(x)
        + tau * rng.normal(size=levels)[g]
        + 0.5 * rng.normal(size=4)[h]
        + sigma * rng.normal(size=n)
    )
    return pd.DataFrame({"y": y, "x": x, "g": g, "h": h, "w": rng.uniform(0.2, 3.0, n)})


def fit(formula, df, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return skmixed.lmer(formula, df, **kw)


def try_fit(formula, df, **kw):
    """The fit, or None when the data cannot support the model (an InputError is an acceptable answer) or it did
    not converge (a likelihood unbounded as σ → 0, say: where it stops depends on rounding, not on the data)."""
    try:
        m = fit(formula, df, **kw)
    except skmixed.InputError:
        return None
    return m if m.optsum.converged else None


def close(a, b, what, tol=TOL):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
    assert np.max(np.abs(a - b), initial=0.0) <= tol * scale, f"{what}: {a} against {b}"


def same_fit(m, base, beta=None, theta=None, sigma=None, objective=None, fitted=None, order=None):
    """m equals base transformed: objective, θ, β, σ, and the fitted values Xβ̂ + Zb̂ row by row (so every BLUP,
    whatever the labels and order of the levels); ``order`` maps m's rows to base's."""
    assert m.objective == pytest.approx(base.objective if objective is None else objective, rel=TOL, abs=TOL)
    close(m.theta, base.theta if theta is None else theta, "θ", 10 * TOL)
    close(m.fixef.to_numpy(), base.fixef.to_numpy() if beta is None else beta, "β")
    close(m.sigma, base.sigma if sigma is None else sigma, "σ")
    expected = base.fitted if fitted is None else fitted
    close(m.fitted, expected if order is None else expected[order], "fitted values (BLUPs)")


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(datasets(), st.sampled_from(FORMULAS), st.booleans(), st.integers(0, 2**31 - 1))
def test_row_order(df, formula, reml, seed):
    base = try_fit(formula, df, REML=reml)
    assume(base is not None)
    perm = np.random.default_rng(seed).permutation(len(df))
    same_fit(fit(formula, df.iloc[perm], REML=reml), base, order=perm)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    datasets(),
    st.sampled_from(FORMULAS),
    st.sampled_from(["int", "str", "category", "datetime", "float"]),
    st.integers(0, 2**31 - 1),
)
def test_group_levels_relabelled_or_of_another_dtype(df, formula, dtype, seed):
    base = try_fit(formula, df)
    assume(base is not None)
    levels = np.random.default_rng(seed).permutation(200)[: df.g.max() + 1]  # new labels, in another order
    new = levels[df.g.to_numpy()]
    column = {
        "int": new,
        "str": np.array([f"L{v}" for v in new], dtype=object),
        "category": pd.Categorical([f"L{v}" for v in new]),
        "datetime": pd.Timestamp("2020-01-01") + pd.to_timedelta(new, unit="D"),
        "float": new.astype(float),
    }[dtype]
    same_fit(fit(formula, df.assign(g=column)), base)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(datasets(), st.sampled_from(FORMULAS), st.booleans(), st.floats(-9, 9), st.floats(-8, 8))
def test_response_location_and_units(df, formula, reml, log_shift, log_scale):
    base = try_fit(formula, df, REML=reml)
    assume(base is not None)
    shift, scale = np.sign(log_shift) * 10 ** abs(log_shift) * df.y.std(), 10.0**log_scale
    m = fit(formula, df.assign(y=(df.y + shift) * scale), REML=reml)
    beta = base.fixef.to_numpy() * scale
    beta[0] += shift * scale
    n, p = base.nobs, len(base.fixef)
    objective = base.objective + 2 * (n - p if reml else n) * np.log(scale)
    same_fit(m, base, beta=beta, sigma=base.sigma * scale, objective=objective, fitted=(base.fitted + shift) * scale)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(datasets(), st.sampled_from([f for f in FORMULAS if "x +" in f and "(x" not in f]), st.floats(-6, 6))
def test_covariate_location(df, formula, log_shift):
    base = try_fit(formula, df)
    assume(base is not None)
    shift = np.sign(log_shift) * 10 ** abs(log_shift) * df.x.std()
    m = fit(formula, df.assign(x=df.x + shift))
    beta = base.fixef.to_numpy().copy()
    beta[0] -= shift * beta[1]
    close(m.fixef_se.to_numpy()[1:], base.fixef_se.to_numpy()[1:], "SE")
    same_fit(m, base, beta=beta)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(datasets(), st.sampled_from(FORMULAS), st.booleans(), st.floats(-12, 12))
def test_weight_units(df, formula, reml, log_scale):
    base = try_fit(formula, df, REML=reml, weights="w")
    assume(base is not None)
    k = 10.0**log_scale
    m = fit(formula, df, REML=reml, weights=df.w * k)
    same_fit(m, base, theta=base.theta / np.sqrt(k), sigma=base.sigma * np.sqrt(k))


# --- bad input ----------------------------------------------------------------------------------
def _column(kind: str, n: int, rng: np.random.Generator):
    levels = rng.integers(0, max(2, n // 4), n)
    return {
        "float": rng.normal(size=n),
        "float_nan": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
        "float_inf": np.where(rng.random(n) < 0.1, np.inf, rng.normal(size=n)),
        "all_nan": np.full(n, np.nan),
        "constant": np.ones(n),
        "huge": rng.normal(size=n) * 1e300,
        "int": levels,
        "bool": rng.random(n) < 0.5,
        "str": np.array([f"s{v}" for v in levels], dtype=object),
        "mixed": np.array([v if v % 2 else f"s{v}" for v in levels], dtype=object),
        "none": np.array([None if v == 0 else f"s{v}" for v in levels], dtype=object),
        "category": pd.Categorical([f"c{v}" for v in levels]),
        "ordered": pd.Categorical(levels % 3, categories=[0, 1, 2], ordered=True),
        "datetime": pd.Timestamp("2021-01-01") + pd.to_timedelta(levels, unit="D"),
        "timedelta": pd.to_timedelta(levels, unit="h"),
        "Int64": pd.array(np.where(rng.random(n) < 0.2, None, levels), dtype="Int64"),
        "string": pd.array([f"t{v}" for v in levels], dtype="string"),
        "lists": pd.Series([[v] for v in levels], dtype=object),
        "complex": rng.normal(size=n) + 1j,
    }[kind]


KINDS = [
    "float",
    "float_nan",
    "float_inf",
    "all_nan",
    "constant",
    "huge",
    "int",
    "bool",
    "str",
    "mixed",
    "none",
    "category",
    "ordered",
    "datetime",
    "timedelta",
    "Int64",
    "string",
    "lists",
    "complex",
]
TERMS = [
    "{a}",
    "log({a})",
    "poly({a}, 2)",
    "scale({a})",
    "factor({a})",
    "{a}:{b}",
    "{a} * {b}",
    "I({a}^2)",
    "0",
    "1",
    "-1",
    "offset({a})",
]
BARS = ["(1 | {g})", "({a} | {g})", "(1 | {g}/{h})", "({a} || {g})", "(1 | {g}:{h})", "(0 + {a} | {g})"]


@st.composite
def bad_inputs(draw):
    """A data frame of odd columns, a formula over them (and names that are not columns), and odd options."""
    n = draw(st.integers(2, 60))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    names = draw(
        st.lists(st.sampled_from(["y", "x", "z", "g", "h", "w", "x.1", "my x"]), min_size=2, max_size=6, unique=True)
    )
    likely = st.sampled_from(["float", "float", "int", "str", "category"] + KINDS)  # mostly usable columns
    df = pd.DataFrame({name: _column(draw(likely), n, rng) for name in names})
    pick = st.sampled_from(names * 4 + ["missing"]).map(lambda v: v if v.replace(".", "_").isidentifier() else f"`{v}`")

    def fill(template):
        return template.format(a=draw(pick), b=draw(pick), g=draw(pick), h=draw(pick))

    response = fill(draw(st.sampled_from(["{a}", "{a}", "log({a})", "cbind({a}, {b})", "{a} > 0"])))
    fixed = " + ".join(fill(t) for t in draw(st.lists(st.sampled_from(TERMS), min_size=1, max_size=3)))
    bars = " + ".join(fill(t) for t in draw(st.lists(st.sampled_from(BARS), min_size=0, max_size=2)))
    formula = f"{response} ~ {fixed}" + (f" + {bars}" if bars else "")
    options = draw(
        st.one_of(
            st.just({}),
            st.fixed_dictionaries(
                {},
                optional={
                    "weights": st.sampled_from(
                        [draw(pick).strip("`"), "missing", np.ones(n), -np.ones(n), np.ones(n + 1)]
                    ),
                    "offset": st.sampled_from([draw(pick).strip("`"), np.zeros(n), "text"]),
                    "start": st.sampled_from(["x", [1.0], [np.nan], {"theta": [1.0]}, {"bad": 1}, -1.0]),
                    "REML": st.sampled_from([True, False, "FALSE", 0, None, 2]),
                },
            ),
        )
    )
    if draw(st.integers(0, 9)) == 0:
        df = df.rename(columns={names[0]: names[1]})  # duplicate column names
    return df, formula, options


@st.composite
def odd_inputs(draw):
    """A model of the right shape on columns of odd dtypes, with missing values: most of these should fit."""
    n = draw(st.integers(8, 80))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    g = rng.integers(0, draw(st.integers(2, 8)), n)
    group = draw(
        st.sampled_from(["int", "str", "category", "Int64", "string", "bool", "float", "uint8", "datetime", "none"])
    )
    x = rng.normal(size=n)
    covariate = draw(st.sampled_from(["float", "float32", "Int64", "object", "int", "uint8", "bool", "nan"]))
    y = rng.poisson(2.0, n).astype(float) if draw(st.booleans()) else rng.normal(size=n)
    df = pd.DataFrame(
        {
            "y": pd.array(y, dtype=draw(st.sampled_from(["float64", "float32", "Float64"]))),
            "x": {
                "float": x,
                "float32": x.astype(np.float32),
                "Int64": pd.array(np.round(3 * x), dtype="Int64"),
                "object": np.array(list(x), dtype=object),
                "int": np.round(3 * x).astype(int),
                "uint8": (np.abs(3 * x) % 5).astype(np.uint8),
                "bool": x > 0,
                "nan": np.where(rng.random(n) < 0.2, np.nan, x),
            }[covariate],
            "g": {
                "int": g,
                "str": np.array([f"s{v}" for v in g], dtype=object),
                "category": pd.Categorical(g),
                "Int64": pd.array(g, dtype="Int64"),
                "string": pd.array([f"t{v}" for v in g], dtype="string"),
                "bool": g % 2 == 0,
                "float": g.astype(float),
                "uint8": g.astype(np.uint8),
                "datetime": pd.Timestamp("2022-03-01") + pd.to_timedelta(g, unit="D"),
                "none": np.array([None if v == 0 else f"s{v}" for v in g], dtype=object),
            }[group],
        }
    )
    formula = draw(
        st.sampled_from(["y ~ x + (1 | g)", "y ~ factor(x) + (1 | g)", "y ~ x + (x | g)", "y ~ 1 + (1 | g)"])
    )
    return df, formula, {}


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.one_of(bad_inputs(), odd_inputs()), st.sampled_from(["lmer", "binomial", "poisson"]))
def test_bad_input_raises_input_errors_only(case, fitter):
    df, formula, options = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if fitter == "lmer":
                skmixed.lmer(formula, df, **options)
            else:
                options.pop("REML", None)
                skmixed.glmer(formula, df, family=fitter, **options)
        except skmixed.InputError:
            pass


def _raised_by_sklearn_validation(error: Exception) -> bool:
    """Whether ``error`` came out of scikit-learn's own input validation (``validate_data``, ``check_array``,
    target checks), as scikit-learn's estimators raise it for the same input."""
    import traceback

    paths = [frame.filename.replace("\\", "/") for frame in traceback.extract_tb(error.__traceback__)]
    return any("/sklearn/utils/" in path for path in paths)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(bad_inputs(), odd_inputs()), st.sampled_from(["MixedLM", "GLMMClassifier", "GLMM"]), st.booleans())
def test_estimators_raise_input_or_sklearn_validation_errors_only(case, name, formula_mode):
    df, formula, _ = case
    estimator = getattr(skmixed, name)
    if df.columns.duplicated().any() or "y" not in df.columns:
        return
    X, y = df.drop(columns="y"), df["y"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if formula_mode:
                est = estimator(formula="~" + formula.split("~", 1)[1])
                est.fit(X, y).predict(X)
            else:
                groups = X.pop("g") if "g" in X.columns else None
                est = estimator()
                est.fit(X, y, groups=groups).predict(X, groups=groups)
        except skmixed.InputError:
            pass
        except Exception as error:  # the point of the test: anything else must be scikit-learn's validation
            if not _raised_by_sklearn_validation(error):
                raise
