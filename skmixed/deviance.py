"""Stage 2, ``deviance``: a model record → its objective as a function of the covariance parameters
(lme4's ``mkLmerDevfun`` / ``mkGlmerDevfun``).

For an LMM, :class:`ProfiledDeviance`: θ ↦ the REML criterion or −2 log-likelihood profiled over
β and σ, on the user's scale; its :attr:`~ProfiledDeviance.standardized` twin works in the
coordinates of the standardized problem (:mod:`skmixed.standardize`), where the optimizer runs.
The backend (dense, blocked, nested, scalar terms or sparse) is chosen once, in :func:`skmixed.backends.choose_backend`,
which records why.  For a GLMM, :class:`GlmmObjective`: the Laplace (nAGQ = 1), adaptive
Gauss–Hermite (nAGQ > 1) or nAGQ = 0 deviance, evaluated by penalized IRLS (:mod:`skmixed.pirls`).
"""

from __future__ import annotations

import numpy as np

from .backends import choose_backend
from .blas import one_blas_thread
from .exceptions import OptionError
from .laplace import gauss_hermite, minus_two_loglik
from .model import GeneralizedLinearMixedModel, LinearMixedModel
from .options import check_krylov_model, check_nagq, check_solver
from .pirls import Pirls
from .pls import PlsSolution, profiled_solution


@one_blas_thread
def deviance(model, nAGQ: int = 1, solver: str = "auto", krylov=None):
    """The objective of ``model``: a :class:`ProfiledDeviance` (LMM; ``solver`` and ``krylov`` as in
    :mod:`skmixed.options`) or a :class:`GlmmObjective` (GLMM, with ``nAGQ`` = 0: β within PIRLS, 1: Laplace,
    > 1: quadrature nodes, one scalar term only)."""
    settings = check_solver(solver, krylov)
    if isinstance(model, LinearMixedModel):
        check_krylov_model(settings, model.re)
        return ProfiledDeviance(model, settings)
    if settings is not None:
        raise OptionError("solver='krylov' fits linear mixed models; a GLMM's deviance has no iterative path")
    if isinstance(model, GeneralizedLinearMixedModel):
        return GlmmObjective(model, check_nagq(nAGQ))
    raise OptionError(f"deviance() takes a model from skmixed.build, not {type(model).__name__}")


class StandardizedDeviance:
    """θ̃ ↦ the standardized problem's profiled deviance, solution and gradient (the optimizer's view).

    The last evaluation with a gradient is kept: the Newton finish and the result reuse it.
    """

    def __init__(self, model: LinearMixedModel, krylov=None):
        self.model = model
        self.backend = choose_backend(model.cp, model.re, model.REML, krylov)
        self._last: tuple[np.ndarray, PlsSolution, np.ndarray] | None = None
        self._final: tuple[np.ndarray, PlsSolution] | None = None

    @property
    def has_gradient(self) -> bool:
        return self.backend.has_gradient

    def __call__(self, theta: np.ndarray) -> float:
        sol = self.solve(theta)
        return np.inf if sol is None else sol.deviance

    def solve(self, theta: np.ndarray) -> PlsSolution | None:
        """The PLS solution at θ̃, or None where A or RX'RX is not positive definite."""
        theta = np.asarray(theta, dtype=float)
        if self._last is not None and np.array_equal(self._last[0], theta):
            return self._last[1]
        return self.backend.solve(theta)

    def value_and_gradient(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        theta = np.asarray(theta, dtype=float)
        if self._last is not None and np.array_equal(self._last[0], theta):
            return self._last[1].deviance, self._last[2]
        sol, grad = self.backend.solve_with_gradient(theta)
        if sol is None:
            return np.inf, np.zeros_like(theta)
        self._last = (theta.copy(), sol, grad)
        return sol.deviance, grad

    def final_solution(self, theta: np.ndarray) -> PlsSolution:
        """The solution at the optimum with its penalized RSS recomputed from the residuals, as lme4 does: the
        cross-product form ``y'y − ‖cu‖² − ‖cβ‖²`` cancels when the random effects explain most of the variance.
        The last one is kept: the optimizer's summary and the result both ask for it."""
        theta = np.asarray(theta, dtype=float)
        if self._final is not None and np.array_equal(self._final[0], theta):
            return self._final[1]
        final = getattr(self.backend, "final_solve", None)  # an iterative path's exact solution, where affordable
        sol = self.solve(theta) if final is None else final(theta)
        b = self.backend
        solution = profiled_solution(
            sol.theta, sol.beta, sol.u, sol.b, self._penalized_rss(sol), sol.ldL2, sol.ldRX2, sol.RX, b.cp.n, b.p,
            b.cp.log_det_w, b.reml,
        )  # fmt: skip
        self._final = (theta.copy(), solution)
        return solution

    def _penalized_rss(self, sol: PlsSolution) -> float:
        """‖W^½(y − Xβ − Zb)‖² + ‖u‖², from the rows."""
        model = self.model
        r = model.y - model.X @ sol.beta - model.re.Z @ sol.b
        return float(model.weights @ r**2 + sol.u @ sol.u)


class ProfiledDeviance:
    """θ ↦ an LMM's profiled REML criterion or −2 log-likelihood on the user's scale (lme4's ``devfun``).

    ``value`` (or calling it), ``value_and_gradient`` (where the backend has a gradient) and ``solve``
    (the PLS solution: β̂, b̂, σ̂, ...) take θ as the fitted model reports it.
    """

    def __init__(self, model: LinearMixedModel, krylov=None):
        self.model = model
        self.standardized = StandardizedDeviance(model, krylov)

    @property
    def has_gradient(self) -> bool:
        return self.standardized.has_gradient

    @property
    def reason(self) -> str:
        """Which backend evaluates the deviance, and why."""
        return self.standardized.backend.reason

    def value(self, theta) -> float:
        std = self.model.standardization
        return std.objective(self.standardized(std.theta_tilde(theta)), self.model.REML)

    __call__ = value

    def value_and_gradient(self, theta) -> tuple[float, np.ndarray]:
        """The deviance and its gradient in θ (θ̃ = θ√c, so ∂f/∂θ = √c ∂f/∂θ̃)."""
        std = self.model.standardization
        value, grad = self.standardized.value_and_gradient(std.theta_tilde(theta))
        return std.objective(value, self.model.REML), grad * np.sqrt(std.c)

    def solve(self, theta) -> PlsSolution | None:
        std = self.model.standardization
        sol = self.standardized.solve(std.theta_tilde(theta))
        return None if sol is None else std.solution(sol, self.model.REML)


class GlmmObjective:
    """A GLMM's deviance (−2 log-likelihood) for the optimizer: of θ for nAGQ = 0 (β within PIRLS), of (θ, β)
    for the Laplace approximation and adaptive Gauss–Hermite quadrature; its PIRLS (:attr:`pirls`) keeps the
    last modes as warm starts."""

    def __init__(self, model: GeneralizedLinearMixedModel, nAGQ: int):
        re = model.re
        if nAGQ > 1 and (len(re.terms) != 1 or re.terms[0].k != 1):
            terms = " + ".join(str(t.bar) for t in re.terms)
            raise OptionError(
                f"nAGQ = {nAGQ} (adaptive Gauss-Hermite quadrature) needs a single scalar random-effects term such as "
                f"(1 | g), but the model has {terms}; use nAGQ=1 (Laplace approximation) for it"
            )
        self.model, self.nAGQ = model, nAGQ
        frame = model.frame
        self.pirls = Pirls(frame.y, model.X, re, model.family, frame.weights, frame.offset, frame.trials)
        self.rule = gauss_hermite(nAGQ) if nAGQ > 1 else None

    def __call__(self, params) -> float:
        """−2 log-likelihood at θ (nAGQ = 0) or at (θ, β) with β on the user's scale."""
        params = np.asarray(params, dtype=float)
        k = self.model.re.n_theta
        pirls = self.pirls
        if self.nAGQ == 0:
            return minus_two_loglik(pirls, pirls.joint_mode(params))
        theta, beta = params[:k], self.model.standardization.beta_tilde(params[k:])
        return minus_two_loglik(pirls, pirls.mode(theta, beta), self.rule)
