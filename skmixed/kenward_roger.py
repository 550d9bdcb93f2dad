"""Kenward–Roger's adjusted covariance of β̂, its df and its scaled F test, as pbkrtest computes them, on the
random effects' q × q structure instead of pbkrtest's n × n matrices.

Kenward & Roger, "Small sample inference for fixed effects from restricted maximum likelihood", Biometrics 53
(1997); Halekoh & Højsgaard, "A Kenward–Roger approximation and parametric bootstrap methods for tests in linear
mixed models — the R package pbkrtest", J. Stat. Softw. 59(9) (2014).

pbkrtest writes the marginal covariance linearly in the variance parameters γ: each term's variances and
covariances (the lower triangle of σ²TT', column-wise) and the residual variance σ²,

    Σ = Σₖ γₖ Gₖ + σ² W⁻¹,   Gₖ = Z Dₖ Z',   Dₖ = I_ℓ ⊗ (e_a e_b' + e_b e_a')  (e_a e_a' on the diagonal),

(pbkrtest has I for W⁻¹: it ignores prior weights; with weights, W⁻¹ is the model's).  With Φ = vcov(β̂),
Pₖ = −X'Σ⁻¹GₖΣ⁻¹X, Qₖₗ = X'Σ⁻¹GₖΣ⁻¹GₗΣ⁻¹X, the expected information of γ

    ℐₖₗ = tr(Σ⁻¹GₖΣ⁻¹Gₗ) − 2 tr(ΦQₖₗ) + tr(ΦPₖΦPₗ),   𝒲 = 2ℐ⁻¹,

gives Φ_A = Φ + 2Φ(Σₖₗ 𝒲ₖₗ(Qₖₗ − PₖΦPₗ))Φ (Σ is linear in γ, so Kenward and Roger's Rₖₗ vanish), and for a
hypothesis Lβ = 0 of rank q the statistic F = (Lβ̂)'(LΦ_AL')⁻¹(Lβ̂)/q, its scale λ and df m from
A₁ = Σ 𝒲ₖₗ tr(ΘΦPₖΦ) tr(ΘΦPₗΦ), A₂ = Σ 𝒲ₖₗ tr(ΘΦPₖΦΘΦPₗΦ), Θ = L'(LΦL')⁻¹L (pbkrtest's ``.KR_adjust``).

Everything is reduced to q × q and q × p matrices (X, Z and Σ whitened by √W, Σ = σ²V₀, V₀ = I + ZΛΛ'Z',
A = Λ'Z'ZΛ + I): with F = ΛA⁻¹Λ'Z'Z and C = I − F,

    Z'V₀⁻¹Z = Z'Z C,   Z'V₀⁻¹X = C'Z'X,   V₀⁻¹X = X − ZΛA⁻¹Λ'Z'X,   Z'V₀⁻²Z = C'Z'Z C,
    tr(V₀⁻²) = n − 2 tr(F) + tr(F²),

so tr(Σ⁻¹GₖΣ⁻¹Gₗ) = σ⁻⁴ tr(Dₖ Z'V₀⁻¹Z Dₗ Z'V₀⁻¹Z) is a sum of elementwise products of its blocks.  The cost is
that of a dense q × q Cholesky factor and a few q × q products.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp

from .blas import one_blas_thread
from .exceptions import OptionError

#: the dense q × q work needs about 8 matrices of q² doubles; beyond this many bytes it is refused
MAX_BYTES = 4e9


@dataclass(frozen=True)
class KenwardRoger:
    """Φ = vcov(β̂), Kenward–Roger's Φ_A, the Pₖ (pbkrtest's attribute ``P``) and 𝒲 = 2ℐ⁻¹ (``W``)."""

    vcov: np.ndarray
    vcov_adjusted: np.ndarray
    P: np.ndarray  # K × p × p
    W: np.ndarray  # K × K

    def _a1_a2(self, L: np.ndarray) -> tuple[float, float]:
        Phi = self.vcov
        Theta = L.T @ np.linalg.solve(L @ Phi @ L.T, L)
        U = np.einsum("ij,kjl,lm->kim", Theta @ Phi, self.P, Phi)  # uₖ = ΘΦPₖΦ
        traces = np.einsum("kii->k", U)
        products = np.einsum("kij,lji->kl", U, U)  # tr(uₖuₗ)
        return float(traces @ self.W @ traces), float(np.sum(self.W * products))

    def ddf(self, L: np.ndarray) -> tuple[float, float]:
        """The denominator df m and the scale λ of the F statistic of the full-row-rank hypothesis L."""
        q = L.shape[0]
        A1, A2 = self._a1_a2(L)
        B = (A1 + 6 * A2) / (2 * q)
        g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
        denominator = 3 * q + 2 * (1 - g)
        c1, c2, c3 = g / denominator, (q - g) / denominator, (q + 2 - g) / denominator
        V0, V1, V2 = 1 + c1 * B, 1 - c2 * B, 1 - c3 * B
        V0 = 0.0 if abs(V0) < 1e-10 else V0
        rho = _div_zero(1 - A2 / q, V1) ** 2 * V0 / V2 / q
        df = 4 + (q + 2) / (q * rho - 1)
        scaling = 1.0 if abs(df - 2) < 0.01 else df * (1 - A2 / q) / (df - 2)
        return df, scaling

    def t_df(self, L: np.ndarray) -> np.ndarray:
        """The df of each row of L as a t test (pbkrtest's ``Lb_ddf``)."""
        return np.array([self.ddf(row[None, :])[0] for row in np.atleast_2d(L)])

    def ftest(self, L: np.ndarray, beta: np.ndarray, rhs: np.ndarray) -> tuple[float, float, int, float]:
        """Unscaled F (with Φ_A), scale λ, numerator and denominator df of Lβ = rhs (pbkrtest's ``KRmodcomp``)."""
        beta_h = np.linalg.pinv(L) @ rhs  # pbkrtest's betaH: Lβ = rhs is L(β − β_H) = 0
        L = _row_basis(L)
        q = L.shape[0]
        diff = L @ (beta - beta_h)
        F_unscaled = float(diff @ np.linalg.solve(L @ self.vcov_adjusted @ L.T, diff)) / q
        df, scaling = self.ddf(L)
        return F_unscaled, scaling, q, df


def _div_zero(x: float, y: float, tol: float = 1e-14) -> float:
    """x / y, and 1 when both are below ``tol`` (pbkrtest's ``.divZero``)."""
    return 1.0 if abs(x) < tol and abs(y) < tol else x / y


def _row_basis(L: np.ndarray) -> np.ndarray:
    """L itself if its rows are independent, else an orthonormal basis of its row space (the same hypothesis)."""
    u, s, vt = np.linalg.svd(L, full_matrices=False)
    rank = int(np.sum(s > max(L.shape) * np.finfo(float).eps * (s[0] if s.size else 0)))
    return L if rank == L.shape[0] else vt[:rank]


@one_blas_thread
def kenward_roger(m) -> KenwardRoger:
    """Kenward–Roger's pieces for the REML fit ``m`` (computed once per fit)."""
    if "kenward_roger" not in m._cache:
        if not m.REML:
            raise OptionError(
                "Kenward-Roger's method needs a REML fit (as lmerTest and pbkrtest require): refit with "
                "REML=True, or use ddf='Satterthwaite'"
            )
        q = m.re.q
        if 8.0 * 8.0 * q * q > MAX_BYTES:
            raise OptionError(
                f"Kenward-Roger's method works with dense {q} x {q} matrices here, about "
                f"{64.0 * q * q / 1e9:.0f} GB: use ddf='Satterthwaite'"
            )
        m._cache["kenward_roger"] = _compute(m)
    return m._cache["kenward_roger"]


def _parameters(re) -> list[tuple[int, list[tuple[int, int]]]]:
    """pbkrtest's γ (before σ²): per term, its lower triangle column-wise, as (term, [(a, b), ...]) with the
    ordered pairs whose e_a e_b' make up Dₖ."""
    out = []
    for i, t in enumerate(re.terms):
        for a, b in t.tril:
            out.append((i, [(a, a)] if a == b else [(a, b), (b, a)]))
    return out


def _compute(m) -> KenwardRoger:
    """Φ_A from the Pₖ, Qₖₗ and tr(Σ⁻¹GₖΣ⁻¹Gₗ) (pbkrtest's ``vcovAdj_internal``)."""
    P, Q, trace = _derivatives(m, _marginal_products(m))
    Phi = m.vcov.to_numpy()
    PhiP = np.einsum("ij,kjl->kil", Phi, P)
    information = trace - 2 * np.einsum("ij,klji->kl", Phi, Q) + np.einsum("kij,lji->kl", PhiP, PhiP)
    W = 2 * _inverse(information)
    PPhiP = np.einsum("kij,ljm->klim", P, PhiP)  # PₖΦPₗ
    UU = np.einsum("kl,klij->ij", W, Q - PPhiP)
    adjusted = Phi + 2 * Phi @ UU @ Phi
    return KenwardRoger(vcov=Phi, vcov_adjusted=(adjusted + adjusted.T) / 2, P=P, W=W)


def _marginal_products(m) -> dict:
    """With X, Z whitened by √W and V₀ = I + ZΛΛ'Z' (the module docstring's reductions): Z'V₀⁻¹Z, Z'V₀⁻¹X,
    Z'V₀⁻²X, X'V₀⁻²X, X'V₀⁻³X, Z'V₀⁻²Z and tr(V₀⁻²)."""
    re, frame = m.re, m.frame
    sw = np.sqrt(frame.weights)
    Z = sp.csc_matrix(sp.diags(sw) @ re.Z)
    X = frame.X * sw[:, None]
    n, q = Z.shape
    G = (Z.T @ Z).toarray()
    Lam = re.Lambda(m.theta).toarray()
    factor = la.cho_factor(Lam.T @ G @ Lam + np.eye(q), lower=True)

    def lam_ainv_lamt(B: np.ndarray) -> np.ndarray:  # ΛA⁻¹Λ'B
        return Lam @ la.cho_solve(factor, Lam.T @ B)

    F = lam_ainv_lamt(G)
    C = np.eye(q) - F
    M0 = G @ C
    ZtX = np.asarray(Z.T @ X)
    T0 = X - Z @ lam_ainv_lamt(ZtX)  # V₀⁻¹X
    ZtT0 = np.asarray(Z.T @ T0)
    XV2X = T0.T @ T0
    return {
        "ZVZ": (M0 + M0.T) / 2,
        "ZVX": ZtX - G @ lam_ainv_lamt(ZtX),
        "ZV2X": C.T @ ZtT0,
        "XV2X": XV2X,
        "XV3X": XV2X - ZtT0.T @ lam_ainv_lamt(ZtT0),
        "ZV2Z": C.T @ M0,
        "trace_V2": n - 2 * np.trace(F) + np.sum(F * F.T),
    }


def _derivatives(m, v: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pₖ, Qₖₗ and tr(Σ⁻¹GₖΣ⁻¹Gₗ) for pbkrtest's γ, the residual variance last (Σ = σ²V₀)."""
    re = m.re
    params = _parameters(re)
    index = {}
    for i, t in enumerate(re.terms):
        for a in range(t.k):
            index[i, a] = re.col_offsets[i] + np.arange(t.n_levels) * t.k + a

    def sandwich(U: np.ndarray, k: int, V: np.ndarray) -> np.ndarray:  # U'DₖV
        term, pairs = params[k]
        return sum(U[index[term, a]].T @ V[index[term, b]] for a, b in pairs)

    M0, B0 = v["ZVZ"], v["ZVX"]
    K, p, s2 = len(params) + 1, B0.shape[1], m.sigma**2
    P, Q, trace = np.empty((K, p, p)), np.empty((K, K, p, p)), np.empty((K, K))
    M0DB = [sum(M0[:, index[t, a]] @ B0[index[t, b]] for a, b in pairs) for t, pairs in params]  # M0DₖB0
    for k, (term, pairs) in enumerate(params):
        P[k] = -sandwich(B0, k, B0) / s2**2
        Q[k, K - 1] = sandwich(B0, k, v["ZV2X"]) / s2**3
        Q[K - 1, k] = Q[k, K - 1].T
        residual = sum(np.trace(v["ZV2Z"][np.ix_(index[term, b], index[term, a])]) for a, b in pairs)
        trace[k, K - 1] = trace[K - 1, k] = residual / s2**2
        for j in range(K - 1):
            Q[k, j] = sandwich(B0, k, M0DB[j]) / s2**3
            if j <= k:
                trace[k, j] = trace[j, k] = _block_trace(M0, index, params[k], params[j]) / s2**2
    P[K - 1] = -v["XV2X"] / s2**2
    Q[K - 1, K - 1] = v["XV3X"] / s2**3
    trace[K - 1, K - 1] = v["trace_V2"] / s2**2
    return P, Q, trace


def _block_trace(M0: np.ndarray, index: dict, first: tuple, second: tuple) -> float:
    """tr(Dₖ M0 Dₗ M0) = Σ over the pairs (a, b) of k and (c, d) of l of Σ M0[tb, sc] ∘ M0[ta, sd]."""
    (t, pairs_k), (s, pairs_l) = first, second
    total = 0.0
    for a, b in pairs_k:
        for c, d in pairs_l:
            total += np.sum(M0[np.ix_(index[t, b], index[s, c])] * M0[np.ix_(index[t, a], index[s, d])])
    return total


def _inverse(information: np.ndarray) -> np.ndarray:
    """ℐ⁻¹, or its Moore–Penrose inverse when its smallest eigenvalue is below 10⁻¹⁰ of the largest (pbkrtest
    switches to ``ginv`` below 10⁻¹⁰ absolute)."""
    values = np.linalg.eigvalsh((information + information.T) / 2)
    if np.min(np.abs(values)) > 1e-10 * np.max(np.abs(values)):
        return np.linalg.inv(information)
    return np.linalg.pinv(information)
