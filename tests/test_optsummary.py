"""OptSummary.map_rows re-expresses an optimization summary as OptSummary.map does, number for number."""

import copy

import numpy as np

from skmixed import datasets, stages
from skmixed.glmm_fitting import _SeUnits
from skmixed.optimizers import OptSummary, lbfgsb_symmetric


def points(summary: OptSummary) -> list:
    return [summary.theta_init, summary.theta, summary.objective_init, summary.objective] + [
        value for pair in summary.fitlog for value in pair
    ]


def assert_same(mapped: OptSummary, by_rows: OptSummary) -> None:
    a, b = points(mapped), points(by_rows)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert type(x) is type(y) and np.shape(x) == np.shape(y)
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()  # bit for bit


def test_an_lmm_summary_mapped_to_the_users_scale():
    model = stages.build("Reaction ~ Days + (Days | Subject)", datasets.load("sleepstudy"), REML=False)
    dev = stages.deviance(model).standardized
    summary = lbfgsb_symmetric(dev.value_and_gradient, model.re.theta_init, canonical=model.re.canonical_theta)
    assert summary.n_evaluations > 5
    std = model.standardization
    mapped, by_rows = copy.deepcopy(summary), copy.deepcopy(summary)
    mapped.map(std.theta, lambda value: std.objective(value, False))
    by_rows.map_rows(std.theta, lambda values: std.objective(values, False))
    assert_same(mapped, by_rows)


def test_a_search_in_standard_error_units_mapped_back():
    rng = np.random.default_rng(3)
    units = _SeUnits(2, rng.normal(size=3), rng.uniform(0.1, 3, size=3))
    log = [(rng.normal(size=5), float(v)) for v in rng.normal(size=7)]
    summary = OptSummary("test", log[0][0], log[0][1], log[-1][0], log[-1][1], len(log), True, "ok", fitlog=log)
    mapped, by_rows = copy.deepcopy(summary), copy.deepcopy(summary)
    mapped.map(units.from_z, lambda value: value)
    by_rows.map_rows(units.from_z_rows)
    assert_same(mapped, by_rows)
