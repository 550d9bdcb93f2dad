"""Warnings and errors raised by skmixed; each names the problem and the fix."""


class InputError(ValueError):
    """Base of the errors a user's input causes; the message names the problem and the fix."""


class FormulaError(InputError):
    """The model formula cannot be parsed or does not describe a mixed model."""


class DataError(InputError):
    """The data do not fit the model (unknown column, bad values, too few levels)."""


class OptionError(InputError):
    """An argument has a value the model cannot take (nAGQ, start, family, link, ...)."""


class ConvergenceWarning(UserWarning):
    """The optimizer stopped without meeting its convergence criteria."""


class SingularFitWarning(UserWarning):
    """A variance component is estimated at zero or a correlation at +/-1."""


class RankDeficiencyWarning(UserWarning):
    """Aliased fixed-effect columns were dropped from X."""
