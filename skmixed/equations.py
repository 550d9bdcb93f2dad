"""A fitted LMM written as HLM writes it: level-1 and level-2 (and level-3) equations with the estimates in place.

Raudenbush and Bryk's notation (*Hierarchical Linear Models*, chapters 2 and 8), as HLM prints it: with two
levels, Y_ij = β0j + β1j X_ij + r_ij and β_qj = γ_q0 + γ_q1 W_j + u_qj; with three, the level-1 coefficients
are π's (residual e), the level-2 ones β's (residual r) and the level-3 ones γ's (residual u).  Any lme4 formula
whose grouping factors are nested is read this way (:mod:`skmixed.levels` finds the level of each variable from
the data), so a model fitted by :func:`skmixed.lmer` prints as equations as well as one fitted by
:func:`skmixed.hlm`.  A model with crossed factors has no such form: it is printed in mixed-model form, and says
why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .levels import INTERCEPT, hierarchy, level_counts, paths

#: per number of levels: the coefficient letters (level 1, 2, 3), residual letters (level 1, 2, 3), unit subscripts
_NOTATION = {
    2: (("β", "γ"), ("r", "u"), "ij"),
    3: (("π", "β", "γ"), ("e", "r", "u"), "ijk"),
}
_LATEX = {"β": r"\beta", "γ": r"\gamma", "π": r"\pi"}


@dataclass(frozen=True)
class Symbol:
    """A letter with its coefficient indices and unit subscripts: β (0, 1) "j" is β01j."""

    letter: str
    indices: tuple[int, ...] = ()
    units: str = ""

    def text(self) -> str:
        if not self.indices and self.units:
            return f"{self.letter}_{self.units}"
        return self.letter + "".join(map(str, self.indices)) + self.units

    def latex(self) -> str:
        sub = "".join(map(str, self.indices)) + self.units
        return _LATEX.get(self.letter, self.letter) + (f"_{{{sub}}}" if sub else "")


@dataclass
class Term:
    """A coefficient times a variable ("" for an intercept); ``estimate``/``se`` for the fixed γ's."""

    symbol: Symbol
    variable: str = ""
    estimate: float | None = None
    se: float | None = None


@dataclass
class Equation:
    lhs: Symbol
    terms: list[Term]
    residual: Symbol | None = None


@dataclass
class Level:
    """One level's equations, and the covariance of its residuals (labelled by their symbols)."""

    number: int
    group: str | None
    units: int
    equations: list[Equation]
    residuals: list[Symbol] = field(default_factory=list)
    covariance: np.ndarray | None = None


def _fmt(x: float, digits: int) -> str:
    return f"{x:.{digits}g}" if abs(x) >= 10 ** (-digits) or x == 0 else f"{x:.{digits - 1}e}"


def _variable(name: str, units: str, latex: bool) -> str:
    if latex:
        return r"\text{" + name.replace("_", r"\_").replace("^", r"\^{}").replace("$", r"\$") + "}_{" + units + "}"
    return f"{name}_{units}"


def _rhs(terms: list[Term], units: str, estimates: bool, latex: bool, digits: int) -> str:
    out = []
    for i, t in enumerate(terms):
        if estimates and t.estimate is not None:
            sign = "-" if t.estimate < 0 else "+"
            value = _fmt(abs(t.estimate), digits)
            se = _fmt(t.se, digits)
            coef = rf"\underset{{({se})}}{{{value}}}" if latex else f"{value} ({se})"
        else:
            sign, coef = "+", (t.symbol.latex() if latex else t.symbol.text())
        var = "" if not t.variable else ((r"\," if latex else "·") + _variable(t.variable, units, latex))
        prefix = ("-" if sign == "-" else "") if i == 0 else (" − " if sign == "-" and not latex else f" {sign} ")
        out.append(prefix + coef + var)
    return "".join(out) if out else "0"


class Equations:
    """A model's level equations: a plain-text ``repr``, ``_repr_latex_`` for Jupyter and :meth:`to_latex`.

    ``levels`` holds the equations per level; ``sigma2`` the level-1 variance; ``mixed`` the mixed-model form's
    text when the model is not hierarchical (``reason`` says why).
    """

    def __init__(self, response, levels, sigma2, weighted, reason=None, mixed=None, digits=4):
        self.response, self.levels, self.sigma2, self.weighted = response, levels, sigma2, weighted
        self.reason, self.mixed, self.digits = reason, mixed, digits

    @property
    def hierarchical(self) -> bool:
        return self.reason is None

    def _units(self, level: int) -> str:
        units = _NOTATION[len(self.levels)][2]
        return units[level - 1 :]

    def _lines(self, estimates: bool, latex: bool) -> list[tuple[str, str, str]]:
        """(heading, lhs, rhs) rows; a heading row has empty lhs and rhs."""
        rows = []
        for level in self.levels:
            where = "" if level.group is None else f" ({level.group}: {level.units} units)"
            rows.append((f"Level-{level.number} model{where}", "", ""))
            units = self._units(level.number)
            for eq in level.equations:
                rhs = _rhs(eq.terms, units, estimates, latex, self.digits)
                if eq.residual is not None:  # a random coefficient without a fixed part is its u alone
                    residual = eq.residual.latex() if latex else eq.residual.text()
                    rhs = residual if rhs == "0" else f"{rhs} + {residual}"
                lhs = _variable(self.response, units, latex) if level.number == 1 else None
                rows.append(("", lhs or (eq.lhs.latex() if latex else eq.lhs.text()), rhs))
        return rows

    def _variances(self, latex: bool) -> list[str]:
        d = self.digits
        first = self.levels[0].equations[0].residual
        r = first.latex() if latex else first.text()
        w = (r" / w_{" + self._units(1) + "}" if latex else f"/w_{self._units(1)}") if self.weighted else ""
        s2 = _fmt(self.sigma2, d)
        out = [
            rf"\operatorname{{Var}}({r}) = \sigma^2{w},\quad \sigma^2 = {s2}"
            if latex
            else f"Var({r}) = σ²{w},  σ² = {s2}"
        ]
        for level in self.levels[1:]:
            if not level.residuals:
                continue
            names = [s.latex() if latex else s.text() for s in level.residuals]
            C = level.covariance
            if latex:
                body = r" \\ ".join(" & ".join(_fmt(v, d) for v in row) for row in C)
                out.append(
                    rf"\operatorname{{Var}}({', '.join(names)}) = \tau_{{\text{{{level.group}}}}} = "
                    rf"\begin{{pmatrix}} {body} \end{{pmatrix}}"
                )
            else:
                width = max(len(_fmt(v, d)) for v in C.ravel())
                label = f"Var({', '.join(names)}) = τ ({level.group}):"
                out.append(label)
                for name, row in zip(names, C):
                    out.append(f"    {name:<6} " + "  ".join(f"{_fmt(v, d):>{width}}" for v in row))
        return out

    def __str__(self) -> str:
        if not self.hierarchical:
            return f"Not a hierarchical model ({self.reason}); in mixed-model form:\n" + self.mixed
        out = []
        for estimates in (False, True):
            out.append("With the estimates (standard errors):" if estimates else "Model:")
            rows = self._lines(estimates, latex=False)
            width = max(len(lhs) for _, lhs, _ in rows)
            for head, lhs, rhs in rows:
                out.append(f"  {head}" if head else f"    {lhs:>{width}} = {rhs}")
        out.append("Variance components:")
        out.extend(f"  {line}" for line in self._variances(latex=False))
        return "\n".join(out)

    __repr__ = __str__

    def to_latex(self) -> str:
        """The equations with the estimates in place (standard errors under them) in an ``aligned`` environment."""
        if not self.hierarchical:
            return r"\text{Not hierarchical (" + self.reason.replace("'", "") + r"); see the text form}"
        lines = []
        for head, lhs, rhs in self._lines(estimates=True, latex=True):
            lines.append(rf"&\text{{{head}}}" if head else f"{lhs} &= {rhs}")
        lines.extend(f"&{v}" for v in self._variances(latex=True))
        return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"

    def _repr_latex_(self) -> str:
        return "$$\n" + self.to_latex() + "\n$$"


def equations(m, digits: int = 4) -> Equations:
    """The level equations of a fitted LMM (see the module docstring); ``digits``: significant digits shown."""
    chain, reason = hierarchy(m)
    if reason is None and len(chain) > 2:
        reason = f"{len(chain) + 1} levels: HLM's notation has at most three"
    response = m.parsed.response
    weighted = not np.allclose(m.frame.weights, 1.0)
    if reason is None:
        built = _build(m, chain)
        if isinstance(built, str):
            reason = built
        else:
            return Equations(response, built, m.sigma**2, weighted, digits=digits)
    return Equations(response, [], m.sigma**2, weighted, reason=reason, mixed=_mixed_form(m, digits))


def _order(values) -> list[str]:
    """Distinct values in order of appearance, the intercept ("") first."""
    seen = list(dict.fromkeys(values))
    return ([""] if "" in seen else []) + [v for v in seen if v]


def _numbering(names: list[str]) -> dict[str, int]:
    """HLM's indices: 0 for the intercept, then 1, 2, ... in order."""
    out, k = {}, 1
    for n in names:
        if n == "":
            out[n] = 0
        else:
            out[n], k = k, k + 1
    return out


def _build(m, chain: list[str]) -> list[Level] | str:
    """The levels' equations, or why the random effects do not fit the hierarchy."""
    builder = _Builder(m, chain)
    if builder.problem:
        return builder.problem
    return [builder.level1()] + [builder.level(depth) for depth in range(2, builder.L + 1)]


class _Builder:
    """The coefficients as a tree: a level-ℓ coefficient is the path of parts of the columns that share it."""

    def __init__(self, m, chain: list[str]):
        self.m, self.chain, self.L = m, chain, len(chain) + 1
        self.letters, self.residual_letters, self.units = _NOTATION[self.L]
        cache: dict = {}
        self.fixed = paths(m, chain, m.frame.x_design, m.frame.x_names, cache, self.L)
        self.random: dict[str, list] = {}  # per factor: (path, term index, effect index)
        self.problem = None
        for i, t in enumerate(m.re.terms):
            h = chain.index(t.group) + 2
            for k, (effect, path) in enumerate(paths(m, chain, t.design, t.effects, cache, self.L).items()):
                if any(path.part(level) for level in range(h, self.L + 1)):
                    self.problem = f"the random effect {effect!r} of {t.group!r} does not vary within {t.group!r}"
                self.random.setdefault(t.group, []).append((path, i, k))

    def tree(self, prefix: tuple[str, ...]) -> list[str]:
        """The next level's parts of the columns (fixed and random) whose first parts are ``prefix``."""
        n = len(prefix)
        parts = [p.part(n + 1) for p in self.fixed.values() if p.parts[:n] == prefix]
        parts += [p.part(n + 1) for g in self.random for p, _, _ in self.random[g] if p.parts[:n] == prefix]
        return _order(parts)

    def level1(self) -> Level:
        names = self.tree(())
        nums = _numbering(names)
        terms = [Term(Symbol(self.letters[0], (nums[p],), self.units[1:]), p) for p in names]
        return Level(
            1, None, self.m.nobs, [Equation(Symbol("y"), terms, Symbol(self.residual_letters[0], (), self.units))]
        )

    def level(self, depth: int) -> Level:
        """Level ``depth``'s equations: one per coefficient of the level below, the γ's estimated at the top."""
        m, L, units = self.m, self.L, self.units[depth - 1 :]
        est, se = m.fixef, m.fixef_se
        g = self.chain[depth - 2]
        level = Level(depth, g, level_counts(m, self.chain)[depth - 2], [])
        residual_cov = []
        for prefix in _prefixes(self.tree, depth - 1):
            idx = _indices(prefix, self.tree)
            nums = _numbering(self.tree(prefix))
            if depth == L:
                terms = [
                    Term(Symbol(self.letters[L - 1], idx + (nums[p.part(depth)],)), p.part(depth), est[c], se[c])
                    for c, p in self.fixed.items()
                    if p.parts[: depth - 1] == prefix
                ]
            else:
                terms = [Term(Symbol(self.letters[depth - 1], idx + (nums[n],), units[1:]), n) for n in nums]
            hit = [(i, k) for p, i, k in self.random.get(g, []) if p.parts[: depth - 1] == prefix]
            residual = Symbol(self.residual_letters[depth - 1], idx, units) if hit else None
            if hit:
                level.residuals.append(residual)
                residual_cov.append(hit[0])
            level.equations.append(Equation(Symbol(self.letters[depth - 2], idx, units), terms, residual))
        if residual_cov:
            covariances = m._term_covariances()
            level.covariance = np.array(
                [[covariances[i][a, b] if i == j else 0.0 for j, b in residual_cov] for i, a in residual_cov]
            )
        return level


def _prefixes(tree, depth: int) -> list[tuple[str, ...]]:
    """Every coefficient at ``depth`` (1: level-1 coefficients) as its path of parts."""
    out = [()]
    for _ in range(depth):
        out = [prefix + (part,) for prefix in out for part in tree(prefix)]
    return out


def _indices(prefix: tuple[str, ...], tree) -> tuple[int, ...]:
    out = []
    for n in range(len(prefix)):
        out.append(_numbering(tree(prefix[:n]))[prefix[n]])
    return tuple(out)


def _mixed_form(m, digits: int) -> str:
    """y_i = Σ β̂_k x_ik + Σ_terms z_i'b_g[i] + ε_i, with the estimates and the variance components."""
    est, se = m.fixef, m.fixef_se
    fixed = []
    for name in est.index:
        value = f"{_fmt(est[name], digits)} ({_fmt(se[name], digits)})"
        fixed.append(value if name == INTERCEPT else f"{value}·{name}_i")
    random = []
    for t in m.re.terms:
        parts = [f"b{k}" + ("" if e == INTERCEPT else f"·{e}_i") for k, e in enumerate(t.effects)]
        random.append(f"b_{t.group}[i]" if t.effects == [INTERCEPT] else f"({' + '.join(parts)})_{t.group}[i]")
    lines = [f"    {m.parsed.response}_i = " + " + ".join(fixed + random) + " + ε_i"]
    for t, C in zip(m.re.terms, m._term_covariances()):
        body = ", ".join(f"{e}: {_fmt(C[k, k], digits)}" for k, e in enumerate(t.effects))
        lines.append(f"    Var(b_{t.group}) diagonal: {body}")
    lines.append(f"    Var(ε_i) = σ² = {_fmt(m.sigma**2, digits)}")
    return "\n".join(lines)
