"""Parse lme4 formulas: split the random-effects bars from the fixed part.

``y ~ x + (1 + x | g) + (1 | a/b) + offset(log(n))`` becomes a response ``y``, a
bar-free fixed part ``x`` for formulaic, random-effects bars ``(1 + x | g)``,
``(1 | a)``, ``(1 | a:b)`` and an offset ``log(n)``.  ``(x || g)`` is expanded
into uncorrelated bars ``(1 | g) + (0 + x | g)`` as lme4 does.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .exceptions import FormulaError

_GROUP_RE = re.compile(r"^[A-Za-z_.][\w.]*(\s*[:/]\s*[A-Za-z_.][\w.]*)*$")


@dataclass(frozen=True)
class RandomBar:
    """One ``(lhs | group)`` term: ``lhs`` is a formula right-hand side, ``group`` a factor or ``a:b``."""

    lhs: str
    group: str

    def __str__(self) -> str:
        return f"({self.lhs} | {self.group})"


@dataclass(frozen=True)
class ParsedFormula:
    """An lme4 formula split into response, fixed part, random bars and offset expressions."""

    text: str
    response: str
    fixed: str
    bars: tuple[RandomBar, ...]
    offsets: tuple[str, ...]


def _error(text: str, pos: int, message: str) -> FormulaError:
    pointer = " " * pos + "^"
    return FormulaError(f"{message}\n  {text}\n  {pointer}")


def _scan(text: str):
    """Yield ``(index, char, depth)`` for characters outside quotes; depth counts enclosing parentheses."""
    depth, quote = 0, None
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
            continue
        if ch in "'\"`":
            quote = ch
            continue
        if ch == ")":
            depth -= 1
        yield i, ch, depth
        if ch == "(":
            depth += 1
    if quote:
        raise _error(text, len(text) - 1, f"unterminated quote {quote} in formula")


def _check_balanced(text: str) -> None:
    final = 0
    for i, ch, depth in _scan(text):
        if depth < 0:
            raise _error(text, i, "unmatched ')' in formula")
        final = depth + (ch == "(")
    if final:
        raise _error(text, len(text), "missing ')' in formula")


def _split_top(text: str, seps: str) -> list[tuple[str, str]]:
    """Split ``text`` at separators outside parentheses and quotes; return ``(separator, piece)`` pairs."""
    pieces, start, sep = [], 0, ""
    for i, ch, depth in _scan(text):
        if depth == 0 and ch in seps:
            pieces.append((sep, text[start:i]))
            sep, start = ch, i + 1
    pieces.append((sep, text[start:]))
    return [(s, p.strip()) for s, p in pieces]


def to_python(expr: str) -> str:
    """Rewrite R idioms formulaic cannot evaluate: ``^`` inside a call becomes ``**``; ``as.factor`` is ``factor``."""
    expr = re.sub(r"\bas\.factor\s*\(", "factor(", expr)
    out, calls, last = [], [], 0
    for i, ch, _ in _scan(expr):
        if ch == "(":
            before = expr[:i].rstrip()
            calls.append(bool(before) and (before[-1].isalnum() or before[-1] in "_."))
        elif ch == ")" and calls:
            calls.pop()
        elif ch == "^" and any(calls):
            out.append(expr[last:i] + "**")
            last = i + 1
    return "".join(out) + expr[last:]


def _expand_group(group: str, text: str) -> list[str]:
    """``a/b/c`` means ``a``, ``b:a``, ``c:b:a`` (lme4's names); ``a:b`` stays one interaction factor."""
    group = group.strip()
    while group.startswith("(") and group.endswith(")"):
        group = group[1:-1].strip()
    if not group:
        raise _error(text, text.find("|") + 1, "a random-effects term has no grouping factor after '|'")
    if not _GROUP_RE.match(group):
        raise FormulaError(
            f"cannot read the grouping factor {group!r} in {text!r}: write a column name, "
            "an interaction 'a:b' or a nesting 'a/b'"
        )
    parts = [p.strip() for p in group.split("/")]
    parts = [p.replace(" ", "") for p in parts]
    return [":".join(reversed(parts[: i + 1])) for i in range(len(parts))]


def _uncorrelated(lhs: str) -> list[str]:
    """``(1 + x + z || g)`` gives the left sides ``1``, ``0 + x``, ``0 + z``."""
    terms = _split_top(lhs, "+-")
    intercept = True
    out = []
    for sign, term in terms:
        if not term:
            continue
        if term == "1":
            intercept = sign != "-"
        elif term == "0":
            intercept = False
        elif sign == "-":
            raise FormulaError(f"cannot remove {term!r} inside an uncorrelated term '({lhs} || ...)'")
        else:
            out.append(f"0 + {term}")
    return (["1"] if intercept else []) + out


def _parse_bar(term: str, text: str) -> list[RandomBar]:
    inner = term[1:-1]
    parts = _split_top(inner, "|")
    if len(parts) == 3 and parts[1][1] == "":  # '||' splits into lhs, '', group
        lhs, group, double = parts[0][1], parts[2][1], True
    elif len(parts) == 2:
        lhs, group, double = parts[0][1], parts[1][1], False
    else:
        raise _error(text, text.find(term), f"cannot read the random-effects term {term!r}: write (lhs | group)")
    if not lhs:
        raise _error(text, text.find(term) + 1, f"the random-effects term {term!r} has nothing before '|': write (1 | g)")
    lhs = to_python(lhs)
    groups = _expand_group(group, text)
    lhss = _uncorrelated(lhs) if double else [lhs]
    return [RandomBar(lhs=l, group=g) for g in groups for l in lhss]


def _is_bar(term: str) -> bool:
    if not (term.startswith("(") and term.endswith(")")):
        return False
    depth = 0
    for i, ch in enumerate(term):  # the outer parentheses must enclose the whole term
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and i < len(term) - 1:
            return False
    return len(_split_top(term[1:-1], "|")) > 1


def parse_formula(text: str) -> ParsedFormula:
    """Split an lme4 formula string into its parts; raise :class:`FormulaError` naming any typo."""
    if not isinstance(text, str) or not text.strip():
        raise FormulaError("the formula must be a non-empty string such as 'y ~ x + (1 | g)'")
    text = " ".join(text.split())
    _check_balanced(text)
    sides = _split_top(text, "~")
    if len(sides) != 2 or not sides[0][1]:
        raise FormulaError(f"the formula {text!r} needs one '~' with the response on its left: 'y ~ x + (1 | g)'")
    response, rhs = sides[0][1], sides[1][1]
    if not rhs:
        raise _error(text, len(text), "nothing on the right of '~'")
    fixed, bars, offsets = [], [], []
    for sign, term in _split_top(rhs, "+-"):
        if not term:
            if sign or fixed or bars:
                raise _error(text, len(text) if not sign else text.rfind(sign), "a '+' or '-' is missing its term")
            continue
        if _is_bar(term):
            if sign == "-":
                raise FormulaError(f"a random-effects term cannot be removed with '-': {term!r}")
            bars.extend(_parse_bar(term, text))
        elif "|" in term and not term.startswith("("):
            raise _error(text, text.find("|"), "put each random-effects term in parentheses, e.g. (1 | g)")
        elif re.match(r"^offset\s*\(", term):
            offsets.append(to_python(term[term.index("(") + 1 : -1].strip()))
        else:
            fixed.append(f"{sign} {to_python(term)}" if sign else to_python(term))
    fixed_text = " ".join(fixed).strip()
    if fixed_text.startswith("+"):
        fixed_text = fixed_text[1:].strip()
    if not fixed_text:
        fixed_text = "1"
    elif fixed_text.startswith("-"):
        fixed_text = "1 " + fixed_text
    return ParsedFormula(
        text=text, response=to_python(response), fixed=fixed_text, bars=tuple(bars), offsets=tuple(offsets)
    )
