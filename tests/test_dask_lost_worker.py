"""A worker lost in the middle of a pass: Dask reruns its tasks on another worker and the fit is the same; a pass
whose tasks keep losing their workers stops with an error that names it, and no fit is made."""

import os
import warnings
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster

import skmixed


@pytest.fixture(scope="module")
def client():
    # one retry per task: a task that kills a second worker is given up on (the scheduler reads this when made)
    with warnings.catch_warnings(), dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        warnings.simplefilter("ignore")  # the dashboard's port may be taken
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with Client(cluster) as c:
        yield c
    cluster.close()


def rows(i: int) -> pd.DataFrame:
    rng = np.random.default_rng(i)
    g = rng.integers(0, 20, 300)
    return pd.DataFrame({"g": g, "y": rng.normal(size=20)[g] + rng.normal(size=300)})


def dying_once(i: int, marker: str) -> pd.DataFrame:
    """Partition 1 kills its worker process the first time it is made (in pass 1)."""
    if i == 1 and not Path(marker).exists():
        Path(marker).touch()
        os._exit(1)
    return rows(i)


def dying_always(i: int) -> pd.DataFrame:
    if i == 1:
        os._exit(1)
    return rows(i)


def frame(make, *args) -> dd.DataFrame:
    return dd.from_delayed([dask.delayed(make, pure=False)(i, *args) for i in range(3)], meta=rows(0).iloc[:0])


def test_a_lost_worker_leaves_the_fit_unchanged(client, tmp_path):
    memory = skmixed.lmer("y ~ 1 + (1 | g)", pd.concat([rows(i) for i in range(3)]))
    fit = skmixed.lmer("y ~ 1 + (1 | g)", frame(dying_once, str(tmp_path / "died")))
    assert (tmp_path / "died").exists()
    assert abs(fit.objective - memory.objective) < 1e-12 * abs(memory.objective)
    np.testing.assert_allclose(fit.fixef, memory.fixef, rtol=1e-9)


def test_a_pass_that_keeps_losing_workers_names_itself(client):
    with pytest.raises(RuntimeError, match=r"the Dask pass 1 \(levels\) failed.*no fit was made"):
        skmixed.lmer("y ~ 1 + (1 | g)", frame(dying_always))
