"""Fit on standardized data, report on the user's: the numbers must not depend on units or location.

The profiled deviance is built from cross-products (Bates' method), and cross-products lose
digits to cancellation when a column's mean is large against its spread: with y + 10⁹ the
penalized RSS ``y'y − ‖cu‖² − ‖cβ‖²`` keeps no correct digit, and with x + 10⁶ so does
``X'X − RZX'RZX``.  The model is therefore fitted to an equivalent problem whose cross-products
are well scaled, and the estimates are mapped back exactly.  With c the mean weight,
``X = X̃S`` (S upper triangular), γ the weighted least-squares coefficients of y − offset on X
and s the root mean square of its weighted residuals:

    w̃ = w / c,   X̃ = X S⁻¹ (w̃-orthogonal columns of mean square 1),   ỹ = (y − offset − Xγ) / s.

The model ``ỹ = X̃β̃ + Zb̃ + ε̃``, ``b̃ ~ N(0, σ̃²Λ̃Λ̃')``, ``ε̃ ~ N(0, σ̃²W̃⁻¹)`` is the user's model
reparametrised, with

    β = γ + s S⁻¹β̃,   b = s b̃,   σ = s√c σ̃,   θ = θ̃ / √c,   u = s√c ũ,   RX = √c R̃X S,

and −2 log-likelihoods that differ by constants (the Jacobian of y ↦ ỹ, and for REML the
determinant of X's change of basis):

    ML:  d = d̃ + 2n log s,        REML:  d = d̃ + 2(n − p) log s + 2 log|det S|.

A GLMM's response cannot be shifted or scaled, nor its prior weights rescaled, so only X is
(``response=False``): γ = 0, s = c = 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as la

from .exceptions import DataError
from .pls import PlsSolution

#: a residual root mean square this small against the response's magnitude is rounding: y is exactly linear in X
_EXACT_FIT = 64 * np.finfo(float).eps


@dataclass
class Standardization:
    """The change of variables between the user's model and the one fitted (see the module docstring)."""

    S: np.ndarray  # p × p upper triangular: X = X̃S
    gamma: np.ndarray  # p
    s: float
    c: float
    n: int

    @property
    def p(self) -> int:
        return self.S.shape[0]

    @property
    def log_det_S(self) -> float:
        return float(np.log(np.abs(np.diag(self.S))).sum())

    def beta(self, beta_tilde: np.ndarray) -> np.ndarray:
        if not self.p:
            return np.zeros(0)
        return self.gamma + self.s * la.solve_triangular(self.S, beta_tilde)

    def beta_tilde(self, beta: np.ndarray) -> np.ndarray:
        """β̃ for a β on the user's scale (a start value)."""
        return self.S @ (np.asarray(beta, dtype=float) - self.gamma) / self.s

    def theta(self, theta_tilde: np.ndarray) -> np.ndarray:
        return np.asarray(theta_tilde, dtype=float) / np.sqrt(self.c)

    def theta_tilde(self, theta: np.ndarray) -> np.ndarray:
        return np.asarray(theta, dtype=float) * np.sqrt(self.c)

    def RX(self, RX_tilde: np.ndarray) -> np.ndarray:
        return np.sqrt(self.c) * RX_tilde @ self.S

    def vcov(self, vcov_tilde: np.ndarray) -> np.ndarray:
        """Cov(β) from Cov(β̃): s² S⁻¹ V S⁻ᵀ."""
        if not self.p:
            return vcov_tilde
        half = la.solve_triangular(self.S, la.solve_triangular(self.S, vcov_tilde.T).T * self.s**2)
        return (half + half.T) / 2

    def solution(self, sol: PlsSolution, reml: bool) -> PlsSolution:
        """The fitted problem's PLS solution on the user's scale."""
        root_c = np.sqrt(self.c)
        return PlsSolution(
            theta=self.theta(sol.theta),
            beta=self.beta(sol.beta),
            u=self.s * root_c * sol.u,
            b=self.s * sol.b,
            pwrss=self.s**2 * self.c * sol.pwrss,
            ldL2=sol.ldL2,
            ldRX2=sol.ldRX2 + self.p * np.log(self.c) + 2 * self.log_det_S,
            RX=self.RX(sol.RX),
            deviance=self.objective(sol.deviance, reml),
            sigma=self.s * root_c * sol.sigma,
        )

    def objective(self, value: float, reml: bool) -> float:
        """The user's −2 log-likelihood (ML) or REML criterion from the fitted problem's."""
        if reml:
            return value + 2 * (self.n - self.p) * np.log(self.s) + 2 * self.log_det_S
        return value + 2 * self.n * np.log(self.s)


def standardize(X: np.ndarray, y: np.ndarray, weights: np.ndarray, response: bool = True):
    """The fitted problem's (X̃, ỹ, w̃) and the :class:`Standardization` back to the user's.

    ``y`` has the offset removed; every weight is positive (zero-weight rows are dropped
    before).  One Householder QR of √w̃·X gives S and X̃; γ and the residual come from its Q,
    the residual projected twice so that a large mean leaves no trace ("twice is enough").
    """
    n, p = X.shape
    unit = bool(np.all(weights == 1.0))  # then c = 1 and √w̃ = 1: the products by them are left out (exact)
    c = 1.0 if unit or not response else float(np.mean(weights))
    w = weights if unit else weights / c
    sw = None if unit else np.sqrt(w)
    if p:
        Q, R = la.qr(X if unit else X * sw[:, None], mode="economic")
        if np.any(np.diag(R) < 0):
            sign = np.where(np.diag(R) < 0, -1.0, 1.0)
            Q, R = Q * sign, R * sign[:, None]
        X_tilde = Q * np.sqrt(n) if unit else Q * (np.sqrt(n) / sw[:, None])
        S = R / np.sqrt(n)
    else:
        Q, X_tilde, S = np.zeros((n, 0)), X, np.zeros((0, 0))
    if not response:
        return X_tilde, y, weights, Standardization(S, np.zeros(p), 1.0, 1.0, n)
    yw = y if unit else y * sw
    magnitude = float(max(yw.max(), -yw.min()))  # NaN if any value is NaN
    if magnitude == 0 or not np.isfinite(magnitude):
        raise DataError(
            "the response is zero in every row: there is nothing to model"
            if magnitude == 0
            else "the response has non-finite values"
        )
    r = yw / magnitude  # prescaled: squares of values near 1e300 would overflow
    coef = Q.T @ r
    r = r - Q @ coef
    correction = Q.T @ r
    r = r - Q @ correction
    coef = coef + correction  # γ in Q's coordinates: γ = R⁻¹ coef
    s = float(np.sqrt(r @ r / n))
    if s <= _EXACT_FIT:
        raise DataError(
            "the response is an exact linear function of the fixed effects (a constant response, for example): "
            "the residuals are all zero, so there is no variance left to estimate; check the response column"
        )
    gamma = magnitude * la.solve_triangular(R, coef) if p else np.zeros(0)
    return X_tilde, r / s if unit else r / (s * sw), w, Standardization(S, gamma, s * magnitude, c, n)
