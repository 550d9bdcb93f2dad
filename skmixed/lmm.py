"""``lmer``: fit a linear mixed model, lme4's ``lmer`` as a composition of the public stages
(:mod:`skmixed.stages`): build → deviance → optimize → make_result."""

from __future__ import annotations

import pandas as pd

from .blas import single_blas_thread
from .dask import is_dask_frame
from .exceptions import OptionError
from .options import check_lmer, check_solver
from .results import LmerResult
from .stages import build, deviance, make_result, optimize


def lmer(
    formula: str,
    data: pd.DataFrame,
    REML: bool = True,
    weights=None,
    offset=None,
    start=None,
    check_conv: bool = True,
    maxeval: int = 100_000,
    residual=None,
    solver: str = "auto",
    krylov: dict | None = None,
) -> LmerResult:
    """Fit ``y = Xβ + Zb + ε``, ``b ~ N(0, σ²ΛΛ')``, ``ε ~ N(0, σ²W⁻¹)`` by REML (default) or ML.

    ``formula`` is an lme4 formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``.
    ``weights`` and ``offset`` are column names of ``data`` or arrays (rows of weight 0 are
    left out of the fit, as if missing); ``start`` is an initial θ or ``{"theta": θ}`` (default:
    identity Λ).  :mod:`skmixed.options` says what each option accepts.  Rows with a missing value
    in a variable the formula reads are dropped (with a warning) before transforms such as
    ``poly(x, 2)`` or ``scale(x)`` are evaluated, so these see only the rows fitted; R differs here
    (its ``poly`` stops on NA and its ``scale`` centres on rows dropped afterwards), on purpose.

    ``residual``: a residual covariance structure within a grouping factor, ``"us(visit | subject)"`` and the
    others of :mod:`skmixed.covstruct` (the formula may then have no random-effects term: nlme's ``gls``); the
    result is a :class:`~skmixed.residual_result.StructuredLmerResult` (:mod:`skmixed.residual_fit`).

    ``solver``: ``"auto"`` (the exact path for the model's shape, chosen by cost) or ``"krylov"``, for scalar terms
    on crossed factors with many levels on both sides: conjugate gradients and stochastic estimates of the
    log-determinant and of the gradient (:mod:`skmixed.krylov_pls`), with ``krylov={"probes": 50, "seed": 0,
    "tol": 1e-10}`` (the defaults).  Its optimum is that of a stochastic objective; the objective reported is the
    exact one at that θ where the exact factor is affordable (``result.devfun.reason`` says which).
    """
    check_solver(solver, krylov)
    if (residual is not None or is_dask_frame(data)) and solver != "auto":
        raise OptionError("solver='krylov' fits an in-memory lmer without residual=; use solver='auto'")
    if is_dask_frame(data):  # the rows stay on the workers: skmixed.dask
        from .dask import lmer as dask_lmer

        if residual is not None:
            raise OptionError("residual= needs the rows in memory: fit a pandas DataFrame (ddf.compute())")
        return dask_lmer(formula, data, REML, weights, offset, start, check_conv, maxeval)
    if residual is not None:
        from .residual_fit import build_structured, fit_structured

        check_lmer(REML, weights, offset, None, check_conv, maxeval, data)
        with single_blas_thread():
            model = build_structured(formula, data, residual, REML, weights, offset)
            return fit_structured(model, start=start, check_conv=check_conv, maxeval=maxeval)
    check_lmer(REML, weights, offset, start, check_conv, maxeval, data)  # every option before any work
    with single_blas_thread():  # once for the four stages (see skmixed.blas)
        model = build(formula, data, REML=REML, weights=weights, offset=offset)
        devfun = deviance(model, solver=solver, krylov=krylov)
        return make_result(model, devfun, optimize(devfun, start=start, check_conv=check_conv, maxeval=maxeval))
