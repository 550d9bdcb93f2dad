"""The options of ``lmer`` and ``glmer`` (and of the magics that call them), checked before any work is done.

Each bad value raises an :class:`~skmixed.exceptions.OptionError` naming the option, the value
given and what is accepted.  The rules follow what an lme4 user writes, without R's silent
coercions that would turn a typo into a different model:

- switches (``REML``, ``check_conv``): ``True``/``False`` (numpy booleans too) or R's ``0``/``1``;
  a string is refused, because Python reads ``REML="FALSE"`` as true.
- counts (``maxeval``, ``nAGQ``): whole numbers, given as an int or as a float without a
  fraction (``maxeval=1e5``, as R users write it); a boolean is refused.
- ``weights``, ``offset``: ``None``, the name of a numeric column of ``data``, or one number per
  row (list, array, Series).  Their length and values are the model frame's to check.
- ``start``: ``None``, θ as numbers, or lme4's named list as a dict: ``{"theta": θ}`` for
  ``lmer`` (β is profiled out of its deviance, so it has no start), ``{"theta": θ, "fixef": β}``
  for ``glmer``, either key optional.  Values must be finite; θ's length and its bounds (the
  diagonal elements of each relative covariance factor are ≥ 0) are checked once the
  random-effects terms are known (:func:`lmer_start`, :func:`glmer_start`).
- ``solver`` (``lmer``): ``"auto"`` (the exact path chosen by cost, :func:`skmixed.backends.choose_backend`) or
  ``"krylov"`` (the iterative path of :mod:`skmixed.krylov_pls`, scalar terms only), with ``krylov``: None or a
  dict of its settings ``probes`` (a count), ``seed`` (a count from 0) and ``tol`` (CG's relative residual, a
  number in (0, 10⁻⁴]), which apply only to ``solver="krylov"``.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import pandas as pd

from .exceptions import DataError, OptionError
from .families import Family, NegativeBinomial, get_family
from .krylov_pls import KrylovSettings, krylov_unsupported

#: the documented family names (get_family also takes R's spellings such as "inverse.gaussian"
#: and calls such as 'binomial(link = "probit")')
FAMILY_NAMES = ("binomial", "poisson", "gamma", "inverse_gaussian", "gaussian", "negative_binomial")
NAGQ_MAX = 100  # more nodes than any integral here needs; lme4 lets the user go further at their own cost
SOLVERS = ("auto", "krylov")
_NUMERIC = {"integer", "floating", "mixed-integer-float", "decimal", "empty"}


def switch(value, name: str) -> bool:
    """``value`` as a bool: True/False, a numpy boolean, or the integers 1/0 (R's ``REML = 0``)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, Integral) and value in (0, 1):
        return bool(value)
    raise OptionError(f"{name} must be True or False (or 1/0), not {value!r}")


def count(value, name: str, low: int, high: int | None = None, meaning: str = "") -> int:
    """``value`` as an int in [low, high]: an int, or a float with no fractional part (``1e5``)."""
    whole = isinstance(value, Integral) or (
        isinstance(value, Real) and np.isfinite(value) and float(value).is_integer()
    )
    if isinstance(value, (bool, np.bool_)) or not whole or value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise OptionError(f"{name} must be an integer {bounds}{meaning}, not {value!r}")
    return int(value)


def column_or_vector(value, name: str) -> None:
    """Check that ``weights``/``offset`` is None, a column name, or a 1-D sequence; the model frame checks that
    the values are numbers, one per row (:func:`skmixed.frame.model_frame`)."""
    if value is None or isinstance(value, str):
        return
    if _ndim(value) != 1:
        raise OptionError(
            f"{name} must be a column name of the data or one number per row (a list, array or Series), "
            f"not {describe_value(value)}"
        )


def check_data_options(data, REML, weights, offset) -> bool:
    """The options of the build stage (:func:`skmixed.build`); returns the checked ``REML``."""
    _check_data(data)
    column_or_vector(weights, "weights")
    column_or_vector(offset, "offset")
    return switch(REML, "REML")


def check_fit_options(start, check_conv, maxeval, keys: tuple[str, ...] = ("theta",)) -> tuple[bool, int]:
    """The options of the optimize stage; ``keys``: what ``start`` may name.  Returns ``(check_conv, maxeval)``."""
    _start_parts(start, keys)
    return switch(check_conv, "check_conv"), count(maxeval, "maxeval", 1)


def check_nagq(nAGQ) -> int:
    return count(nAGQ, "nAGQ", 0, NAGQ_MAX, " (0: fast, 1: Laplace, > 1: quadrature nodes)")


def check_lmer(REML, weights, offset, start, check_conv, maxeval, data) -> tuple[bool, bool, int]:
    """The checked ``(REML, check_conv, maxeval)`` of an ``lmer`` call; the other options are only checked."""
    return (check_data_options(data, REML, weights, offset), *check_fit_options(start, check_conv, maxeval))


def check_glmer(family, nAGQ, weights, offset, start, check_conv, maxeval, data) -> tuple[Family, int, bool, int]:
    """The checked ``(family, nAGQ, check_conv, maxeval)`` of a ``glmer`` call; the other options are only checked."""
    fam = get_family(family)
    check_data_options(data, True, weights, offset)
    nAGQ = check_nagq(nAGQ)
    return (fam, nAGQ, *check_fit_options(start, check_conv, maxeval, ("theta", "fixef")))


def check_solver(solver, krylov) -> KrylovSettings | None:
    """The iterative path's settings for ``solver="krylov"``, None for ``"auto"``."""
    if not isinstance(solver, str) or solver not in SOLVERS:
        raise OptionError(f"solver must be one of {', '.join(map(repr, SOLVERS))}, not {describe_value(solver)}")
    if solver == "auto":
        if krylov is not None:
            raise OptionError("krylov= sets the iterative path's options: it needs solver='krylov'")
        return None
    if krylov is None:
        return KrylovSettings()
    if not isinstance(krylov, dict):
        raise OptionError(f"krylov must be a dict of 'probes', 'seed' and 'tol', not {describe_value(krylov)}")
    unknown = [k for k in krylov if k not in ("probes", "seed", "tol")]
    if unknown:
        raise OptionError(f"krylov may have the keys 'probes', 'seed' and 'tol', not {unknown!r}")
    settings = {}
    if "probes" in krylov:
        settings["probes"] = count(krylov["probes"], "krylov['probes']", 1, 10_000)
    if "seed" in krylov:
        settings["seed"] = count(krylov["seed"], "krylov['seed']", 0)
    if "tol" in krylov:
        tol = krylov["tol"]
        if isinstance(tol, (bool, np.bool_)) or not isinstance(tol, Real) or not 0 < tol <= 1e-4:
            raise OptionError(f"krylov['tol'] must be a number in (0, 1e-4], not {describe_value(tol)}")
        settings["tol"] = float(tol)
    return KrylovSettings(**settings)


def check_krylov_model(settings: KrylovSettings | None, random_effects) -> None:
    """Refuse ``solver="krylov"`` for a model the iterative path cannot take, saying why."""
    if settings is None:
        return
    why = krylov_unsupported(random_effects)
    if why is not None:
        raise OptionError(f"solver='krylov' cannot take this model: {why}; use solver='auto'")


def lmer_start(start, random_effects) -> np.ndarray | None:
    """θ to start ``lmer`` from (None: its default), checked against the random-effects terms."""
    theta = _start_parts(start, ("theta",)).get("theta")
    return None if theta is None else _check_theta(theta, random_effects)


def glmer_start(start, random_effects, p: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(θ, β or None) to start ``glmer`` from; θ defaults to Λ = I as in lme4."""
    parts = _start_parts(start, ("theta", "fixef"))
    theta = random_effects.theta_init if parts.get("theta") is None else _check_theta(parts["theta"], random_effects)
    beta = parts.get("fixef")
    if beta is not None and beta.shape != (p,):
        raise OptionError(f"start['fixef'] must have {p} values (one per fixed effect), not {beta.size}")
    return theta, beta


def theta_only(start):
    """The θ part of a ``glmer`` start, for a model handed to ``lmer`` (whose β is profiled out)."""
    return start.get("theta") if isinstance(start, dict) else start


def family_with_link(name, link: str | None) -> Family:
    """The family ``name`` with ``link`` instead of its default (``--family NAME --link LINK`` of the magics)."""
    family = get_family(name)
    if link is None:
        return family
    if isinstance(family, NegativeBinomial):
        return NegativeBinomial(family.theta, link=link)
    return type(family)(link=link)


# --- helpers ---------------------------------------------------------------------------
def _check_data(data) -> None:
    from .dask import is_dask_frame

    if is_dask_frame(data):
        raise DataError(
            "data is a Dask DataFrame: skmixed.lmer and skmixed.glmer fit one (with the rows on the workers); this "
            "needs a pandas DataFrame, e.g. a sample brought to memory with ddf.sample(frac=0.01).compute()"
        )
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, not {describe_value(data)}")


def _numeric(values, booleans: bool = True) -> bool:
    """Numbers (and booleans, as 0/1 in R, if ``booleans``); not strings, dates or categories."""
    if np.ndim(values) == 0:
        return isinstance(values, Real) and (booleans or not isinstance(values, bool))
    dtype = getattr(values, "dtype", None)
    if dtype is None or dtype == object:
        kind = pd.api.types.infer_dtype(values, skipna=True)
        return kind in _NUMERIC or (booleans and kind == "boolean")
    if pd.api.types.is_bool_dtype(dtype):
        return booleans
    return pd.api.types.is_numeric_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype)


def _ndim(value) -> int:
    try:
        return np.ndim(value)
    except ValueError:  # nested sequences of unequal lengths
        return 2


def describe_value(value) -> str:
    """``value`` for an error message: its repr, cut at 40 characters, and its type (an array: its shape)."""
    if _ndim(value) > 0 and hasattr(value, "shape"):
        return f"a {type(value).__name__} of shape {value.shape}"
    text = repr(value)
    return f"{text if len(text) <= 40 else text[:37] + '...'} ({type(value).__name__})"


def _start_parts(start, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """``start`` as {key: finite float vector}; a bare sequence of numbers is θ."""
    if start is None:
        return {}
    allowed = " and ".join(repr(k) for k in keys)
    if isinstance(start, dict):
        unknown = [k for k in start if k not in keys]
        if unknown:
            why = " (lmer profiles β out of the deviance: only θ has a starting value)" if "fixef" in unknown else ""
            raise OptionError(f"start may have the keys {allowed}, not {unknown!r}{why}")
        parts = {k: v for k, v in start.items() if v is not None}
    else:
        parts = {"theta": start}
    for key, value in parts.items():
        label = "start" if key == "theta" and not isinstance(start, dict) else f"start[{key!r}]"
        if _ndim(value) > 1 or not _numeric(value, booleans=False):
            raise OptionError(
                f"{label} must be a number or a sequence of numbers, or a dict with the keys {allowed}; "
                f"not {describe_value(value)}"
            )
        try:
            vector = np.atleast_1d(np.asarray(value, dtype=float))
        except (TypeError, ValueError):  # e.g. pandas' NA
            raise OptionError(f"{label} must be finite numbers, not {describe_value(value)}") from None
        if not np.all(np.isfinite(vector)):
            raise OptionError(f"{label} must be finite, not {vector.tolist()}")
        parts[key] = vector
    return parts


def _check_theta(theta: np.ndarray, random_effects) -> np.ndarray:
    names = _theta_names(random_effects)
    if theta.shape != (random_effects.n_theta,):
        raise OptionError(
            f"start must have {random_effects.n_theta} values of θ, one per element of the relative covariance factors "
            f"({', '.join(names)}), not {theta.size}"
        )
    below = np.flatnonzero(theta < random_effects.theta_lower)
    if below.size:
        bad = ", ".join(f"{names[i]} = {theta[i]:g}" for i in below)
        raise OptionError(f"start θ has negative diagonal elements ({bad}): the diagonal of each factor must be ≥ 0")
    return theta


def _theta_names(random_effects) -> list[str]:
    """lme4's names of θ: ``group.effect`` for a diagonal element, ``group.row.column`` off it."""
    names = []
    for t in random_effects.terms:
        for i, j in t.tril:
            names.append(f"{t.group}.{t.effects[i]}" if i == j else f"{t.group}.{t.effects[i]}.{t.effects[j]}")
    return names
