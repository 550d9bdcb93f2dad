"""skmixed.bfgs: dense BFGS with a strong-Wolfe line search reaches the minimum scipy's BFGS reaches."""

import numpy as np
import pytest
from scipy.optimize import minimize, rosen, rosen_der

from skmixed.bfgs import bfgs


def rosenbrock(x):
    return rosen(x), rosen_der(x)


@pytest.mark.parametrize("x0", [[-1.2, 1.0], [2.0, -1.5, 0.5], [0.0, 0.0, 0.0, 0.0]])
def test_rosenbrock_minimum(x0):
    res = bfgs(rosenbrock, np.array(x0), gtol=1e-8, maxfun=500)
    ref = minimize(rosenbrock, np.array(x0), jac=True, method="BFGS", options={"gtol": 1e-8})
    assert res.success and np.max(np.abs(res.grad)) <= 1e-8
    np.testing.assert_allclose(res.x, np.ones(len(x0)), atol=1e-7)
    np.testing.assert_allclose(res.x, ref.x, atol=1e-7)


def test_a_quadratic_with_its_inverse_hessian_is_one_step():
    A = np.array([[4.0, 1.0], [1.0, 3.0]])
    b = np.array([1.0, -2.0])
    calls = []

    def f(x):
        calls.append(x)
        return 0.5 * x @ A @ x - b @ x, A @ x - b

    res = bfgs(f, np.zeros(2), gtol=1e-10, maxfun=50, hess_inv0=np.linalg.inv(A))
    np.testing.assert_allclose(res.x, np.linalg.solve(A, b), rtol=1e-12)
    assert len(calls) == 2 and res.nit == 1


def test_infinite_values_shorten_the_step_and_a_bad_start_is_reported():
    def barrier(x):  # f = x − log x, +inf for x ≤ 0: the first trial step (to x ≈ −80) lands there
        if x[0] <= 0:
            return np.inf, np.array([np.nan])
        return x[0] - np.log(x[0]), np.array([1 - 1 / x[0]])

    res = bfgs(barrier, np.array([11.0]), gtol=1e-9, maxfun=100, hess_inv0=np.array([[100.0]]))
    assert res.success and res.x[0] == pytest.approx(1.0, abs=1e-8)
    bad = bfgs(barrier, np.array([-1.0]), gtol=1e-9, maxfun=100)
    assert not bad.success and "not finite" in bad.message
