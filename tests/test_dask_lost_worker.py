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
from distributed.comm import CommClosedError

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


def binary_rows(i: int) -> pd.DataFrame:
    """Columns other than rows()'s: the scheduler remembers the keys of the tasks that lost their workers above."""
    rng = np.random.default_rng(i)
    g = rng.integers(0, 20, 300)
    return pd.DataFrame({"school": g, "passed": rng.binomial(1, 1 / (1 + np.exp(-rng.normal(size=20)[g])))})


def test_a_worker_lost_during_a_glmer_fit_leaves_it_unchanged(client, monkeypatch):
    """glmer keeps the coded rows on the workers: a worker killed between two PIRLS passes loses its blocks, which
    Dask makes again from the partitions' tasks, and the passes give the same sums."""
    from skmixed.dask import glmm_pirls

    memory = skmixed.glmer("passed ~ 1 + (1 | school)", pd.concat([binary_rows(i) for i in range(3)]), nAGQ=0)
    ddf = dd.from_delayed([dask.delayed(binary_rows, pure=True)(i) for i in range(3)], meta=binary_rows(0).iloc[:0])
    client.wait_for_workers(2)
    passes, reduce = [], glmm_pirls.block_reduce

    def killing_reduce(blocks, *args, **kwargs):
        passes.append(len(passes))
        if len(passes) == 5:  # the blocks are persisted: kill the worker of the first one
            holder = next(iter(client.who_has(glmm_pirls.futures_of(blocks[0])).values()))[0]
            with warnings.catch_warnings(), pytest.raises(CommClosedError):  # its connection closes under the call
                warnings.simplefilter("ignore")
                client.run(os._exit, 1, workers=[holder])
        return reduce(blocks, *args, **kwargs)

    monkeypatch.setattr(glmm_pirls, "block_reduce", killing_reduce)
    fit = skmixed.glmer("passed ~ 1 + (1 | school)", ddf, nAGQ=0)
    assert len(passes) > 5
    assert abs(fit.objective - memory.objective) < 1e-14 * abs(memory.objective)
    np.testing.assert_allclose(fit.theta, memory.theta, rtol=1e-10)
    np.testing.assert_allclose(fit.fixef, memory.fixef, rtol=1e-11)
