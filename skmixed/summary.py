"""lme4-style text and HTML summaries of a fitted mixed model."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from .ddf import ddf_method
from .exceptions import InputError, OptionError
from .rsyntax import deparse, parse


def _g(x: float, digits: int = 5) -> str:
    return "NaN" if not np.isfinite(x) else f"{x:.{digits}g}"


def _table(rows: list[list[str]], header: list[str], right: set[int]) -> str:
    """Columns padded to their widest cell; columns in ``right`` right-aligned."""
    cells = [list(r) + [""] * (len(header) - len(r)) for r in [header] + rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for r in cells:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        lines.append(" " + " ".join(parts).rstrip())
    return "\n".join(lines)


def random_effects_rows(m, variance: bool = True) -> tuple[list[str], list[list[str]]]:
    """Groups / Name / [Variance] / Std.Dev. / Corr rows, as lme4 prints VarCorr."""
    rows = []
    has_corr = any(t.k > 1 for t in m.re.terms)
    for name, t, V in zip(m._group_names(), m.re.terms, m._term_covariances()):
        sd = np.sqrt(np.diag(V))
        for j in range(t.k):
            row = [name if j == 0 else "", t.effects[j]]
            if variance:
                row.append(_g(V[j, j], 5))
            row.append(_g(sd[j], 5))
            if has_corr:
                corr = [V[j, k] / (sd[j] * sd[k]) if sd[j] > 0 and sd[k] > 0 else np.nan for k in range(j)]
                structured = t.structure != "us"
                row.append(
                    _structured_corr(t.structure, corr, j) if structured else " ".join(f"{c:5.2f}" for c in corr)
                )
            rows.append(row)
    last = ["Residual", ""] + ([_g(m.sigma**2, 5)] if variance else []) + [_g(m.sigma, 5)]
    if getattr(m, "has_dispersion", True):
        rows.append(last + ([""] if has_corr else []))
    header = ["Groups", "Name"] + (["Variance"] if variance else []) + ["Std.Dev."] + (["Corr"] if has_corr else [])
    return header, rows


def _structured_corr(structure: str, corr: list[float], j: int) -> str:
    """A structured term's Corr cell, as glmmTMB prints it: its one correlation (for ar1, at lag 1) once, with the
    structure's name, on the second effect's row; nothing for the diagonal structures."""
    if structure in ("diag", "homdiag") or j != 1:
        return ""
    return f"{corr[0]:5.2f} ({structure})"


def coef_table(m, ddf=None) -> pd.DataFrame:
    """The fixed effects' tests, by name: estimate, se, df, t, p for an LMM with ``ddf`` (Satterthwaite's or
    Kenward–Roger's method, as lmerTest's summary; Kenward–Roger's se is from the adjusted covariance), estimate,
    se, t without ``ddf`` (lme4's); a GLMM's Wald tests estimate, se, z, p."""
    from scipy import stats  # lazily: scipy.stats dominates import time

    est, se = m.fixef, m.fixef_se
    if getattr(m, "uses_z", False):
        if ddf is not None:
            raise OptionError(
                f"ddf={ddf!r}: Satterthwaite's and Kenward-Roger's df are for linear mixed models; a GLMM's fixed "
                "effects have Wald z tests (leave ddf out) and likelihood-ratio tests (skmixed.anova(m0, m1)), "
                "or fit the model with skmixed.lmer if the response is Gaussian"
            )
        z = est / se
        return pd.DataFrame({"estimate": est, "se": se, "z": z, "p": 2 * stats.norm.sf(np.abs(z))})
    method = ddf_method(ddf)
    if method is None:
        return pd.DataFrame({"estimate": est, "se": se, "t": est / se})
    from .ftests import t_tests

    table = t_tests(m, np.eye(len(est)), np.zeros(len(est)), method)
    table.index = est.index
    return table


#: coef_table's columns as lme4 and lmerTest print them
_R_COLUMNS = {
    "estimate": "Estimate",
    "se": "Std. Error",
    "df": "df",
    "t": "t value",
    "z": "z value",
    "p": None,  # Pr(>|t|) or Pr(>|z|)
}


def coefficient_table(m, ddf=None) -> pd.DataFrame:
    """:func:`coef_table` with R's column names: Estimate, Std. Error, [df,] t value[, Pr(>|t|)] (LMM) or
    z value, Pr(>|z|) (GLMM)."""
    table = coef_table(m, ddf)
    stat = "z" if "z" in table else "t"
    return table.rename(columns={k: v or f"Pr(>|{stat}|)" for k, v in _R_COLUMNS.items()})


def _title(m, ddf=None) -> str:
    """lme4's title, and lmerTest's when the t tests have df (R's spacing: lme4's ML title ends in a space)."""
    if hasattr(m, "title"):
        return m.title()
    how = "REML" if m.REML else "maximum likelihood "
    if ddf is None:
        return f"Linear mixed model fit by {how} ['lmerMod']"
    return f"Linear mixed model fit by {how}. t-tests use {ddf}'s method ['lmerModLmerTest']"


def _formula(m) -> str:
    """The formula as R prints it (its deparse: ``y ~ x + (1 | g)`` however it was spaced)."""
    try:
        return deparse(parse(m.formula))
    except InputError:
        return m.formula


def _header(m, ddf=None) -> list[str]:
    lines = [_title(m, ddf), f"Formula: {_formula(m)}"]
    if m.data_name:
        lines.append(f"   Data: {m.data_name}")
    return lines


def _groups_line(m) -> str:
    groups = "; ".join(f"{k}, {v}" for k, v in m.ngroups.items())
    return f"Number of obs: {m.nobs}, groups:  {groups}"


def _fit_statistics(m) -> str:
    if getattr(m, "REML", False):
        return f"REML criterion at convergence: {m.objective:.1f}"
    vals = [m.aic, m.bic, m.loglik, m.deviance, m.df_resid]
    names = ["AIC", "BIC", "logLik", "deviance", "df.resid"]
    cells = [f"{v:.1f}" if i < 4 else str(int(v)) for i, v in enumerate(vals)]
    w = max(max(len(c) for c in cells), 8)
    return "\n".join([" ".join(n.rjust(w) for n in names), " ".join(c.rjust(w) for c in cells)])


_VOWELS = set("aeiou")
#: the vowels R's abbreviate() drops from names with non-ASCII characters: accented ones, and '.' (R's list has it).
_WIDE_VOWELS = _VOWELS | set(".àáãäåèéêëìíîïòóôõöøùúûüāăąēĕėęěĩīĭįıōŏőũūŭůűų")
SINGULAR = "boundary (singular) fit: see result.is_singular and result.varcorr"


def _strip_chars(name: str, minlength: int) -> str:
    """One name shortened as R's abbreviate() does, dropping from the right end (never the first
    character, nor the first of a word): lower-case vowels ending a word, then any lower-case vowel,
    lower-case letters ending a word, any lower-case letter, then any character; stop at ``minlength``
    characters not counting spaces, and drop the spaces when the result is still longer."""
    s = list(name)
    vowels = _VOWELS if name.isascii() else _WIDE_VOWELS
    spaces = sum(c.isspace() for c in s)

    def starts_word(i: int) -> bool:
        return s[i - 1].isspace()

    def ends_word(i: int) -> bool:
        return not s[i - 1].isspace() and (i + 1 == len(s) or s[i + 1].isspace())

    def lower(i: int) -> bool:
        return "a" <= s[i] <= "z"

    stages = [
        lambda i: s[i] in vowels and ends_word(i),
        lambda i: s[i] in vowels and not starts_word(i),
        lambda i: lower(i) and ends_word(i),
        lambda i: lower(i) and not starts_word(i),
        lambda i: not starts_word(i) and not s[i].isspace(),
    ]
    done = len(s) - spaces <= minlength
    for drop in stages:
        i = len(s) - 1
        while i > 0 and not done:
            if drop(i):
                del s[i]
            done = len(s) - spaces <= minlength
            i -= 1
    if len(s) > minlength:
        s = s[:1] + [c for c in s[1:] if not c.isspace()]
    return "".join(s)


def abbreviate(names: list[str], minlength: int = 4) -> list[str]:
    """R's ``abbreviate(names, minlength)``: each name shortened to ``minlength`` characters (see
    :func:`_strip_chars`); names that collide are abbreviated again, one character longer, until unique."""
    names = [n.strip(" ") for n in names]
    unique = list(dict.fromkeys(names))
    short = [_strip_chars(n, minlength) if len(n) > minlength else n for n in unique]
    while len(set(short)) < len(short):
        minlength += 1
        seen, clashing = set(), set()
        for a in short:
            (clashing if a in seen else seen).add(a)
        short = [
            (_strip_chars(n, minlength) if len(n) > minlength else n) if a in clashing else a
            for n, a in zip(unique, short)
        ]
    lookup = dict(zip(unique, short))
    return [lookup[n] for n in names]


def fixed_correlation(m) -> pd.DataFrame:
    """The correlation matrix of the fixed-effects estimates."""
    V = m.vcov.to_numpy()
    sd = np.sqrt(np.diag(V))
    names = list(m.fixef.index)
    return pd.DataFrame(V / np.outer(sd, sd), index=names, columns=names)


def _correlation_of_fixed(m) -> str | None:
    """lme4's block: correlations to 3 decimals in the lower triangle, rows named by ``abbreviate(, 11)``
    and columns by ``abbreviate(, 6)``; for more than 12 coefficients only a note, as lme4 prints."""
    C = fixed_correlation(m)
    p = C.shape[0]
    if p < 2:
        return None
    if p > 12:
        return (
            f"Correlation matrix not shown by default, as p = {p} > 12.\n"
            "Use summary.correlation or result.vcov if you need it"
        )
    cells = [["NaN" if np.isnan(v) else f"{round(v, 3) + 0.0:.3f}" for v in row] for row in C.to_numpy()]
    width = max(len(c) for row in cells for c in row)
    rows, columns = abbreviate(list(C.index), 11)[1:], abbreviate(list(C.columns), 6)[: p - 1]
    widths = [max(width, len(h)) for h in columns]
    label = max(len(r) for r in rows)
    lines = [" " * label + "".join(f" {h:<{w}}" for h, w in zip(columns, widths))]
    for i, name in enumerate(rows, start=1):
        values = [cells[i][j].rjust(width) if j < i else "" for j in range(p - 1)]
        lines.append(f"{name:<{label}}" + "".join(f" {v:<{w}}" for v, w in zip(values, widths)))
    return "Correlation of Fixed Effects:\n" + "\n".join(line.rstrip() for line in lines)


class Summary:
    """``summary(m)``: printable like lme4's (lmerTest's, with ``ddf``), with an HTML form for notebooks; tables as
    DataFrames (``coefficients`` with R's column names)."""

    def __init__(self, model, ddf=None):
        self.model = model
        self.ddf = ddf_method(ddf)
        self.note = None
        if self.ddf is not None and model.re.structured:  # df in θ's free directions do not apply
            self.ddf, self.note = None, "t tests without df: Satterthwaite's df are not available for structured terms"
        self.coefficients = coefficient_table(model, self.ddf)
        self.varcorr = model.varcorr
        self.correlation = fixed_correlation(model)

    def __str__(self) -> str:
        m = self.model
        lines = _header(m, self.ddf) + ["", _fit_statistics(m), ""]
        if hasattr(m, "residuals_scaled"):
            q = np.quantile(m.residuals_scaled, [0, 0.25, 0.5, 0.75, 1])
            lines += [
                "Scaled residuals: ",
                _table([[f"{v:.4f}" for v in q]], ["Min", "1Q", "Median", "3Q", "Max"], set(range(5))),
                "",
            ]
        header, rows = random_effects_rows(m, variance=True)
        lines += ["Random effects:", _table(rows, header, {2, 3}), _groups_line(m), ""]
        coef = self.coefficients
        rows = [[name] + [_fmt_coef(col, v) for col, v in row.items()] for name, row in coef.iterrows()]
        lines += ["Fixed effects:", _table(rows, [""] + list(coef.columns), set(range(1, coef.shape[1] + 1)))]
        corr = _correlation_of_fixed(m)
        if corr:
            lines += ["", corr]
        if m.is_singular:
            lines += ["", SINGULAR]
        if self.note:
            lines += ["", self.note]
        for msg in m.optsum.messages:
            if "converge" in msg:
                lines += ["", msg]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        m = self.model
        header, rows = random_effects_rows(m, variance=True)
        re_df = pd.DataFrame(rows, columns=header)
        title = html.escape(_title(m, self.ddf))
        parts = [f"<p><b>{title}</b><br>Formula: <code>{html.escape(_formula(m))}</code></p>"]
        parts.append(f"<p>{html.escape(_fit_statistics(m)).replace(chr(10), '<br>')}</p>")
        parts.append("<p><b>Random effects</b></p>" + re_df.to_html(index=False))
        parts.append(f"<p>{html.escape(_groups_line(m))}</p>")
        coefficients = self.coefficients.copy()
        for column in [c for c in coefficients if c.startswith("Pr(")]:
            coefficients[column] = [_fmt_coef(column, v) for v in coefficients[column]]
        parts.append("<p><b>Fixed effects</b></p>" + coefficients.to_html(float_format=lambda v: f"{v:.5g}"))
        if m.is_singular:
            parts.append(f"<p><i>{html.escape(SINGULAR)}</i></p>")
        return "<div class='skmixed-summary'>" + "".join(parts) + "</div>"


def _fmt_coef(column: str, value: float) -> str:
    if column.startswith("Pr("):
        return "< 2e-16" if value < 2e-16 else f"{value:.3g}"
    return f"{value:.4f}" if abs(value) < 1e5 else f"{value:.4g}"


def format_short(m) -> str:
    """``print(m)`` in lme4: the criterion, SDs and correlations, and the fixed effects."""
    lines = _header(m)
    if getattr(m, "REML", False):
        lines.append(f"REML criterion at convergence: {m.objective:.4f}")
    else:
        lines.append(_fit_statistics(m))
    header, rows = random_effects_rows(m, variance=False)
    lines += ["Random effects:", _table(rows, header, {2}), _groups_line(m), "Fixed Effects:"]
    fe = m.fixef
    lines.append(_table([[f"{v:.5g}" for v in fe.values]], list(fe.index), set(range(len(fe)))))
    if m.is_singular:
        lines.append(SINGULAR)
    return "\n".join(lines)
