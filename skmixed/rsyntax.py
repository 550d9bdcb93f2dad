"""R expressions in a model formula: read them, print them as R does, and write them as Python.

An lme4 formula is R code.  :func:`parse` reads the part of R a formula uses — names
(dotted, non-ASCII or backquoted), numbers, strings, calls with named arguments and R's
operators with R's precedence and associativity (R's ``?Syntax``) — into a small tree.
:func:`deparse` prints a tree the way R's ``deparse`` does, which is how R names
model-matrix columns (``I(x^2)``, ``exp(Days/10)``, ``poly(x, 2, raw = TRUE)1``).
:func:`to_python` writes a value expression as the Python code formulaic evaluates with
the functions of :mod:`skmixed.rfunctions` (:mod:`skmixed.rnames` reads it back to name
columns as R names them).

Why one module of some 420 lines: a recursive-descent parser of R's expression grammar, its
printer and its translation to Python walk the same node types; each is short, the grammar is one.
"""

from __future__ import annotations

import keyword
import math
import re
from collections import namedtuple

from .exceptions import FormulaError

# --- the tree: named tuples (cheap to define at import); ``pos`` is the offset in the source, for error pointers
Name = namedtuple("Name", "id pos", defaults=(0,))
Num = namedtuple("Num", "value pos", defaults=(0,))
Str = namedtuple("Str", "value pos", defaults=(0,))
Call = namedtuple("Call", "func args pos", defaults=(0,))  # args: (argument name or None, node) pairs
BinOp = namedtuple("BinOp", "op left right pos", defaults=(0,))
Unary = namedtuple("Unary", "op operand pos", defaults=(0,))
Paren = namedtuple("Paren", "inner pos", defaults=(0,))
Raw = namedtuple("Raw", "text pos", defaults=(0,))  # Python that has no R reading, printed as it is
Node = Name | Num | Str | Call | BinOp | Unary | Paren | Raw


# --- R's grammar ------------------------------------------------------------------------
#: binding power of R's binary operators, loosest first (R's ``?Syntax``); ``%any%`` binds at 8.
BINARY = {
    "~": 1,
    "||": 2,
    "|": 2,
    "&&": 3,
    "&": 3,
    "==": 5,
    "!=": 5,
    "<": 5,
    ">": 5,
    "<=": 5,
    ">=": 5,
    "+": 6,
    "-": 6,
    "*": 7,
    "/": 7,
    ":": 9,
    "^": 11,
}
SPECIAL = 8
UNARY = {"~": 1, "!": 4, "-": 10, "+": 10}
COMPARISONS = {"==", "!=", "<", ">", "<=", ">="}
_ATOM = 100

_TOKEN = re.compile(
    r"""(?P<ws>\s+)
    | (?P<num>0[xX][0-9a-fA-F]+L?|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?L?)
    | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<bq>`[^`]*`)
    | (?P<name>(?:[^\W\d]|\.(?!\d))[\w.]*)
    | (?P<op>%[^%\s]*%|:::|::|\|\||&&|==|!=|<=|>=|<-|->|[-+*/^:~|&!<>=$@(),\[\]{}])
    """,
    re.VERBOSE,
)

_UNSUPPORTED_OPS = {
    "[": "indexing",
    "$": "'$'",
    "@": "'@'",
    "<-": "assignment",
    "->": "assignment",
    "{": "braces",
}


def syntax_error(text: str, pos: int, message: str) -> FormulaError:
    """A FormulaError quoting ``text`` with a caret under position ``pos``."""
    return FormulaError(f"{message}\n  {text}\n  {' ' * pos}^")


Token = namedtuple("Token", "kind text pos")


def tokenize(text: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            quote = text[pos] if text[pos] in "'\"`" else None
            what = f"unterminated quote {quote}" if quote else f"unexpected character {text[pos]!r}"
            raise syntax_error(text, pos, f"{what} in formula")
        if m.lastgroup != "ws":
            tokens.append(Token(m.lastgroup, m.group(), pos))
        pos = m.end()
    return tokens


def _number(text: str) -> float | int:
    body = text.removesuffix("L")
    if body[:2].lower() == "0x":
        return int(body, 16)
    return int(body) if body.isdigit() else float(body)


def _string(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def _binding(op: str) -> int | None:
    if op.startswith("%") and len(op) > 1:
        return SPECIAL
    return BINARY.get(op)


class _Parser:
    """A Pratt parser over R's operator table."""

    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def next(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise syntax_error(self.text, len(self.text), "the formula ends where a term is expected")
        self.i += 1
        return tok

    def expect(self, text: str, opening: Token) -> None:
        tok = self.peek()
        if tok is None:
            raise syntax_error(self.text, len(self.text), f"missing {text!r} in formula")
        if tok.text != text:
            raise syntax_error(
                self.text, tok.pos, f"unexpected {tok.text!r}: expected {text!r} to close the {opening.text!r}"
            )
        self.i += 1

    def parse(self) -> Node:
        node = self.expression(0)
        tok = self.peek()
        if tok is not None:
            if tok.text == ")":
                raise syntax_error(self.text, tok.pos, "unmatched ')' in formula")
            raise syntax_error(self.text, tok.pos, f"unexpected {tok.text!r} in formula (is an operator missing?)")
        return node

    def expression(self, min_bp: int) -> Node:
        left = self.prefix()
        while (tok := self.peek()) is not None and tok.kind == "op":
            if tok.text in _UNSUPPORTED_OPS:
                raise syntax_error(self.text, tok.pos, _unsupported(tok.text))
            bp = _binding(tok.text)
            if bp is None or bp <= min_bp:
                break
            self.i += 1
            right = self.expression(bp - 1 if tok.text == "^" else bp)
            if tok.text in COMPARISONS and isinstance(left, BinOp) and left.op in COMPARISONS:
                raise syntax_error(self.text, tok.pos, "R cannot chain comparisons: write (a < b) & (b < c)")
            left = BinOp(tok.text, left, right, pos=tok.pos)
        return left

    def prefix(self) -> Node:
        tok = self.next()
        if tok.kind == "num":
            return Num(_number(tok.text), pos=tok.pos)
        if tok.kind == "str":
            return Str(_string(tok.text), pos=tok.pos)
        if tok.kind in ("name", "bq"):
            name = tok.text[1:-1] if tok.kind == "bq" else tok.text
            nxt = self.peek()
            if nxt is not None and nxt.text in ("::", ":::"):  # pkg::fun: the function, whatever its package
                self.i += 1
                fun = self.next()
                if fun.kind not in ("name", "bq"):
                    raise syntax_error(self.text, fun.pos, "expected a function name after '::'")
                name = fun.text.strip("`")
                nxt = self.peek()
            if nxt is not None and nxt.text == "(":
                return self.call(name, tok)
            return Name(name, pos=tok.pos)
        if tok.text == "(":
            inner = self.expression(0)
            self.expect(")", tok)
            return Paren(inner, pos=tok.pos)
        if tok.text in UNARY:
            return Unary(tok.text, self.expression(UNARY[tok.text]), pos=tok.pos)
        if tok.text in _UNSUPPORTED_OPS:
            raise syntax_error(self.text, tok.pos, _unsupported(tok.text))
        raise syntax_error(self.text, tok.pos, f"unexpected {tok.text!r} in formula")

    def call(self, name: str, tok: Token) -> Call:
        opening = self.next()  # '('
        args = []
        while self.peek() is not None and self.peek().text != ")":
            key = None
            a, b = self.peek(), self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else None
            if a.kind in ("name", "bq", "str") and b is not None and b.text == "=":
                key = a.text[1:-1] if a.kind != "name" else a.text
                self.i += 2
            args.append((key, self.expression(0)))
            if self.peek() is not None and self.peek().text == ",":
                self.i += 1
                if self.peek() is not None and self.peek().text == ")":
                    raise syntax_error(self.text, self.peek().pos, f"an empty argument in {name}()")
            elif self.peek() is None or self.peek().text != ")":
                break
        self.expect(")", opening)
        return Call(name, tuple(args), pos=tok.pos)


def _unsupported(op: str) -> str:
    return (
        f"{_UNSUPPORTED_OPS[op]} ({op!r}) is not supported inside a formula: compute the column in the "
        "DataFrame first and use its name"
    )


def parse(text: str) -> Node:
    """The tree of the R expression ``text``; a :class:`FormulaError` points at any syntax error."""
    return _Parser(text).parse()


# --- printing as R ------------------------------------------------------------------------
_RESERVED = {
    "if",
    "else",
    "repeat",
    "while",
    "function",
    "for",
    "next",
    "break",
    "TRUE",
    "FALSE",
    "NULL",
    "Inf",
    "NaN",
    "NA",
    "NA_integer_",
    "NA_real_",
    "NA_character_",
    "in",
}
_UNSPACED = {"/", "^", ":", "%%", "%/%"}
_SYNTACTIC = re.compile(r"^(?:[^\W\d_]|\.(?![\d]))[\w.]*$")
_R_CONSTANTS = {"TRUE", "FALSE", "NULL", "NA", "Inf", "NaN", "T", "F", "pi"}


def is_syntactic(name: str) -> bool:
    """Whether R reads ``name`` as a name without backquotes (``days.since``, ``Élève``; not ``my x``, ``_x``)."""
    return bool(_SYNTACTIC.match(name)) and (name not in _RESERVED or name in _R_CONSTANTS) and name != "..."


def r_name(name: str) -> str:
    """``name`` as R prints a symbol: backquoted unless syntactic (R's constants such as TRUE stay bare)."""
    return name if is_syntactic(name) else f"`{name}`"


def r_number(x: float) -> str:
    """A double as R prints it with 15 significant digits: fixed or scientific, whichever is narrower."""
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Inf" if x > 0 else "-Inf"
    if x == 0:
        return "0"
    target = float(f"{x:.15g}")
    digits = next(d for d in range(1, 16) if float(f"{x:.{d}g}") == target)
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    exp = int(exponent)
    sci = f"{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    fixed = f"{x:.{max(0, digits - 1 - exp)}f}"
    return fixed if len(fixed) <= len(sci) else sci


def r_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def precedence(node: Node) -> int:
    if isinstance(node, BinOp):
        return _binding(node.op) or _ATOM
    if isinstance(node, Unary):
        return UNARY[node.op]
    return _ATOM


def deparse(node: Node) -> str:
    """``node`` printed as R's ``deparse`` prints it (spacing, quoting and numbers as R's)."""
    if isinstance(node, Name):
        return r_name(node.id)
    if isinstance(node, Num):
        return r_number(node.value)
    if isinstance(node, Str):
        return r_string(node.value)
    if isinstance(node, Raw):
        return node.text
    if isinstance(node, Paren):
        return f"({deparse(node.inner)})"
    if isinstance(node, Call):
        args = [deparse(v) if k is None else f"{r_name(k)} = {deparse(v)}" for k, v in node.args]
        return f"{r_name(node.func)}({', '.join(args)})"
    if isinstance(node, Unary):
        inner = deparse(node.operand)
        return f"{node.op}({inner})" if precedence(node.operand) < UNARY[node.op] else f"{node.op}{inner}"
    if isinstance(node, BinOp):
        p = precedence(node)
        right_assoc = node.op == "^"
        left, right = deparse(node.left), deparse(node.right)
        lp, rp = precedence(node.left), precedence(node.right)
        if lp < p or (lp == p and (right_assoc or node.op in COMPARISONS)):
            left = f"({left})"
        if not isinstance(node.right, Unary) and (rp < p or (rp == p and not right_assoc)):
            right = f"({right})"
        sep = "" if node.op in _UNSPACED else " "
        return f"{left}{sep}{node.op}{sep}{right}"
    raise TypeError(f"cannot print {node!r}")


# --- writing Python for formulaic --------------------------------------------------------------
#: R spellings whose Python spelling differs (R names with dots; argument names with dots).
PYTHON_SPELLING = {
    "as.numeric": "as_numeric",
    "as.double": "as_numeric",
    "as.integer": "as_integer",
    "as.factor": "as_factor",
    "as.logical": "as_logical",
    "as.character": "as_character",
    "is.na": "is_na",
    "Boundary.knots": "Boundary_knots",
    "na.rm": "na_rm",
}
R_SPELLING = {py: r for r, py in PYTHON_SPELLING.items() if r != "as.double"}
#: R operators evaluated by functions of skmixed.rfunctions (R's semantics, not Python's bitwise ones).
OPERATOR_FUNCTIONS = {"&": "_r_and", "&&": "_r_and", "|": "_r_or", "||": "_r_or", "%in%": "_r_in", ":": "_r_seq"}
_PYTHON_OPS = {"+": "+", "-": "-", "*": "*", "/": "/", "^": "**", "%%": "%", "%/%": "//", **{c: c for c in COMPARISONS}}
_PYTHON_BP = {"+": 9, "-": 9, "*": 10, "/": 10, "%": 10, "//": 10, "**": 12, **dict.fromkeys(COMPARISONS, 4)}
#: R functions with no equivalent here, and what to write instead.
UNSUPPORTED_FUNCTIONS = {
    "interaction": "write the interaction with ':' (a:b), or add the combined column to the DataFrame",
    "cut": "cut the variable in the DataFrame first (e.g. pandas.cut) and use the new column",
    "s": "mgcv smooths are not available: use ns(x, df) or bs(x, df) splines",
    "te": "mgcv smooths are not available: use ns(x, df) or bs(x, df) splines",
    "paste": "build the column in the DataFrame first",
}


def python_name(name: str) -> str:
    """A variable as Python code: itself if a Python identifier (or Python's True, False, None), else
    backquoted for formulaic."""
    if name.isidentifier() and (not keyword.iskeyword(name) or name in ("True", "False", "None")):
        return name
    if "`" in name:
        raise FormulaError(f"the name {name!r} contains a backquote, which a formula cannot quote: rename the column")
    return f"`{name}`"


def _python_function(name: str, node: Node, text: str) -> str:
    if name in UNSUPPORTED_FUNCTIONS:
        raise syntax_error(text, node.pos, f"{name}() is not supported in a formula: {UNSUPPORTED_FUNCTIONS[name]}")
    spelled = PYTHON_SPELLING.get(name, name)
    if all(part.isidentifier() and not keyword.iskeyword(part) for part in spelled.split(".")):
        return spelled  # a Python attribute chain such as np.log or contr.treatment
    raise syntax_error(text, node.pos, f"unknown function {name}() in the formula")


def _python_bp(node: Node) -> int:
    if isinstance(node, BinOp) and node.op in _PYTHON_OPS:
        return _PYTHON_BP[_PYTHON_OPS[node.op]]
    if isinstance(node, Unary) and node.op in "+-":
        return 11
    return _ATOM


def to_python(node: Node, text: str = "") -> str:
    """The value expression ``node`` as Python for formulaic (``text``: the formula, for error pointers)."""
    if isinstance(node, Name):
        return python_name(node.id)
    if isinstance(node, Num):
        return repr(node.value)
    if isinstance(node, Str):
        return repr(node.value)
    if isinstance(node, Paren):  # kept as a call: R names columns with the parentheses written
        return f"_r_paren({to_python(node.inner, text)})"
    if isinstance(node, Call):
        args = [
            to_python(v, text) if k is None else f"{PYTHON_SPELLING.get(k, k.replace('.', '_'))}={to_python(v, text)}"
            for k, v in node.args
        ]
        return f"{_python_function(node.func, node, text)}({', '.join(args)})"
    if isinstance(node, Unary):
        if node.op == "!":
            return f"_r_not({to_python(node.operand, text)})"
        if node.op in "+-":
            inner = to_python(node.operand, text)
            return f"{node.op}({inner})" if _python_bp(node.operand) < 11 else f"{node.op}{inner}"
    if isinstance(node, BinOp):
        if node.op in OPERATOR_FUNCTIONS:
            return f"{OPERATOR_FUNCTIONS[node.op]}({to_python(node.left, text)}, {to_python(node.right, text)})"
        if node.op in _PYTHON_OPS:
            op = _PYTHON_OPS[node.op]
            p = _PYTHON_BP[op]
            left, right = to_python(node.left, text), to_python(node.right, text)
            lp, rp = _python_bp(node.left), _python_bp(node.right)
            if lp < p or (lp == p and (op == "**" or p == 4)):
                left = f"({left})"
            if rp < p or (rp == p and op != "**"):
                right = f"({right})"
            return f"{left} {op} {right}"
    what = node.op if isinstance(node, (BinOp, Unary)) else type(node).__name__
    raise syntax_error(text, node.pos, f"the operator {what!r} cannot be used inside a function call")
