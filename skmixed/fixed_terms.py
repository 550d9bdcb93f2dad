"""The terms of an LMM's fixed part as R's ``terms()`` sees them: labels, the columns of X each owns, their
variables, which terms contain which, and X remade with other codings (what lmerTest's F tables need).

A term (``standLRT:sex``) is a product of variables; its label is R's (variables deparsed, in the order they first
appear in the formula, joined by ``:``).  A variable counts as numeric, for lmerTest's containment rule, when R's
``dataClasses`` would call it ``"numeric"``: one numeric column, and not a matrix-valued ``poly()``, ``ns()`` or
``bs()``.  Factors (and logical and character variables) are coded as the fit coded them: each scoped term of
formulaic's model spec says which factors carry contrasts (``reduced``) and which all their levels, as R's rule
for the margins present in the formula decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .model_matrix import model_matrix, r_names
from .rank import drop_aliased
from .rnames import column_name

#: calls whose value is a matrix (R's dataClass ``nmatrix.k``), never "numeric" for lmerTest's containment
_MATRIX_CALLS = ("poly(", "ns(", "bs(")


@dataclass(frozen=True)
class Variable:
    """One variable of the fixed part: for a factor, the indicator of each level (n × levels); else its column(s)."""

    expr: str
    categorical: bool
    values: np.ndarray
    names: list[str]  # formulaic's name of each column (``sex[M]``)

    @property
    def numeric(self) -> bool:
        """R's ``dataClasses(...) == "numeric"``: one numeric column that is not a matrix-valued call."""
        return not self.categorical and self.values.shape[1] == 1 and not self.expr.startswith(_MATRIX_CALLS)


@dataclass(frozen=True)
class Term:
    """A term of the fixed part: R's label, its variables and, per scoped term (formulaic), which factors carry
    contrasts; ``columns`` indexes the fitted X (aliased columns left out)."""

    label: str
    variables: tuple[str, ...]
    scoped: tuple[tuple[tuple[str, bool], ...], ...]
    columns: np.ndarray


class FixedTerms:
    """The fixed part of the fit ``m`` as terms (R's order, the intercept left out)."""

    def __init__(self, m):
        frame = m.frame
        spec = frame.x_spec
        self.n = len(frame.y)
        self.X = frame.X
        self.names = list(frame.x_names)
        self.intercept = False
        self._data = frame.data
        self._design = frame.x_design.values
        position = {name: j for j, name in enumerate(self.names)}
        all_names = iter(r_names(spec, m.formula))
        terms, self._code, self._owner = [], {}, []
        for structure in spec.structure:
            columns = [position.get(next(all_names)) for _ in structure.columns]
            factors = structure.term.factors
            if not factors or [f.expr for f in factors] == ["1"]:
                self.intercept = True
                self._owner += ["(Intercept)"] * len(columns)
                continue
            for f in factors:
                self._code[f.expr] = f"`{f.expr}`" if _lookup(f) else f.expr
            label = column_name(":".join(f.expr for f in factors), list(factors), m.formula)
            scoped = tuple(tuple((f.factor.expr, bool(f.reduced)) for f in s.factors) for s in structure.scoped_terms)
            kept = np.array([j for j in columns if j is not None], dtype=int)
            terms.append(Term(label, tuple(f.expr for f in factors), scoped, kept))
            self._owner += [label] * len(columns)
        self.terms = terms
        self._categorical = {expr: state[0].value == "categorical" for expr, state in spec.encoder_state.items()}

    @property
    def labels(self) -> list[str]:
        return [t.label for t in self.terms]

    def __getitem__(self, label: str) -> Term:
        return next(t for t in self.terms if t.label == label)

    @cached_property
    def variables(self) -> dict[str, Variable]:
        """Every variable of the terms, evaluated on the fit's rows."""
        out = {}
        for t in self.terms:
            for expr in t.variables:
                if expr not in out:
                    matrix = model_matrix(f"0 + {self._code[expr]}", self._data, "fixed-effects variable")
                    categorical = self._categorical.get(expr, False)
                    out[expr] = Variable(expr, categorical, np.asarray(matrix, dtype=float), list(matrix.columns))
        return out

    # --- relations between terms ---------------------------------------------------------------------------
    def containment(self) -> dict[str, list[str]]:
        """For each term, the terms that contain it (lmerTest's ``containment``): with all its variables coded by
        contrasts and more, and the same numeric ones among those.

        "Coded by contrasts" is R's entry 1 (not 2) in ``attr(terms, "factors")``: a variable of an interaction
        whose margin without it is a term of the model (every variable of a main effect).  So, as in lmerTest,
        ``x:sex`` without ``x`` or ``sex`` has no such variable and counts as contained in every term with the
        same (no) numeric ones."""
        variables = self.variables
        present = {frozenset(t.variables) for t in self.terms}

        def coded(t: Term) -> set[str]:
            whole = set(t.variables)
            return {v for v in t.variables if len(whole) == 1 or frozenset(whole - {v}) in present}

        sets = {t.label: coded(t) for t in self.terms}
        numerics = {label: {v for v in s if variables[v].numeric} for label, s in sets.items()}

        def contains(big: str, small: str) -> bool:
            return sets[small] < sets[big] and numerics[small] == numerics[big]

        return {a: [b for b in sets if contains(b, a)] for a in sets}

    def marginal(self) -> list[str]:
        """The terms no other term holds all the variables of (R's ``drop.scope``): those drop1 may remove."""
        sets = [set(t.variables) for t in self.terms]
        inside = [any(a <= b for j, b in enumerate(sets) if j != i) for i, a in enumerate(sets)]
        return [t.label for t, held in zip(self.terms, inside) if not held]

    def order(self, label: str) -> int:
        """The number of variables in a term (R's ``attr(terms, "order")``)."""
        return len(self[label].variables)

    def design_with_aliased(self) -> tuple[np.ndarray, list[str]]:
        """The fixed part's model matrix before aliased columns were dropped, and the term owning each column."""
        return self._design, list(self._owner)

    # --- X with other codings --------------------------------------------------------------------------------
    def _columns(self, term: Term, coding) -> tuple[np.ndarray, list[tuple]]:
        """The columns of a term as products of its variables' codings, with a key naming each column by
        (term, (variable, level or column index), ...)."""
        blocks, keys = [], []
        for factors in coding(term):
            cols, key = [np.ones(self.n)], [()]
            for expr, kind in factors:
                values = self.variables[expr].values
                levels = range(1, values.shape[1]) if kind == "treatment" else range(values.shape[1])
                cols = [c * values[:, j] for j in levels for c in cols]  # the first variable varies fastest
                key = [k + ((expr, j),) for j in levels for k in key]
            blocks += cols
            keys += [(term.label,) + k for k in key]
        return np.column_stack(blocks) if blocks else np.zeros((self.n, 0)), keys

    def column_name(self, key: tuple) -> str:
        """A column's key as text: its variables' levels or columns, ``sex[M]:schgend[boys]``."""
        return ":".join(self.variables[expr].names[j] for expr, j in key[1:]) or key[0]

    def treatment_matrix(self) -> tuple[np.ndarray, list[tuple]]:
        """X remade with treatment contrasts for every factor that carries contrasts, its aliased columns dropped
        as R's ``qr()`` drops them (lmerTest's ``get_model_matrix(type="remake", contrasts="contr.treatment")``
        and ``ensure_full_rank``), with each column's key."""

        def coding(term):
            return [
                [(e, "treatment" if reduced and self.variables[e].categorical else "full") for e, reduced in s]
                for s in term.scoped
            ]

        return self._matrix(coding, drop=True)

    def complete_matrix(self) -> tuple[np.ndarray, list[tuple]]:
        """Each term with every level of its factors (lmerTest's ``get_rdX``: ``model.matrix(~ 0 + term)``),
        with each column's key."""
        return self._matrix(lambda term: [[(e, "full") for e in term.variables]], drop=False)

    def _matrix(self, coding, drop: bool) -> tuple[np.ndarray, list[tuple]]:
        blocks, keys = ([np.ones((self.n, 1))], [("(Intercept)",)]) if self.intercept else ([], [])
        for term in self.terms:
            cols, k = self._columns(term, coding)
            blocks.append(cols)
            keys += k
        X = np.hstack(blocks) if blocks else np.zeros((self.n, 0))
        if drop and X.shape[1]:
            labels = [repr(k) for k in keys]
            X, kept, _ = drop_aliased(X, labels)
            keys = [keys[labels.index(k)] for k in kept]
        return X, keys


def _lookup(factor) -> bool:
    """Whether formulaic reads the factor as a column name verbatim (then formula text must backquote it)."""
    return str(getattr(factor.eval_method, "value", factor.eval_method)) == "lookup"
