"""The fitted model of a Dask fit: an :class:`~skmixed.LmerResult` whose per-row quantities are lazy.

Everything the result computes from the record's pieces (β̂, θ̂, σ̂, vcov, varcorr, ranef, condVar, the
summary's tables) is as in memory.  What reads rows is redefined here: ``fitted``, ``residuals``,
``residuals_scaled`` and ``predict`` return Dask Series (``predict`` on a pandas frame returns an array, as in
memory); the summary's scaled-residual quantiles are exact, found by passes of counts
(:mod:`skmixed.dask.quantiles`); the ML deviance of a REML fit takes log|W| from the cross-products.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..exceptions import OptionError
from ..fitting import optimize
from ..prediction import select_terms
from ..results import LmerResult, warn_if_singular
from . import predict as lazy
from .fit import DaskDeviance, DaskLinearMixedModel
from .rows import RowsOnWorkers


def dask_lmer_result(model: DaskLinearMixedModel, devfun: DaskDeviance, optsum) -> DaskLmerResult:
    """:func:`skmixed.results.lmer_result` for a Dask fit."""
    std = model.standardization
    solution = std.solution(devfun.standardized.final_solution(std.theta_tilde(optsum.theta)), model.REML)
    result = DaskLmerResult(model=model, solution=solution, optsum=optsum, cp=model.cp)
    result._cache["devfun"] = devfun
    warn_if_singular(result)
    return result


@dataclass(frozen=True)
class DaskLmerResult(LmerResult):
    """An :class:`~skmixed.LmerResult` fitted on a Dask DataFrame (``model.source``); rows stay on the workers."""

    _deviance_class = DaskDeviance

    @property
    def deviance(self) -> float:
        """−2 log-likelihood; for a REML fit the profiled ML deviance at the REML estimate of θ."""
        s = self.solution
        if not self.REML:
            return s.deviance
        n, std = self.nobs, self.standardization
        log_det_w = self.cp.log_det_w + n * np.log(std.c)  # W = c·W̃
        return s.ldL2 - log_det_w + n * (1.0 + np.log(2.0 * np.pi * s.pwrss / n))

    def refit_ml(self) -> DaskLmerResult:
        """This model fitted by maximum likelihood (itself if it already is), from the current θ; one more pass."""
        if not self.REML:
            return self
        model = self.model.with_reml(False)
        devfun = DaskDeviance(model)
        return dask_lmer_result(model, devfun, optimize(devfun, start=self.theta))

    # --- lazy per-row quantities -----------------------------------------------------------------
    def _shared(self):
        """β̂ and the per-term ℓ × k tables of b̂, each one key of the graph."""
        if "shared" not in self._cache:
            from dask import delayed

            blocks = self.re.split_b(self.solution.b)
            coding = self.model.coding
            self._cache["shared"] = (
                delayed(coding, pure=True),
                delayed(self.solution.beta, pure=True),
                delayed(blocks, pure=True),
            )
        return self._cache["shared"]

    def _rows(self, what: str, kept=None) -> object:
        coding, beta, blocks = self._shared()
        kept = list(range(len(self.re.terms))) if kept is None else kept
        meta = pd.Series(dtype=float, name=what)
        return self.model.source.map_partitions(lazy.fit_rows, coding, beta, blocks, kept, what, meta=meta)

    @property
    def fitted(self):
        """Xβ̂ + Zb̂ + offset on the rows used by the fit: a lazy Dask Series."""
        return self._rows("fitted")

    @property
    def residuals(self):
        """y − ŷ on the rows used (response residuals): a lazy Dask Series."""
        return self._rows("residuals")

    @property
    def residuals_scaled(self):
        """Pearson residuals divided by σ, (y − ŷ)·√w / σ: a lazy Dask Series."""
        coding = self._shared()[0]
        weights = self.model.source.map_partitions(
            lazy.weight_rows, coding, meta=pd.Series(dtype=float, name="weights")
        )
        return self.residuals * np.sqrt(weights) / self.sigma

    def predict(
        self,
        newdata=None,
        re_form=None,
        allow_new_levels: bool = True,
        offset=None,
        se_fit: bool = False,
        interval: str | None = None,
        level: float = 0.95,
    ):
        """Predictions Xβ̂ + Zb̂ + offset (:meth:`skmixed.LmerResult.predict`): on the fit's rows or on a Dask
        DataFrame a lazy Dask Series, on a pandas DataFrame an array."""
        if se_fit or interval is not None:
            raise OptionError(
                "se_fit and interval are not available for a fit on a Dask DataFrame: predict a pandas sample "
                "with an in-memory fit for them"
            )
        kept = select_terms(self.re, re_form)
        if newdata is None:
            if offset is not None:
                raise OptionError("offset= goes with newdata: the fit's rows have their own offset")
            return self._rows("fitted", kept).rename("predict")
        coding, beta, blocks = self._shared()
        from . import is_dask_frame

        if is_dask_frame(newdata):
            if offset is not None and not isinstance(offset, str):
                raise OptionError("offset= for a Dask newdata must be the name of one of its columns")
            meta = pd.Series(dtype=float, name="predict")
            return newdata.map_partitions(
                lazy.new_rows_series, coding, beta, blocks, kept, allow_new_levels, offset, meta=meta
            )
        blocks_now = self.re.split_b(self.solution.b)
        return lazy.new_rows(newdata, self.model.coding, self.solution.beta, blocks_now, kept, allow_new_levels, offset)

    def summary(self, ddf="Satterthwaite"):
        """lmerTest's summary, its scaled-residual quantiles found exactly on the workers."""
        from ..summary import Summary
        from .quantiles import exact_quantiles

        if "residual_quantiles" not in self._cache:
            self._cache["residual_quantiles"] = exact_quantiles(self.residuals_scaled, [0, 0.25, 0.5, 0.75, 1])
        view = _SummaryView(
            model=self.model, solution=self.solution, optsum=self.optsum, cp=self.cp, _cache=self._cache
        )
        return Summary(view, ddf)


@dataclass(frozen=True)
class _SummaryView(DaskLmerResult):
    """The result as :class:`~skmixed.summary.Summary` reads it: the scaled residuals stand for their five
    quantiles (np.quantile of five values at 0, ¼, ½, ¾, 1 gives them back exactly)."""

    @property
    def residuals_scaled(self):
        return self._cache["residual_quantiles"]


__all__ = ["DaskLmerResult", "dask_lmer_result", "RowsOnWorkers"]
