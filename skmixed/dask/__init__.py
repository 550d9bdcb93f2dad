"""Mixed models fitted on Dask DataFrames: the rows stay on the workers, the client holds the cross-products.

An LMM's profiled deviance reads the data only through the cross-products Z'WZ, Z'WX, X'WX, Z'Wy,
X'Wy and y'Wy (Bates' method, :mod:`skmixed.pls`), and each is a sum over rows.  ``skmixed.lmer`` on a
``dask.dataframe.DataFrame`` therefore makes passes over the partitions, each a map over the partitions
followed by a tree reduction of small pieces, and fits the same model record as in memory without its rows:

1. :mod:`~skmixed.dask.survey`: the levels of every grouping factor and fixed-effect factor, the number
   of rows used and the sum of the weights; the model matrices' coding is set from them
   (:mod:`~skmixed.dask.coding`);
2. :mod:`~skmixed.dask.passes`: the R factor of a QR of [X, y − offset] (TSQR: each partition's R,
   stacked and factored again up the tree), which gives the aliased columns and the change of variables
   of :mod:`skmixed.standardize`;
3. the standardized problem's cross-products, summed up the tree;
4. after the θ optimisation on the client, the penalized RSS from the residuals at the optimum, as lme4
   (and the in-memory fit) compute it.

The result is an :class:`~skmixed.LmerResult` (:class:`~skmixed.dask.result.DaskLmerResult`) whose fitted
values, residuals and predictions on Dask data are lazy Dask collections.  Importing :mod:`skmixed` never
imports Dask; this package imports it only when a Dask frame is fitted.
"""

from __future__ import annotations


def is_dask_frame(data) -> bool:
    """Whether ``data`` is a Dask DataFrame (checked without importing Dask)."""
    module = type(data).__module__ or ""
    return (module == "dask" or module.startswith("dask.")) and hasattr(data, "to_delayed")


def lmer(formula: str, data, *args, **options):
    """``skmixed.lmer`` on a Dask DataFrame (:func:`skmixed.dask.fit.lmer`)."""
    from .fit import lmer as fit_lmer

    return fit_lmer(formula, data, *args, **options)


def glmer(formula: str, data, *args, **options):
    """``skmixed.glmer`` on a Dask DataFrame (:func:`skmixed.dask.glmm.glmer`)."""
    from .glmm import glmer as fit_glmer

    return fit_glmer(formula, data, *args, **options)


__all__ = ["glmer", "is_dask_frame", "lmer"]
