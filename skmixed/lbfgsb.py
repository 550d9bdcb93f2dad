"""scipy's L-BFGS-B without its wrapper: the same routine (``setulb``, the reverse-communication L-BFGS-B of Byrd,
Lu, Nocedal and Zhu, "A limited memory algorithm for bound constrained optimization") driven by the loop scipy's
``minimize(method="L-BFGS-B", jac=True)`` runs, without bounds.

The loop hands ``setulb`` the same values in the same order — f and ∇f at every point it asks for, a repeated
point answered from the last evaluation, the same stops on the counts of evaluations and iterations — so the
iterates, the counts and the message are scipy's own, bit for bit (a test compares the two).  What it saves is
scipy's machinery around each call (its ``ScalarFunction``, memoization and array-API checks), which costs more
than the objective of a model with a few dozen random effects.  ``setulb`` took its present form in scipy 1.15;
with an older scipy, :func:`minimize` calls scipy's ``minimize`` instead.
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


@lru_cache(maxsize=1)
def _setulb():
    """scipy's C ``setulb`` (scipy ≥ 1.15) and its message tables, or None for an older scipy."""
    try:
        from scipy.optimize._lbfgsb import setulb
        from scipy.optimize._lbfgsb_py import status_messages, task_messages
    except ImportError:
        return None
    import scipy

    return (setulb, status_messages, task_messages) if np.lib.NumpyVersion(scipy.__version__) >= "1.15.0" else None


def minimize(f_and_grad, x0: np.ndarray, *, ftol: float, gtol: float, maxfun: int, maxiter: int) -> LbfgsbResult:
    """Minimise ``f_and_grad(x) -> (f, ∇f)`` from ``x0``, unbounded, as scipy's ``minimize(f_and_grad, x0,
    jac=True, method="L-BFGS-B", options={"ftol": ftol, "gtol": gtol, "maxfun": maxfun, "maxiter": maxiter})``."""
    routine = _setulb()
    if routine is None:
        return scipy_minimize(f_and_grad, x0, ftol=ftol, gtol=gtol, maxfun=maxfun, maxiter=maxiter)
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
