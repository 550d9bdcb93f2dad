"""HLM-style model specification: level-1 and level-2 (and level-3) equations → one lme4 formula → :func:`lmer`.

HLM and MLwiN users write a two-level model as a regression within groups whose coefficients are outcomes of
group-level regressions (Raudenbush and Bryk, *Hierarchical Linear Models*, chapter 2)::

    level 1:  mathach_ij = β0j + β1j ses_ij + r_ij
    level 2:  β0j = γ00 + γ01 sector_j + γ02 meanses_j + u0j
              β1j = γ10 + γ11 sector_j + u1j

Substituting level 2 into level 1 gives the mixed model: the level-2 predictors of the intercept become main
effects, those of a slope its cross-level interactions, and the u's a random-effects term::

    mathach ~ sector + meanses + ses + ses:sector + (1 + ses | school)

:func:`hlm` takes the equations in this form (``level1="mathach ~ ses"``, ``level2={"(Intercept)": "~ sector +
meanses", "ses": "~ sector"}``), builds that formula and fits it with :func:`skmixed.lmer`; the result is the
ordinary :class:`~skmixed.LmerResult` (its ``formula`` shows the substitution).

A level-1 coefficient without a level-2 equation is γ_q0 alone.  Which coefficients get a u term: by default the
intercept and every coefficient that has a level-2 equation (``random=`` lists them otherwise).

Three levels (HLM3: students in schools in districts) take ``group=["school", "district"]`` (innermost first) and
``level3={...}``, keyed by the level-2 coefficients: the terms of the substituted level-1/level-2 model,
``"(Intercept)"`` for β00, ``"sector"`` for the coefficient of sector in the intercept's equation, ``"ses"`` for
β10, ``"ses:sector"`` for β11.  Each ``level3`` equation multiplies its coefficient's term by the level-3
predictors; by default the level-3 random terms are the intercept and the coefficients with a level-3 equation,
and ``random={"school": [...], "district": [...]}`` chooses both levels.  When the level-2 units' labels repeat
across level-3 units (school 1 of district A and school 1 of district B), the level-2 term groups by
``district:school``, as lme4's ``(1 | district/school)`` does.

HLM warns when a level-2 predictor varies within a level-2 unit (and a level-3 one within a level-3 unit); so
does :func:`hlm`.
"""

from __future__ import annotations

import warnings

import pandas as pd

from .exceptions import FormulaError, OptionError
from .formula import split_top

INTERCEPT = "(Intercept)"


def _terms(rhs: str, where: str) -> tuple[bool, list[str]]:
    """(has an intercept, the other terms as formulaic writes them) of a right-hand side."""
    from .model_matrix import formulaic_error, parsed_rhs

    try:
        parsed = parsed_rhs(rhs)
    except formulaic_error() as e:
        raise FormulaError(f"{where}: cannot read {rhs!r} ({e})") from None
    terms = [str(t) for t in parsed]
    return "1" in terms, [t for t in terms if t != "1"]


def _key(term: str) -> frozenset:
    """A term as its set of factors, so that ``female:ses`` and ``ses:female`` are one coefficient."""
    return frozenset(p.strip() for p in term.split(":"))


def _rhs(text: str, where: str) -> str:
    """The right-hand side of ``"~ x + z"`` or ``"x + z"``; a left-hand side is an error (the key names it)."""
    parts = split_top(text, "~")
    if len(parts) > 2 or (len(parts) == 2 and parts[0][1].strip()):
        raise FormulaError(f"{where}: write only the right-hand side, as '~ x + z', not {text!r}")
    rhs = parts[-1][1].strip()
    if not rhs:
        raise FormulaError(f"{where} is empty: write '~ 1' for an intercept alone")
    return rhs


class _Level:
    """One level's coefficients: each named coefficient with its equation's terms (intercept and predictors)."""

    def __init__(self, coefficients: list[str], equations: dict | None, level: int):
        self.coefficients = coefficients
        self.lookup = {_key(c): c for c in coefficients}
        self.equations: dict[str, tuple[bool, list[str]]] = {}
        for key, text in (equations or {}).items():
            name = self.name(key, level)
            if not isinstance(text, str):
                raise FormulaError(f"the level-{level} equation of {name!r} must be a string such as '~ x + z'")
            self.equations[name] = _terms(_rhs(text, f"the level-{level} equation of {name!r}"), f"level {level}")

    def name(self, key: str, level: int) -> str:
        if str(key).strip() in (INTERCEPT, "Intercept", "1", "intercept"):
            key = INTERCEPT
        found = self.lookup.get(_key(str(key)) if key != INTERCEPT else frozenset([INTERCEPT]))
        if found is None:
            raise FormulaError(
                f"the level-{level} equations name {key!r}, which is not a level-{level - 1} coefficient: those are "
                f"{', '.join(self.coefficients)}"
            )
        return found

    def substituted(self) -> list[str]:
        """The terms of the next level down's coefficients times this level's predictors (γ's terms)."""
        out = []
        for c in self.coefficients:
            intercept, predictors = self.equations.get(c, (True, []))
            base = [] if c == INTERCEPT else [c]
            if intercept:
                out.append(INTERCEPT if c == INTERCEPT else c)
            out.extend(p if c == INTERCEPT else ":".join(base + [p]) for p in predictors)
        return out


def _random(random, groups: list[str], levels: list[_Level]) -> dict[str, list[str]]:
    """The coefficients with a u term at each grouping level (default: the intercept and those with an equation)."""
    if random is None:
        random = {}
    elif not isinstance(random, dict):
        if isinstance(random, str):
            random = [random]
        random = {groups[0]: list(random)}
    unknown = set(random) - set(groups)
    if unknown:
        raise OptionError(f"random= names {', '.join(map(repr, sorted(unknown)))}: the groups are {', '.join(groups)}")
    out = {}
    for g, level, number in zip(groups, levels, range(2, 4)):
        if g in random:
            out[g] = [level.name(c, number) for c in random[g]]
        else:
            out[g] = [c for c in level.coefficients if c == INTERCEPT or c in level.equations]
    return out


def _bar(coefficients: list[str], group: str) -> str | None:
    if not coefficients:
        return None
    intercept = INTERCEPT in coefficients
    rest = [c for c in coefficients if c != INTERCEPT]
    return f"({' + '.join(['1' if intercept else '0'] + rest)} | {group})"


def _check_constant(data: pd.DataFrame, level: _Level, units: list[str], number: int) -> None:
    """Warn (as HLM does) when a level-``number`` predictor varies within a unit (the rows sharing ``units``)."""
    from .model_matrix import design_matrix

    codes = data.groupby(units, observed=True, dropna=False, sort=False).ngroup().to_numpy()
    seen = set()
    for c, (_, predictors) in level.equations.items():
        for p in predictors:
            if p in seen:
                continue
            seen.add(p)
            values = design_matrix(f"0 + {p}", data, f"level-{number} predictor {p!r} (of {c!r})").values
            spread = pd.DataFrame(values).groupby(codes).nunique(dropna=True).max().max()
            if spread > 1:
                warnings.warn(
                    f"the level-{number} predictor {p!r} varies within units of {':'.join(units)!r}: a "
                    f"level-{number} predictor should be constant in each (use its mean over the unit, or move it "
                    f"to level {number - 1})",
                    UserWarning,
                    stacklevel=5,
                )


def hlm_formula(level1: str, level2=None, group=None, data: pd.DataFrame | None = None, level3=None, random=None):
    """The lme4 formula of the equations (see :func:`hlm`); with ``data``, also the checks of their variables."""
    groups = [group] if isinstance(group, str) else list(group or [])
    if not groups or len(groups) > 2 or not all(isinstance(g, str) for g in groups):
        raise OptionError("group= is the level-2 grouping column, or [level-2, level-3] columns for three levels")
    if level3 is not None and len(groups) != 2:
        raise OptionError("level3= needs two groups: group=[level-2 column, level-3 column]")
    if not isinstance(level1, str) or len(split_top(level1, "~")) != 2:
        raise FormulaError(f"level1= must be a formula 'y ~ x + z', not {level1!r}")
    (_, response), (_, rhs) = split_top(level1, "~")
    if not response.strip():
        raise FormulaError(f"level1={level1!r} has no response: write 'y ~ x + z'")
    intercept, terms = _terms(rhs.strip() or "1", "level 1")
    l2 = _Level(([INTERCEPT] if intercept else []) + terms, level2, 2)
    levels = [l2]
    if len(groups) == 2:
        levels.append(_Level(l2.substituted(), level3, 3))
    chosen = _random(random, groups, levels)
    fixed = levels[-1].substituted()
    names = list(groups)
    if data is not None:
        names = _check_data(data, groups, levels)
    bars = [b for b in (_bar(chosen[g], n) for g, n in zip(groups, names)) if b]
    if not bars:
        raise OptionError("no coefficient has a random effect (random= is empty): fit it by OLS, or list one")
    has_intercept = INTERCEPT in fixed
    parts = (["1"] if has_intercept and len(fixed) == 1 else []) + [t for t in fixed if t != INTERCEPT]
    if not has_intercept:
        parts = ["0"] + parts
    return f"{response.strip()} ~ {' + '.join(parts)} + {' + '.join(bars)}"


def _check_data(data: pd.DataFrame, groups: list[str], levels: list[_Level]) -> list[str]:
    """Check the groups and the level-2/3 predictors; the grouping names of the bars (``district:school`` when the
    level-2 labels repeat across level-3 units)."""
    if not isinstance(data, pd.DataFrame):
        raise OptionError(f"data= must be a pandas DataFrame, not {type(data).__name__}")
    for g in groups:
        if g not in data.columns:
            raise OptionError(f"group {g!r} is not a column of the data")
    names = list(groups)
    units = [[g] for g in groups]
    if len(groups) == 2:
        inner, outer = groups
        per_unit = data[[inner, outer]].dropna().groupby(inner, observed=True)[outer].nunique()
        if (per_unit > 1).any():
            names[0], units[0] = f"{outer}:{inner}", [outer, inner]
    for level, unit, number in zip(levels, units, (2, 3)):
        _check_constant(data, level, unit, number)
    return names


def hlm(
    level1: str,
    level2: dict | None = None,
    group=None,
    data: pd.DataFrame | None = None,
    *,
    level3: dict | None = None,
    random=None,
    REML: bool = True,
    weights=None,
    offset=None,
    **options,
):
    """Fit a model written as HLM's level equations, by substituting them into one lme4 formula for :func:`lmer`.

    ``level1``: the within-group regression, ``"mathach ~ ses"`` (``"y ~ 0 + x"`` without an intercept).
    ``level2``: for each level-1 coefficient (``"(Intercept)"``, ``"ses"``) the right-hand side of its equation,
    ``"~ sector + meanses"``; a coefficient left out is a constant γ, and ``"~ 1"`` makes one random without
    level-2 predictors. ``group``: the level-2 grouping column, or
    ``[level-2, level-3]`` columns with ``level3`` (keyed by the substituted model's terms, as the module's
    docstring explains). ``random``: the coefficients with a u term, a list (level 2) or a dict by group; by
    default the intercept and every coefficient with an equation at that level.

    ``REML``, ``weights``, ``offset`` and other options go to :func:`skmixed.lmer`; the result is its
    :class:`~skmixed.LmerResult` (``m.formula`` is the substituted formula; ``m.equations()`` prints it back as
    equations).  A level-2 predictor that varies within a group draws a warning, as in HLM.
    """
    from .lmm import lmer

    if not isinstance(data, pd.DataFrame):
        raise OptionError(f"data= must be a pandas DataFrame, not {type(data).__name__}")
    formula = hlm_formula(level1, level2, group, data, level3, random)
    return lmer(formula, data, REML=REML, weights=weights, offset=offset, **options)


__all__ = ["hlm", "hlm_formula"]
