"""Update a model's formula and refit it (R's ``update.formula`` and lme4's ``update``).

``update_formula(old, new)`` reads both formulas as R code (:mod:`skmixed.rsyntax`), puts the old response in
place of ``.`` on the new left side and the old right side (in parentheses) in place of ``.`` on the new right
side, and simplifies the result as R's ``terms.formula(simplify = TRUE)`` does:

- the right side is expanded into terms, each a set of variables (``a*b`` is ``a``, ``b``, ``a:b``; ``a/b`` is
  ``a``, ``a:b``; ``(a + b)^2`` every product of up to two; ``a %in% b`` is ``a:b``); ``-`` removes terms, ``- 1``
  and ``+ 0`` the intercept, ``+ 1`` puts it back;
- a random-effects term ``(x | g)`` is one variable, as R sees it (``|`` is no formula operator), so
  ``. ~ . - (x | g) + (1 | g)`` swaps one for the other and ``(1 | g/h)`` is not expanded;
- the terms are written in order of their number of variables (R's ``keep.order = FALSE``), in their order of
  appearance within that, each interaction's variables in their order of first appearance in the formula; then
  the ``offset()`` terms, then ``- 1`` if the intercept was removed.

:func:`update` refits a result with the updated formula and the fit's options, any of which may be replaced.
"""

from __future__ import annotations

import warnings

import numpy as np

from .exceptions import FormulaError, OptionError
from .model_matrix import numeric_column
from .rsyntax import BinOp, Call, Name, Node, Num, Paren, Unary, deparse, parse

_OPERATORS = {"+", "-", "*", "/", ":", "^", "%in%"}


def update_formula(old: str, new: str) -> str:
    """R's ``update.formula(old, new)``, deparsed (see the module docstring)."""
    old_lhs, old_rhs = _sides(old, "the model's formula")
    new_lhs, new_rhs = _sides(new, "the new formula")
    lhs = old_lhs if new_lhs is None else _substitute(new_lhs, old_lhs)
    if lhs is None:
        raise FormulaError(f"the formula {old!r} has no response")
    rhs = _substitute(new_rhs, Paren(old_rhs))
    terms, intercept, offsets = _expand(rhs)
    order = _variable_order(BinOp("~", lhs, rhs))
    labels = [":".join(sorted(t, key=order.index)) for t in sorted(terms, key=len)]
    labels += offsets
    right = " + ".join(labels) if labels else ("1" if intercept else "")
    if not intercept:
        right = f"{right} - 1" if right else "-1"
    return f"{deparse(lhs)} ~ {right}"


def rhs_terms(formula: str) -> list[frozenset]:
    """The terms of the formula's right side as R expands them: each a set of deparsed variables."""
    return _expand(_sides(formula, "the model's formula")[1])[0]


def random_part(formula: str) -> str:
    """The formula with its random-effects terms and offsets only (a null model: ``y ~ (1 | g) + offset(o)``)."""
    lhs, rhs = _sides(formula, "the model's formula")
    terms, _, offsets = _expand(rhs)
    bars = [t for t in terms if len(t) == 1 and _is_bar(_unwrap_all(parse(next(iter(t)))))]
    return f"{deparse(lhs)} ~ {' + '.join([next(iter(t)) for t in bars] + offsets)}"


def _unwrap_all(node: Node) -> Node:
    while isinstance(node, Paren):
        node = node.inner
    return node


def _is_bar(node: Node) -> bool:
    return isinstance(node, BinOp) and node.op in ("|", "||")


def _sides(text: str, what: str) -> tuple[Node | None, Node]:
    if not isinstance(text, str) or "~" not in text:
        raise FormulaError(f"{what} must be a formula such as '. ~ . - x' or '~ . + (1 | g)', not {text!r}")
    tree = parse(text.strip())
    if isinstance(tree, BinOp) and tree.op == "~":
        return tree.left, tree.right
    if isinstance(tree, Unary) and tree.op == "~":
        return None, tree.operand
    raise FormulaError(f"{what} {text!r} needs its '~' at the top level")


def _substitute(node: Node, value: Node) -> Node:
    """``node`` with every ``.`` replaced by ``value``."""
    if isinstance(node, Name) and node.id == ".":
        return value
    if isinstance(node, BinOp):
        return node._replace(left=_substitute(node.left, value), right=_substitute(node.right, value))
    if isinstance(node, Unary):
        return node._replace(operand=_substitute(node.operand, value))
    if isinstance(node, Paren):
        return node._replace(inner=_substitute(node.inner, value))
    if isinstance(node, Call):
        return node._replace(args=tuple((k, _substitute(v, value)) for k, v in node.args))
    return node


def _expand(node: Node) -> tuple[list[frozenset], bool, list[str]]:
    """The terms of a right-hand side (ordered, without repeats), whether it keeps the intercept, its offsets."""
    state = {"terms": [], "intercept": True, "offsets": []}
    _walk(node, "+", state)
    return state["terms"], state["intercept"], state["offsets"]


def _walk(node: Node, sign: str, state: dict) -> None:
    """Add (sign '+') or remove (sign '-') the terms of ``node`` at the top level of a sum."""
    node = _unwrap(node)
    if isinstance(node, BinOp) and node.op in ("+", "-"):
        _walk(node.left, sign, state)
        _walk(node.right, sign if node.op == "+" else ("-" if sign == "+" else "+"), state)
        return
    if isinstance(node, Unary) and node.op in "+-":
        _walk(node.operand, sign if node.op == "+" else ("-" if sign == "+" else "+"), state)
        return
    if isinstance(node, Num) and node.value in (0, 1):
        state["intercept"] = (node.value == 1) == (sign == "+")
        return
    if isinstance(node, Call) and node.func == "offset":
        text = deparse(node)
        if sign == "+" and text not in state["offsets"]:
            state["offsets"].append(text)
        elif sign == "-" and text in state["offsets"]:
            state["offsets"].remove(text)
        return
    for term in _terms(node):
        if sign == "+" and term not in state["terms"]:
            state["terms"].append(term)
        elif sign == "-" and term in state["terms"]:
            state["terms"].remove(term)


def _unwrap(node: Node) -> Node:
    """``node`` without parentheses around a formula expression or around other parentheses."""
    while isinstance(node, Paren) and (isinstance(node.inner, Paren) or _formula_like(node.inner)):
        node = node.inner
    return node


def _formula_like(node: Node) -> bool:
    return (isinstance(node, BinOp) and node.op in _OPERATORS) or (isinstance(node, Unary) and node.op in "+-")


def _terms(node: Node) -> list[frozenset]:
    """R's expansion of one product-like part into terms (sets of variables, each variable deparsed)."""
    node = _unwrap(node)
    if isinstance(node, BinOp) and node.op == "+":
        return _union(_terms(node.left), _terms(node.right))
    if isinstance(node, BinOp) and node.op in (":", "%in%", "*"):
        left, right = _terms(node.left), _terms(node.right)
        products = [a | b for a in left for b in right]
        return _union(left, right, products) if node.op == "*" else _union(products)
    if isinstance(node, BinOp) and node.op == "/":
        left, right = _terms(node.left), _terms(node.right)
        whole = frozenset().union(*left)
        return _union(left, [whole | b for b in right])
    if isinstance(node, BinOp) and node.op == "^" and isinstance(node.right, Num):
        base = out = _terms(node.left)
        for _ in range(int(node.right.value) - 1):
            out = _union(out, [a | b for a in out for b in base])
        return out
    if _formula_like(node) or isinstance(node, Num):
        raise FormulaError(f"cannot expand {deparse(node)!r} in an updated formula")
    if isinstance(node, Name) and node.id == ".":
        raise FormulaError("'.' in the model's own formula (all other columns) cannot be updated")
    return [frozenset([deparse(node)])]


def _union(*lists: list[frozenset]) -> list[frozenset]:
    return list(dict.fromkeys(t for terms in lists for t in terms))


def _variable_order(node: Node) -> list[str]:
    """The formula's variables (deparsed) in order of first appearance, as R's ``terms`` lists them."""
    out: list[str] = []

    def visit(n: Node) -> None:
        n = _unwrap(n)
        if (isinstance(n, BinOp) and (n.op in _OPERATORS or n.op == "~")) or (isinstance(n, Unary) and n.op in "+-~"):
            for child in (n.left, n.right) if isinstance(n, BinOp) else (n.operand,):
                visit(child)
        elif not isinstance(n, Num):
            text = deparse(n)
            if text not in out:
                out.append(text)

    visit(node)
    return out


def update(result, formula: str | None = None, data=None, **options):
    """``result`` refitted with ``formula`` updated by :func:`update_formula` (lme4's ``update``) and ``options``
    (``REML``, ``weights``, ``offset``, ``start``, ``check_conv``, ``maxeval``; for a GLMM ``family`` and ``nAGQ``)
    replacing the fit's own.

    ``data`` defaults to the rows the fit used.  R's ``update`` evaluates the call again on the original data, so
    when the fit dropped rows with missing values and the new formula no longer reads those variables R would fit
    more rows: pass ``data=`` for that (a warning says so).  The fit's weights and an offset given as an array
    follow the rows used; with new ``data`` they must be given again.
    """
    from .glmm import glmer
    from .lmm import lmer

    frame = result.frame
    text = result.formula if formula is None else update_formula(result.formula, formula)
    if data is None and frame.n_dropped:
        warnings.warn(
            f"the fit dropped {frame.n_dropped} rows with missing values: update refits on the rows it used; pass "
            "data= (the full data) to start again from all rows, as R's update does",
            UserWarning,
            stacklevel=3,
        )
    new_data = frame.data if data is None else data
    if "weights" not in options:
        options["weights"] = _weights(result, data)
    if "offset" not in options:
        options["offset"] = _offset(result, data)
    glmm = getattr(result, "family", None) is not None
    if glmm:
        if "REML" in options:
            raise OptionError("a GLMM is fitted by maximum likelihood: REML does not apply")
        options.setdefault("family", result.model.family)
        options.setdefault("nAGQ", result.nAGQ)
        return glmer(text, new_data, **options)
    options.setdefault("REML", result.REML)
    return lmer(text, new_data, **options)


def _weights(result, data):
    """The fit's prior weights on its rows (trials of a cbind response taken out), or None if all 1."""
    frame = result.frame
    weights = frame.weights if frame.trials is None else frame.weights / frame.trials
    if np.all(weights == 1):
        return None
    if data is not None:
        raise OptionError("the model was fitted with weights: pass weights= for the new data")
    return weights


def _offset(result, data):
    """The fit's ``offset=`` argument: its column's name, or the values on its rows (formula offsets taken out)."""
    frame = result.frame
    if frame.offset_column is not None:
        return frame.offset_column
    if not frame.offset_array:
        return None
    if data is not None:
        raise OptionError("the model was fitted with an offset array: pass offset= for the new data")
    values = frame.offset.copy()
    for expr in result.parsed.offsets:
        values -= numeric_column(expr, frame.data, "offset")
    return values
