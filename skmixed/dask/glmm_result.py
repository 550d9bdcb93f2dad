"""The fitted GLMM of a Dask fit: a :class:`~skmixed.GlmerResult` whose per-row quantities are lazy.

:func:`dask_glmer_result` is :func:`skmixed.glmm_results.glmer_result` with the one row-wise sum it takes (the
Pearson sum Σw(y − μ̂)²/V(μ̂) of the penalized weighted RSS) from the last PIRLS pass at the mode.  The estimates,
vcov (from the Hessian of the deviance where lme4 takes it), varcorr, ranef and condVar are as in memory.
``fitted`` (μ̂), ``linear_predictor``, ``residuals`` (deviance residuals), ``residuals_pearson`` and ``predict``
are Dask Series, one task per partition, with β̂ and the level → b̂ tables sent once (as for
:class:`~skmixed.dask.result.DaskLmerResult`); ``predict`` on a pandas frame returns an array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..exceptions import OptionError
from ..families import Binomial
from ..glmm_results import GlmerResult, hessian_vcov, keep_and_warn, mode_at, solution_at
from ..laplace import minus_two_loglik
from ..prediction import select_terms
from ..response import binomial_response
from ..results import warn_if_singular
from . import predict as lazy


def dask_glmer_result(model, objective, optsum) -> DaskGlmerResult:
    """The fitted GLMM at ``optsum``'s (θ, β) (θ for nAGQ = 0): the mode there, on the user's scale
    (:func:`skmixed.glmm_results.glmer_result`'s, with the row sums from the workers)."""
    pirls = objective.pirls
    mode = mode_at(objective, optsum)
    pwrss = mode.eta.pearson + mode.usq
    solution = solution_at(objective, mode, pirls.working_solution(mode), pwrss, minus_two_loglik(pirls, mode), 1.0)
    result = DaskGlmerResult(
        model=model, solution=solution, optsum=optsum, cp=pirls.working_cross_products(mode), family=pirls.family,
        nAGQ=objective.nAGQ, hessian_vcov=hessian_vcov(objective, optsum),
    )  # fmt: skip
    keep_and_warn(result, objective, mode)
    warn_if_singular(result)
    return result


def glmm_rows(part: pd.DataFrame, coding, family, beta, blocks, what: str, kept=None) -> pd.Series:
    """On the partition's rows used: ``what`` = "link" (η̂), "fitted" (μ̂), "deviance" or "pearson" residuals;
    ``kept``: the random-effects terms included (default: all)."""
    used, weights, offset = coding.used(part)
    X = coding.fixed(used, coding.x_names)
    kept = range(len(coding.terms)) if kept is None else kept
    terms = [lazy._term_rows(coding, coding.terms[i], used, True) for i in kept]
    eta = lazy._combine(X, offset, beta, terms, [blocks[i] for i in kept])
    if what == "link":
        return pd.Series(eta, index=used.index, name=what)
    mu = family.linkinv(eta)
    if what == "fitted":
        return pd.Series(mu, index=used.index, name=what)
    if isinstance(family, Binomial):
        y, trials = binomial_response(coding.parsed.response, used)
        weights = weights if trials is None else weights * trials
    else:
        y = coding.response(used)
    if what == "pearson":
        values = (y - mu) * np.sqrt(weights / family.variance(mu))
    else:
        values = np.sign(y - mu) * np.sqrt(np.maximum(family.dev_resids(y, mu, weights), 0))
    return pd.Series(values, index=used.index, name=what)


@dataclass(frozen=True, repr=False)
class DaskGlmerResult(GlmerResult):
    """A :class:`~skmixed.GlmerResult` fitted on a Dask DataFrame (``model.source``); rows stay on the workers."""

    @property
    def devfun(self):
        if "devfun" not in self._cache:
            from .glmm import DaskGlmmObjective

            self._cache["devfun"] = DaskGlmmObjective(self.model, self.nAGQ)
        return self._cache["devfun"]

    def _shared(self):
        """The coding, the family, β̂ and the per-term ℓ × k tables of b̂, each one key of the graph."""
        if "shared" not in self._cache:
            from dask import delayed

            blocks = self.re.split_b(self.solution.b)
            values = (self.model.coding, self.family, self.solution.beta, blocks)
            self._cache["shared"] = tuple(delayed(v, pure=True) for v in values)
        return self._cache["shared"]

    def _rows(self, what: str, kept=None):
        meta = pd.Series(dtype=float, name=what)
        return self.model.source.map_partitions(glmm_rows, *self._shared(), what, kept, meta=meta)

    @property
    def linear_predictor(self):
        """η̂ = Xβ̂ + Zb̂ + offset on the rows used: a lazy Dask Series."""
        return self._rows("link")

    @property
    def fitted(self):
        """Conditional means μ̂ = g⁻¹(η̂) on the rows used: a lazy Dask Series."""
        return self._rows("fitted")

    @property
    def residuals(self):
        """Deviance residuals sign(y − μ̂)·√dᵢ: a lazy Dask Series."""
        return self._rows("deviance")

    @property
    def residuals_pearson(self):
        """(y − μ̂)·√w / √V(μ̂): a lazy Dask Series."""
        return self._rows("pearson")

    @property
    def residuals_scaled(self):
        return self.residuals_pearson / self.sigma

    def summary(self, ddf=None):
        """lme4's summary, its scaled-residual quantiles found on the workers (:mod:`~skmixed.dask.quantiles`)."""
        from ..summary import Summary
        from .quantiles import exact_quantiles

        if ddf is not None:
            return super().summary(ddf)  # the error naming the alternatives
        if "residual_quantiles" not in self._cache:
            self._cache["residual_quantiles"] = exact_quantiles(self.residuals_scaled, [0, 0.25, 0.5, 0.75, 1])
        view = _SummaryView(
            model=self.model, solution=self.solution, optsum=self.optsum, cp=self.cp, family=self.family,
            nAGQ=self.nAGQ, hessian_vcov=self.hessian_vcov, _cache=self._cache,
        )  # fmt: skip
        return Summary(view, None)

    def predict(self, newdata=None, re_form=None, allow_new_levels: bool = True, offset=None, type: str = "link",
                se_fit: bool = False, interval: str | None = None, level: float = 0.95):  # fmt: skip
        """Predictions on the link scale or as means (``type="response"``): on the fit's rows or a Dask DataFrame a
        lazy Dask Series, on a pandas DataFrame an array."""
        if type not in ("link", "response"):
            raise OptionError(f"type must be 'link' or 'response', not {type!r}")
        if se_fit or interval is not None:
            raise OptionError(
                "se_fit and interval are not available for a fit on a Dask DataFrame: predict a pandas sample "
                "with an in-memory fit for them"
            )
        kept = select_terms(self.re, re_form)
        coding, family, beta, blocks = self._shared()
        link = family.linkinv if type == "response" else None
        if newdata is None:
            if offset is not None:
                raise OptionError("offset= goes with newdata: the fit's rows have their own offset")
            return self._rows("fitted" if type == "response" else "link", kept).rename("predict")
        from . import is_dask_frame

        if is_dask_frame(newdata):
            if offset is not None and not isinstance(offset, str):
                raise OptionError("offset= for a Dask newdata must be the name of one of its columns")
            meta = pd.Series(dtype=float, name="predict")
            eta = newdata.map_partitions(
                lazy.new_rows_series, coding, beta, blocks, kept, allow_new_levels, offset, meta=meta
            )
            return eta if link is None else eta.map_partitions(self.family.linkinv, meta=meta)
        tables = self.re.split_b(self.solution.b)
        eta = lazy.new_rows(newdata, self.model.coding, self.solution.beta, tables, kept, allow_new_levels, offset)
        return eta if type == "link" else self.family.linkinv(eta)


@dataclass(frozen=True, repr=False)
class _SummaryView(DaskGlmerResult):
    """The result as :class:`~skmixed.summary.Summary` reads it: the scaled residuals stand for their five
    quantiles (np.quantile of five values at 0, ¼, ½, ¾, 1 gives them back exactly)."""

    @property
    def residuals_scaled(self):
        return self._cache["residual_quantiles"]


__all__ = ["DaskGlmerResult", "dask_glmer_result"]
