"""The parametric bootstrap of a fit (lme4's ``bootMer``, MixedModels.jl's ``parametricbootstrap``).

Each replicate simulates a response from the fitted model (:mod:`skmixed.simulate`, replicate i with
the i-th stream spawned from ``seed``) and refits the model to it; the estimates of every replicate —
the objective, θ, the SDs and correlations, σ and β — make one row of :attr:`Bootstrap.replicates`.

An LMM's replicate changes only the response, so only Z'y, X'y and y'y change: the model record is
copied with the replicate's cross-products (Z'Z, Z'X and X'X are shared), and its response is put on the
fit's standardized coordinates (:mod:`skmixed.standardize`) by its own centring and scale — a projection
on X̃, O(np) — while X̃, S and the weights stay those of the fit.  The refit starts from the fit's θ with
the Hessian of the fit's deviance as its quasi-Newton's first Hessian (:mod:`skmixed.quasi_newton`),
within the boundary probe of :func:`skmixed.convergence.minimize`; a few evaluations of the deviance
suffice.  A GLMM's replicate is a refit through the public stages from the fit's (θ, β).

``n_jobs`` runs the replicates in that many processes (−1: one per CPU); the streams do not depend on it.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
import scipy.linalg as la
from scipy.stats import norm

from .blas import single_blas_thread
from .convergence import minimize
from .exceptions import ConvergenceWarning, DataError, InputError, OptionError
from .pls import theta_scale
from .quasi_newton import minimize_box
from .sdcor import SdCor
from .simulate import Simulator, replicate_seeds
from .stages import deviance, make_result, optimize
from .standardize import Standardization

#: a replicate's refit stops at a quasi-Newton decrement below this: its deviance is then within ~1e-6 of the
#: optimum and θ within ~1e-4 of its SD (standardized units), far below the bootstrap's own spread
REFIT_TOL = 1e-6


class _LmmRefit:
    """Refits of an LMM to simulated responses (module docstring)."""

    def __init__(self, result):
        self.result, self.model = result, result.model
        self.simulator = Simulator(result)
        self.Zt = self.model.re.Z.T.tocsr()
        devfun = result.devfun.standardized
        self.theta0 = result.standardization.theta_tilde(result.theta)
        self.scale = theta_scale(self.model.cp, self.model.re)
        self.hessian = None
        if devfun.has_gradient and not self.model.re.structured:  # a structured term refits over ψ: optimize()
            from .convergence import gradient_hessian

            g = devfun.value_and_gradient(self.theta0)[1]
            self.hessian = gradient_hessian(devfun.value_and_gradient, self.theta0, g, self.model.re.theta_lower)

    def record(self, y: np.ndarray):
        """The model record of response ``y`` (user's scale), standardized as the module docstring says."""
        model, std = self.model, self.model.standardization
        w, X = model.weights, model.X
        r = (y - model.frame.offset - model.frame.X @ std.gamma) / std.s if std.p else (y - model.frame.offset) / std.s
        coef = X.T @ (w * r) / len(r)  # X̃'W̃X̃ = nI; r is O(1) on the fit's coordinates: one projection is exact
        r = r - X @ coef
        s_rel = float(np.sqrt(w @ r**2 / len(r)))
        if not s_rel > 0:
            raise DataError("the simulated response is an exact linear function of the fixed effects")
        y_tilde = r / s_rel
        gamma = std.gamma + std.s * la.solve_triangular(std.S, coef) if std.p else std.gamma
        wy = w * y_tilde
        cp = dataclasses.replace(model.cp, Zty=self.Zt @ wy, Xty=X.T @ wy, yty=float(wy @ y_tilde))
        standardization = Standardization(std.S, gamma, std.s * s_rel, std.c, std.n)
        return dataclasses.replace(model, y=y_tilde, cp=cp, standardization=standardization)

    def __call__(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float, float, bool]:
        record = self.record(self.simulator.response(rng))
        devfun = deviance(record)
        dev, re = devfun.standardized, record.re
        lower = re.theta_lower
        if self.hessian is not None:
            opt = minimize(
                lambda x0: minimize_box(dev.value_and_gradient, x0, lower, np.inf, self.hessian, tol=REFIT_TOL),
                self.theta0,
                re.theta_lower,
                f_and_grad=dev.value_and_gradient,
                scale=self.scale,
                check=False,
            )
            theta_tilde, converged = re.canonical_theta(opt.theta), opt.converged
        else:  # no gradient: lme4's BOBYQA, through the public stage
            opt = optimize(devfun, start=self.result.theta, check_conv=False)
            theta_tilde, converged = record.standardization.theta_tilde(opt.theta), opt.converged
        std = record.standardization
        sol = std.solution(dev.solve(theta_tilde), record.REML)  # the last evaluation's, kept by the deviance
        return sol.theta, sol.beta, sol.sigma, sol.deviance, bool(converged and np.isfinite(sol.deviance))


class _GlmmRefit:
    """Refits of a GLMM to simulated responses, by the public stages from the fit's (θ, β)."""

    def __init__(self, result):
        self.result, self.simulator = result, Simulator(result)
        self.start = {"theta": result.theta, "fixef": result.fixef.to_numpy()}

    def __call__(self, rng: np.random.Generator):
        result = self.result
        model = result.model
        record = dataclasses.replace(model, frame=dataclasses.replace(model.frame, y=self.simulator.response(rng)))
        objective = deviance(record, result.nAGQ)
        optsum = optimize(objective, start=self.start if result.nAGQ else result.theta)
        refit = make_result(record, objective, optsum)
        return refit.theta, refit.fixef.to_numpy(), refit.sigma, refit.objective, bool(optsum.converged)


def _refitter(result):
    from .glmm_results import GlmerResult

    return _GlmmRefit(result) if isinstance(result, GlmerResult) else _LmmRefit(result)


def _run(refit, seeds) -> list:
    """The replicates of ``seeds`` (None for a replicate whose refit failed), warnings silenced."""
    rows = []
    with warnings.catch_warnings(), single_blas_thread():
        warnings.simplefilter("ignore")
        for seed in seeds:
            try:
                rows.append(refit(np.random.default_rng(seed)))
            except (InputError, ArithmeticError, np.linalg.LinAlgError, ValueError):
                rows.append(None)
    return rows


_WORKER_REFIT = None


def _worker_init(result) -> None:
    global _WORKER_REFIT
    _WORKER_REFIT = _refitter(result)


def _worker_run(seeds) -> list:
    return _run(_WORKER_REFIT, seeds)


def _jobs(n_jobs) -> int:
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0 or n_jobs < -1:
        raise OptionError(f"n_jobs must be None, a positive whole number or -1 (one process per CPU), not {n_jobs!r}")
    return os.cpu_count() or 1 if n_jobs == -1 else int(n_jobs)


def bootstrap(result, nsim: int = 1000, seed=None, n_jobs=None) -> Bootstrap:
    """A parametric bootstrap of ``nsim`` replicates (see the module docstring)."""
    seeds = replicate_seeds(nsim, seed)
    jobs = min(_jobs(n_jobs), len(seeds))
    if jobs == 1:
        rows = _run(_refitter(result), seeds)
    else:
        chunks = [seeds[i::jobs] for i in range(jobs)]
        with ProcessPoolExecutor(jobs, initializer=_worker_init, initargs=(result,)) as pool:
            parts = list(pool.map(_worker_run, chunks))
        rows = [None] * len(seeds)
        for i, part in enumerate(parts):
            rows[i::jobs] = part
    return Bootstrap(result, rows)


class Bootstrap:
    """The replicates of a parametric bootstrap (:func:`bootstrap`): a DataFrame and the intervals they give."""

    def __init__(self, result, rows: list):
        from .glmm_results import GlmerResult

        glmm = isinstance(result, GlmerResult)
        self.sdcor = SdCor(result.re, has_sigma=not glmm or result.has_dispersion)
        self.parameters = self.sdcor.names + list(result.frame.x_names)
        k = result.re.n_theta
        columns = ["objective", *[f"theta_{i + 1}" for i in range(k)], *self.parameters, "converged"]
        nan_row = [np.nan] * (len(columns) - 1) + [False]
        table = [nan_row if row is None else self._row(*row) for row in rows]
        self.replicates = pd.DataFrame(table, columns=columns)
        self.replicates["converged"] = self.replicates["converged"].astype(bool)
        self.estimates = pd.Series(
            self._row(result.theta, result.fixef.to_numpy(), result.sigma, result.objective, True)[:-1],
            index=columns[:-1],
        )
        self.n_failed = int((~self.replicates["converged"]).sum())
        if self.n_failed:
            warnings.warn(
                f"{self.n_failed} of {len(rows)} bootstrap replicates did not converge or could not be fitted: they "
                "have converged=False in .replicates and are left out of the intervals",
                ConvergenceWarning,
                stacklevel=3,
            )

    def _row(self, theta, beta, sigma, objective, converged) -> list:
        return [objective, *theta, *self.sdcor.phi(theta, sigma), *beta, converged]

    def confint(self, method: str = "percentile", level: float = 0.95) -> pd.DataFrame:
        """Intervals from the converged replicates: ``"percentile"`` (the quantiles, as lme4's ``boot.type =
        "perc"``), ``"basic"`` (2θ̂ minus the quantiles) or ``"normal"`` (θ̂ − bias ± z·SD)."""
        if not 0 < level < 1:
            raise OptionError(f"level must be between 0 and 1, not {level!r}")
        values = self.replicates.loc[self.replicates["converged"], self.parameters]
        estimate = self.estimates[self.parameters]
        alpha = (1 - level) / 2
        if method == "percentile":
            lower, upper = values.quantile(alpha), values.quantile(1 - alpha)
        elif method == "basic":
            lower, upper = 2 * estimate - values.quantile(1 - alpha), 2 * estimate - values.quantile(alpha)
        elif method == "normal":
            centre, half = 2 * estimate - values.mean(), norm.ppf(1 - alpha) * values.std()
            lower, upper = centre - half, centre + half
        else:
            raise OptionError(f"method must be 'percentile', 'basic' or 'normal', not {method!r}")
        return pd.DataFrame({"lower": lower, "upper": upper}, index=self.parameters)

    def __repr__(self) -> str:
        return f"<Bootstrap: {len(self.replicates)} replicates, {self.n_failed} failed>"
