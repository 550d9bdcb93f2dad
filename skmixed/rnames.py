"""Names of model-matrix columns as R gives them, and the variables formulaic's factors read.

formulaic reports each factor of a model matrix as Python code (what
:func:`skmixed.rsyntax.to_python` wrote, reformatted).  :func:`from_python` reads that code
back into an R tree — R spellings (``as.numeric``), R operators (``%in%``, ``!``) and the
user's parentheses restored — so :func:`column_name` can print a column as R's
``model.matrix`` names it: the factor deparsed, then its level or column index.
:func:`factor_variables` lists the data columns a factor reads, with dotted and
backquoted names kept whole (formulaic's own list splits ``days.since`` at the dot).
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache

from .formula import unquoted
from .rsyntax import (
    R_SPELLING,
    BinOp,
    Call,
    Name,
    Node,
    Num,
    Paren,
    Raw,
    Str,
    Unary,
    deparse,
    r_name,
)

_BACKQUOTED = re.compile(r"`([^`]*)`")
_PY_BINARY = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.Pow: "^",
    ast.Mod: "%%",
    ast.FloorDiv: "%/%",
    ast.BitAnd: "&",
    ast.BitOr: "|",
}
_PY_COMPARE = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.Gt: ">", ast.LtE: "<=", ast.GtE: ">="}
_FUNCTION_OPERATORS = {"_r_and": "&", "_r_or": "|", "_r_in": "%in%", "_r_seq": ":"}


def _hide_backquotes(code: str) -> tuple[str, dict[str, str]]:
    """Replace each backquoted name by a Python identifier; return the code and the names they stand for."""
    names: dict[str, str] = {}

    def hide(m: re.Match) -> str:
        key = f"_bq{len(names)}_"
        names[key] = m.group(1)
        return key

    return _BACKQUOTED.sub(hide, code), names


def _python_tree(code: str) -> tuple[ast.AST | None, dict[str, str]]:
    hidden, names = _hide_backquotes(code)
    try:
        return ast.parse(hidden.strip(), mode="eval").body, names
    except SyntaxError:
        return None, names


def _dotted(node: ast.AST, names: dict[str, str]) -> str | None:
    """``a.b.c`` (a dotted R name, or a Python attribute chain) as one name; None if not a chain of names."""
    if isinstance(node, ast.Name):
        return names.get(node.id, node.id)
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value, names)
        return None if base is None else f"{base}.{node.attr}"
    return None


def from_python(code: str) -> Node:
    """The R tree of formulaic's Python ``code`` (a factor's expression): R spellings and operators restored."""
    tree, names = _python_tree(code)
    if tree is None:  # formulaic gives a backquoted column name bare (``my x``)
        return Name(code.strip().strip("`"))
    return _from_tree(tree, names)


def _from_tree(node: ast.AST, names: dict[str, str]) -> Node:
    dotted = _dotted(node, names)
    if dotted is not None:
        return Name(dotted)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool):
            return Name("TRUE" if node.value else "FALSE")
        if node.value is None:
            return Name("NULL")
        if isinstance(node.value, (int, float)):
            return Num(node.value)
        if isinstance(node.value, str):
            return Str(node.value)
    if isinstance(node, ast.Call):
        func = _dotted(node.func, names)
        args = [_from_tree(a, names) for a in node.args]
        if func == "_r_value" and len(args) == 1:
            return args[0]
        if func == "_r_paren" and len(args) == 1:
            return Paren(args[0])
        if func == "_r_not" and len(args) == 1:
            return Unary("!", args[0])
        if func in _FUNCTION_OPERATORS and len(args) == 2:
            return BinOp(_FUNCTION_OPERATORS[func], *args)
        if func is not None:
            named = [(R_SPELLING.get(k.arg, k.arg), _from_tree(k.value, names)) for k in node.keywords]
            return Call(R_SPELLING.get(func, func), tuple([(None, a) for a in args] + named))
    if isinstance(node, ast.BinOp) and type(node.op) in _PY_BINARY:
        return BinOp(_PY_BINARY[type(node.op)], _from_tree(node.left, names), _from_tree(node.right, names))
    if isinstance(node, ast.UnaryOp):
        op = {ast.USub: "-", ast.UAdd: "+", ast.Not: "!", ast.Invert: "!"}[type(node.op)]
        return Unary(op, _from_tree(node.operand, names))
    if isinstance(node, ast.Compare):
        left = _from_tree(node.left, names)
        for op, right in zip(node.ops, node.comparators):
            if type(op) not in _PY_COMPARE:
                return Raw(ast.unparse(node))
            left = BinOp(_PY_COMPARE[type(op)], left, _from_tree(right, names))
        return left
    if isinstance(node, ast.BoolOp):
        op = "&&" if isinstance(node.op, ast.And) else "||"
        out = _from_tree(node.values[0], names)
        for value in node.values[1:]:
            out = BinOp(op, out, _from_tree(value, names))
        return out
    return Raw(ast.unparse(node))


def python_variables(code: str) -> set[str]:
    """The variables formulaic's Python ``code`` reads: names outside function position, dotted names whole.

    formulaic's own ``required_variables`` splits dotted and backquoted names inside calls
    (``log(`days.since`)`` gives ``days``); this reads them as R does.
    """
    tree, names = _python_tree(code)
    if tree is None:
        return {code.strip().strip("`")}
    found: set[str] = set()
    todo = [tree]
    while todo:
        node = todo.pop()
        dotted = _dotted(node, names)
        if dotted is not None:
            found.add(dotted)
        elif isinstance(node, ast.Call):
            todo.extend(node.args)
            todo.extend(k.value for k in node.keywords)
        else:
            todo.extend(ast.iter_child_nodes(node))
    return found


# --- model-matrix column names ----------------------------------------------------------------------
def _split_column(column: str, factors: list[str]) -> list[tuple[str, str]] | None:
    """formulaic's ``column`` as (factor, suffix) pairs: ``f[T.b]:x`` gives ``(f, b), (x, "")``; None if it
    is not built from ``factors`` in order."""
    pos, out = 0, []
    for i, expr in enumerate(factors):
        last = i == len(factors) - 1
        if not column.startswith(expr, pos):
            return None
        pos += len(expr)
        suffix = ""
        if column.startswith("[", pos):
            end = len(column) - 1 if last else column.find("]:" + factors[i + 1], pos)
            if end < pos or column[end] != "]":
                return None
            suffix, pos = column[pos + 1 : end], end + 1
            suffix = suffix.removeprefix("T.")
        if not last:
            if not column.startswith(":", pos):
                return None
            pos += 1
        out.append((expr, suffix))
    return out if pos == len(column) else None


def _split_unknown(column: str) -> list[tuple[str, str]]:
    """A column without its factors: pieces at ':' outside brackets, parentheses and quotes."""
    pieces, depth, start = [], 0, 0
    for i, ch in unquoted(column):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == ":" and depth == 0:
            pieces.append(column[start:i])
            start = i + 1
    pieces.append(column[start:])
    out = []
    for piece in pieces:
        m = re.match(r"^(.*?)\[(?:T\.)?([^\[\]]*)\]$", piece)
        out.append((m.group(1), m.group(2)) if m else (piece, ""))
    return out


def _normal(text: str) -> str:
    return re.sub(r"[\s`]", "", text).replace("**", "^").replace("'", '"')


@lru_cache(maxsize=1024)
def _deparsed(code: str) -> str:
    """R's text of formulaic's Python ``code`` (cached: a factor names every column of its term)."""
    return deparse(from_python(code))


@lru_cache(maxsize=1024)
def _position(candidates: tuple[str, ...], text: str) -> int:
    """Where a factor first appears in the formula ``text`` as a whole token (R orders variables so)."""
    haystack = _normal(text)
    best = len(haystack) + 1
    for candidate in candidates:
        needle = _normal(candidate)
        for m in re.finditer(re.escape(needle), haystack):
            before = haystack[m.start() - 1] if m.start() else " "
            after = haystack[m.end()] if m.end() < len(haystack) else " "
            if not (before.isalnum() or before in "._") and not (after.isalnum() or after in "._("):
                best = min(best, m.start())
                break
    return best


def _lookup(factor) -> bool:
    """Whether formulaic reads a factor as a column name verbatim (``my x``, ``days.since``), not as Python."""
    return str(getattr(factor.eval_method, "value", factor.eval_method)) == "lookup"


def factor_variables(factor) -> set[str]:
    """The data columns a formulaic factor reads."""
    if _lookup(factor):
        return {factor.expr}
    if str(getattr(factor.eval_method, "value", factor.eval_method)) == "literal":
        return set()
    return python_variables(factor.expr)


def column_name(column: str, factors: list | None, formula_text: str = "") -> str:
    """formulaic's model-matrix ``column`` named as R names it (``factors``: formulaic's factors of its term).

    Each factor is printed as R's deparse prints it, followed by its level (``f[T.b]`` gives ``fb``)
    or column index (``poly(x, 2)[1]`` gives ``poly(x, 2)1``); the factors of an interaction are
    ordered by first appearance in ``formula_text``, as R orders variables.
    """
    exprs = [f.expr for f in factors] if factors else []
    pieces = _split_column(column, exprs) if exprs else None
    lookup = {f.expr for f in factors if _lookup(f)} if pieces is not None else set()
    if pieces is None:
        pieces = _split_unknown(column)
    named = [(r_name(e) if e in lookup else _deparsed(e), suffix, e) for e, suffix in pieces]
    if formula_text and len(named) > 1:
        named.sort(key=lambda item: _position((item[0], item[2]), formula_text))
    return ":".join(name + suffix for name, suffix, _ in named)
