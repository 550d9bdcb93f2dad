"""Random-effects terms: for each bar the grouping factor, its Z block and the θ ↔ Λ template.

Term ``(lhs | g)`` with k effects and ℓ levels owns q = kℓ columns of Z, level-major
(the k columns of level 1, then level 2, ...).  Its relative covariance factor is
``Λ_i = I_ℓ ⊗ T_i`` with ``T_i`` lower triangular, filled column-wise from θ_i, so
``Var(b_i) = σ² Λ_i Λ_i'``.  Diagonal elements of ``T_i`` have lower bound 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .covstruct import re_n_psi, re_psi_from_cov, re_psi_init, re_psi_lower, re_template
from .exceptions import DataError, FormulaError
from .formula import RandomBar
from .grouping import GroupingFactor, grouping_factor
from .model_matrix import Design, check_squares, design_matrix


@dataclass
class ReTerm:
    """One random-effects term: the bar's left side (its model matrix, n × k), split by the factor's levels."""

    bar: RandomBar
    factor: GroupingFactor
    design: Design  # the left side's model matrix, and its formulaic spec to encode new data

    @property
    def effects(self) -> list[str]:
        return self.design.names

    @property
    def values(self) -> np.ndarray:
        return self.design.values

    @property
    def spec(self):
        return self.design.spec

    @property
    def group(self) -> str:
        return self.factor.name

    @property
    def k(self) -> int:
        return len(self.effects)

    @property
    def n_levels(self) -> int:
        return len(self.factor.levels)

    @property
    def q(self) -> int:
        return self.k * self.n_levels

    @property
    def n_theta(self) -> int:
        return self.k * (self.k + 1) // 2

    @property
    def tril(self) -> list[tuple[int, int]]:
        """(row, column) of each θ element in T, column-wise as lme4 stores it."""
        return [(i, j) for j in range(self.k) for i in range(j, self.k)]

    @property
    def theta_lower(self) -> np.ndarray:
        return np.array([0.0 if i == j else -np.inf for i, j in self.tril])

    @property
    def theta_init(self) -> np.ndarray:
        return np.array([1.0 if i == j else 0.0 for i, j in self.tril])

    @property
    def structure(self) -> str:
        """The covariance structure of ``us(...)``, ``diag(...)``, ... (:mod:`skmixed.covstruct`); ``us`` by default."""
        return self.bar.structure

    @property
    def n_psi(self) -> int:
        """The number of the structure's parameters ψ (θ itself for ``us``)."""
        return re_n_psi(self.structure, self.k)

    def theta_from_psi(self, psi: np.ndarray) -> np.ndarray:
        """θ (T's lower triangle, column-wise) of the structure's parameters ψ: θ is nonlinear in ψ, Λ linear in θ."""
        if self.structure == "us":
            return np.asarray(psi, dtype=float)
        T = re_template(self.structure, psi, self.k)
        return np.array([T[i, j] for i, j in self.tril])

    def psi_from_theta(self, theta: np.ndarray) -> np.ndarray:
        """ψ of θ (exact where θ has the structure; the structure's nearest covariance otherwise)."""
        if self.structure == "us":
            return np.asarray(theta, dtype=float)
        T = self.T(theta)
        return re_psi_from_cov(self.structure, T @ T.T)

    def T(self, theta: np.ndarray) -> np.ndarray:
        """The k × k lower-triangular template filled from this term's θ."""
        T = np.zeros((self.k, self.k))
        for t, (i, j) in enumerate(self.tril):
            T[i, j] = theta[t]
        return T


def _lme4_order(terms: list[ReTerm]) -> list[ReTerm]:
    """lme4's order: by decreasing number of levels, only when some term has more levels than the one before."""
    nl = [t.n_levels for t in terms]
    if not any(b > a for a, b in zip(nl, nl[1:])):
        return terms
    order = np.argsort(nl, kind="stable")[::-1]
    return [terms[i] for i in order]


@dataclass
class RandomEffects:
    """All terms in lme4's order, with Z (n × q) and the sparse pattern of Λ (q × q)."""

    terms: list[ReTerm]

    @cached_property
    def col_offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum([t.q for t in self.terms])])

    @cached_property
    def theta_offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum([t.n_theta for t in self.terms])])

    @property
    def q(self) -> int:
        return int(self.col_offsets[-1])

    @property
    def n_theta(self) -> int:
        return int(self.theta_offsets[-1])

    @property
    def theta_lower(self) -> np.ndarray:
        return np.concatenate([t.theta_lower for t in self.terms])

    @property
    def theta_init(self) -> np.ndarray:
        return np.concatenate([t.theta_init for t in self.terms])

    # --- covariance structures (diag(...), cs(...), ...): ψ ↦ θ, one term at a time -----------------------
    @property
    def structured(self) -> bool:
        """Whether a term has a structure other than ``us`` (then the fit optimises ψ, not θ)."""
        return any(t.structure != "us" for t in self.terms)

    @property
    def n_psi(self) -> int:
        return sum(t.n_psi for t in self.terms)

    @property
    def psi_lower(self) -> np.ndarray:
        return np.concatenate(
            [t.theta_lower if t.structure == "us" else re_psi_lower(t.structure, t.k) for t in self.terms]
        )

    @property
    def psi_init(self) -> np.ndarray:
        return np.concatenate(
            [t.theta_init if t.structure == "us" else re_psi_init(t.structure, t.k) for t in self.terms]
        )

    def theta_from_psi(self, psi: np.ndarray) -> np.ndarray:
        bounds = np.concatenate([[0], np.cumsum([t.n_psi for t in self.terms])])
        return np.concatenate([t.theta_from_psi(psi[a:b]) for t, a, b in zip(self.terms, bounds, bounds[1:])])

    def psi_from_theta(self, theta: np.ndarray) -> np.ndarray:
        return np.concatenate([t.psi_from_theta(self.term_theta(theta, i)) for i, t in enumerate(self.terms)])

    def term_theta(self, theta: np.ndarray, i: int) -> np.ndarray:
        return theta[self.theta_offsets[i] : self.theta_offsets[i + 1]]

    @cached_property
    def Z(self) -> sp.csc_matrix:
        """Z (n × q) compressed by columns, converted from :meth:`Z_rows`."""
        return self.Z_rows().tocsc()

    def Z_rows(self) -> sp.csr_matrix:
        """Z (n × q) compressed by rows, a new matrix at each call: row r holds term i's ``values[r, j]`` in column
        ``col_offsets[i] + codes_i[r]·k_i + j`` (every row has the same Σkᵢ entries, in column order)."""
        columns = np.hstack(
            [t.factor.codes[:, None] * t.k + (np.arange(t.k) + start) for t, start in zip(self.terms, self.col_offsets)]
        )
        values = np.hstack([t.values for t in self.terms])
        n, per_row = columns.shape
        indptr = np.arange(0, n * per_row + 1, per_row)
        return sp.csr_matrix((values.ravel(), columns.ravel(), indptr), shape=(n, self.q))

    def Z_forms(self) -> tuple[sp.csr_matrix, sp.csc_matrix]:
        """Z compressed by rows (new, not kept) and by columns (:attr:`Z`, converted from it if not built yet)."""
        rows = self.Z_rows()
        if "Z" not in self.__dict__:
            self.__dict__["Z"] = rows.tocsc()
        return rows, self.Z

    @cached_property
    def lambda_pattern(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows, columns and θ index of every structural nonzero of Λ."""
        rows, cols, idx = [], [], []
        for i, t in enumerate(self.terms):
            base = np.arange(t.n_levels) * t.k + self.col_offsets[i]
            for s, (r, c) in enumerate(t.tril):
                rows.append(base + r)
                cols.append(base + c)
                idx.append(np.full(t.n_levels, self.theta_offsets[i] + s))
        return np.concatenate(rows), np.concatenate(cols), np.concatenate(idx)

    def canonical_theta(self, theta: np.ndarray) -> np.ndarray:
        """The θ with the same ΛΛ' and a non-negative diagonal in every T: columns of T with a negative
        diagonal change sign (for scalar terms, |θ|)."""
        theta = np.array(theta, dtype=float)
        for i, t in enumerate(self.terms):
            part = theta[self.theta_offsets[i] : self.theta_offsets[i + 1]]  # a view: flipped in place
            start = 0
            for j in range(t.k):
                column = slice(start, start + t.k - j)  # column j of T: rows j..k-1, stored column-wise
                if part[start] < 0:
                    part[column] *= -1.0
                start += t.k - j
        return theta

    def Lambda(self, theta: np.ndarray) -> sp.csc_matrix:
        rows, cols, idx = self.lambda_pattern
        return sp.csc_matrix((theta[idx], (rows, cols)), shape=(self.q, self.q))

    def split_b(self, b: np.ndarray) -> list[np.ndarray]:
        """The vector b (length q) as one ℓ × k array per term."""
        return [
            b[self.col_offsets[i] : self.col_offsets[i + 1]].reshape(t.n_levels, t.k) for i, t in enumerate(self.terms)
        ]

    def flist(self) -> dict[str, GroupingFactor]:
        """Distinct grouping factors in term order."""
        out: dict[str, GroupingFactor] = {}
        for t in self.terms:
            out.setdefault(t.group, t.factor)
        return out


def random_effects(bars, data: pd.DataFrame) -> RandomEffects:
    """Build every term of ``bars`` on ``data`` (the rows already used by the fit)."""
    factors: dict[str, GroupingFactor] = {}
    terms = []
    for bar in bars:
        if bar.group not in factors:
            factors[bar.group] = grouping_factor(bar.group, data)
        gf = factors[bar.group]
        if len(gf.codes) and gf.codes.min() < 0:
            raise DataError(f"the grouping factor {bar.group!r} has missing values")
        design = design_matrix(bar.lhs, data, f"random-effects term {bar}")
        if design.values.shape[1] == 0:
            raise DataError(f"the random-effects term {bar} has no columns: write (1 | {bar.group}) for an intercept")
        if not np.all(np.isfinite(design.values)):
            raise DataError(f"the random-effects term {bar} has non-finite values")
        check_squares(design.values, design.names, f"column of the random-effects term {bar}")
        if bar.structure in ("cs", "homcs", "ar1", "homar1") and design.values.shape[1] < 2:
            raise FormulaError(
                f"{bar} has one effect: a correlation needs two or more; write ({bar.lhs} | {bar.group})"
            )
        terms.append(ReTerm(bar, gf, design))
    return RandomEffects(_lme4_order(terms))
