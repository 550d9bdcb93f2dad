"""Parse lme4 formulas: split the random-effects bars from the fixed part, as lme4's findbars/nobars do.

``y ~ x + (1 + x | g) + (1 | a/b) + offset(log(n))`` becomes a response ``y``, a
bar-free fixed part ``x`` for formulaic, random-effects bars ``(1 + x | g)``,
``(1 | a)``, ``(1 | b:a)`` and an offset ``log(n)``.  The formula is read as R code
(:mod:`skmixed.rsyntax`), so R's precedence decides what a bar holds: in ``y ~ x | g``
the whole right side is the bar ``(x | g)`` and the fixed part is ``1``, as in lme4.
``(x || g)`` is expanded into uncorrelated bars ``(1 | g) + (0 + x | g)`` as lme4's
``expandDoubleVerts`` does.  Variables and calls are written as the Python formulaic
evaluates (names that are no Python identifier, such as ``days.since``, backquoted; R functions
from :mod:`skmixed.rfunctions`).
"""

from __future__ import annotations

import re as regex  # the regular-expression module ("re" elsewhere names random-effects terms)
from dataclasses import dataclass
from functools import lru_cache

from .covstruct import RE_STRUCTURES
from .exceptions import FormulaError
from .rsyntax import (
    COMPARISONS,
    BinOp,
    Call,
    Name,
    Node,
    Num,
    Paren,
    Unary,
    deparse,
    parse,
    python_name,
    syntax_error,
    to_python,
)

_FORMULA_OPS = {"+", "-", "*", "/", ":", "^", "%in%"}
_LOGICAL_OPS = COMPARISONS | {"&", "&&", "|", "||"}
_LOGICAL_CALLS = {"I", "as.logical", "is.na", "ifelse"}


@dataclass(frozen=True)
class RandomBar:
    """One ``(lhs | group)`` term: ``lhs`` is a formula right-hand side, ``group`` a factor or ``a:b``."""

    lhs: str
    group: str
    structure: str = "us"  # the covariance structure, as lme4 2.0 and glmmTMB write diag(1 + x | g)

    def __str__(self) -> str:
        bar = f"({self.lhs} | {self.group})"
        return bar if self.structure == "us" else self.structure + bar


@dataclass(frozen=True)
class ParsedFormula:
    """An lme4 formula split into response, fixed part, random bars and offset expressions (as Python)."""

    text: str
    response: str
    fixed: str
    bars: tuple[RandomBar, ...]
    offsets: tuple[str, ...]


# --- quote-aware splitting (also used to read right-hand sides and responses) -------------------------
def unquoted(text: str):
    """Yield ``(index, char)`` for the characters outside quotes (``'...'``, ``"..."``, ```...```), quotes left out."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"`":
            quote = ch
        else:
            yield i, ch


def _scan(text: str):
    """Yield ``(index, char, depth)`` for characters outside quotes; depth counts enclosing parentheses."""
    depth = 0
    for i, ch in unquoted(text):
        if ch == ")":
            depth -= 1
        yield i, ch, depth
        if ch == "(":
            depth += 1


def split_top(text: str, seps: str) -> list[tuple[str, str]]:
    """Split ``text`` at separators outside parentheses and quotes; return ``(separator, piece)`` pairs."""
    pieces, start, sep = [], 0, ""
    for i, ch, depth in _scan(text):
        if depth == 0 and ch in seps:
            pieces.append((sep, text[start:i]))
            sep, start = ch, i + 1
    pieces.append((sep, text[start:]))
    return [(s, p.strip()) for s, p in pieces]


# --- the tree of a formula ---------------------------------------------------------------------------
def _strip(node: Node) -> Node:
    while isinstance(node, Paren):
        node = node.inner
    return node


def _is_bar(node: Node) -> bool:
    node = _strip(node)
    return isinstance(node, BinOp) and node.op in ("|", "||")


def _has_bar(node: Node) -> bool:
    return _is_bar(node) or any(_has_bar(child) for child in _children(node))


def _is_formula_op(node: Node) -> bool:
    """``+ - * / : ^ %in%`` (and unary ``+ -``): R's formula operators, as opposed to values such as ``x == 1``."""
    return (isinstance(node, BinOp) and node.op in _FORMULA_OPS) or (isinstance(node, Unary) and node.op in "+-")


def _signed_terms(node: Node, sign: str = "+") -> list[tuple[str, Node]]:
    """The terms of a sum with their signs; parentheses holding bars are opened, as lme4's findbars does."""
    flip = "-" if sign == "+" else "+"
    if isinstance(node, BinOp) and node.op in "+-":
        return _signed_terms(node.left, sign) + _signed_terms(node.right, sign if node.op == "+" else flip)
    if isinstance(node, Unary) and node.op in "+-":
        return _signed_terms(node.operand, sign if node.op == "+" else flip)
    if isinstance(node, Paren) and _has_bar(node) and not _is_bar(node):
        return _signed_terms(node.inner, sign)
    return [(sign, node)]


def formula_python(node: Node, text: str) -> str:
    """A bar-free formula part as formulaic reads it: R's formula operators kept, values as Python.

    ``%in%`` is R's nesting (``a %in% b`` means the term ``a:b``).  A parenthesised value that is
    no formula, such as ``(x == TRUE)``, is one variable for R: it is written ``_r_value(...)``,
    which R names ``x == TRUE`` (see :func:`skmixed.rnames.from_python`) and which codes a logical
    result as R's FALSE/TRUE factor; so do terms such as ``I(x > 2)`` (an ``I()`` inside a value
    stays the identity, so ``(I(x > 2) == TRUE)`` compares logicals).
    """
    if isinstance(node, BinOp) and node.op in _FORMULA_OPS:
        op = ":" if node.op == "%in%" else node.op
        left, right = formula_python(node.left, text), formula_python(node.right, text)
        return f"{left}{op}{right}" if op in ":^" else f"{left} {op} {right}"
    if isinstance(node, Unary) and node.op in "+-":
        return f"{node.op}{formula_python(node.operand, text)}"
    if isinstance(node, Paren):
        if isinstance(node.inner, (BinOp, Unary)) and not _is_formula_op(node.inner):
            return f"_r_value({to_python(node.inner, text)})"
        return f"({formula_python(node.inner, text)})"
    if isinstance(node, Name):
        if node.id == ".":
            raise syntax_error(
                text, node.pos, "'.' (all other columns) is not supported: list the columns in the formula"
            )
        return python_name(node.id)
    if isinstance(node, Num):
        return repr(node.value)
    if isinstance(node, Call) and node.func == "c":
        raise syntax_error(
            text,
            node.pos,
            "c(...) is not a variable: in a formula '%in%' means nesting; for membership write I(x %in% c(...))",
        )
    if isinstance(node, Call):  # a term that may be logical goes through _r_value, which codes it as R does
        return f"_r_value({to_python(node, text)})" if node.func in _LOGICAL_CALLS else to_python(node, text)
    return f"_r_value({to_python(node, text)})"


def _bar_misplaced(node: Node, text: str) -> FormulaError:
    bar = node
    while not _is_bar(bar):  # the first bar inside, for the message
        bar = next(n for n in _children(bar) if _has_bar(n))
    shown = deparse(_strip(bar))
    if (isinstance(node, BinOp) and node.op in _LOGICAL_OPS) or (isinstance(node, Unary) and node.op == "!"):
        return syntax_error(
            text,
            node.pos,
            f"{node.op!r} binds more loosely than '+' in R, so it takes in the random-effects term ({shown}): "
            "put the comparison in parentheses, e.g. y ~ (x == TRUE) + (1 | g)",
        )
    return syntax_error(
        text,
        node.pos,
        f"the random-effects term ({shown}) sits inside {deparse(node)!r}: add random-effects terms with '+', "
        f"e.g. ... + ({shown})",
    )


def _children(node: Node) -> list[Node]:
    if isinstance(node, BinOp):
        return [node.left, node.right]
    if isinstance(node, Unary):
        return [node.operand]
    if isinstance(node, Paren):
        return [node.inner]
    if isinstance(node, Call):
        return [v for _, v in node.args]
    return []


# --- random-effects terms --------------------------------------------------------------------------
def _group_parts(node: Node, text: str) -> list[list[str]]:
    """The nesting levels of a grouping factor: ``a/b:c`` gives ``[["a"], ["b", "c"]]``."""
    node = _strip(node)
    if isinstance(node, BinOp) and node.op == "/":
        return _group_parts(node.left, text) + _group_parts(node.right, text)
    if isinstance(node, BinOp) and node.op == ":":
        left, right = _group_parts(node.left, text), _group_parts(node.right, text)
        if len(left) == 1 and len(right) == 1:
            return [left[0] + right[0]]
    elif isinstance(node, Name):
        if ":" in node.id or "/" in node.id:
            raise syntax_error(
                text,
                node.pos,
                f"the grouping column {node.id!r} has ':' or '/' in its name, which a formula reads as "
                "interaction or nesting: rename the column",
            )
        return [[node.id]]
    raise syntax_error(
        text,
        node.pos,
        f"cannot read the grouping factor {deparse(node)!r}: write a column name, an interaction 'a:b' or a "
        "nesting 'a/b' (to group by an expression such as factor(g), add it to the DataFrame as a column)",
    )


def _groups(node: Node, text: str) -> list[str]:
    """``a/b/c`` means ``a``, ``b:a``, ``c:b:a`` (lme4's names); ``a:b`` stays one interaction factor."""
    parts = [":".join(p) for p in _group_parts(node, text)]
    return [":".join(reversed(parts[: i + 1])) for i in range(len(parts))]


def _term_factors(node: Node, text: str) -> list[tuple[str, ...]]:
    """R's term expansion of a formula part (``a*b`` is ``a``, ``b``, ``a:b``), as tuples of factors."""
    inner = _strip(node)
    if isinstance(inner, BinOp) and inner.op == "+":
        return _union(_term_factors(inner.left, text), _term_factors(inner.right, text))
    if isinstance(inner, BinOp) and inner.op in (":", "%in%", "*", "/"):
        left, right = _term_factors(inner.left, text), _term_factors(inner.right, text)
        if inner.op == "/":
            whole = tuple(dict.fromkeys(f for t in left for f in t))
            return _union(left, [_merge(whole, r) for r in right])
        products = [_merge(a, b) for a in left for b in right]
        return _union(left, right, products) if inner.op == "*" else products
    if isinstance(inner, BinOp) and inner.op == "^" and isinstance(inner.right, Num):
        base = out = _term_factors(inner.left, text)
        for _ in range(int(inner.right.value) - 1):
            out = _union(out, [_merge(a, b) for a in out for b in base])
        return out
    if _is_formula_op(inner):
        raise syntax_error(
            text, inner.pos, f"cannot expand {deparse(inner)!r} inside an uncorrelated term '(... || g)'"
        )
    return [(formula_python(node, text),)]


def _merge(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a + b))


def _union(*lists: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    seen: dict[frozenset, tuple[str, ...]] = {}
    for terms in lists:
        for t in terms:
            seen.setdefault(frozenset(t), t)
    return list(seen.values())


def _uncorrelated(lhs: Node, text: str) -> list[str]:
    """``(1 + x + z || g)`` gives the left sides ``1``, ``0 + x``, ``0 + z`` (terms ordered by degree, as R's)."""
    intercept, terms = True, []
    for sign, term in _signed_terms(lhs):
        if isinstance(term, Num) and term.value in (0, 1):
            intercept = term.value == 1 and sign == "+"
        elif sign == "-":
            raise syntax_error(
                text, term.pos, f"cannot remove {deparse(term)!r} inside an uncorrelated term '(... || g)'"
            )
        else:
            terms = _union(terms, _term_factors(term, text))
    terms.sort(key=len)
    return (["1"] if intercept else []) + [f"0 + {':'.join(t)}" for t in terms]


def _structured_bar(node: Node) -> bool:
    """``diag(1 + x | g)``: a structure's name called on one bar (lme4 2.0's and glmmTMB's random-effect terms)."""
    return isinstance(node, Call) and node.func in RE_STRUCTURES and len(node.args) == 1 and _is_bar(node.args[0][1])


def _bars(node: Node, text: str, structure: str = "us") -> list[RandomBar]:
    bar = _strip(node)
    lhs = _strip(bar.left)
    if _has_bar(lhs) or _has_bar(bar.right):
        raise syntax_error(text, bar.pos, f"cannot read the random-effects term ({deparse(bar)}): one '|' per term")
    groups = _groups(bar.right, text)
    if bar.op == "||" and structure != "us":
        raise syntax_error(text, bar.pos, f"write {structure}(... | g) with one '|': '||' is already a structure")
    lhss = _uncorrelated(lhs, text) if bar.op == "||" else [formula_python(lhs, text)]
    return [RandomBar(lhs=lhs_, group=g, structure=structure) for g in groups for lhs_ in lhss]


# --- response ------------------------------------------------------------------------------------
def _logical(node: Node) -> Node | None:
    """The comparison or logical expression a response is, through parentheses and ``I()``; else None."""
    node = _strip(node)
    if isinstance(node, Call) and node.func == "I" and len(node.args) == 1:
        return _logical(node.args[0][1])
    if (isinstance(node, BinOp) and node.op in _LOGICAL_OPS) or (isinstance(node, Unary) and node.op == "!"):
        return node
    return None


def _response(node: Node, text: str) -> str:
    """The response as Python: a column name bare, a logical expression as 0/1 (R's TRUE is a success)."""
    if _has_bar(node):
        raise syntax_error(text, node.pos, "a random-effects term cannot be on the left of '~'")
    node = _strip(node)
    if isinstance(node, Name):
        return node.id
    logical = _logical(node)
    if logical is not None:
        return f"as_numeric({to_python(logical, text)})"
    return to_python(node, text)


# --- the formula -----------------------------------------------------------------------------------
def _pre_check(text: str) -> None:
    """Errors easier to name on the text than on the tree: empty bars and unbalanced parentheses."""
    depth, quote, last = 0, None, ""
    for i, ch in enumerate(text):
        if quote or ch in "'\"`":
            quote = None if ch == quote else (quote or ch)
        elif ch == "(":
            depth += 1
        elif ch == ")":
            if last == "|":
                raise syntax_error(text, i, "a random-effects term has no grouping factor after '|'")
            depth -= 1
            if depth < 0:
                raise syntax_error(text, i, "unmatched ')' in formula")
        elif ch == "|" and last == "(":
            raise syntax_error(text, i, "a random-effects term has nothing before '|': write (1 | g)")
        last = last if ch.isspace() else ch
    if quote:
        raise syntax_error(text, len(text), f"unterminated quote {quote} in formula")
    if depth:
        raise syntax_error(text, len(text), "missing ')' in formula")


def _join(signed: list[tuple[str, str]]) -> str:
    """Signed formula terms as one right-hand side; ``1`` when none, ``1 - ...`` when the first is removed."""
    out = ""
    for sign, term in signed:
        out = term if not out and sign == "+" else f"{out or '1'} {sign} {term}"
    return out or "1"


def parse_formula(text: str) -> ParsedFormula:
    """Split an lme4 formula string into its parts; raise :class:`FormulaError` naming any typo.

    The parse of each text is kept (it is immutable): a refit, a grid search or a cross-validation
    parses the same formula again, and for a small model the parse is a noticeable part of the fit.
    """
    if not isinstance(text, str) or not text.strip():
        raise FormulaError("the formula must be a non-empty string such as 'y ~ x + (1 | g)'")
    return _parse_formula(text)


@lru_cache(maxsize=256)
def _parse_formula(text: str) -> ParsedFormula:
    source = regex.sub(r"\s", " ", text.strip())  # one character for one: error pointers stay in place
    text = " ".join(text.split())
    sides = split_top(source, "~")
    if len(sides) == 2 and not sides[1][1]:
        raise syntax_error(source, len(source), "nothing on the right of '~'")
    if len(sides) != 2 or not sides[0][1]:
        raise FormulaError(f"the formula {text!r} needs one '~' with the response on its left: 'y ~ x + (1 | g)'")
    _pre_check(source)
    tree = parse(source)
    if not (isinstance(tree, BinOp) and tree.op == "~"):
        raise FormulaError(f"the formula {text!r} needs its '~' at the top level: 'y ~ x + (1 | g)'")
    fixed, bars, offsets = [], [], []
    for sign, term in _signed_terms(tree.right):
        if _is_bar(term):
            if sign == "-":
                raise syntax_error(
                    source, term.pos, f"a random-effects term cannot be removed with '-': {deparse(_strip(term))!r}"
                )
            bars.extend(_bars(term, source))
        elif _structured_bar(term):
            if sign == "-":
                raise syntax_error(
                    source, term.pos, f"a random-effects term cannot be removed with '-': {deparse(term)!r}"
                )
            bars.extend(_bars(term.args[0][1], source, term.func))
        elif _has_bar(term):
            raise _bar_misplaced(term, source)
        elif isinstance(term, Call) and term.func == "offset":
            if sign == "-" or len(term.args) != 1:
                raise syntax_error(source, term.pos, "write an offset as '+ offset(expression)'")
            value = _strip(term.args[0][1])
            code = to_python(value, source)
            offsets.append(f"I({code})" if isinstance(value, (BinOp, Unary)) else code)
        else:
            fixed.append((sign, formula_python(term, source)))
    return ParsedFormula(
        text=text, response=_response(tree.left, source), fixed=_join(fixed), bars=tuple(bars), offsets=tuple(offsets)
    )
