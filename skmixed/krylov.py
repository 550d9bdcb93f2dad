"""Conjugate gradients on many right-hand sides at once, and the log-determinant by stochastic Lanczos quadrature.

For a symmetric positive definite M (given only as a product with a block of vectors) and columns b₁ … b_k,
:func:`batched_cg` runs k independent conjugate-gradient iterations that share each product M[p₁ … p_k], the one
cost that matters when M is a sparse operator; a column stops when ‖rⱼ‖ ≤ tol ‖bⱼ‖.  Its step lengths αⱼ and
direction weights βⱼ are those of the Lanczos process started from b (Saad, "Iterative Methods for Sparse Linear
Systems", §6.7.3): the Lanczos tridiagonal matrix is

    T[0,0] = 1/α₀,  T[j,j] = 1/αⱼ + βⱼ₋₁/αⱼ₋₁,  T[j,j+1] = √βⱼ/αⱼ,

so a solve gives the Gauss quadrature b'f(M)b ≈ ‖b‖² e₁'f(T)e₁ for free (Golub and Meurant, "Matrices, Moments and
Quadrature with Applications").  With Rademacher probes z (entries ±1), E[z'log(M)z] = tr log M = log|M|: the
stochastic Lanczos quadrature of Ubaru, Chen and Saad, "Fast estimation of tr(f(A)) via stochastic Lanczos
quadrature", which Pascal Kündig and Fabio Sigrist use for the marginal likelihood of Gaussian-process and
crossed random-effects models ("Iterative methods for Vecchia-Laplace approximations for latent Gaussian process
models"; "Scalable computations for generalized mixed effects models with crossed random effects using Krylov
subspace methods"; both implemented in GPBoost).  The same solves M⁻¹z give Hutchinson's estimates z'M⁻¹Ez of traces
tr(M⁻¹E) (Hutchinson, "A stochastic estimator of the trace of the influence matrix for Laplacian smoothing
splines"); with Rademacher probes both estimators are exact on M's diagonal part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


class NotConverged(ArithmeticError):
    """Conjugate gradients did not reach the tolerance within the iterations allowed."""


@dataclass
class CgSolution:
    """Solutions X of M X = B, with each column's iterations and its CG coefficients (rows past them are 0)."""

    X: np.ndarray
    steps: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray


def batched_cg(matvec: Callable[[np.ndarray], np.ndarray], B: np.ndarray, tol: float, maxiter: int) -> CgSolution:
    """M⁻¹B by conjugate gradients from X = 0, column by column, with one product M P per iteration for the columns
    still short of ‖rⱼ‖ ≤ tol‖bⱼ‖.  A column that has converged is left as it is (a further step would divide by a
    vanishing residual), so each column's result depends on it alone and its iteration count."""
    n, k = B.shape
    X, R = np.zeros_like(B), B.copy()
    P = R.copy()
    rr = np.einsum("ij,ij->j", R, R)
    stop = tol**2 * rr
    alpha, beta = np.zeros((maxiter, k)), np.zeros((maxiter, k))
    steps = np.zeros(k, dtype=np.intp)
    active = np.flatnonzero(rr > 0)
    for it in range(maxiter):
        if active.size == 0:
            return CgSolution(X, steps, alpha[:it], beta[:it])
        every = active.size == k  # then views, not copies of the columns
        cols = slice(None) if every else active
        Pa = P if every else P[:, active]
        Q = matvec(Pa)
        a = rr[cols] / np.einsum("ij,ij->j", Pa, Q)
        Ra = R[:, cols] - a * Q
        rr_new = np.einsum("ij,ij->j", Ra, Ra)
        b = rr_new / rr[cols]
        alpha[it, cols], beta[it, cols] = a, b
        steps[cols] += 1
        if every:
            X += a * Pa
            R, P = Ra, Ra + b * Pa
        else:
            X[:, active] += a * Pa
            R[:, active] = Ra
            P[:, active] = Ra + b * Pa
        rr[cols] = rr_new
        active = active[rr_new > stop[active]]
    if active.size:
        raise NotConverged(f"conjugate gradients: {active.size} of {k} columns short of {tol:g} after {maxiter} steps")
    return CgSolution(X, steps, alpha, beta)


def lanczos_log_quadrature(alpha: np.ndarray, beta: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """e₁'log(T)e₁ for the Lanczos matrix T of each CG column (its first ``steps`` coefficients, columns of
    ``alpha`` and ``beta``): the Gauss quadrature of b'log(M)b/‖b‖².  Columns with the same number of steps are
    done together, their T's eigenvalues by one batched dense eigendecomposition (T is small: one row a step)."""
    values = np.zeros(len(steps))
    for s in np.unique(steps[steps > 0]):
        cols = np.flatnonzero(steps == s)
        a, b = alpha[:s, cols].T, beta[: s - 1, cols].T
        T = np.zeros((len(cols), s, s))
        diagonal = 1.0 / a
        diagonal[:, 1:] += b / a[:, :-1]
        off = np.sqrt(b) / a[:, :-1]
        index = np.arange(s)
        T[:, index, index] = diagonal
        T[:, index[:-1], index[1:]] = T[:, index[1:], index[:-1]] = off
        nodes, vectors = np.linalg.eigh(T)
        values[cols] = np.einsum("ij,ij->i", vectors[:, 0, :] ** 2, np.log(nodes))
    return values


def rademacher(n: int, m: int, seed: int) -> np.ndarray:
    """m probes of n entries ±1 each (n × m), the same for the same seed."""
    return np.where(np.random.default_rng(seed).random((n, m)) < 0.5, -1.0, 1.0)


def slq_logdet(cg: CgSolution, columns: np.ndarray, n: int) -> float:
    """log|M| ≈ n · mean over the probe columns of e₁'log(Tᵢ)e₁ (each Rademacher probe has ‖z‖² = n)."""
    if n == 0 or len(columns) == 0:
        return 0.0
    return n * float(np.mean(lanczos_log_quadrature(cg.alpha[:, columns], cg.beta[:, columns], cg.steps[columns])))
