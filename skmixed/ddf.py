"""Denominator degrees of freedom for t and F tests of an LMM's fixed effects: Satterthwaite's method, as lmerTest
computes it, and the choice between it and Kenward–Roger's (:mod:`skmixed.kenward_roger`).

Satterthwaite's method (Kuznetsova, Brockhoff & Christensen, "lmerTest Package: Tests in Linear Mixed Effects
Models", J. Stat. Softw. 82(13), 2017).  The variance parameters are φ = (θ, σ), and the deviance as a function
of them, not profiled over σ, is

    f(θ, σ) = log|A(θ)| + r²(θ)/σ² + n log(2πσ²)            (ML)
    f(θ, σ) = ... + log|RX'RX(θ)| − p log(2πσ²)            (REML: n − p in place of n)

with A = Λ'Z'WZΛ + I and r² the penalized residual sum of squares (:mod:`skmixed.pls`).  Its Hessian H at the
estimate gives the asymptotic covariance of φ̂, 𝒜 = 2H⁻¹, and V(φ) = σ²(RX'RX)⁻¹(θ) is vcov(β̂) as a function of
φ.  For a contrast l'β with variance v = l'Vl and gradient g = (l' ∂V/∂φᵢ l)ᵢ,

    df = 2 v² / (g'𝒜g),

and an F test of a q-row L takes the eigenvectors of LVL' as q independent t tests whose df combine as
lmerTest's ``get_Fstat_ddf`` combines them (:mod:`skmixed.ftests`).

How the derivatives are taken.  lmerTest differentiates f and V numerically (numDeriv's Richardson
extrapolation on the whole of f).  Here the σ derivatives are exact (f is explicit in σ; ∂V/∂σ = 2V/σ), and so is
∂r²/∂θₘ = −2 (Z'Wr)'Eₘû (the envelope theorem; Eₘ = ∂Λ/∂θₘ).  The θ block of H and the θ columns of the Jacobian
of V are central differences: of the analytic gradient of f where the deviance function has one (2k solves for k
θ's, steps 10⁻⁴ of each θ's natural scale), else of f's values with one Richardson step (steps 10⁻² and
½·10⁻²).  A θ's natural scale is the norm of its row of the relative covariance factor T (the SD of that
random effect over σ), or 1/rms of its Z column where that row is zero: the steps, and so the numbers, do not
depend on the units of the covariates or of y.  Accuracy: at lme4's estimates the df agree with lmerTest's to
10⁻⁷ (relative; lmerTest's numerical derivatives), and the gradient and value differences with each other to
10⁻⁶ or better; on sleepstudy's random-slope model, a balanced design whose exact df are 17, they are 17 to 10⁻⁸
(lmerTest prints 16.99973 and 16.99998, at lme4's θ, which is short of the optimum).

Where H is not positive definite (a singular fit, a fit not at a minimum) the inverse is Moore–Penrose's over the
eigenvalues above 10⁻⁸ of the largest, in coordinates scaled by those natural scales, with lmerTest's warnings.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .blas import one_blas_thread
from .exceptions import ConvergenceWarning, OptionError

#: the df methods, by the names a user may give (case and ``-``/``_``/spaces ignored)
_METHODS = {
    "satterthwaite": "Satterthwaite",
    "kenwardroger": "Kenward-Roger",
    "kr": "Kenward-Roger",
    "none": None,
    "lme4": None,
}
#: the step of the central differences of an analytic gradient, relative to each θ's natural scale
GRADIENT_STEP = 1e-5
#: the first step of the second differences of values (then half of it, and Richardson's extrapolation)
VALUE_STEP = 1e-2
#: eigenvalues of the scaled Hessian below this fraction of the largest count as zero (lmerTest: 1e-8, absolute)
EIGEN_TOL = 1e-8


def ddf_method(ddf, allow_none: bool = True) -> str | None:
    """``"Satterthwaite"``, ``"Kenward-Roger"`` or None (lme4's tests without df) for what the user wrote."""
    if ddf is None and allow_none:
        return None
    key = "".join(ch for ch in str(ddf).lower() if ch.isalnum()) if isinstance(ddf, str) else None
    if key in _METHODS and (_METHODS[key] is not None or allow_none):
        return _METHODS[key]
    choices = "'Satterthwaite' (the default), 'Kenward-Roger' ('kr')" + (" or None (no df)" if allow_none else "")
    raise OptionError(f"ddf must be {choices}, not {ddf!r}")


@dataclass(frozen=True)
class Satterthwaite:
    """What Satterthwaite's df need from a fit: vcov(β̂), 𝒜 = cov(φ̂) and ∂vcov(β̂)/∂φ (lmerTest's slots
    ``vcov_beta``, ``vcov_varpar`` and ``Jac_list``), φ = (θ, σ)."""

    vcov_beta: np.ndarray  # p × p
    vcov_varpar: np.ndarray  # (k + 1) × (k + 1)
    jacobian: np.ndarray  # (k + 1) × p × p

    def variance_and_df(self, L) -> tuple[np.ndarray, np.ndarray]:
        """For each row l of L: l'Vl and its df 2(l'Vl)²/(g'𝒜g)."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        var = np.einsum("ij,jk,ik->i", L, self.vcov_beta, L)
        g = np.einsum("ij,mjk,ik->im", L, self.jacobian, L)
        denominator = np.einsum("im,mn,in->i", g, self.vcov_varpar, g)
        with np.errstate(divide="ignore", invalid="ignore"):
            return var, 2 * var**2 / denominator


@one_blas_thread
def check_unstructured(m) -> None:
    """Satterthwaite's and Kenward–Roger's df differentiate in θ, free in every direction: not a structured term's."""
    if m.re.structured:
        raise OptionError(
            "Satterthwaite's and Kenward-Roger's df are not available for random-effect terms with a covariance "
            "structure (diag(...), cs(...), ar1(...), ...): use ddf=None (lme4's t values) or likelihood-ratio tests"
        )


def satterthwaite(m) -> Satterthwaite:
    """Satterthwaite's pieces for the LMM fit ``m`` (computed once per fit)."""
    check_unstructured(m)
    if "satterthwaite" not in m._cache:
        H, jacobian, scales = varpar_derivatives(m)
        m._cache["satterthwaite"] = Satterthwaite(m.vcov.to_numpy(), 2 * _pseudo_inverse(H, scales), jacobian)
    return m._cache["satterthwaite"]


def contrast_df(m, L, method: str = "Satterthwaite") -> np.ndarray:
    """The df of each row l of ``L`` as a t test of l'β (lmerTest's ``contest1D``; KR: pbkrtest's ``Lb_ddf``), an
    array with one df per row (a vector is one row).

    The matching variance is l'Vl with V from :func:`fixef_vcov`: vcov(β̂) for Satterthwaite, Kenward–Roger's
    adjusted Φ_A for Kenward–Roger.
    """
    method = ddf_method(method, allow_none=False)
    L = np.atleast_2d(np.asarray(L, dtype=float))
    check_unstructured(m)
    if method == "Kenward-Roger":
        from .kenward_roger import kenward_roger

        return kenward_roger(m).t_df(L)
    return satterthwaite(m).variance_and_df(L)[1]


def fixef_vcov(m, method: str | None = "Satterthwaite") -> np.ndarray:
    """The covariance of β̂ the tests use: vcov(β̂), or Kenward–Roger's adjusted Φ_A."""
    if ddf_method(method) == "Kenward-Roger":
        from .kenward_roger import kenward_roger

        check_unstructured(m)

        return kenward_roger(m).vcov_adjusted
    return m.vcov.to_numpy()


# --- derivatives of f and V ----------------------------------------------------------------------------------
def _state(m, theta: np.ndarray) -> dict:
    """At θ: log|A| [+ log|RX'RX|], r², (RX'RX)⁻¹ and ∂r²/∂θ on the user's scale (see the module docstring)."""
    sol = m.devfun.solve(theta)
    if sol is None:
        raise ArithmeticError(f"the deviance is not defined at θ = {theta}")
    re, cp, std = m.re, m.cp, m.standardization
    # Z'Wr from the cross-products of the standardized problem: r = s·r̃ and W = c·W̃ (skmixed.standardize)
    ztwr = std.c * std.s * (cp.Zty - cp.ZtX @ std.beta_tilde(sol.beta) - cp.ZtZ @ (sol.b / std.s))
    rows, cols, index = re.lambda_pattern
    Rinv = np.linalg.inv(sol.RX) if sol.RX.size else sol.RX
    return {
        "logdet": sol.ldL2 + (sol.ldRX2 if m.REML else 0.0),
        "r2": sol.pwrss,
        "Cinv": Rinv @ Rinv.T,
        "grad_r2": -2.0 * np.bincount(index, ztwr[rows] * sol.u[cols], minlength=len(theta)),
    }


def _gradient(m, theta: np.ndarray, sigma2: float) -> tuple[np.ndarray, np.ndarray]:
    """∂f/∂θ at (θ, σ̂) from the deviance function's analytic gradient, and (RX'RX)⁻¹ at θ.

    The profiled deviance d(θ) = log|A| [+ log|RX'RX|] + n' log r² + const has ∂d = ∂logdet + n'∂r²/r², so
    ∂f/∂θ = ∂logdet + ∂r²/σ² = ∂d − n'∂r²/r² + ∂r²/σ² (n' = n, or n − p for REML).
    """
    _, grad_d = m.devfun.value_and_gradient(theta)
    state = _state(m, theta)
    n_prime = m.nobs - (len(m.fixef) if m.REML else 0)
    g = state["grad_r2"]
    return grad_d - n_prime * g / state["r2"] + g / sigma2, state["Cinv"]


def natural_scales(m) -> np.ndarray:
    """Per θ element, the norm of its row of T (that random effect's SD over σ); 1/rms of its Z column (weighted)
    where the row is zero."""
    re, theta = m.re, m.theta
    Zw2 = m.standardization.c * m.cp.ZtZ.diagonal()  # Σ w z² per column of Z: the diagonal of Z'WZ = c·Z'W̃Z
    out = []
    for i, t in enumerate(re.terms):
        T = t.T(re.term_theta(theta, i))
        columns = Zw2[re.col_offsets[i] : re.col_offsets[i + 1]].reshape(t.n_levels, t.k).sum(axis=0)
        rms = np.sqrt(columns / m.nobs)
        for row, _ in t.tril:
            norm = np.linalg.norm(T[row])
            out.append(norm if norm > 0 else 1.0 / max(rms[row], np.finfo(float).tiny))
    return np.array(out)


def varpar_derivatives(m, use_gradient: bool | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """H, the Hessian of f at φ̂ = (θ̂, σ̂), the Jacobian ∂V/∂φ ((k + 1) × p × p) and φ's natural scales.

    ``use_gradient``: difference the analytic gradient (default where the deviance function has one) or the
    values.
    """
    theta, sigma = np.array(m.theta, dtype=float), float(m.sigma)
    sigma2 = sigma**2
    scales = natural_scales(m)
    if use_gradient is None:
        use_gradient = m.devfun.has_gradient
    H_theta, J_theta = (_from_gradients if use_gradient else _from_values)(m, theta, sigma2, scales)
    here = _state(m, theta)
    k, n_prime = len(theta), m.nobs - (len(m.fixef) if m.REML else 0)
    H = np.empty((k + 1, k + 1))
    H[:k, :k] = (H_theta + H_theta.T) / 2
    H[:k, k] = H[k, :k] = -2.0 * here["grad_r2"] / sigma**3
    H[k, k] = 6.0 * here["r2"] / sigma2**2 - 2.0 * n_prime / sigma2
    jacobian = np.concatenate([sigma2 * J_theta, 2.0 * sigma * here["Cinv"][None]])
    return H, jacobian, np.append(scales, sigma)


def _from_gradients(m, theta, sigma2, scales):
    """Central differences of ∂f/∂θ and of (RX'RX)⁻¹, steps :data:`GRADIENT_STEP` × the natural scales."""
    k, p = len(theta), len(m.fixef)
    H, J = np.empty((k, k)), np.empty((k, p, p))
    for i in range(k):
        step = np.zeros(k)
        step[i] = GRADIENT_STEP * scales[i]
        g_plus, C_plus = _gradient(m, theta + step, sigma2)
        g_minus, C_minus = _gradient(m, theta - step, sigma2)
        H[:, i] = (g_plus - g_minus) / (2 * step[i])
        J[i] = (C_plus - C_minus) / (2 * step[i])
    return H, J


def _from_values(m, theta, sigma2, scales):
    """Second differences of f(·, σ̂) (two evaluations per pair of θ's beyond the axis points) and central
    differences of (RX'RX)⁻¹, at steps h and h/2 combined by Richardson's extrapolation (error O(h⁴))."""

    def f(state):
        return state["logdet"] + state["r2"] / sigma2

    k, p = len(theta), len(m.fixef)
    f0 = f(_state(m, theta))

    def differences(h: np.ndarray):
        E = np.diag(h)
        H, J = np.empty((k, k)), np.empty((k, p, p))
        plus, minus = np.empty(k), np.empty(k)
        for i in range(k):
            a, b = _state(m, theta + E[i]), _state(m, theta - E[i])
            plus[i], minus[i] = f(a), f(b)
            H[i, i] = (plus[i] - 2 * f0 + minus[i]) / h[i] ** 2
            J[i] = (a["Cinv"] - b["Cinv"]) / (2 * h[i])
        for i in range(k):
            for j in range(i):
                both = f(_state(m, theta + E[i] + E[j])) + f(_state(m, theta - E[i] - E[j]))
                H[i, j] = H[j, i] = (both - plus[i] - plus[j] - minus[i] - minus[j] + 2 * f0) / (2 * h[i] * h[j])
        return H, J

    h = VALUE_STEP * scales
    H1, J1 = differences(h)
    H2, J2 = differences(h / 2)
    return (4 * H2 - H1) / 3, (4 * J2 - J1) / 3


def _pseudo_inverse(H: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """H⁻¹, or Moore–Penrose's inverse over the positive eigenvalues of D H D (D = diag(scales)), warning of
    negative and near-zero eigenvalues as lmerTest does."""
    D = np.diag(scales)
    values, vectors = np.linalg.eigh(D @ H @ D)
    tol = EIGEN_TOL * max(np.abs(values).max(), np.finfo(float).tiny)
    negative, zero = values < -tol, np.abs(values) <= tol
    if negative.any():
        warnings.warn(
            f"the deviance's Hessian in the variance parameters has {negative.sum()} negative eigenvalue(s): the fit "
            "may not be at a minimum, and Satterthwaite's df use the positive part only",
            ConvergenceWarning,
            stacklevel=4,
        )
    if zero.any():
        warnings.warn(
            f"the deviance's Hessian in the variance parameters has {zero.sum()} eigenvalue(s) close to zero "
            "(a singular fit?): Satterthwaite's df use the positive part only",
            ConvergenceWarning,
            stacklevel=4,
        )
    keep = values > tol
    inverse = (vectors[:, keep] / values[keep]) @ vectors[:, keep].T
    return D @ inverse @ D
