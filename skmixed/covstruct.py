"""Covariance structures Σ(φ) over the T levels of a time factor, as nlme, glmmTMB and mmrm name them.

A structure is written ``name(time | group)``: ``us`` (unstructured), ``diag`` (a variance per level: nlme's
``varIdent``), ``cs`` / ``csh`` (compound symmetry, homogeneous / heterogeneous variances), ``ar1`` / ``ar1h``
(first-order autoregressive over the level order), ``exp`` (continuous-time AR(1), correlation ρ^|t−s| for numeric
times t, s: nlme's ``corCAR1`` / ``corExp``), ``toep`` / ``toeph`` (Toeplitz: one correlation per lag).

Each gives the matrix R(φ) with Σ = σ²R(φ): σ² is profiled out of the likelihood (as lme4 profiles it), so R is
scaled by the variance of the first level.  A homogeneous structure's R is a correlation matrix C(φ); a
heterogeneous one's is DCD with D = diag(1, e^ψ₂, …, e^ψ_T) (the SD ratios to the first level, as nlme's
``varIdent`` reports them).  The correlation parameters are unconstrained reals mapped into the valid region:

* ``ar1``: ρ = tanh φ, C_ts = ρ^|t−s|.   ``exp``: ρ = 1/(1 + e^−φ) ∈ (0, 1), C_ts = ρ^|t−s| in time units.
* ``cs``: ρ = (e^φ − 1)/(e^φ + T − 1) ∈ (−1/(T−1), 1), the range where C is positive definite.
* ``toep``: the partial autocorrelations πₖ = tanh φₖ, turned into the lag correlations by the Durbin–Levinson
  recursion; every π ∈ (−1, 1)^(T−1) gives a positive definite Toeplitz C, and every such C has one π.
* ``us``: R = LL', L lower triangular with L₁₁ = 1, log-diagonal φ and free off-diagonal entries
  (a log-Cholesky parametrisation: every φ gives a positive definite R).

The maps are written with arithmetic that is analytic in φ, so the Jacobian ∂R/∂φ is exact by the complex step
(Squire and Trapp, "Using complex variables to estimate derivatives of real functions"): Im R(φ + ih eₖ)/h with
h = 1e−20 has no cancellation error.  The deviance's gradient (:mod:`skmixed.residual`) needs nothing else from a
structure.
"""

from __future__ import annotations

import re as regex
from dataclasses import dataclass

import numpy as np

from .exceptions import FormulaError

#: name → (correlation kind, heterogeneous variances)
STRUCTURES = {
    "us": ("us", True),
    "diag": ("none", True),
    "cs": ("cs", False),
    "csh": ("cs", True),
    "ar1": ("ar1", False),
    "ar1h": ("ar1", True),
    "exp": ("exp", False),
    "toep": ("toep", False),
    "toeph": ("toep", True),
}

_SPEC = regex.compile(r"^\s*([A-Za-z][A-Za-z0-9]*)\s*\(\s*(?:0\s*\+\s*)?([^|()]+?)\s*\|\s*([^|()]+?)\s*\)\s*$")


@dataclass(frozen=True)
class StructureSpec:
    """A parsed ``name(time | group)``."""

    name: str
    time: str
    group: str

    def __str__(self) -> str:
        return f"{self.name}({self.time} | {self.group})"


def parse_structure(text) -> StructureSpec:
    """``"us(visit | subject)"`` → its name, time variable and grouping variable (FormulaError otherwise)."""
    if not isinstance(text, str):
        raise FormulaError(f"residual= takes a structure such as 'us(visit | subject)', not {type(text).__name__}")
    match = _SPEC.match(text)
    if match is None:
        raise FormulaError(
            f"residual={text!r} is not a structure: write name(time | group), e.g. 'us(visit | subject)' or "
            f"'ar1(visit | subject)', with name one of {', '.join(STRUCTURES)}"
        )
    name, time, group = match.groups()
    if name not in STRUCTURES:
        raise FormulaError(f"unknown covariance structure {name!r} in {text!r}: use one of {', '.join(STRUCTURES)}")
    return StructureSpec(name, time.strip(), group.strip())


class Structure:
    """R(φ) over T levels at ``positions`` (level order for the discrete structures, numeric times for ``exp``)."""

    def __init__(self, name: str, positions: np.ndarray):
        self.name = name
        self.kind, self.heterogeneous = STRUCTURES[name]
        self.positions = np.asarray(positions, dtype=float)
        self.T = len(self.positions)

    @property
    def n_corr(self) -> int:
        """The number of correlation parameters."""
        T = self.T
        return {"us": T * (T + 1) // 2 - 1, "none": 0, "cs": 1, "ar1": 1, "exp": 1, "toep": T - 1}[self.kind]

    @property
    def n_par(self) -> int:
        """The number of parameters φ of R (σ² not counted)."""
        return self.n_corr + (self.T - 1 if self.heterogeneous and self.kind != "us" else 0)

    @property
    def n_sigma_par(self) -> int:
        """The number of parameters of Σ = σ²R (σ² counted): the model's share of ``npar``."""
        return self.n_par + 1

    def matrix(self, phi: np.ndarray) -> np.ndarray:
        """R(φ), T × T (complex if φ is: see the module docstring)."""
        phi = np.asarray(phi)
        if self.kind == "us":
            return self._unstructured(phi)
        C = self._correlation(phi[: self.n_corr])
        if not self.heterogeneous:
            return C
        d = np.exp(np.concatenate([np.zeros(1, dtype=phi.dtype), phi[self.n_corr :]]))
        return d[:, None] * C * d[None, :]

    def _unstructured(self, phi):
        T = self.T
        L = np.zeros((T, T), dtype=phi.dtype)
        rows, cols = np.tril_indices(T)
        values = np.concatenate([np.zeros(1, dtype=phi.dtype), phi])
        diagonal = rows == cols
        L[rows, cols] = np.where(diagonal, np.exp(np.where(diagonal, values, 0)), values)
        return L @ L.T

    def _correlation(self, phi):
        T, dtype = self.T, phi.dtype
        if self.kind == "none":
            return np.eye(T, dtype=dtype)
        lag = np.abs(self.positions[:, None] - self.positions[None, :])
        if self.kind == "cs":
            e = np.exp(phi[0])
            rho = (e - 1.0) / (e + T - 1.0)
            return np.where(lag == 0, 1.0, rho).astype(dtype)
        if self.kind == "ar1":
            index = np.abs(np.arange(T)[:, None] - np.arange(T)[None, :])
            return np.tanh(phi[0]) ** index
        if self.kind == "exp":
            return np.exp(-lag * np.log1p(np.exp(-phi[0])))
        acf = levinson_acf(np.tanh(phi))
        index = np.abs(np.arange(T)[:, None] - np.arange(T)[None, :])
        return acf[index]

    def jacobian(self, phi: np.ndarray) -> np.ndarray:
        """∂R/∂φₖ for each k, (n_par, T, T), by the complex step."""
        h = 1e-20
        out = np.empty((len(phi), self.T, self.T))
        for k in range(len(phi)):
            step = np.asarray(phi, dtype=complex)
            step[k] += 1j * h
            out[k] = self.matrix(step).imag / h
        return out

    def chain(self, phi: np.ndarray, G: np.ndarray) -> np.ndarray:
        """∂d/∂φ from G = ∂d/∂R (symmetric): Σ_ts G_ts ∂R_ts/∂φₖ.  For ``us``, R = LL' gives ∂d/∂L = 2GL directly
        (chained through L's exp diagonal); for the others, the exact Jacobian."""
        if self.kind != "us":
            return np.einsum("kts,ts->k", self.jacobian(phi), G)
        rows, cols = np.tril_indices(self.T)
        values = np.concatenate([[0.0], phi])
        L = np.zeros((self.T, self.T))
        L[rows, cols] = np.where(rows == cols, np.exp(np.where(rows == cols, values, 0.0)), values)
        dL = (2.0 * G @ L)[rows, cols]
        return np.where(rows == cols, dL * L[rows, cols], dL)[1:]

    def start(self, S: np.ndarray) -> np.ndarray:
        """φ from an empirical covariance S of the residuals (NaN where a pair is never observed together)."""
        T = self.T
        var = np.diag(S)
        var = np.where(np.isfinite(var) & (var > 0), var, np.nanmean(var[var > 0]) if np.any(var > 0) else 1.0)
        if self.kind == "us":
            R = np.where(np.isfinite(S), S, 0.0) / var[0]
            np.fill_diagonal(R, var / var[0])
            try:
                L = np.linalg.cholesky(R)
            except np.linalg.LinAlgError:
                L = np.diag(np.sqrt(var / var[0]))
            rows, cols = np.tril_indices(T)
            values = np.where(rows == cols, np.log(np.maximum(L[rows, cols], 1e-8)), L[rows, cols])
            return values[1:]
        sd = np.sqrt(var)
        corr = S / np.outer(sd, sd)
        phi = np.zeros(self.n_par)
        lag1 = np.nanmean(np.diag(corr, 1)) if T > 1 and np.isfinite(np.diag(corr, 1)).any() else 0.0
        lag1 = float(np.clip(np.nan_to_num(lag1), -0.8, 0.8))
        if self.kind == "cs":
            off = corr[~np.eye(T, dtype=bool)]
            rho = float(np.clip(np.nan_to_num(np.nanmean(off)) if np.isfinite(off).any() else 0.0, 0.0, 0.8))
            phi[0] = np.log((1.0 + (T - 1) * rho) / (1.0 - rho))
        elif self.kind in ("ar1", "toep"):
            phi[0] = np.arctanh(lag1)
        elif self.kind == "exp":
            spacing = np.median(np.diff(self.positions)) if T > 1 else 1.0
            rho = float(np.clip(max(lag1, 0.05) ** (1.0 / spacing), 0.05, 0.95))
            phi[0] = np.log(rho / (1.0 - rho))
        if self.heterogeneous:
            phi[self.n_corr :] = 0.5 * np.log(var[1:] / var[0])
        return phi

    def parameter_names(self) -> list[str]:
        """Names of φ's entries, for the optimizer's summary."""
        if self.kind == "us":
            rows, cols = np.tril_indices(self.T)
            names = [f"log L[{r + 1},{c + 1}]" if r == c else f"L[{r + 1},{c + 1}]" for r, c in zip(rows, cols)]
            return names[1:]
        corr = {"none": [], "cs": ["rho*"], "ar1": ["atanh rho"], "exp": ["logit rho"]}.get(
            self.kind, [f"atanh pacf{k}" for k in range(1, self.T)]
        )
        return corr + ([f"log sd ratio {t + 1}" for t in range(1, self.T)] if self.heterogeneous else [])


def levinson_acf(pacf: np.ndarray) -> np.ndarray:
    """The autocorrelations r₀ = 1, r₁, …, r_K of the stationary process with partial autocorrelations π₁..π_K
    (the Durbin–Levinson recursion run backwards: rₖ = Σⱼ aⱼrₖ₋ⱼ + πₖ(1 − Σⱼ aⱼrⱼ), with the AR coefficients a of
    order k − 1 updated as aⱼ ← aⱼ − πₖaₖ₋ⱼ)."""
    r = [np.ones((), dtype=pacf.dtype)]
    a: list = []
    for k in range(1, len(pacf) + 1):
        p = pacf[k - 1]
        fitted = sum(a[j - 1] * r[k - j] for j in range(1, k))
        explained = sum(a[j - 1] * r[j] for j in range(1, k))
        r.append(fitted + p * (1.0 - explained))
        a = [a[j - 1] - p * a[k - j - 1] for j in range(1, k)] + [p]
    return np.array(r)


# --- random-effect covariance structures in the formula: ``diag(1 + x | g)`` and the others ------------------------
#: the names a formula term may carry, as lme4 2.0 and glmmTMB write them; ``cs`` has a variance per effect and ``ar1``
#: one variance, as glmmTMB 1.1.5 defines them (``homar1`` is lme4 2.0's name for that same homogeneous AR(1))
RE_STRUCTURES = ("us", "diag", "homdiag", "cs", "homcs", "ar1", "homar1")


def re_n_psi(name: str, k: int) -> int:
    """The number of parameters ψ of a k-effect term's relative covariance under structure ``name``."""
    return {"us": k * (k + 1) // 2, "diag": k, "homdiag": 1, "cs": k + 1, "homcs": 2, "ar1": 2, "homar1": 2}[name]


def re_psi_lower(name: str, k: int) -> np.ndarray:
    """ψ's lower bounds: SDs (relative to σ) at 0, the correlation's parameter unbounded."""
    n_sd = {"diag": k, "homdiag": 1, "cs": k, "homcs": 1, "ar1": 1, "homar1": 1}[name]
    return np.concatenate([np.zeros(n_sd), np.full(re_n_psi(name, k) - n_sd, -np.inf)])


def re_psi_init(name: str, k: int) -> np.ndarray:
    """ψ at Λ = I, lme4's start: unit SDs, no correlation."""
    lower = re_psi_lower(name, k)
    return np.where(lower == 0, 1.0, 0.0)


def _re_correlation(name: str, k: int, phi: float) -> np.ndarray:
    index = np.abs(np.arange(k)[:, None] - np.arange(k)[None, :])
    if name in ("cs", "homcs"):
        rho = (np.exp(phi) - 1.0) / (np.exp(phi) + k - 1.0)
        return np.where(index == 0, 1.0, rho)
    return np.tanh(phi) ** index


def re_template(name: str, psi: np.ndarray, k: int) -> np.ndarray:
    """The k × k lower-triangular T with TT' the term's relative covariance (Σ_b = σ²TT'):
    T = D·chol(C) for SDs D = diag(sd) and the structure's correlation C (identity for the diagonal ones)."""
    psi = np.asarray(psi, dtype=float)
    if name in ("diag", "homdiag"):
        return np.diag(np.broadcast_to(psi, (k,)).copy())
    sd = psi[:k] if name == "cs" else np.full(k, psi[0])
    return sd[:, None] * np.linalg.cholesky(_re_correlation(name, k, psi[-1]))


def re_psi_from_cov(name: str, S: np.ndarray) -> np.ndarray:
    """ψ whose structure is closest to the relative covariance S in its variances and mean correlation (the
    inverse of :func:`re_template` on covariances the structure has; a start for anything else)."""
    k = len(S)
    sd = np.sqrt(np.maximum(np.diag(S), 0.0))
    if name == "diag":
        return sd
    if name == "homdiag":
        return np.array([np.sqrt(np.mean(sd**2))])
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.nan_to_num(S / np.outer(sd, sd))
    if name in ("cs", "homcs"):
        rho = float(np.clip(corr[~np.eye(k, dtype=bool)].mean(), -1.0 / (k - 1) + 1e-6, 1 - 1e-6))
        phi = np.log((1.0 + (k - 1) * rho) / (1.0 - rho))
    else:
        phi = np.arctanh(float(np.clip(np.diag(corr, 1).mean(), -1 + 1e-6, 1 - 1e-6)))
    sds = sd if name == "cs" else np.array([np.sqrt(np.mean(sd**2))])
    return np.concatenate([sds, [phi]])
