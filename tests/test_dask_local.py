"""skmixed.lmer on Parquet read by Dask without a cluster: the local scheduler streams the files a partition at a
time, and the fit is the in-memory one."""

import dask.dataframe as dd
import numpy as np
import pytest
from test_dask import rel, simulated
from test_dask_glmm import simulated as simulated_glmm

import skmixed


def test_parquet_with_the_local_scheduler(tmp_path):
    from distributed import default_client

    with pytest.raises(ValueError):
        default_client()  # no cluster: Dask's local scheduler runs the passes
    data = simulated(1500, seed=7)
    for i, rows in enumerate(np.array_split(np.arange(len(data)), 3)):
        data.iloc[rows].to_parquet(tmp_path / f"part-{i}.parquet")
    ddf = dd.read_parquet(str(tmp_path))
    formula = "y ~ x + f + (1 | a) + (1 | b)"
    fit, memory = skmixed.lmer(formula, ddf, weights="w"), skmixed.lmer(formula, data, weights="w")
    assert ddf.npartitions == 3 and fit.nobs == memory.nobs
    assert rel(fit.objective, memory.objective) < 1e-13
    assert rel(fit.fixef, memory.fixef) < 1e-10
    np.testing.assert_allclose(fit.fitted.compute().to_numpy(), memory.fitted, atol=1e-10)


def test_glmer_on_parquet_with_the_local_scheduler(tmp_path):
    """glmer without a cluster: the local scheduler persists the coded blocks in this process and runs the passes."""
    from distributed import default_client

    with pytest.raises(ValueError):
        default_client()
    data = simulated_glmm()
    for i, rows in enumerate(np.array_split(np.arange(len(data)), 3)):
        data.iloc[rows].to_parquet(tmp_path / f"part-{i}.parquet")
    ddf = dd.read_parquet(str(tmp_path))
    formula = "cbind(s, f) ~ x + (1 | a)"
    fit, memory = skmixed.glmer(formula, ddf), skmixed.glmer(formula, data)
    assert ddf.npartitions == 3 and fit.nobs == memory.nobs
    assert rel(fit.theta, memory.theta) < 1e-10 and rel(fit.fixef, memory.fixef) < 1e-11
    assert rel(fit.objective, memory.objective) < 1e-14
