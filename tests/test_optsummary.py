"""OptSummary.map_rows re-expresses an optimization summary as OptSummary.map does, number for number; L-BFGS-B stops
where its line search only meets rounding."""

import copy

import numpy as np

from skmixed import datasets, optimizers, stages
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


def test_lbfgsb_stops_where_its_line_search_only_meets_rounding(monkeypatch):
    """At an optimum f is flat to rounding while its computed gradient is not 0 (weighted dallas: 7 evaluations to
    the optimum, then 10 to 25 more at points equal to it within 1e-15): the run stops after STALL_EVALUATIONS
    such points, at the best one, and says so; scipy alone spends its whole line search there."""

    def flat(x):  # f equal everywhere within 1e-14 relative, a gradient that promises a decrease
        return 1e6 + 1e-8 * np.round(np.sin(1e3 * x[0]), 1), np.array([1.0, -2.0])

    x0 = np.array([0.3, 0.2])
    stopped = optimizers.lbfgsb_symmetric(flat, x0, canonical=lambda x: x)
    assert stopped.n_evaluations == optimizers.STALL_EVALUATIONS + 1 and stopped.converged
    assert "equal to it within rounding" in stopped.return_code
    best = min(stopped.fitlog, key=lambda pair: pair[1])
    assert stopped.objective == best[1] and np.array_equal(stopped.theta, best[0])
    monkeypatch.setattr(optimizers, "STALL_EVALUATIONS", 1000)
    assert optimizers.lbfgsb_symmetric(flat, x0, canonical=lambda x: x).n_evaluations >= 10
