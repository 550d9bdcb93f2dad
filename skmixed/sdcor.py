"""lme4's "sdcor" scale for the covariance parameters: each term's standard deviations and correlations, then σ.

θ is each term's relative covariance factor T (``Var(b) = σ²TT'``) in Cholesky form; intervals, profiles and
bootstrap replicates are reported on the scale a reader knows: per term the SDs ``σ·√diag(TT')`` of its random
effects and their correlations, and the residual SD σ of an LMM.  The names are those of lme4's ``profile(signames =
FALSE)`` but for the order of a correlation's effects, ``sd_<effect>|<group>``,
``cor_<effect1>.<effect2>|<group>`` (effect1 and effect2 as ``varcorr``'s var1 and var2) and ``sigma``, in lme4's
order: a term's parameters in θ's order (T's lower triangle column by column, an SD for each diagonal entry and
a correlation for each entry below it), so that φ and θ share their positions.

Back from φ = (SDs, correlations[, σ]) to θ: with D = diag(SD/σ) and C the correlation matrix of a term,
``TT' = DCD``, so ``T = D·chol(C)`` — lower triangular with a non-negative diagonal, and defined when some SD is
0 or a correlation is ±1 (a semi-definite C).  Its derivatives give the chain rule from ∂/∂θ to ∂/∂φ; for a
correlation that of the Cholesky factor, ``dL = L·Φ(L⁻¹ dC L⁻ᵀ)`` (Φ: the lower triangle with its diagonal
halved), where C is positive definite.
"""

from __future__ import annotations

import numpy as np

from .reterms import RandomEffects
from .variance import group_names

#: a correlation this close to ±1 is moved inside for the derivative (dL grows as 1/√(1 − ρ²) there)
_COR_EDGE = 1e-12


def _chol_semidefinite(C: np.ndarray) -> np.ndarray | None:
    """The lower Cholesky factor of a correlation matrix, allowing it to be singular; None if it is indefinite."""
    k = len(C)
    L = np.zeros((k, k))
    for j in range(k):
        d = C[j, j] - L[j, :j] @ L[j, :j]
        if d < -1e-10:
            return None
        L[j, j] = np.sqrt(max(d, 0.0))
        for i in range(j + 1, k):
            L[i, j] = (C[i, j] - L[i, :j] @ L[j, :j]) / L[j, j] if L[j, j] > 0 else 0.0
    return L


class SdCor:
    """The map between (θ, σ) and φ, the SDs and correlations of every term (and σ when ``has_sigma``)."""

    def __init__(self, re: RandomEffects, has_sigma: bool):
        self.re, self.has_sigma = re, has_sigma
        names, kinds = [], []
        for name, t in zip(group_names(re), re.terms):
            for r, c in t.tril:
                names.append(f"sd_{t.effects[r]}|{name}" if r == c else f"cor_{t.effects[c]}.{t.effects[r]}|{name}")
                kinds.append("sd" if r == c else "cor")
        if has_sigma:
            names.append("sigma")
            kinds.append("sigma")
        self.names, self.kinds = names, np.array(kinds)

    @property
    def lower(self) -> np.ndarray:
        return np.where(self.kinds == "cor", -1.0, 0.0)

    @property
    def upper(self) -> np.ndarray:
        return np.where(self.kinds == "cor", 1.0, np.inf)

    def sigma(self, phi: np.ndarray) -> float:
        return float(phi[-1]) if self.has_sigma else 1.0

    def _rows(self, i: int) -> slice:
        return slice(self.re.theta_offsets[i], self.re.theta_offsets[i + 1])

    def phi(self, theta: np.ndarray, sigma: float = 1.0) -> np.ndarray:
        """φ at (θ, σ); the correlations of an effect with SD 0 are undefined: 0 here (any value gives the same
        model)."""
        out = np.empty(len(self.names))
        for i, t in enumerate(self.re.terms):
            T = t.T(self.re.term_theta(theta, i))
            V = T @ T.T
            sd = np.sqrt(np.diag(V))
            denominator = np.outer(sd, sd)
            C = np.clip(np.divide(V, denominator, out=np.zeros_like(V), where=denominator > 0), -1, 1)
            out[self._rows(i)] = [sigma * sd[r] if r == c else C[r, c] for r, c in t.tril]
        if self.has_sigma:
            out[-1] = sigma
        return out

    def _term(self, phi: np.ndarray, i: int):
        """Term i's effects' relative SDs (SD/σ) and correlation matrix at φ."""
        t, values = self.re.terms[i], phi[self._rows(i)]
        d, C = np.empty(t.k), np.eye(t.k)
        for (r, c), value in zip(t.tril, values):
            if r == c:
                d[r] = value / self.sigma(phi)
            else:
                C[r, c] = C[c, r] = value
        return t, d, C

    def theta(self, phi: np.ndarray) -> np.ndarray | None:
        """θ at φ, or None where some term's correlations do not form a correlation matrix."""
        out = []
        for i in range(len(self.re.terms)):
            t, d, C = self._term(phi, i)
            L = _chol_semidefinite(C)
            if L is None:
                return None
            out.append([d[r] * L[r, c] for r, c in t.tril])
        return np.concatenate(out)

    def jacobian(self, phi: np.ndarray) -> np.ndarray:
        """∂θ/∂φ (n_theta × len(φ)) at a φ whose correlation matrices are positive semi-definite: block diagonal
        by term, with σ's column (T = D·chol(C), D = diag(SD/σ)) last."""
        J = np.zeros((self.re.n_theta, len(phi)))
        sigma = self.sigma(phi)
        for i in range(len(self.re.terms)):
            t, d, C = self._term(phi, i)
            rows = self._rows(i)
            base = self.re.theta_offsets[i]
            L = _chol_semidefinite(C)
            if self.has_sigma:
                J[rows, -1] = [-d[r] * L[r, c] / sigma for r, c in t.tril]
            Linv = None
            for m, (a, b) in enumerate(t.tril):
                if a == b:  # ∂T/∂sd_a = e_a e_a'L / σ
                    J[rows, base + m] = [L[r, c] / sigma if r == a else 0.0 for r, c in t.tril]
                    continue
                if Linv is None:
                    Cs = np.clip(C, -1 + _COR_EDGE, 1 - _COR_EDGE)
                    np.fill_diagonal(Cs, 1 + _COR_EDGE)
                    Ls = np.linalg.cholesky(Cs)
                    Linv = np.linalg.inv(Ls)
                dC = np.zeros((t.k, t.k))
                dC[a, b] = dC[b, a] = 1.0
                M = Linv @ dC @ Linv.T
                dT = d[:, None] * (Ls @ (np.tril(M) - np.diag(np.diag(M)) / 2))
                J[rows, base + m] = [dT[r, c] for r, c in t.tril]
        return J
