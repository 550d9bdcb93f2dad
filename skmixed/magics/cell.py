"""``%%lmer`` and ``%%glmer``: fit the lme4 formula in the cell body to a DataFrame of the user namespace.

User errors (unknown DataFrame or column, bad option, formula typo: the ``InputError`` subclasses
``FormulaError``, ``DataError`` and ``OptionError`` that the fit raises for its input) are raised as
IPython's ``UsageError``, which IPython shows as one message without a traceback; any other error
keeps its traceback.
"""

from __future__ import annotations

import difflib
import keyword
import re

import pandas as pd
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, argument_group, magic_arguments, parse_argstring

from ..exceptions import InputError
from ..formula import unquoted


def formula_from_cell(cell: str) -> str:
    """The cell body as one formula: ``#`` comments (outside quotes) dropped, lines joined."""
    lines = []
    for line in cell.splitlines():
        comment = next((i for i, ch in unquoted(line) if ch == "#"), len(line))
        lines.append(line[:comment])
    formula = " ".join(" ".join(lines).split())
    if not formula:
        raise UsageError(
            "no formula: write an lme4 formula such as 'y ~ x + (1 | group)' in the cell body, "
            "or after the options of a line magic"
        )
    return formula


def split_line(parser, line: str) -> tuple[str, str]:
    """Split a line-magic call ``-d df y ~ x + (1 | g)`` into its options and the formula that follows them."""
    takes_value = {opt: action.nargs != 0 for opt, action in parser._option_string_actions.items()}
    expect_value = False
    for token in re.finditer(r"\S+", line):
        text = token.group()
        if expect_value:
            expect_value = False
        elif text.startswith("-"):
            expect_value = "=" not in text and takes_value.get(text, False)
        else:
            return line[: token.start()], line[token.start() :]
    return line, ""


def _dataframe(namespace: dict, name: str) -> pd.DataFrame:
    if name in namespace:
        value = namespace[name]
        if isinstance(value, pd.DataFrame):
            return value
        raise UsageError(f"-d/--data {name!r} is a {type(value).__name__}, not a pandas DataFrame")
    frames = [k for k, v in namespace.items() if isinstance(v, pd.DataFrame) and not k.startswith("_")]
    close = difflib.get_close_matches(name, frames, n=3)
    if close:
        hint = f"did you mean {', '.join(map(repr, close))}?"
    elif frames:
        hint = f"the DataFrames defined are {', '.join(sorted(frames)[:10])}"
    else:
        hint = "no DataFrame is defined yet: load one first, e.g. df = skmixed.datasets.load('sleepstudy')"
    raise UsageError(f"no DataFrame named {name!r} in the namespace; {hint}")


def family_from_options(name: str, link: str | None):
    """The family object for ``--family NAME [--link LINK]``; an unknown name or link is a usage error."""
    from ..options import family_with_link

    try:
        return family_with_link(name, link)
    except InputError as e:
        raise UsageError(str(e)) from None


def _output_name(name: str | None) -> str | None:
    if name is not None and (not name.isidentifier() or keyword.iskeyword(name)):
        raise UsageError(f"-o/--out {name!r} is not a valid Python variable name")
    return name


def _apply(decorators, f):
    for deco in reversed(decorators):  # as if written top to bottom above f
        f = deco(f)
    return f


def _data_and_output(f):
    """The options both magics start with: the DataFrame and where to keep the fit."""
    return _apply(
        [
            argument(
                "-d", "--data", required=True, metavar="NAME", help="the pandas DataFrame to fit (a variable name)"
            ),
            argument("-o", "--out", metavar="NAME", help="store the fitted model in this variable"),
        ],
        f,
    )


def _columns_and_display(weights_help: str):
    """The options both magics end with: weight and offset columns, and quiet display."""
    return lambda f: _apply(
        [
            argument_group("data columns"),
            argument("--weights", metavar="COL", help=weights_help),
            argument("--offset", metavar="COL", help="column added to the linear predictor with coefficient 1"),
            argument_group("display"),
            argument("-q", "--quiet", action="store_true", help="fit without displaying the result (keep it with -o)"),
            argument(
                "--confint",
                metavar="METHOD",
                type=str.lower,
                choices=["profile", "wald", "boot"],
                help="show confidence intervals under the summary: profile, wald or boot (they are the cell's value)",
            ),
        ],
        f,
    )


def _with_intervals(result, args) -> pd.DataFrame:
    """``--confint METHOD``: the summary displayed, then the intervals as the cell's value (the fit is kept with
    ``-o``)."""
    from IPython.display import display

    if args.quiet:
        raise UsageError("--confint shows the intervals under the summary: leave out -q/--quiet")
    display(result)
    try:
        return result.confint(args.confint)
    except InputError as e:
        raise UsageError(str(e)) from None


#: ``_fit``'s ``summary_ddf`` for glmer, whose summary has z tests and no df option (lmer's may be None)
_GLMM_SUMMARY = object()


@magics_class
class MixedModelMagics(Magics):
    """Cell magics fitting mixed models with :func:`skmixed.lmer` and :func:`skmixed.glmer`."""

    def _fit(self, fit, args, cell: str, summary_ddf=_GLMM_SUMMARY, **options):
        formula = formula_from_cell(cell)
        out = _output_name(args.out)
        data = _dataframe(self.shell.user_ns, args.data)
        if isinstance(
            data, pd.DataFrame
        ):  # the summary's "Data:" line names the variable, as lme4's names the expression
            data = data.copy(deep=False)
            data.attrs["name"] = args.data
        try:
            result = fit(formula, data, weights=args.weights, offset=args.offset, **options)
        except InputError as e:  # FormulaError, DataError, OptionError: the user's to fix; a bug keeps its traceback
            raise UsageError(str(e)) from None
        if summary_ddf is not _GLMM_SUMMARY:  # lmer's --ddf (None: lme4's summary without df)
            result._cache["summary_ddf"] = summary_ddf  # the df of the t tests in the displayed summary
        if out:
            self.shell.user_ns[out] = result
        if args.confint:
            return _with_intervals(result, args)
        return None if args.quiet else result

    @magic_arguments()
    @_data_and_output
    @argument_group("criterion")
    @argument("--reml", action="store_true", help="fit by restricted maximum likelihood (the default)")
    @argument(
        "--ml", action="store_true", help="fit by maximum likelihood (for likelihood-ratio tests of fixed effects)"
    )
    @_columns_and_display(weights_help="column of prior weights")
    @argument(
        "--ddf",
        default="satterthwaite",
        metavar="METHOD",
        help="df of the summary's t tests: satterthwaite (default), kr (Kenward-Roger) or none (lme4's t values)",
    )
    @argument(
        "--residual",
        metavar="STRUCTURE",
        help="residual covariance within a grouping factor, quoted: --residual 'us(visit | subject)'",
    )
    @line_cell_magic
    def lmer(self, line: str, cell: str | None = None):
        """Fit a linear mixed model to an lme4 formula: the cell body (several lines and # comments allowed),
        or, as a line magic, the rest of the line after the options.

        Examples::

            %%lmer -d sleepstudy -o fm1
            Reaction ~ Days          # fixed effects
                + (Days | Subject)   # correlated random intercept and slope

            %lmer -d sleepstudy --ml Reaction ~ Days + (1 | Subject)

            %%lmer -d orthodont --ml --residual "us(age | Subject)"
            distance ~ age * Sex     # an MMRM: unstructured Σ over the ages, no random effects

        The fitted model is displayed (lmerTest's summary, t tests with ``--ddf``'s df; HTML in Jupyter) and is
        the cell's value; with ``--confint profile`` (or ``wald``, ``boot``) its confidence intervals follow the
        summary, as the cell's value.
        """
        from ..ddf import ddf_method
        from ..lmm import lmer

        if cell is None:
            line, cell = split_line(self.lmer.parser, line)
        args = parse_argstring(self.lmer, line)
        if args.ml and args.reml:
            raise UsageError("give either --ml or --reml, not both")
        try:
            ddf = ddf_method(args.ddf)
        except InputError as e:
            raise UsageError(f"--ddf: {e}") from None
        if ddf == "Kenward-Roger" and args.ml:
            raise UsageError("--ddf kr needs a REML fit (as lmerTest and pbkrtest require): drop --ml")
        if args.residual is not None:
            if args.confint:
                raise UsageError("--confint is not available with --residual; see the summary's standard errors")
            residual = args.residual.strip().strip("'\"")  # the quotes that keep its spaces and "|" together
            return self._fit(lmer, args, cell, REML=not args.ml, residual=residual)
        return self._fit(lmer, args, cell, summary_ddf=ddf, REML=not args.ml)

    @magic_arguments()
    @_data_and_output
    @argument_group("model")
    @argument(
        "--family",
        default="binomial",
        metavar="NAME",
        help="binomial (default), poisson, gamma, inverse_gaussian, gaussian or negative_binomial",
    )
    @argument(
        "--link",
        metavar="NAME",
        help="link function, e.g. logit, probit, cloglog, log (default: the family's canonical link)",
    )
    @argument(
        "--nagq",
        type=int,
        default=1,
        metavar="N",
        help="1: Laplace approximation (default); 0: fast PIRLS-only fit; N > 1: adaptive Gauss-Hermite with N nodes",
    )
    @_columns_and_display(weights_help="column of prior weights (binomial: the number of trials)")
    @line_cell_magic
    def glmer(self, line: str, cell: str | None = None):
        """Fit a generalized linear mixed model to an lme4 formula: the cell body, or, as a line magic,
        the rest of the line after the options.

        Examples::

            %%glmer -d cbpp --family binomial
            cbind(incidence, size - incidence) ~ period + (1 | herd)

            %glmer -d contraception --link probit use ~ age + urban + (1 | district)

        The fitted model is displayed (an lme4-style summary; HTML in Jupyter) and is the cell's value.
        """
        from .. import glmer

        if cell is None:
            line, cell = split_line(self.glmer.parser, line)
        args = parse_argstring(self.glmer, line)
        family = family_from_options(args.family, args.link)
        return self._fit(glmer, args, cell, family=family, nAGQ=args.nagq)
