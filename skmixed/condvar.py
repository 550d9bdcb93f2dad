"""Conditional covariances of the random effects given the data (lme4's ``condVar``).

With β treated as known, as lme4 does, ``Var(b | y) = σ² Λ A⁻¹ Λ'``, ``A = Λ'Z'WZΛ + I``; only its
diagonal blocks (one k × k block per level of each term) are wanted.  With ``LL' = PAP'`` they are
the Gram matrices of the columns of ``L⁻¹PΛ'`` belonging to each level, solved for a few hundred
levels at a time so that memory stays bounded.
"""

from __future__ import annotations

import numpy as np

from .reterms import RandomEffects

#: the dense right-hand sides of one batch of solves hold at most this many numbers (160 MB)
MAX_BATCH_ENTRIES = 20_000_000


def conditional_variances(chol, re: RandomEffects, theta: np.ndarray, sigma: float) -> list[np.ndarray]:
    """Per term, an ℓ × k × k array of ``σ² Λ A⁻¹ Λ'`` diagonal blocks; ``chol`` is a factor of A at θ."""
    inverse_blocks = getattr(chol, "inverse_diagonal_blocks", None)
    if inverse_blocks is not None:  # a factor that has A⁻¹'s diagonal blocks (skmixed.nested_cholesky): T (A⁻¹)_ll T'
        Ts = [t.T(re.term_theta(theta, i)) for i, t in enumerate(re.terms)]
        return [sigma**2 * (T @ blocks @ T.T) for T, blocks in zip(Ts, inverse_blocks())]
    LamT = re.Lambda(theta).T.tocsc()
    out = []
    for i, t in enumerate(re.terms):
        start, k = re.col_offsets[i], t.k
        blocks = np.empty((t.n_levels, k, k))
        per = max(1, min(256, MAX_BATCH_ENTRIES // re.q) // k)
        for lv in range(0, t.n_levels, per):
            hi = min(t.n_levels, lv + per)
            cols = np.arange(start + lv * k, start + hi * k)
            W = chol.solve_L(LamT[:, cols].toarray())  # columns of L⁻¹PΛ'
            G = W.reshape(W.shape[0], hi - lv, k)
            blocks[lv:hi] = np.einsum("rli,rlj->lij", G, G)
        out.append(sigma**2 * blocks)
    return out
