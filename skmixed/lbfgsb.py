"""scipy's L-BFGS-B without its wrapper: the same routine (``setulb``, the reverse-communication L-BFGS-B of Byrd,
Lu, Nocedal and Zhu, "A limited memory algorithm for bound constrained optimization") driven by the loop scipy's
``minimize(method="L-BFGS-B", jac=True)`` runs, without bounds.

The loop hands ``setulb`` the same values in the same order — f and ∇f at every point it asks for, a repeated
point answered from the last evaluation, the same stops on the counts of evaluations and iterations — so the
iterates, the counts and the message are scipy's own, bit for bit (a test compares the two).  What it saves is
scipy's machinery around each call (its ``ScalarFunction``, memoization and array-API checks), which costs more
than the objective of a model with a few dozen random effects.  ``setulb`` is scipy's private routine, in its
present form since scipy 1.15: the loop is used only where it reproduces scipy's ``minimize`` on a small problem
(checked once per process); elsewhere :func:`minimize` calls scipy's ``minimize`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass
class LbfgsbResult:
    """What scipy's ``OptimizeResult`` holds for L-BFGS-B, the parts a fit reads."""

    x: np.ndarray
    fun: float
    nfev: int
    nit: int
    success: bool
    message: str


def _probe(x: np.ndarray) -> tuple[float, np.ndarray]:
    """Rosenbrock's function and its gradient: the small problem on which the driver is checked against scipy."""
    a, b = 1.0 - x[0], x[1] - x[0] ** 2
    return a * a + 10.0 * b * b, np.array([-2.0 * a - 40.0 * x[0] * b, 20.0 * b])


@lru_cache(maxsize=1)
def _setulb():
    """scipy's C ``setulb`` (scipy ≥ 1.15) and its message tables where the loop of :func:`_drive` reproduces
    scipy's ``minimize`` on a small problem, bit for bit; None otherwise (another scipy: its ``minimize`` is used)."""
    try:
        from scipy.optimize._lbfgsb import setulb
        from scipy.optimize._lbfgsb_py import status_messages, task_messages
    except ImportError:
        return None
    routine = (setulb, status_messages, task_messages)
    options = {"ftol": 1e-12, "gtol": 1e-8, "maxfun": 200, "maxiter": 200}
    try:  # an older or newer setulb may take other arguments, or the loop around it may differ
        ours = _drive(routine, _probe, np.array([-1.2, 1.0]), **options)
    except (TypeError, ValueError, IndexError, KeyError):  # other arguments, shapes or task codes
        return None
    ref = scipy_minimize(_probe, np.array([-1.2, 1.0]), **options)
    same = np.array_equal(ours.x, ref.x) and ours.fun == ref.fun
    return routine if same and (ours.nfev, ours.nit, ours.message) == (ref.nfev, ref.nit, ref.message) else None


def minimize(f_and_grad, x0: np.ndarray, *, ftol: float, gtol: float, maxfun: int, maxiter: int) -> LbfgsbResult:
    """Minimise ``f_and_grad(x) -> (f, ∇f)`` from ``x0``, unbounded, as scipy's ``minimize(f_and_grad, x0,
    jac=True, method="L-BFGS-B", options={"ftol": ftol, "gtol": gtol, "maxfun": maxfun, "maxiter": maxiter})``."""
    routine = _setulb()
    if routine is None:
        return scipy_minimize(f_and_grad, x0, ftol=ftol, gtol=gtol, maxfun=maxfun, maxiter=maxiter)
    return _drive(routine, f_and_grad, x0, ftol=ftol, gtol=gtol, maxfun=maxfun, maxiter=maxiter)


def _drive(routine, f_and_grad, x0, *, ftol: float, gtol: float, maxfun: int, maxiter: int) -> LbfgsbResult:
    """The loop of scipy's ``_minimize_lbfgsb`` (scipy 1.15 on) around ``setulb``, without bounds."""
    setulb, status_messages, task_messages = routine
    m, maxls = 10, 20  # scipy's maxcor and maxls
    x = np.array(x0, dtype=np.float64).ravel()
    n = len(x)
    last = x.copy()
    f_last, g_last = f_and_grad(x.copy())  # scipy evaluates at the start, then answers setulb's first request from it
    nfev, nit = 1, 0
    f, g = np.array(0.0), np.zeros(n)
    lower, upper, bound = np.zeros(n), np.zeros(n), np.zeros(n, np.int32)
    wa = np.zeros(2 * m * n + 5 * n + 11 * m * m + 8 * m)
    iwa = np.zeros(3 * n, np.int32)
    task, ln_task, lsave = np.zeros(2, np.int32), np.zeros(2, np.int32), np.zeros(4, np.int32)
    isave, dsave = np.zeros(44, np.int32), np.zeros(29)
    factr = ftol / np.finfo(float).eps
    while True:
        g = g.astype(np.float64)  # a copy, as scipy hands it: setulb never writes into the last evaluation's ∇f
        setulb(m, x, lower, upper, bound, f, g, factr, gtol, wa, iwa, task, lsave, isave, dsave, maxls, ln_task)
        if task[0] == 3:  # f and ∇f at x: the last evaluation's where x has not moved
            if not np.array_equal(x, last):
                last = x.copy()
                f_last, g_last = f_and_grad(x.copy())
                nfev += 1
            f, g = f_last, g_last
        elif task[0] == 1:  # a new iterate
            nit += 1
            if nit >= maxiter:
                task[0], task[1] = 5, 504
            elif nfev > maxfun:
                task[0], task[1] = 5, 502
        else:
            break
    message = status_messages[int(task[0])] + ": " + task_messages[int(task[1])]
    return LbfgsbResult(x=x, fun=f, nfev=nfev, nit=nit, success=bool(task[0] == 4), message=message)


def scipy_minimize(f_and_grad, x0: np.ndarray, *, ftol: float, gtol: float, maxfun: int, maxiter: int) -> LbfgsbResult:
    """The same minimisation through scipy's public ``minimize``."""
    from scipy.optimize import minimize as scipy_minimize  # lazily: import cost

    options = {"maxiter": maxiter, "maxfun": maxfun, "ftol": ftol, "gtol": gtol}
    res = scipy_minimize(f_and_grad, x0, jac=True, method="L-BFGS-B", options=options)
    return LbfgsbResult(
        x=res.x, fun=res.fun, nfev=int(res.nfev), nit=int(res.nit), success=bool(res.success), message=str(res.message)
    )
