"""``lmer_many``: one LMM design (X, Z, weights) fitted to many responses, as one ``lmer`` per response would.

Genomics users fit ``~ covariates + (1 | donor) + (1 | batch)`` to every gene of an expression
matrix (variancePartition's ``fitExtractVarPartModel``, dream's loop over ``lmer``).  All that
changes between genes is y, so here the design is built once (formula, model frame, Z, the
standardized X̃ and cross-products), each response is standardized as ``lmer`` standardizes it
(ỹ = (y − Xγ)/s, :mod:`skmixed.standardize`, vectorised: the numbers do not depend on the
responses' location or units), and only Z'ỹ, X̃'ỹ, ỹ'ỹ are formed per response.  The deviances of all
responses are then evaluated together (:mod:`skmixed.many_pls`) by a Newton iteration that advances
them together (:mod:`skmixed.many_newton`).  A response the batched finish does not certify (lme4's
checks, or a boundary the probe leaves) is refitted by ``lmer``'s own optimizer on the shared design,
as is every response of a design too large for the batched factor.

Missing values: rows where a covariate, grouping factor or weight is missing are dropped for every
response (as ``lmer`` drops them); a missing value in a response drops that row for that response
only.  Responses are grouped by their pattern of missing rows and each pattern gets its own design.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import scipy.linalg as la

from .blas import single_blas_thread
from .deviance import ProfiledDeviance
from .exceptions import (
    ConvergenceWarning,
    DataError,
    FormulaError,
    InputError,
    OptionError,
    SingularFitWarning,
)
from .fitting import optimize
from .formula import parse_formula
from .many_newton import BatchedNewton
from .many_pls import BatchedDesign, BatchedResponses, batchable, block_size
from .many_result import ManyResult, ResponseFits
from .model import LinearMixedModel, build
from .options import check_data_options
from .pls import theta_scale
from .standardize import _EXACT_FIT
from .starts import intercept_starts

#: responses standardized together: a block of 1,024 responses of a few hundred samples stays in cache
CHUNK = 1024


def lmer_many(formula: str, data: pd.DataFrame, responses, REML: bool = True, weights=None, n_jobs=None) -> ManyResult:
    """Fit ``formula``'s right-hand side to each of ``responses`` as ``skmixed.lmer`` would, sharing the design.

    Parameters
    ----------
    formula : str
        The right-hand side of an lme4 formula, e.g. ``"~ age + (1 | donor) + (1 | batch)"`` (no response).
    data : DataFrame
        The covariates and grouping factors, one row per sample.
    responses : list of column names, DataFrame or 2-D array
        Column names of ``data``; or a DataFrame or array with one row per sample (the rows of ``data``, in
        order; a DataFrame whose index holds the same labels as ``data``'s is aligned to it) and one column per
        response.  An expression matrix stored genes × samples, as variancePartition's, is passed transposed.
    REML : bool
        REML (default) or maximum likelihood, for every response.
    weights : column name or array, optional
        Prior weights shared by all responses.
    n_jobs : int, optional
        Threads over which the responses are split (None: 1; -1: every CPU).

    Returns
    -------
    ManyResult
        Tables with one row per response (``fixef``, ``fixef_se``, ``theta``, ``varcorr``, ``sdcor``,
        ``table`` with objective, σ, convergence and singularity), and ``result[i]`` or ``result[name]``: the
        full :class:`~skmixed.LmerResult` of one response.
    """
    REML = check_data_options(data, REML, weights, None)
    jobs = _check_jobs(n_jobs)
    rhs = _right_hand_side(formula)
    names, Y = _response_matrix(responses, data)
    design_data = _design_data(data, responses, rhs, weights)
    placeholder = _unused_name(data)
    with single_blas_thread():
        base = build(
            f"{placeholder} ~ {rhs}",
            design_data.assign(**{placeholder: _filler(len(data))}),
            REML=REML,
            weights=weights,
        )
        missing = np.isnan(_rows(Y, base.frame.keep))
        empty = missing.all(axis=0)
        if empty.any():
            raise DataError(
                f"the responses {[names[j] for j in np.flatnonzero(empty)][:10]} have no value in any row used"
            )
        fits = []
        for pattern, columns in _missingness_groups(missing):
            model = (
                base
                if not pattern.any()
                else _design_without(base, pattern, design_data, placeholder, rhs, weights, [names[j] for j in columns])
            )
            fits.append(
                _fit_design(
                    model,
                    _columns(_rows(Y, model.frame.keep), columns),
                    [names[j] for j in columns],
                    columns,
                    rhs,
                    placeholder,
                    jobs,
                )
            )
    result = ManyResult.combine(fits, names, rhs, REML)
    _warn(result)
    return result


def _warn(result: ManyResult) -> None:
    """One warning for all responses where lmer would warn for each: failed convergence checks, singular fits."""
    table = result.table
    for column, flagged, category, text in [
        (
            "converged",
            ~table["converged"],
            ConvergenceWarning,
            "failed lme4's convergence checks (messages: result[name].optsum)",
        ),
        ("singular", table["singular"], SingularFitWarning, "are boundary (singular) fits"),
    ]:
        if flagged.any():
            shown = list(table.index[flagged][:5])
            more = " ..." if flagged.sum() > 5 else ""
            warnings.warn(
                f"{int(flagged.sum())} of {len(table)} responses {text}: {shown}{more}; see result.table[{column!r}]",
                category,
                stacklevel=3,
            )


def _rows(Y: np.ndarray, keep: np.ndarray) -> np.ndarray:
    return Y if keep.all() else Y[keep]


def _columns(Y: np.ndarray, columns: np.ndarray) -> np.ndarray:
    return Y if len(columns) == Y.shape[1] else Y[:, columns]  # a group's columns are increasing: all means all


def _design_data(data: pd.DataFrame, responses, rhs: str, weights) -> pd.DataFrame:
    """``data`` without the response columns the formula does not read (the model frame keeps every column)."""
    if isinstance(responses, str):
        responses = [responses]
    if not isinstance(responses, (list, tuple, pd.Index)):
        return data
    drop = [c for c in responses if isinstance(c, str) and c in data.columns and c not in rhs and c != weights]
    return data.drop(columns=drop) if drop else data


def _design_without(base, pattern, data, placeholder: str, rhs: str, weights, names: list) -> LinearMixedModel:
    """The design built without the rows that the responses ``names`` miss (as lmer drops them)."""
    filler = _filler(len(data))
    filler[np.flatnonzero(base.frame.keep)[pattern]] = np.nan
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)  # the rows dropped show in each response's nobs
            return build(
                f"{placeholder} ~ {rhs}", data.assign(**{placeholder: filler}), REML=base.REML, weights=weights
            )
    except InputError as err:
        raise DataError(f"the responses {names[:10]}, without their {int(pattern.sum())} missing rows: {err}") from err


def _fit_design(model: LinearMixedModel, Y: np.ndarray, names: list, columns, rhs: str, placeholder: str, jobs: int):
    """Every response of one design: batched where its reduced factor is small, by lmer's optimizer otherwise."""
    gamma, s, Y_tilde, Zty, Xty, yty = _standardized(model, Y)
    bad = np.flatnonzero(s == 0)
    if len(bad):
        shown = ", ".join(repr(names[j]) for j in bad[:10])
        raise DataError(
            f"the responses {shown}{' ...' if len(bad) > 10 else ''} are exact linear functions of the fixed effects "
            "(constant, for example): no variance is left to estimate; drop them from responses"
        )
    fits = ResponseFits(model, names, columns, Y, Y_tilde, gamma, s, Zty, Xty, yty, rhs, placeholder)
    m = len(names)
    scale = theta_scale(model.cp, model.re)
    design = BatchedDesign(model) if batchable(model) else None
    if design is not None:
        batched = BatchedResponses(design, Zty, Xty, yty)
        starts = _moment_starts(model, Zty, yty, scale)
        size = block_size(model)
        chunks = [np.arange(s, min(m, s + size)) for s in range(0, m, size)]

        def run(chunk):
            sub = BatchedResponses(design, Zty[:, chunk], Xty[:, chunk], yty[chunk])
            newton = BatchedNewton(sub.deviance, sub.deviance_points, model.re, scale)
            return chunk, newton.minimize(starts[chunk])

        if jobs == 1:
            done = map(run, chunks)
        else:
            pool = ThreadPoolExecutor(max_workers=jobs)
            done = pool.map(run, chunks)
            pool.shutdown(wait=False)  # map has submitted every chunk; iterating waits for them
        for chunk, optimum in done:
            fits.set_batched(chunk, starts[chunk], optimum)
        for j in np.flatnonzero(~fits.converged):
            fits.set_optimized(j, *_refit(fits.model_of(j)))
        fits.estimates_from(batched)
    else:
        for j in range(m):
            fits.set_optimized(j, *_refit(fits.model_of(j)))
        fits.estimates_from(None)
    return fits


def _refit(model: LinearMixedModel):
    """lmer's optimizer for one response on the shared design: its summary (the warnings in its messages) and the
    deviance function it ran on."""
    devfun = ProfiledDeviance(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        optsum = optimize(devfun)
    for w in caught:
        if str(w.message) not in optsum.messages:
            optsum.messages.append(str(w.message))
    return optsum, devfun


def _moment_starts(model: LinearMixedModel, Zty: np.ndarray, yty: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """lmer's starting θ̃ of the intercept terms (:func:`skmixed.starts.intercept_starts`) for every response at
    once; other terms at lmer's start for them."""
    re = model.re
    out = np.tile(re.theta_init / scale, (Zty.shape[1], 1))
    terms, values = intercept_starts(model.cp.ZtZ, re, Zty, yty)
    out[:, re.theta_offsets[terms]] = values.T
    return out


def _standardized(model: LinearMixedModel, Y: np.ndarray):
    """ỹ = (y − Xγ)/s per column of Y as :func:`skmixed.standardize.standardize` computes it (the same QR of √w·X,
    the residual projected twice), and its cross-products Z'W̃ỹ, X̃'W̃ỹ, ỹ'W̃ỹ as :func:`skmixed.pls.cross_products`
    forms them.  Returns γ (m × p) and s per response (0 where y is fitted exactly), Ỹ (n × m) and the three
    cross-products (q × m, p × m, m).  The work goes by blocks of responses, each row of ``Yt`` one response, so
    that every pass over a block reads contiguous memory that stays in cache."""
    frame, shared = model.frame, model.standardization
    n, p = frame.X.shape
    sw = np.sqrt(frame.weights / shared.c)
    if p:
        Q, R = la.qr(frame.X * sw[:, None], mode="economic")
        sign = np.where(np.diag(R) < 0, -1.0, 1.0)
        Q, R = Q * sign, R * sign[:, None]
    else:
        Q, R = np.zeros((n, 0)), np.zeros((0, 0))
    m = Y.shape[1]
    Yt = np.ascontiguousarray(Y.T)
    gamma, s, Yt_tilde = np.zeros((m, p)), np.zeros(m), np.empty((m, n))
    Zty, Xty, yty = np.empty((model.re.q, m)), np.empty((p, m)), np.empty(m)
    Zt = model.re.Z.T.tocsr()
    for start in range(0, m, CHUNK):
        rows = slice(start, min(m, start + CHUNK))
        r = (Yt[rows] - frame.offset) * sw
        magnitude = np.max(np.abs(r), axis=1)[:, None]
        r /= magnitude
        coef = r @ Q
        r -= coef @ Q.T
        correction = r @ Q
        r -= correction @ Q.T
        coef += correction
        root_ms = np.sqrt(np.einsum("ij,ij->i", r, r) / n)
        if p:
            gamma[rows] = magnitude * la.solve_triangular(R, coef.T).T
        s[rows] = np.where(root_ms > _EXACT_FIT, root_ms * magnitude[:, 0], 0.0)
        y_tilde = Yt_tilde[rows]
        np.divide(r, np.where(root_ms > 0, root_ms, 1.0)[:, None] * sw, out=y_tilde)
        wy = y_tilde * model.weights
        Zty[:, rows] = Zt @ wy.T
        Xty[:, rows] = model.X.T @ wy.T
        yty[rows] = np.einsum("ij,ij->i", y_tilde, wy)
    return gamma, s, Yt_tilde.T, Zty, Xty, yty


def _right_hand_side(formula) -> str:
    """The formula's right-hand side (the text after '~'); a response on the left is an error."""
    if not isinstance(formula, str) or "~" not in formula:
        raise FormulaError(
            f"lmer_many takes a formula's right-hand side such as '~ x + (1 | g)', not {formula!r}; "
            "the responses are given by responses="
        )
    lhs, rhs = formula.split("~", 1)
    if lhs.strip():
        raise FormulaError(
            f"lmer_many's formula has no response: write '~ {rhs.strip()}' and pass {lhs.strip()!r} in responses="
        )
    try:
        parse_formula(f"y {formula.strip()}")
    except FormulaError as err:  # the message points into the formula as given: without the "y " put before it
        lines = str(err).split("\n")
        shown = [lines[0]] + [line.replace(f"y {formula.strip()}", formula.strip()) for line in lines[1:2]]
        shown += [line[:2] + line[4:] if set(line) <= {" ", "^"} else line for line in lines[2:]]
        raise FormulaError("\n".join(shown)) from None
    return rhs.strip()


def _response_matrix(responses, data: pd.DataFrame) -> tuple[list, np.ndarray]:
    """Response names and the n × m matrix of their values (rows: the rows of ``data``)."""
    if isinstance(responses, str):
        responses = [responses]
    if isinstance(responses, (list, tuple, pd.Index)) and all(isinstance(c, str) for c in responses):
        unknown = [c for c in responses if c not in data.columns]
        if unknown:
            raise DataError(f"the responses {unknown[:10]} are not columns of data")
        frame = data[list(responses)]
    elif isinstance(responses, pd.DataFrame):
        frame = _aligned(responses, data)
    else:
        values = np.asarray(responses)
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2:
            raise DataError(f"responses must be column names, a DataFrame or a 2-D array, not {values.ndim}-D")
        frame = _aligned(pd.DataFrame(values, index=data.index), data)
    if frame.shape[1] == 0:
        raise DataError("responses is empty: pass at least one response")
    if frame.columns.duplicated().any():
        raise DataError(f"responses has repeated names: {list(frame.columns[frame.columns.duplicated()][:10])}")
    not_numeric = [c for c, dtype in frame.dtypes.items() if not pd.api.types.is_numeric_dtype(dtype)]
    if not_numeric:
        raise DataError(f"the responses {not_numeric[:10]} are not numeric; convert them, e.g. with pd.to_numeric")
    Y = frame.to_numpy(dtype=float, na_value=np.nan)
    infinite = np.isinf(Y).any(axis=0)
    if infinite.any():
        raise DataError(f"the responses {list(frame.columns[infinite][:10])} have infinite values; remove or fix them")
    return list(frame.columns), Y


def _aligned(responses: pd.DataFrame, data: pd.DataFrame) -> pd.DataFrame:
    """A response matrix with the rows of ``data``: by label when the index holds the same labels, else by position."""
    n = len(data)
    if len(responses) != n:
        hint = " (samples as columns? pass responses.T)" if responses.shape[1] == n else ""
        raise DataError(f"responses has {len(responses)} rows but data has {n}: one row per sample{hint}")
    if responses.index.equals(data.index):
        return responses
    if set(responses.index) == set(data.index) and data.index.is_unique:
        return responses.loc[data.index]
    raise DataError(
        "the index of responses holds other labels than data's: align them (responses.set_index(data.index) if the "
        "rows are in the same order)"
    )


def _missingness_groups(missing: np.ndarray):
    """(pattern of missing rows, response columns) for each distinct pattern."""
    if not missing.any():
        yield np.zeros(missing.shape[0], dtype=bool), np.arange(missing.shape[1])
        return
    patterns, inverse = np.unique(missing.T, axis=0, return_inverse=True)
    for g, pattern in enumerate(patterns):
        yield pattern, np.flatnonzero(inverse.ravel() == g)


def _filler(n: int) -> np.ndarray:
    """A placeholder response for building the design: any non-degenerate values (the design ignores them)."""
    return np.random.default_rng(0).standard_normal(n)


def _unused_name(data: pd.DataFrame) -> str:
    name = "lmer_many_response"
    while name in data.columns:
        name += "_"
    return name


def _check_jobs(n_jobs) -> int:
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, (bool, np.bool_)) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0:
        raise OptionError(f"n_jobs must be a positive integer, -1 (every CPU) or None, not {n_jobs!r}")
    return max(1, (os.cpu_count() or 1) + 1 + int(n_jobs)) if n_jobs < 0 else int(n_jobs)
