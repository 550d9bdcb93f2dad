"""The PLS problem of two nested terms on the block factor of :mod:`skmixed.nested_cholesky`, with its gradient.

The formulas are :mod:`skmixed.pls`'s, evaluated level by level: the right-hand sides Λ'Z'[y X] as stacks of
blocks (an inner part k₁ × (1 + p) × ℓ₁ and an outer part k₂ × (1 + p) × ℓ₂, formed once up to Λ), so that

    [cu RZX] = L⁻¹PΛ'Z'[y X],   [cu RZX]'[cu RZX] = Σ over blocks (one product per part),

and β̂, r², RX follow from these (p + 1) × (p + 1) sums; û = P'L'⁻¹(cu − RZX β̂) and b̂ = Λû come back as stacks.
The gradient, with Z'r = Z'y − Z'Xβ̂ − Z'Zb̂, G = A⁻¹Λ'Z'X, W = Z'X − Z'ZΛG and C = RX'RX, for θ the entry
(r, c) of a term's template T and the sums over the term's levels:

    ∂log|A|/∂θ     from :meth:`~skmixed.nested_cholesky.NestedCholesky.logdet_gradient`,
    ∂r²/∂θ         = −2 Σ (Z'r)_level[r] û_level[c],
    ∂log|C|/∂θ     = −2 Σ W_level[r, :] C⁻¹ G_level[c, :]'   (REML only),

where Z'Z acts level by level (Z'Z v: D_j v_j + C_j'v_a(j) on the inner rows, E_a v_a + Σ_{j∈a} C_j v_j on the
outer ones), and the deviance's gradient is ∂log|A| + (dof/r²) ∂r² [+ ∂log|C|].
"""

from __future__ import annotations

import numpy as np
from scipy.linalg.lapack import dtrtrs

from ._cholmod import NotPositiveDefinite
from .nested_cholesky import NestedCholesky, NestedStructure, contract, left, mm, tr
from .pls import CrossProducts
from .reterms import RandomEffects


class NestedPls:
    """One evaluation at a time: :meth:`decompose` at θ, then :meth:`coefficients` and :meth:`gradient`."""

    def __init__(self, cp: CrossProducts, re: RandomEffects, structure: NestedStructure, reml: bool):
        self.cp, self.re, self.s = cp, re, structure
        self.p = cp.XtX.shape[0]
        self._with_G = reml and self.p > 0  # the REML gradient's G = A⁻¹Λ'Z'X, solved with û
        self.chol = NestedCholesky(structure)
        self._inner = structure.inner
        self._tril = [tuple(np.array(t.tril).T) for t in re.terms]
        rhs = structure.to_factor(np.column_stack([cp.Zty, cp.ZtX]))
        self._zx = [np.ascontiguousarray(part) for part in self.chol.split(rhs)]  # Z'[y X] as stacks

    def _templates(self, theta: np.ndarray) -> list[np.ndarray]:
        """T₁ and T₂ (inner, outer) of θ."""
        out = []
        for i, t in enumerate(self.re.terms):
            T = np.zeros((t.k, t.k))
            T[self._tril[i]] = self.re.term_theta(theta, i)
            out.append(T)
        return [out[self._inner], out[1 - self._inner]]

    def decompose(self, theta: np.ndarray) -> bool:
        """Factor A and solve the PLS problem at θ; False where A or RX'RX is not positive definite or r² ≤ 0."""
        cp, p = self.cp, self.p
        self.T = self._templates(theta)
        try:
            self.chol.refactor(*self.T)
        except NotPositiveDefinite:
            return False
        self.x = self.chol.solve_L_blocks(*(left(T.T, z) for T, z in zip(self.T, self._zx)))  # [cu RZX]
        gram = sum(contract(tr(x), tr(x)) for x in self.x)  # Σ over blocks of [cu RZX]'[cu RZX]
        if p:
            try:
                self.RX = np.linalg.cholesky(cp.XtX - gram[1:, 1:]).T
            except np.linalg.LinAlgError:
                return False
            cbeta = dtrtrs(self.RX, cp.Xty - gram[1:, 0], lower=0, trans=1)[0]  # RX'⁻¹(X'y − RZX'cu)
            self.beta = dtrtrs(self.RX, cbeta, lower=0)[0]
            self.ldRX2 = 2.0 * np.log(np.diag(self.RX)).sum()
        else:
            self.RX, cbeta, self.beta, self.ldRX2 = np.zeros((0, 0)), np.zeros(0), np.zeros(0), 0.0
        self.pwrss = cp.yty - gram[0, 0] - cbeta @ cbeta
        if self.pwrss <= 0:
            return False
        c = [x[:, :1] - np.einsum("kml,m->kl", x[:, 1:], self.beta)[:, None] for x in self.x]  # cu − RZX β̂
        if self._with_G:  # [û G] = P'L'⁻¹[cu − RZX β̂, RZX]
            c = [np.concatenate([ci, x[:, 1:]], axis=1) for ci, x in zip(c, self.x)]
        self.uG = self.chol.solve_Lt_blocks(*c)
        self.u = [y[:, :1] for y in self.uG]
        self.b = [left(T, u) for T, u in zip(self.T, self.u)]
        return True

    def _flat(self, parts) -> np.ndarray:
        """A q-vector in A's column order from its inner and outer stacks."""
        return self.s.from_factor(self.chol.join(*parts, (self.re.q,)))

    def coefficients(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """β̂, û and b̂ (in A's column order)."""
        return self.beta, self._flat(self.u), self._flat(self.b)

    def _ztz(self, v1: np.ndarray, v2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Z'Z v for v as stacks."""
        s = self.s
        return mm(s.D, v1) + mm(s.Ct, v2[..., s.parent]), mm(s.E, v2) + s.segment_sum(mm(s.C, v1))

    def gradient(self, dof: int) -> np.ndarray:
        """The gradient of the profiled deviance in θ at the last :meth:`decompose` (module docstring)."""
        g1, g2 = self.chol.logdet_gradient()
        ZtZ_LuG = self._ztz(*(left(T, y) for T, y in zip(self.T, self.uG)))  # Z'ZΛ[û G]
        zr = [
            z[:, :1] - np.einsum("kml,m->kl", z[:, 1:], self.beta)[:, None] - v[:, :1]
            for z, v in zip(self._zx, ZtZ_LuG)
        ]
        g1 = g1 - (2.0 * dof / self.pwrss) * contract(zr[0], self.u[0])
        g2 = g2 - (2.0 * dof / self.pwrss) * contract(zr[1], self.u[1])
        if self._with_G:
            W = [z[:, 1:] - v[:, 1:] for z, v in zip(self._zx, ZtZ_LuG)]
            Cinv = dtrtrs(self.RX, dtrtrs(self.RX, np.eye(self.p), lower=0, trans=1)[0], lower=0)[0]
            g1 = g1 - 2.0 * contract(W[0], np.matmul(Cinv, self.uG[0][:, 1:]))
            g2 = g2 - 2.0 * contract(W[1], np.matmul(Cinv, self.uG[1][:, 1:]))
        grads = (g1, g2) if self._inner == 0 else (g2, g1)  # in the terms' order
        return np.concatenate([g[tril] for g, tril in zip(grads, self._tril)])
