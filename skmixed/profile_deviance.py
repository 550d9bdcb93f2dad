"""The deviance as a function of the parameters a profile fixes one at a time (lme4's ``devfun2``).

**LMM.** lme4 profiles −2 log L of the ML fit (a REML fit is refitted by ML first) as a function of
the covariance parameters on the "sdcor" scale φ (:mod:`skmixed.sdcor`), with β profiled out but
not σ.  For θ = θ(φ) and the ML profiled deviance d(θ) (σ̂² = r²/n), the deviance at (θ, σ) is

    D(φ) = ldL2 − log|W| + r²(θ)/σ² + n log(2πσ²) = d(θ) + n(ρ − 1 − log ρ),   ρ = r²(θ)/(nσ²),

and its gradient in θ is ∇d + n(ρ − 1)∇r²/r², with ∇r² from the envelope theorem,
``∂r²/∂θ_m = −2 (Z'r)'E_m û`` (E_m = ∂Λ/∂θ_m), on top of the gradient of d the deviance function gives.
Everything is evaluated on the standardized problem of the fit (:mod:`skmixed.standardize`), where
r² = s²c·r̃², θ = θ̃/√c and d = d̃ + 2n log s.

A fixed effect β_j is profiled as lme4 does, as the deviance of the model with x_jβ_j moved to the
offset (:class:`FixedEffectProblem`).  On the standardized problem β_j = b is the linear constraint
a'β̃ = t with a = S⁻ᵀe_j and t = (b − γ_j)/s, so β̃ = t·a/a'a + Nη for a basis N of a's complement:
the response ỹ − t·X̃a/a'a and the fixed effects X̃N, whose cross-products follow from the fit's.

**GLMM.** The Laplace (or quadrature) deviance at (θ(φ), β), σ = 1 (:class:`GlmmDeviance`), with the
analytic gradient of :mod:`skmixed.laplace_gradient` where it is available and central differences
otherwise.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.linalg as la

from .deviance import GlmmObjective, deviance
from .laplace_gradient import LaplaceGradient
from .model import LinearMixedModel
from .sdcor import SdCor
from .standardize import Standardization

_FD_STEP = 1e-6  # relative step of the central differences where no analytic gradient is available


def central_gradient(f, x: np.ndarray) -> np.ndarray:
    """∇f at x by central differences (steps relative to |x|, at least ``_FD_STEP``)."""
    grad = np.empty(len(x))
    for i in range(len(x)):
        h = _FD_STEP * max(1.0, abs(x[i]))
        e = np.zeros(len(x))
        e[i] = h
        grad[i] = (f(x + e) - f(x - e)) / (2 * h)
    return grad


def pwrss_gradient(model: LinearMixedModel, sol) -> np.ndarray:
    """∂r²/∂θ of the standardized problem at a PLS solution (envelope theorem): −2 Σ_{E_m} (Z'r)_a û_b."""
    cp, (rows, cols, index) = model.cp, model.re.lambda_pattern
    ztr = cp.Zty - cp.ZtX @ sol.beta - cp.ZtZ @ sol.b
    return -2.0 * np.bincount(index, ztr[rows] * sol.u[cols], minlength=model.re.n_theta)


class LmmDeviance:
    """φ ↦ (D(φ), ∇D) of an LMM, for ``model`` (an ML record on the fit's standardized coordinates) and ``std``
    (the fit's standardization, which maps those coordinates to the user's)."""

    def __init__(self, model: LinearMixedModel, sdcor: SdCor, std: Standardization, beta_tilde=None):
        self.model, self.sdcor, self.std = model, sdcor, std
        self.dev = deviance(model).standardized
        self._beta_tilde = beta_tilde  # the full β̃ from the model's own (a reduced problem's)
        self.solution = None

    def __call__(self, phi: np.ndarray) -> tuple[float, np.ndarray]:
        sdcor, std, dev = self.sdcor, self.std, self.dev
        theta = sdcor.theta(phi)
        if theta is None or phi[-1] <= 0:
            return np.inf, np.full(len(phi), np.nan)
        theta_tilde = std.theta_tilde(theta)
        if dev.has_gradient:
            d, grad_d = dev.value_and_gradient(theta_tilde)
        else:
            d, grad_d = dev(theta_tilde), central_gradient(dev, theta_tilde)
        sol = dev.solve(theta_tilde)
        if sol is None or not np.isfinite(d):
            return np.inf, np.full(len(phi), np.nan)
        self.solution = sol
        n, sigma = self.model.cp.n, phi[-1]
        rho = std.s**2 * std.c * sol.pwrss / (n * sigma**2)
        value = d + 2 * n * np.log(std.s) + n * (rho - 1 - np.log(rho))
        grad_theta = grad_d + n * (rho - 1) * pwrss_gradient(self.model, sol) / sol.pwrss
        grad = np.sqrt(std.c) * (sdcor.jacobian(phi).T @ grad_theta)
        grad[-1] -= 2 * n * (rho - 1) / sigma
        return float(value), grad

    def beta(self) -> np.ndarray:
        """β on the user's scale at the last φ evaluated."""
        beta = self.solution.beta
        return self.std.beta(beta if self._beta_tilde is None else self._beta_tilde(beta))


class FixedEffectProblem:
    """The LMM with β_j fixed: for each value b, its :class:`LmmDeviance` and dD/db (see the module docstring)."""

    def __init__(self, model: LinearMixedModel, sdcor: SdCor, j: int):
        std = model.standardization
        self.model, self.sdcor, self.std, self.j = model, sdcor, std, j
        a = la.solve_triangular(std.S, np.eye(std.p)[:, j], trans="T")  # S⁻ᵀe_j
        self.v = a / (a @ a)
        self.N = la.null_space(a[None, :])

    def at(self, b: float) -> LmmDeviance:
        model, cp, std, v, N = self.model, self.model.cp, self.std, self.v, self.N
        t = (b - std.gamma[self.j]) / std.s
        XtXv = cp.XtX @ v
        reduced_cp = dataclasses.replace(
            cp,
            ZtX=cp.ZtX @ N,
            Zty=cp.Zty - t * (cp.ZtX @ v),
            XtX=N.T @ cp.XtX @ N,
            Xty=N.T @ (cp.Xty - t * XtXv),
            yty=float(cp.yty - 2 * t * (v @ cp.Xty) + t**2 * (v @ XtXv)),
        )
        reduced = dataclasses.replace(model, X=model.X @ N, y=model.y - t * (model.X @ v), cp=reduced_cp, REML=False)
        deviance_b = LmmDeviance(reduced, self.sdcor, std, beta_tilde=lambda eta: t * v + N @ eta)
        deviance_b.t = t
        return deviance_b

    def slope(self, deviance_b: LmmDeviance, phi: np.ndarray) -> float:
        """dD/db at the constrained optimum φ: −2sc·v'X̃'W̃r̃/σ², r̃ the standardized residual there."""
        cp, sol, std = self.model.cp, deviance_b.solution, self.std
        beta_tilde = deviance_b._beta_tilde(sol.beta)
        xtr = cp.Xty - cp.XtX @ beta_tilde - cp.ZtX.T @ sol.b
        return float(-2 * std.s * std.c * (self.v @ xtr) / phi[-1] ** 2)


class GlmmDeviance:
    """ψ = (φ, β) ↦ (−2 log L, ∇) of a GLMM fitted with nAGQ ≥ 1 (σ = 1: φ holds the SDs and correlations)."""

    def __init__(self, model, nAGQ: int, sdcor: SdCor):
        self.model, self.sdcor, self.k_phi = model, sdcor, len(sdcor.names)
        self.objective = GlmmObjective(model, nAGQ)
        pirls = self.objective.pirls
        self.gradient = LaplaceGradient(pirls) if nAGQ == 1 and LaplaceGradient.available(pirls) else None

    def _value(self, psi: np.ndarray) -> float:
        theta = self.sdcor.theta(psi[: self.k_phi])
        if theta is None:
            return np.inf
        return float(self.objective(np.concatenate([theta, psi[self.k_phi :]])))

    def __call__(self, psi: np.ndarray) -> tuple[float, np.ndarray]:
        phi, beta = psi[: self.k_phi], psi[self.k_phi :]
        theta = self.sdcor.theta(phi)
        if theta is None:
            return np.inf, np.full(len(psi), np.nan)
        if self.gradient is None:
            value = self._value(psi)
            return value, central_gradient(self._value, psi) if np.isfinite(value) else np.full(len(psi), np.nan)
        std = self.model.standardization
        value, grad = self.gradient(theta, std.beta_tilde(beta))
        k = len(theta)
        grad_beta = (std.S / std.s).T @ grad[k:]  # β̃ = S(β − γ)/s
        return float(value), np.concatenate([self.sdcor.jacobian(phi).T @ grad[:k], grad_beta])
