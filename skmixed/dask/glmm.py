"""``glmer`` on a Dask DataFrame: the rows coded once and persisted on the workers, PIRLS a pass per iteration.

1. pass 1 of :mod:`skmixed.dask.survey` (the rows used, the levels) and the coding of :mod:`skmixed.dask.coding`;
2. each partition coded into a :class:`~skmixed.dask.glmm_rows.Block` and persisted; one pass gives the R
   factors of X and √w·X (TSQR: the aliased columns as in memory, and the standardization of a GLMM,
   X = X̃S with S the R of √w·X over √n), the pattern of Z'Z, the response's range, the family's checks and
   the constant aic − Σd_i of the Laplace deviance;
3. the blocks standardized (X̃ = XS⁻¹) and their pairs of Z's nonzeros placed on the pattern;
4. :func:`skmixed.glmm_fitting.optimize_glmm` on the client, unchanged, with :class:`DaskPirls`: each PIRLS
   iteration is one pass of weighted cross-products.

nAGQ = 0 and 1 for the binomial, Poisson and negative binomial (known θ) families, whose Laplace deviance
needs no row beyond Σd_i; the nAGQ = 1 fit takes the in-memory BFGS path, its gradient one more pass per
evaluation (:mod:`skmixed.dask.glmm_gradient`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..blas import single_blas_thread
from ..checks import check_glmm_terms, check_not_constant
from ..deviance import GlmmObjective
from ..exceptions import FormulaError, OptionError
from ..families import Binomial, Family, NegativeBinomial, Poisson
from ..fitting import optimize
from ..glmm import fitted_as_lmm
from ..model import GeneralizedLinearMixedModel
from ..options import check_fit_options, check_nagq, get_family, theta_only
from ..reterms import RandomEffects
from ..standardize import Standardization
from .coding import Coding, coding_from_survey
from .fit import _aliased, _check_options, _frame, survey_formula
from .fit import lmer as dask_lmer
from .glmm_pirls import DaskPirls, block_reduce
from .glmm_rows import finish_block, gram_merge, gram_partition, load_block, load_merge, load_piece
from .passes import _r_factor
from .rows import RowsOnWorkers


class ShapedRows(RowsOnWorkers):
    """Rows on the workers whose shape the client knows (the standardized X̃: n × p)."""

    def __init__(self, what: str, shape: tuple[int, int]):
        super().__init__(what)
        self.shape = shape

    def __reduce__(self):
        return ShapedRows, (self.what, self.shape)


@dataclass(frozen=True)
class DaskGeneralizedLinearMixedModel(GeneralizedLinearMixedModel):
    """A GLMM record whose rows are persisted Dask blocks (``blocks``), coded by ``coding`` from ``source``."""

    source: object = None
    coding: Coding | None = None
    blocks: tuple = ()
    gram: sp.csc_matrix | None = None
    aic_constant: float | None = None


class DaskGlmmObjective(GlmmObjective):
    """:class:`~skmixed.GlmmObjective` of a Dask record: its PIRLS is :class:`DaskPirls`."""

    def __init__(self, model: DaskGeneralizedLinearMixedModel, nAGQ: int):
        _check_quadrature(nAGQ)
        self.model, self.nAGQ, self.rule = model, nAGQ, None
        n, p = model.X.shape
        self.pirls = DaskPirls(model.blocks, model.re, model.family, model.gram, n, p, model.aic_constant)


def _check_quadrature(nAGQ: int) -> None:
    if nAGQ > 1:
        raise OptionError(
            f"nAGQ = {nAGQ} (adaptive Gauss-Hermite quadrature) is not available for a Dask DataFrame (its "
            "deviance sums each level's rows at every node); use nAGQ=1 (Laplace) or fit in memory"
        )


def _family(family) -> Family:
    fam = get_family(family)
    if isinstance(fam, NegativeBinomial) and fam.theta is None:
        raise OptionError(
            "a negative binomial with θ estimated (glmer.nb) refits the model for each θ from the rows' means: on a "
            "Dask DataFrame give θ (NegativeBinomial(theta=...)), or fit in memory"
        )
    if not isinstance(fam, (Binomial, Poisson, NegativeBinomial)):
        raise OptionError(
            f"the {fam.name} family is not available for glmer on a Dask DataFrame (its Laplace deviance needs the "
            "rows at every evaluation, for the dispersion): the binomial, Poisson and negative binomial (known θ) "
            "families are; or fit in memory"
        )
    return fam


def _check_rows(piece, fam: Family, parsed) -> None:
    """The family's checks of the response, as in memory, on the merged counts."""
    if piece.bad:
        fam.check_response(np.full(piece.bad, piece.example), np.ones(piece.bad))
    for message in piece.warned:
        warnings.warn(message, UserWarning, stacklevel=4)
    check_not_constant(np.array([piece.y_min, piece.y_max]), np.ones(2), fam, parsed.response)


def _standardization(R_w: np.ndarray, coding: Coding, x_names: list[str], n: int) -> Standardization:
    """:func:`skmixed.standardize.standardize` with ``response=False``: S = R/√n for √w·X = QR, diag(R) > 0."""
    kept = [coding.x_all.index(name) for name in x_names]
    p = len(kept)
    R = _r_factor(R_w[:, kept]) if p else np.zeros((0, 0))
    R = np.vstack([R, np.zeros((p - R.shape[0], p))])
    R = R * np.where(np.diag(R) < 0, -1.0, 1.0)[:, None]
    return Standardization(R / np.sqrt(n), np.zeros(p), 1.0, 1.0, n)


def build(formula: str, data, family: Family, weights: str | None = None, offset: str | None = None):
    """The record of the GLMM ``formula`` on the Dask DataFrame ``data``, its rows persisted on the workers."""
    import dask
    from dask import delayed

    parsed, request, survey = survey_formula(formula, data, weights, offset, "fit it as a GLM without random effects")
    meta = data._meta
    coding = coding_from_survey(parsed, request, survey, meta, response=False)
    re = RandomEffects(coding.terms)
    if re.structured:
        raise FormulaError("covariance structures of random-effect terms are for lmer only")
    check_glmm_terms(re, survey.used)
    shared = delayed(coding, pure=True)
    loaded = dask.persist(*[delayed(load_block, pure=True)(part, shared, family) for part in data.to_delayed()])
    piece = block_reduce(loaded, load_piece, load_merge, family, what="2 (coding the rows)")
    _check_rows(piece, family, parsed)
    x_names = _aliased(piece.R_raw, coding.x_all)
    std = _standardization(piece.R_w, coding, x_names, piece.n)
    coding = coding.with_std(x_names, None)
    kept = [coding.x_all.index(name) for name in x_names]
    keys = piece.keys
    blocks = dask.persist(*[delayed(finish_block, pure=True)(b, keys, std.S, kept) for b in loaded])
    del loaded
    q = re.q
    indptr = np.concatenate([[0], np.cumsum(np.bincount(keys // q, minlength=q))])
    gram = sp.csc_matrix((np.zeros(len(keys)), keys % q, indptr), shape=(q, q))
    gram.data = block_reduce(blocks, gram_partition, gram_merge, len(keys), what="3 (Z'Z)")
    return DaskGeneralizedLinearMixedModel(
        formula=parsed.text,
        parsed=parsed,
        frame=_frame(coding, survey.missing, offset),
        re=re,
        family=family,
        standardization=std,
        X=ShapedRows("standardized model matrix", (piece.n, len(x_names))),
        source=data,
        coding=coding,
        blocks=tuple(blocks),
        gram=gram,
        aic_constant=piece.constant,
    )


def glmer(
    formula: str,
    data,
    family="binomial",
    nAGQ: int = 1,
    weights: str | None = None,
    offset: str | None = None,
    start=None,
    check_conv: bool = True,
    maxeval: int = 100_000,
):
    """:func:`skmixed.glmer` on a Dask DataFrame: the same fit, to rounding, with the rows persisted on the workers.

    ``weights`` and ``offset`` are column names.  Each PIRLS iteration is one pass over the persisted
    partitions, so the workers must hold the data (the coded columns: about 8·(p + 4 + 4k + 2k²) bytes a row for k
    random effects per row); ``nAGQ`` 0 or 1.
    """
    from .glmm_result import dask_glmer_result

    _check_options(True, weights, offset, theta_only(start), check_conv, maxeval)  # column names; start below
    fam = get_family(family)
    if fitted_as_lmm(fam):
        return dask_lmer(formula, data, False, weights, offset, theta_only(start), check_conv, maxeval)
    fam, nAGQ = _family(fam), check_nagq(nAGQ)
    check_conv, maxeval = check_fit_options(start, check_conv, maxeval, ("theta", "fixef"))
    _check_quadrature(nAGQ)  # before any pass
    with single_blas_thread():
        model = build(formula, data, fam, weights=weights, offset=offset)
        objective = DaskGlmmObjective(model, nAGQ)
        return dask_glmer_result(model, objective, optimize(objective, start=start, check_conv=check_conv,
                                                            maxeval=maxeval))  # fmt: skip
