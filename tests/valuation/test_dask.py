"""TS-DShapley on a Dask cluster (joblib's dask backend) gives the same values as local joblib."""
from __future__ import annotations

import numpy as np
import pytest

from core.valuation import ts_dshapley


def test_local_cluster_equals_local_joblib(blobs, monkeypatch):
    distributed = pytest.importorskip("distributed")
    train, valid, _ = blobs
    opts = dict(n_passes=3, n_permutations=3, subset_size=50, seed=8)
    local = ts_dshapley(train, valid=valid, n_jobs=1, **opts)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as c:
        remote = ts_dshapley(train, valid=valid, scheduler=c.scheduler_address, **opts)
        monkeypatch.setenv("WINNOW_DASK_SCHEDULER", c.scheduler_address)
        env = ts_dshapley(train, valid=valid, **opts)
    np.testing.assert_array_equal(local.values, remote.values)
    np.testing.assert_array_equal(local.values, env.values)
    assert "scheduler" not in remote.params  # where it ran does not change what it means
