"""The rank check of the fixed-effects model matrix: aliased columns are dropped as R's ``qr()`` drops them."""

from __future__ import annotations

import warnings

import numpy as np

from .exceptions import RankDeficiencyWarning


def _project_off(A: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """A less its projection on the orthonormal columns of Q, twice: once leaves rounding of the size removed."""
    if not Q.shape[1]:  # nothing to project off (A − 0 is A)
        return A
    for _ in range(2):
        A = A - Q @ (Q.T @ A)
    return A


def drop_aliased(X: np.ndarray, names: list[str], tol: float = 1e-7) -> tuple[np.ndarray, list[str], list[str]]:
    """Drop the columns of X that are (numerically) linear in earlier ones, as R's ``qr(X, tol = 1e-7)`` does.

    R's LINPACK QR (dqrdc2) moves a column to the end when its norm, after the reflections of the
    columns kept before it, falls below ``tol`` times its original norm; the rank is the number of
    columns kept.  The same greedy rule here: the R of one Householder QR of the remaining columns
    (projected off the kept ones) finds the first such column; the columns before it are kept, it is
    dropped, and the search resumes after it, so a design with k aliased columns costs k + 1 QRs
    (one, without Q, for a design of full rank).  Returns the kept columns, their names and the
    names of the dropped ones.
    """
    import scipy.linalg as la

    n, p = X.shape
    norms = np.linalg.norm(X, axis=0)
    keep, dropped = [], []
    Q = np.zeros((n, 0))
    remaining = [j for j in range(p) if norms[j] > 0]
    dropped_zero = [j for j in range(p) if norms[j] == 0]
    while remaining:
        if len(keep) == n:  # the kept columns span every direction: the rest are linear in them
            dropped += remaining
            break
        m = min(len(remaining), n - len(keep))
        if not keep and len(remaining) == 1:  # one nonzero column, nothing kept before it: its R is its norm
            small = np.zeros(0, dtype=int)
        else:
            A = _project_off(X[:, remaining], Q)
            Ra = la.qr(A, mode="r")[0]  # R alone: Q is formed only when a column is dropped
            small = np.flatnonzero(np.abs(np.diag(Ra)[:m]) <= tol * norms[remaining[:m]])
        first = int(small[0]) if small.size else m
        if first < len(remaining) and first:
            Q = np.hstack([Q, la.qr(A[:, :first], mode="economic")[0]])
        keep += remaining[:first]
        if first < len(remaining):
            dropped.append(remaining[first])
        remaining = remaining[first + 1 :]
    keep.sort()
    aliased = sorted(dropped + dropped_zero)
    return X[:, keep], [names[j] for j in keep], [names[j] for j in aliased]


def warn_rank_deficient(dropped: list[str], stacklevel: int) -> None:
    """lme4's warning for the columns :func:`drop_aliased` dropped (none: no warning)."""
    if dropped:
        s = "s" if len(dropped) > 1 else ""
        warnings.warn(
            f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} column{s} / "
            f"coefficient{s}: {dropped}",
            RankDeficiencyWarning,
            stacklevel=stacklevel + 1,
        )
