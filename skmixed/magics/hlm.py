"""``%%hlm``: fit a model written as HLM's level equations (:func:`skmixed.hlm`) and show it as equations.

The cell body holds one equation a line: the level-1 model first (``mathach ~ ses``), then the level-2 equations
of its coefficients (``(Intercept) ~ sector + meanses``, ``ses ~ sector``); a line ``level 3:`` starts the
level-3 equations of a three-level model (``-g school -g district``).  ``#`` starts a comment, and a line that
begins with ``+`` continues the equation above.  Input errors are IPython ``UsageError``s naming the problem.
"""

from __future__ import annotations

import re

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from ..exceptions import InputError
from ..formula import split_top, unquoted
from .cell import _dataframe, _output_name

_HEADER = re.compile(r"^\s*level[\s-]*([123])\s*:\s*(.*)$", re.IGNORECASE)


def _lines(cell: str) -> list[str]:
    """The cell's equations: comments dropped, ``+`` continuation lines joined to the line above."""
    out: list[str] = []
    for line in cell.splitlines():
        comment = next((i for i, ch in unquoted(line) if ch == "#"), len(line))
        text = " ".join(line[:comment].split())
        if not text:
            continue
        if text.startswith("+") and out and not _HEADER.match(out[-1]):
            out[-1] += " " + text
        else:
            out.append(text)
    return out


def parse_cell(cell: str) -> tuple[str, dict, dict]:
    """(level-1 formula, level-2 equations, level-3 equations) of a ``%%hlm`` cell body."""
    level1, equations = None, {2: {}, 3: {}}
    current = 1
    for line in _lines(cell):
        header = _HEADER.match(line)
        if header:
            current = int(header.group(1))
            if current == 1 and level1 is not None:
                raise UsageError("'level 1:' comes first: the level-1 model is one equation")
            line = header.group(2).strip()
            if not line:
                continue
        parts = split_top(line, "~")
        if len(parts) != 2 or not parts[0][1].strip():
            raise UsageError(f"{line!r} is not an equation: write 'coefficient ~ predictors', e.g. 'ses ~ sector'")
        if level1 is None:
            level1, current = line, max(current, 2)
            continue
        if current == 1:
            raise UsageError("the level-1 model is one equation: start the level-2 equations with 'level 2:'")
        key, rhs = parts[0][1].strip(), parts[1][1].strip()
        if key in equations[current]:
            raise UsageError(f"two level-{current} equations for {key!r}: write its predictors on one line")
        equations[current][key] = "~ " + rhs
    if level1 is None:
        raise UsageError("no equations: write the level-1 model (e.g. 'mathach ~ ses') in the cell body")
    return level1, equations[2], equations[3]


def _coefficients(text: str | None):
    if text is None:
        return None
    if text.strip().lower() == "none":
        return []
    return [part.strip() for _, part in split_top(text, ",") if part.strip()]


@magics_class
class HlmMagics(Magics):
    """The ``%%hlm`` cell magic."""

    @magic_arguments()
    @argument("-d", "--data", required=True, metavar="NAME", help="the pandas DataFrame to fit (a variable name)")
    @argument(
        "-g",
        "--group",
        action="append",
        required=True,
        metavar="COL",
        help="the level-2 grouping column; give -g twice (level 2, then level 3) for three levels",
    )
    @argument("-o", "--out", metavar="NAME", help="store the fitted model in this variable")
    @argument("--ml", action="store_true", help="fit by maximum likelihood (default: REML)")
    @argument(
        "--random",
        metavar="COEFS",
        help="comma-separated level-1 coefficients with a level-2 random effect, or 'none' "
        "(default: the intercept and those with an equation)",
    )
    @argument("--random3", metavar="COEFS", help="the same for the level-3 random effects")
    @argument("--weights", metavar="COL", help="column of prior weights")
    @argument("--offset", metavar="COL", help="column added to the linear predictor with coefficient 1")
    @argument("-q", "--quiet", action="store_true", help="fit without displaying the equations (keep it with -o)")
    @cell_magic
    def hlm(self, line: str, cell: str):
        """Fit a model written as level equations and show its equations with the estimates.

        Example::

            %%hlm -d hsb -g school -o m
            mathach ~ ses                       # level 1
            (Intercept) ~ sector + meanses      # level 2
            ses ~ sector
        """
        from ..hlm import hlm

        args = parse_argstring(self.hlm, line)
        out = _output_name(args.out)
        if len(args.group) > 2:
            raise UsageError("give -g once (two levels) or twice (level-2 column, then level-3 column)")
        level1, level2, level3 = parse_cell(cell)
        if level3 and len(args.group) < 2:
            raise UsageError("level-3 equations need the level-3 column: add a second -g")
        groups = args.group[0] if len(args.group) == 1 else args.group
        random = None
        if args.random is not None or args.random3 is not None:
            random = {}
            if args.random is not None:
                random[args.group[0]] = _coefficients(args.random)
            if args.random3 is not None:
                if len(args.group) < 2:
                    raise UsageError("--random3 needs a level-3 column: add a second -g")
                random[args.group[1]] = _coefficients(args.random3)
        data = _dataframe(self.shell.user_ns, args.data).copy(deep=False)
        data.attrs["name"] = args.data
        try:
            result = hlm(
                level1,
                level2,
                groups,
                data,
                level3=level3 or None,
                random=random,
                REML=not args.ml,
                weights=args.weights,
                offset=args.offset,
            )
        except InputError as e:
            raise UsageError(str(e)) from None
        if out:
            self.shell.user_ns[out] = result
        return None if args.quiet else result.equations()
