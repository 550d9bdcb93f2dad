"""A fitted model's hierarchy, read from its data: which grouping factors nest in which, the level of each variable,
and each fixed and random coefficient as a path of level-1, level-2 (and level-3) parts.

Levels: the observations are level 1, the innermost grouping factor level 2, the factor it nests in level 3.  A
variable (a factor of a formula term: ``meanses``, ``sector``, ``log(x)``) is at the highest level within whose
units it is constant.  A model-matrix column is a product of such variables, so it splits into its level-1 part
(the level-1 coefficient it belongs to: ``cses`` of ``meanses:cses``), its level-2 part (the level-2 predictor
of that coefficient: ``meanses``), and so on: the substitution of level equations, read backwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .model_matrix import design_matrix
from .reliability import nesting
from .rnames import _split_column, column_name

INTERCEPT = "(Intercept)"


@dataclass(frozen=True)
class Path:
    """A column as (level-1 part, level-2 part, level-3 part): R names of products of variables, "" for none."""

    parts: tuple[str, ...]

    def part(self, level: int) -> str:
        return self.parts[level - 1] if level - 1 < len(self.parts) else ""


def hierarchy(m) -> tuple[list[str], str | None]:
    """The grouping factors innermost first, and None; or [] and why the model is not hierarchical."""
    inside = nesting(m)
    names = list(inside)
    for i, g in enumerate(names):
        for h in names[i + 1 :]:
            if h in inside[g] and g in inside[h]:
                return [], f"the grouping factors {g!r} and {h!r} group the observations identically"
            if h not in inside[g] and g not in inside[h]:
                return [], f"the grouping factors {g!r} and {h!r} are crossed, not nested"
    return sorted(names, key=lambda g: len(inside[g])), None


def variable_level(m, expr: str, chain: list[str], cache: dict) -> int:
    """The highest level within whose units ``expr`` is constant (1 if it varies within the innermost groups)."""
    if expr not in cache:
        values = design_matrix(f"0 + {expr}", m.frame.data, f"variable {expr!r}").values
        level = 1
        flist = m.re.flist()
        for number, g in enumerate(chain, start=2):
            if pd.DataFrame(values).groupby(flist[g].codes).nunique().max().max() > 1:
                break
            level = number
        cache[expr] = level
    return cache[expr]


def column_factors(design) -> dict[str, list[tuple[str, str]]]:
    """For each R column name of a model matrix, its (variable, R name of the variable's part) pieces."""
    spec = design.spec
    out: dict[str, list[tuple[str, str]]] = {}
    names = iter(design.names)
    for st in spec.structure:
        factors = [f for f in st.term.factors if f.expr != "1"]
        for col in st.columns:
            name = next(names, None)
            if name is None:
                return out
            if not factors:
                out[name] = []
                continue
            pieces = _split_column(col, [f.expr for f in factors])
            if pieces is None:  # a column whose parts cannot be told apart: one variable, the whole term
                out[name] = [(st.term.factors[0].expr, name)]
                continue
            out[name] = [
                (expr, column_name(f"{expr}[T.{suffix}]" if suffix else expr, [f]))
                for (expr, suffix), f in zip(pieces, factors)
            ]
    return out


def paths(m, chain: list[str], design, names: list[str], cache: dict, top: int) -> dict[str, Path]:
    """The path of each column in ``names`` of ``design``: its pieces grouped by level (levels 1..top)."""
    pieces = column_factors(design)
    out = {}
    for name in names:
        parts = [[] for _ in range(top)]
        for expr, piece in pieces.get(name, []):
            level = min(variable_level(m, expr, chain, cache), top)
            parts[level - 1].append(piece)
        out[name] = Path(tuple(":".join(p) for p in parts))
    return out


def level_counts(m, chain: list[str]) -> list[int]:
    flist = m.re.flist()
    return [len(flist[g].levels) for g in chain]
