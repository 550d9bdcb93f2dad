"""The profiled deviance of an LMM of scalar terms by conjugate gradients and stochastic Lanczos quadrature
(``lmer(..., solver="krylov")``), for crossed factors with many levels on both sides.

With Λ = diag(λ) and Z'Z = [N G'; G C] (N = diag(n): the first term's counts, diagonal because each row is at one
of its levels), A = Λ'Z'ZΛ + I = [D B'; B A₂₂] has the diagonal first block D = λ₁²N + I, B = diag(λ₂)Gλ₁, and the
Schur complement of D

    S = A₂₂ − BD⁻¹B' = I + diag(λ₂)(C − G diag(λ₁²/d) G')diag(λ₂)

of the other terms' order q₂.  The exact paths form S (dense) or factor A (CHOLMOD); here S is only applied to
vectors, at the cost of Z'Z's nonzeros, and never formed.  It is scaled by its diagonal P (Jacobi), Ŝ =
P^{-1/2}SP^{-1/2}, and every system is solved by conjugate gradients on Ŝ in one batch (:mod:`skmixed.krylov`):

* the PLS solution: with c = ΛZ'[y X], A⁻¹c from x₂ = S⁻¹(c₂ − BD⁻¹c₁), x₁ = D⁻¹(c₁ − B'x₂); then K = c'A⁻¹c gives
  RX'RX = X'X − K_XX, β̂ = (RX'RX)⁻¹(X'y − K_Xy), r² = y'y − K_yy − (X'y − K_Xy)'β̂ and û = A⁻¹c_y − A⁻¹c_Xβ̂;
* log|A| = Σ log d + Σ log P + log|Ŝ|, the last by stochastic Lanczos quadrature with m Rademacher probes zᵢ
  drawn once per fit from the seed (so the deviance is one deterministic, smooth function of θ that L-BFGS-B can
  minimise), from the Lanczos matrices of the probes' own CG runs;
* the gradient (:class:`~skmixed.backends.ScalarTermsBackend`'s formulas) needs the traces of A⁻¹ over each
  term's columns: tr(E_k S⁻¹) ≈ mean zᵢ'P^{-1/2}E_kP^{-1/2}Ŝ⁻¹zᵢ for the other terms, and for the first
  tr(D⁻¹) + tr(S⁻¹BD⁻²B') ≈ Σ 1/d + mean (Ŝ⁻¹zᵢ)'P^{-1/2}BD⁻²B'P^{-1/2}zᵢ (Hutchinson's estimator, with the
  same probes).

Following Pascal Kündig and Fabio Sigrist, "Scalable computations for generalized mixed effects models with crossed
random effects using Krylov subspace methods" (GPBoost's iterative methods), with the Schur complement of the larger
factor in place of the whole system.  The estimates of log|A| and of its gradient are unbiased but not exact, and
the gradient is not exactly the derivative of the estimated value: the optimum found is that of the stochastic
objective.  So the objective reported at the end is the exact one at the final θ, from the exact path
(:func:`~skmixed.backends.choose_backend`) when its factor is affordable (:data:`EXACT_FINAL_FLOPS`); the
backend's ``reason`` says which.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .backends import _Backend, choose_backend, scalar_terms_gradient
from .exceptions import OptionError
from .krylov import NotConverged, batched_cg, rademacher, slq_logdet
from .pls import CrossProducts, PlsSolution, fixed_effects, profiled_solution
from .reterms import RandomEffects

#: the exact path's factor is affordable for one evaluation at the end up to about this many flops (a dense factor
#: of order ~14,000, or CHOLMOD's factor of that work)
EXACT_FINAL_FLOPS = 1e12


@dataclass(frozen=True)
class KrylovSettings:
    """``solver="krylov"``'s settings: Rademacher probes for the log-determinant and the traces, their seed, and
    the relative residual at which conjugate gradients stop."""

    probes: int = 50
    seed: int = 0
    tol: float = 1e-10
    maxiter: int = 2000

    def __str__(self) -> str:
        return f"{self.probes} Rademacher probes (seed {self.seed}), CG to a relative residual of {self.tol:g}"


def krylov_unsupported(re: RandomEffects) -> str | None:
    """Why the iterative path cannot take these random-effects terms, or None where it can."""
    if re.structured:
        return "its covariance structures (diag(), cs(), ...) are not scalar terms"
    vector = [str(t.bar) for t in re.terms if t.k > 1]
    if vector:
        return f"it takes scalar terms such as (1 | g) only, and {', '.join(vector)} has several effects"
    return None


class KrylovPls:
    """The PLS solution, log|A| and the gradient of the profiled deviance at θ by the module docstring's method."""

    def __init__(self, cp: CrossProducts, re: RandomEffects, reml: bool, settings: KrylovSettings):
        self.cp, self.re, self.reml, self.settings = cp, re, reml, settings
        self.p = cp.XtX.shape[0]
        self._term = np.repeat(np.arange(len(re.terms)), [t.q for t in re.terms])  # each column's term
        q1 = self.q1 = re.terms[0].q
        ZtZ = sp.csc_matrix(cp.ZtZ)
        leading = ZtZ[:q1, :q1]
        self._n = leading.diagonal()
        if leading.nnz != np.count_nonzero(self._n):
            raise ValueError("the first term's block of Z'Z is not diagonal")
        G = ZtZ[q1:, :q1]
        # G·V by columns (reads V's rows in order, adds into the small q₂ × k result), G'·V by rows (the reverse)
        self._G, self._Gt = G.tocsc(), G.T.tocsr()
        self._Gt_rows = np.repeat(np.arange(q1), np.diff(self._Gt.indptr))  # the first term's level of each entry
        self._G2 = G.multiply(G).tocsr()  # for S's diagonal
        self._C = ZtZ[q1:, q1:].tocsr()
        self._C_diagonal = self._C.diagonal()
        self.q2 = self._C.shape[0]
        self._probes = rademacher(self.q2, settings.probes if self.q2 else 0, settings.seed)

    def solve(self, theta: np.ndarray, gradient: bool = False) -> tuple[PlsSolution | None, np.ndarray | None]:
        """The solution at θ (None where RX'RX or r² is not positive) and, if asked, the gradient of its deviance."""
        cp, p, q1 = self.cp, self.p, self.q1
        lam = theta[self._term]
        l1, l2 = theta[0], lam[q1:]
        d = l1**2 * self._n + 1.0
        w = l1**2 / d
        scale = 1.0 / np.sqrt(1.0 + l2**2 * (self._C_diagonal - self._G2 @ w))  # P^{-1/2}

        Gtw = self._scaled_gt(w)

        def s_hat(V):  # Ŝ V
            V = scale[:, None] * V
            LV = l2[:, None] * V
            SV = V + l2[:, None] * (self._C @ LV - self._G @ (Gtw @ LV))
            return scale[:, None] * SV

        c = lam[:, None] * np.column_stack([cp.Zty, cp.ZtX])  # ΛZ'[y X]
        c1, c2 = c[:q1], c[q1:]
        rhs = c2 - l2[:, None] * (self._G @ ((l1 / d)[:, None] * c1))  # c₂ − BD⁻¹c₁
        try:
            cg = batched_cg(s_hat, np.hstack([scale[:, None] * rhs, self._probes]), self.settings.tol, self._maxiter)
        except NotConverged as e:  # not a point outside the parameter space: the solver's limit, the user's to change
            raise OptionError(
                f"solver='krylov' at θ = {np.array2string(theta, precision=5)}: {e}; use solver='auto', or a larger "
                "krylov['tol']"
            ) from None
        x2 = scale[:, None] * cg.X[:, : p + 1]
        x1 = (c1 - (l1 * self._Gt @ (l2[:, None] * x2))) / d[:, None]
        K = c1.T @ x1 + c2.T @ x2
        K = (K + K.T) / 2.0
        probes = np.arange(p + 1, cg.X.shape[1])
        ldL2 = np.log(d).sum() - 2.0 * np.log(scale).sum() + slq_logdet(cg, probes, self.q2)
        solution = self._profiled(theta, lam, K, np.vstack([x1, x2]), ldL2)
        if solution is None or not gradient:
            return solution, None
        return solution, self._gradient(theta, lam, solution, cg.X[:, p + 1 :], scale, d, x1, x2)

    def _scaled_gt(self, weights: np.ndarray) -> sp.csr_matrix:
        """diag(weights)G', its rows scaled (cheaper than scaling the q₁ × k products it makes)."""
        Gt = self._Gt
        return sp.csr_matrix((Gt.data * weights[self._Gt_rows], Gt.indices, Gt.indptr), shape=Gt.shape)

    @property
    def _maxiter(self) -> int:
        return min(self.settings.maxiter, 10 * self.q2 + 10)

    def _profiled(self, theta, lam, K, Ainv_c, ldL2) -> PlsSolution | None:
        fixed = fixed_effects(self.cp, K[1:, 1:], K[1:, 0], K[0, 0])
        if fixed is None:
            return None
        RX, beta, ldRX2, pwrss = fixed
        u = Ainv_c[:, 0] - Ainv_c[:, 1:] @ beta
        cp = self.cp
        return profiled_solution(theta, beta, u, lam * u, pwrss, ldL2, ldRX2, RX, cp.n, self.p, cp.log_det_w, self.reml)

    def _gradient(self, theta, lam, sol, Y, scale, d, x1, x2) -> np.ndarray:
        """The gradient of :class:`~skmixed.backends.ScalarTermsBackend`, with the traces of A⁻¹ by Hutchinson's
        estimator from the probes Z and Y = Ŝ⁻¹Z."""
        q1, term, n_theta = self.q1, self._term, len(theta)
        l1, l2 = theta[0], lam[q1:]
        Z = self._probes
        traces = np.zeros(n_theta)
        traces[0] = (1.0 / d).sum()
        if self.q2:
            SZ = scale[:, None] * Z
            HZ = l2[:, None] * (self._G @ (self._scaled_gt(l1**2 / d**2) @ (l2[:, None] * SZ)))  # BD⁻²B'Z
            traces[0] += np.mean(np.einsum("ij,ij->j", scale[:, None] * Y, HZ))
            diag_rest = scale**2 * np.mean(Z * Y, axis=1)  # the diagonal of S⁻¹, estimated
            traces += np.bincount(term[q1:], diag_rest, minlength=n_theta)
        # A⁻¹Λ'Z'X: the columns of X among the solves
        return scalar_terms_gradient(
            self.cp, self.reml, term, theta, sol, traces, lambda: np.vstack([x1[:, 1:], x2[:, 1:]])
        )


class KrylovBackend(_Backend):
    """The deviance by :class:`KrylovPls`; the exact path (built once, when first needed) for the final evaluation
    where it is affordable, and for the factor of A that conditional variances read."""

    name = "iterative (conjugate gradients, stochastic Lanczos quadrature)"
    has_gradient = True
    #: the estimated gradient is not exactly the derivative of the estimated value, so near the optimum L-BFGS-B's
    #: last steps lower it by less than predicted, at about this fraction, until the exact paths' 1e-12 stops them
    #: (ml1m_like: 12 evaluations at 1e-12, 8 at 1e-10, the same exact objective at the end; benchmarks/HISTORY.md)
    ftol = 1e-10

    def __init__(self, cp: CrossProducts, re: RandomEffects, reml: bool, settings: KrylovSettings):
        reason = (
            f"solver='krylov' (asked for): the Schur complement of the first term's {re.terms[0].n_levels} levels by "
            "Jacobi-preconditioned conjugate gradients, log|A| by stochastic Lanczos quadrature and the gradient's "
            f"traces by Hutchinson's estimator; {settings}"
        )
        super().__init__(cp, re, reml, reason)
        self._base_reason = reason
        self.krylov = KrylovPls(cp, re, reml, settings)
        self._exact, self._final = None, None

    def solve(self, theta):
        return self.krylov.solve(theta)[0]

    def solve_with_gradient(self, theta):
        return self.krylov.solve(theta, gradient=True)

    @property
    def exact(self):
        """The backend ``solver="auto"`` takes for this model."""
        if self._exact is None:
            self._exact = choose_backend(self.cp, self.re, self.reml)
        return self._exact

    def final_solve(self, theta):
        """The exact solution at θ where the exact factor is affordable, else the iterative one; ``reason`` says
        which."""
        if self._final is not None and np.array_equal(self._final[0], theta):
            return self._final[1]
        flops = exact_flops(self.re)
        sol = self.exact.solve(theta) if flops <= EXACT_FINAL_FLOPS else None
        if sol is not None:
            self.reason = (
                f"{self._base_reason}; the objective reported is the exact one at the final θ ({self.exact.name})"
            )
            self._final = (theta.copy(), sol)
            return sol
        self.reason = (
            f"{self._base_reason}; the objective reported is the stochastic estimate (a dense exact factor needs "
            f"about {flops:.2g} flops, over {EXACT_FINAL_FLOPS:.0e})"
        )
        sol = self.solve(theta)
        self._final = (theta.copy(), sol)
        return sol

    def cholesky_at(self, theta):
        return self.exact.cholesky_at(theta)


def exact_flops(re: RandomEffects) -> float:
    """An upper bound of the work of the exact path's factor: a dense Schur complement of the terms after the first,
    q₂³/3 flops (the exact path takes CHOLMOD's factor where that costs less).  Past :data:`EXACT_FINAL_FLOPS` the
    bound is not refined: CHOLMOD's count comes from a numeric factor, itself the work to be avoided."""
    q2 = re.q - re.terms[0].q
    return q2**3 / 3.0
