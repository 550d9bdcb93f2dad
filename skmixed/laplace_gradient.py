"""The gradient of the Laplace deviance in (θ, β), for glmer's quasi-Newton stage 2.

Notation of :mod:`skmixed.pirls`: ``η = Xβ + ZΛu + o``, ``μ = g⁻¹(η)``, at the mode û

    D(θ, β) = Σ d_i(μ̂) + ‖û‖² + log|H| + c(μ̂),   H = Λ'Z'WZΛ + I,   W_i = w_i μ'(η_i)²/V(μ_i),

with ``c = aic − Σd_i`` (free of μ except for families with a dispersion).  Let
``r_i = w_i(y_i − μ_i)μ'_i/V_i`` (so ∂d_i/∂η_i = −2r_i and the mode solves Λ'Z'r = û),
``W_obs = −∂r/∂η`` (= W for canonical links), ``E_m = ∂Λ/∂θ_m``.

* Σd + ‖û‖²: û minimises it, so only the direct dependence counts: ``−2r'dη`` at fixed û.
* log|H| at fixed W: ``2 tr(H⁻¹Λ'Z'WZE_m)`` for θ_m.
* log|H| through W, and c: ``Σ a_i dη_i`` with ``a = W'⊙h + ∂c/∂η``, ``h_i = (ZΛH⁻¹Λ'Z')_ii``,
  ``W' = dW/dη``, and ``dη = X dβ + ZE_mû dθ_m + ZΛ dû``, where differentiating Λ'Z'r = u gives
  ``(I + Λ'Z'W_obsZΛ) dû = E_m'Z'r dθ_m − Λ'Z'W_obs(X dβ + ZE_mû dθ_m)``.  One adjoint solve,
  ``v = H_obs⁻¹Λ'Z'a``, turns ``a'ZΛ dû`` into ``v'(right-hand side)``.

Altogether, with ``s = ZΛv`` and ``e = −2r + a − W_obs⊙s``:

    ∂D/∂β = X'e,   ∂D/∂θ_m = e'ZE_mû + r'ZE_mv + 2 tr(H⁻¹Λ'Z'WZE_m).

The adjoint solve also takes the right-hand sides of dû, so dû/d(θ, β) comes almost free; the
next evaluation starts PIRLS from the mode it predicts.

Each row of Z has one nonzero per term and effect (columns ``z_cols``, values ``z_vals``), and
so has ZΛ (a row's values times the term's template T), so h, the traces and the products
with E_m are sums over rows of the entries of H⁻¹ that pairs of a row's columns pick out —
H⁻¹ on the pattern of Z'Z (a selected inverse).  When the first term is scalar (q₁ levels;
lme4 puts the factor with most levels first) its block of H is diagonal and a row meets it in
one column, so the columns H⁻¹[:, q₁:] (q − q₁ solves) and the diagonal of the first block,
from (HH⁻¹)_cc = 1: ``(H⁻¹)_cc = (1 − Σ_{a≥q₁} H_ca (H⁻¹)_ac)/H_cc``, are all it takes
(q − q₁ solves instead of q).  Otherwise H⁻¹ is formed whole.  Either is kept for
q·(columns) ≤ ``MAX_INVERSE_ENTRIES``; glmer keeps BOBYQA beyond it.  With that scalar term
alone, H is diagonal and all of this is elementwise (:mod:`skmixed.pirls_scalar`).
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import scipy.sparse as sp

from .laplace import laplace
from .pirls import Mode, Pirls

#: the gradient forms q × (columns of H⁻¹) doubles, one solve per column, per evaluation, up to this many
#: (32 MB; a full inverse up to q = 2000); beyond it glmer keeps BOBYQA: the solves, O(q·columns²) each,
#: outgrow the PIRLS steps the gradient saves (benchmarks/HISTORY.md has the measurements)
MAX_INVERSE_ENTRIES = 4_000_000


class LaplaceGradient:
    """``(θ, β) ↦ (D, ∇D)`` for one :class:`~skmixed.pirls.Pirls` (nAGQ = 1)."""

    def __init__(self, pirls: Pirls):
        self.pirls = pirls
        self._anchor: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # (x, û, dû/dx) of the last evaluation
        if pirls.scalar is not None:  # H diagonal: the gradient and the EM step are elementwise (skmixed.pirls_scalar)
            return
        re, q = pirls.re, pirls.q
        self.q1 = re.terms[0].q if re.terms[0].k == 1 else 0  # a diagonal leading block of H
        self._blocks = []  # per term, H⁻¹'s ℓ diagonal k × k blocks
        for i, t in enumerate(re.terms):
            cols = re.col_offsets[i] + np.arange(t.n_levels)[:, None, None] * t.k
            a, b = cols + np.arange(t.k)[:, None], cols + np.arange(t.k)[None, :]
            self._blocks.append(self._flat_index(np.minimum(a, b), np.maximum(a, b)))
        if self.q1:
            H = pirls.penalized.gram.matrix  # lower triangle: in the first q₁ columns, the diagonal and the block below
            cols = np.repeat(np.arange(q), np.diff(H.indptr))
            first = cols < self.q1
            self._diag_pos = np.flatnonzero(first & (H.indices == cols))
            self._below_pos = np.flatnonzero(first & (H.indices >= self.q1))
            self._below_col, self._below_row = cols[self._below_pos], H.indices[self._below_pos] - self.q1
        # the C-columns of each term, and for θ_m (template entry (i, j) of its term) the C-columns i and j
        starts = np.concatenate([[0], np.cumsum([t.k for t in re.terms])])
        self._term_cols = [slice(starts[i], starts[i + 1]) for i in range(len(re.terms))]
        self._theta_row = np.array([starts[i] + a for i, t in enumerate(re.terms) for a, _ in t.tril])
        self._theta_col = np.array([starts[i] + b for i, t in enumerate(re.terms) for _, b in t.tril])
        # ... and its columns of Z: (E_m x)[level, j] = x[level, i], so E_m'y and y'E_m x pair these up
        levels = [re.col_offsets[i] + np.arange(t.n_levels) * t.k for i, t in enumerate(re.terms)]
        self._theta_effects = [(levels[i] + a, levels[i] + b) for i, t in enumerate(re.terms) for a, b in t.tril]
        self._all_scalar = all(t.k == 1 for t in re.terms)  # then θ has one entry per term, in the terms' order
        self._index_rows()

    @cached_property
    def _X_by_column(self) -> np.ndarray:
        """X', as the right-hand sides are filled (column by column)."""
        return np.ascontiguousarray(self.pirls.X.T)

    def _index_rows(self) -> None:
        """The per-row indices: where H⁻¹ at each pair of a row's columns is in :meth:`_selected_inverse`, and Λ'Z'
        (q × n) on its fixed pattern (its values are those of ZΛ's rows, ``_z_lambda``, in ``_lzt_order``)."""
        C, q = self.pirls.z_cols, self.pirls.q
        n, K = C.shape
        self._CT, self._ZvT = np.ascontiguousarray(C.T), np.ascontiguousarray(self.pirls.z_vals.T)
        pair_a, pair_b = np.repeat(np.arange(K), K), np.tile(np.arange(K), K)
        lo, hi = np.minimum(C[:, pair_a], C[:, pair_b]), np.maximum(C[:, pair_a], C[:, pair_b])
        self._gather = np.ascontiguousarray(self._flat_index(lo, hi).T.reshape(K, K, n))  # [j, l, r]: (C[r,j], C[r,l])
        flat = C.ravel()
        order = np.argsort(flat, kind="stable")
        self._lzt_order = (order % K) * n + order // K  # where ZΛ's value at each entry of Λ'Z' is in its K × n form
        indptr = np.concatenate([[0], np.cumsum(np.bincount(flat, minlength=q))])
        self._lzt = sp.csr_matrix((np.zeros(n * K), order // K, indptr), shape=(q, n))

    def _flat_index(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Where (H⁻¹)_{lo, hi} (lo ≤ hi, a pair of columns of one row of Z) is in :meth:`_selected_inverse`."""
        q, q1 = self.pirls.q, self.q1
        return np.where(hi >= q1, lo * (q - q1) + (hi - q1), q * (q - q1) + hi)

    @staticmethod
    def available(pirls: Pirls) -> bool:
        t = pirls.re.terms[0]
        columns = pirls.q - t.q if t.k == 1 else pirls.q
        return pirls.q * columns <= MAX_INVERSE_ENTRIES

    def __call__(self, theta: np.ndarray, beta: np.ndarray) -> tuple[float, np.ndarray]:
        """The Laplace deviance and its gradient (θ first); (inf, NaN) where PIRLS fails.

        PIRLS starts from the last mode moved by its derivative, ``û + (dû/dx)Δx``: the start is
        then off by O(Δx²), which saves PIRLS iterations (about a third over a fit; a
        Hessian difference step needs one)."""
        x = np.concatenate([theta, beta])
        u0 = None
        if self._anchor is not None:
            x_last, u_last, du_dx = self._anchor
            u0 = u_last + du_dx @ (x - x_last)
        mode = self.pirls.mode(theta, beta, u0)
        value = laplace(self.pirls, mode)
        if not (mode.converged and np.isfinite(value)):
            return np.inf, np.full(len(x), np.nan)
        grad, du_dx = self.gradient(mode)
        if du_dx is not None:
            self._anchor = (x, mode.u, du_dx)
        return value, grad

    def em_step(self, mode: Mode) -> tuple[np.ndarray, np.ndarray]:
        """θ after one EM step from ``mode`` (a start value), and the u with the same b = Λu under it.

        With u ~ N(û, H⁻¹) (W at the mode), each term's E[bb'] = T·mean over levels of
        (ûû' + H⁻¹ block)·T' gives the new T as its Cholesky factor.  From Λ = I it roughly halves
        the distance to the optimum θ (binomial and Poisson references; it ignores a dispersion):
        BFGS from it needs fewer evaluations than from Λ = I."""
        pl, re = self.pirls, self.pirls.re
        if pl.scalar is not None:
            return pl.scalar.em_step(pl, mode)
        theta, u = mode.theta.copy(), mode.u.copy()
        if not pl.refactor(pl.lam_map.values(mode.theta), pl.working_weights(mode)):
            return theta, u
        inverse = self._selected_inverse()
        for i, t in enumerate(re.terms):
            U = u[re.col_offsets[i] : re.col_offsets[i + 1]].reshape(t.n_levels, t.k)  # a view: updated in place
            T = t.T(re.term_theta(mode.theta, i))
            try:
                new = np.linalg.cholesky(T @ ((U.T @ U + inverse[self._blocks[i]].sum(axis=0)) / t.n_levels) @ T.T)
                U[:] = np.linalg.solve(new, T @ U.T).T
            except np.linalg.LinAlgError:  # a singular T: keep it
                continue
            theta[re.theta_offsets[i] : re.theta_offsets[i + 1]] = [new[a, b] for a, b in t.tril]
        return theta, u

    def _z_lambda(self, theta: np.ndarray) -> np.ndarray:
        """Row values of ZΛ in the columns ``z_cols``, as K × n: per term, the row's values times the template T."""
        re = self.pirls.re
        if self._all_scalar:  # T = θ_i for each term: one broadcast product
            return self._ZvT * theta[:, None]
        out = np.empty_like(self._ZvT)
        for i, (t, cols) in enumerate(zip(re.terms, self._term_cols)):
            out[cols] = t.T(re.term_theta(theta, i)).T @ self._ZvT[cols]
        return out

    def _selected_inverse(self) -> np.ndarray:
        """[H⁻¹[:, q₁:] row-major, diag((H⁻¹)₁₁)] from the current factor of H (see the module docstring)."""
        pl = self.pirls
        q, q1 = pl.q, self.q1
        chol = pl.penalized.chol
        if not q1:  # the whole inverse; its lower triangle transposed is read at (lo, hi), row-major
            return chol.solve(np.eye(q)).T.ravel()
        if hasattr(chol, "trailing_inverse"):  # the blocked factor: from D, L₂₁ and S⁻¹ directly
            columns, diagonal = chol.trailing_inverse()
            return np.concatenate([columns.ravel(), diagonal])
        unit = np.zeros((q, q - q1))
        unit[np.arange(q1, q), np.arange(q - q1)] = 1.0
        columns = chol.solve(unit)
        H = pl.penalized.gram.matrix.data
        below = np.bincount(
            self._below_col, H[self._below_pos] * columns[self._below_col, self._below_row], minlength=q1
        )
        return np.concatenate([columns.ravel(), (1.0 - below) / H[self._diag_pos]])

    def gradient(self, mode: Mode) -> tuple[np.ndarray, np.ndarray | None]:
        """∇D and dû/d(θ, β) = H_obs⁻¹[E_m'Z'r − Λ'Z'W_obs ZE_mû | −Λ'Z'W_obs X] at a converged mode."""
        if self.pirls.scalar is not None:  # H diagonal: elementwise (skmixed.pirls_scalar)
            return self.pirls.scalar.gradient(self.pirls, mode)
        pl, fam = self.pirls, self.pirls.family
        failed = np.full(len(mode.theta) + pl.p, np.nan), None
        y, wt, eta, mu, u = pl.y, pl.wt, mode.eta, mode.mu, mode.u
        C, Zv = self._CT, self._ZvT  # K × n: each row operation below is one pass over n values
        n = C.shape[1]
        d, W, r = fam.irls_terms(y, mu, eta, wt)
        lam = pl.lam_map.values(mode.theta)
        # PIRLS leaves H factored at the mode (its ldL2 came from this factor); refactor only if that has changed
        if pl.penalized.chol.logdet() != mode.ldL2 and not pl.refactor(lam, W):
            return failed
        Hinv = self._selected_inverse()
        ZL = self._z_lambda(mode.theta)
        Q = _rowwise_matvec(Hinv[self._gather], ZL)  # Q[j, r] = (H⁻¹Λ'Z')[C[r, j], r]
        h = _rowwise_dot(ZL, Q)
        Zv_m, Q_m = (Zv, Q) if self._all_scalar else (Zv[self._theta_row], Q[self._theta_col])
        traces = (Zv_m * Q_m) @ W
        a = fam.weights_deriv(mu, eta, wt) * h
        if pl.aic_constant is None:
            dev = float(np.sum(pl.deviance_residuals(mu)))
            a += (fam.aic_deriv(y, pl.trials, mu, wt, dev) - fam.dev_resids_deriv(y, mu, wt)) * d
        if fam.is_canonical:
            W_obs = W
        else:
            W_obs = fam.observed_weights(y, mu, eta, wt)
            if not pl.refactor(lam, W_obs):
                return failed
        ZE_u = Zv_m * (u[C] if self._all_scalar else u[C[self._theta_col]])  # row m: ZE_mû
        self._lzt.data = ZL.ravel()[self._lzt_order]
        columns = np.empty((1 + len(ZE_u) + pl.p, n))  # by rows: each scaling is one pass over n values
        columns[0] = a
        columns[1 : 1 + len(ZE_u)] = ZE_u
        columns[1 + len(ZE_u) :] = self._X_by_column
        columns[1:] *= -W_obs
        rhs = self._lzt @ columns.T  # Λ'Z'[a, −W_obs ZE_mû, −W_obs X]
        Ztr = pl.Zt @ r
        for m, (i, j) in enumerate(self._theta_effects):
            rhs[j, 1 + m] += Ztr[i]  # E_m'Z'r
        solved = pl.penalized.chol.solve(rhs)
        v, du_dx = solved[:, 0], solved[:, 1:]
        e = -2 * r + a - W_obs * _rowwise_dot(ZL, v[C])
        Zte = pl.Zt @ e
        g_theta = np.array([Zte[i] @ u[j] + Ztr[i] @ v[j] for i, j in self._theta_effects]) + 2 * traces
        return np.concatenate([g_theta, pl.X.T @ e]), du_dx


# Row-wise products over the K columns of a row of Z, stored K × n, written as K (or K²) vector operations over the
# n rows: for the few columns a row has, these are several times faster than einsum's general loops.
def _rowwise_dot(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Σ_j A[j, r] B[j, r] for each row r (A, B: K × n)."""
    out = A[0] * B[0]
    for j in range(1, len(A)):
        out += A[j] * B[j]
    return out


def _rowwise_matvec(G: np.ndarray, x: np.ndarray) -> np.ndarray:
    """G[:, :, r] @ x[:, r] for each row r (G: K × K × n, x: K × n)."""
    out = G[:, 0] * x[0]
    for j in range(1, G.shape[1]):
        out += G[:, j] * x[j]
    return out
