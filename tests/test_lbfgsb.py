"""skmixed.lbfgsb drives scipy's L-BFGS-B routine as scipy's ``minimize`` does: the same iterates, bit for bit."""

import numpy as np
import pytest
import scipy
from scipy.optimize import rosen, rosen_der

from skmixed import datasets, stages
from skmixed.lbfgsb import _setulb, minimize, scipy_minimize
from skmixed.pls import theta_scale
from skmixed.starts import moment_theta


def rosenbrock(x):
    return rosen(x), rosen_der(x)


def test_the_driver_is_used_where_scipy_has_it():
    assert (_setulb() is not None) == (np.lib.NumpyVersion(scipy.__version__) >= "1.15.0")


def assert_same(f_and_grad, x0, **options):
    calls = {"driver": [], "scipy": []}

    def logged(name):
        def f(x):
            calls[name].append(x.copy())
            return f_and_grad(x)

        return f

    ours = minimize(logged("driver"), np.array(x0, dtype=float), **options)
    ref = scipy_minimize(logged("scipy"), np.array(x0, dtype=float), **options)
    assert np.array_equal(ours.x, ref.x) and ours.fun == ref.fun
    assert (ours.nfev, ours.nit, ours.success, ours.message) == (ref.nfev, ref.nit, ref.success, ref.message)
    assert len(calls["driver"]) == len(calls["scipy"])
    assert all(np.array_equal(a, b) for a, b in zip(calls["driver"], calls["scipy"]))
    return ours


DEFAULTS = {"ftol": 1e-12, "gtol": 1e-5, "maxfun": 15_000, "maxiter": 1000}


@pytest.mark.parametrize("x0", [[-1.2, 1.0], [2.0, -1.5, 0.5], [0.0, 0.0, 0.0, 0.0]])
def test_rosenbrock_as_scipy(x0):
    res = assert_same(rosenbrock, x0, **DEFAULTS)
    assert res.success


@pytest.mark.parametrize("limit", [{"maxfun": 5}, {"maxiter": 3}])
def test_the_limits_stop_as_scipy_stops(limit):
    res = assert_same(rosenbrock, [-1.2, 1.0], **{**DEFAULTS, **limit})
    assert not res.success and "LIMIT" in res.message


def test_a_huge_value_backs_the_line_search_off_as_in_scipy():
    outside = []

    def barrier(x):  # what lbfgsb_symmetric returns where the objective is not finite
        if x[0] <= 0:
            outside.append(x[0])
            return np.finfo(float).max / 1e10, np.zeros(1)
        return x[0] - np.log(x[0]), np.array([1 - 1 / x[0]])

    assert_same(barrier, [40.0], **DEFAULTS)
    assert outside  # the line search tried points outside the domain


def test_an_lmm_deviance_as_scipy():
    model = stages.build("Reaction ~ Days + (Days | Subject)", datasets.load("sleepstudy"))
    dev = stages.deviance(model).standardized
    scale = theta_scale(model.cp, model.re)

    def f(y):
        value, grad = dev.value_and_gradient(y / scale)
        return value, grad / scale

    res = assert_same(f, moment_theta(model.cp, model.re, scale) * scale, **DEFAULTS)
    assert res.success and res.nfev > 5


def test_without_the_routine_scipy_minimize_runs(monkeypatch):
    from skmixed import lbfgsb

    calls = []
    monkeypatch.setattr(lbfgsb, "_setulb", lambda: None)
    monkeypatch.setattr(lbfgsb, "_drive", lambda *args, **kwargs: calls.append(args))
    res = lbfgsb.minimize(rosenbrock, np.array([-1.2, 1.0]), **DEFAULTS)
    assert res.success and not calls
