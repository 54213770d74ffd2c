"""Random values: the floor every chart and audit is compared with (standard normal, seeded)."""
from __future__ import annotations

import time

import numpy as np

from core.valuation.base import ProgressFn, Split, Values


def random_values(train: Split, *, valid: Split | None = None, seed: int | None = None,
                  on_progress: ProgressFn | None = None) -> Values:
    """Independent standard-normal values (counts 1, stderr NaN); `valid` is unused."""
    t0 = time.perf_counter()
    n = len(train)
    vals = np.random.default_rng(seed).standard_normal(n)
    if on_progress:
        on_progress(1.0, "random", None)
    return Values(uids=np.asarray(train.uids), values=vals, stderr=np.full(n, np.nan), counts=np.ones(n, np.int64),
                  method="random", params={"seed": seed}, seconds=time.perf_counter() - t0)
