"""Background jobs: status and progress in the workspace, failures reported, kill -9 detected, resume continues."""
from __future__ import annotations

import os
import signal
import time

import pytest

from core import jobs
from core.data import open_dataset
from core.errors import JobError


def _csv(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("text,label\n" + "".join(f"row {i},{'ab'[i % 2]}\n" for i in range(20)))
    return p


def test_a_job_runs_to_done_with_its_status_in_the_workspace(ws, tmp_path):
    job_id = jobs.start(ws, ["info", str(_csv(tmp_path))])
    job = jobs.wait(ws, job_id, timeout=120)
    assert job.status == "done" and job.progress == 1.0 and job.finished >= job.started
    assert "rows: 20" in jobs.log_tail(job)
    assert [j.id for j in jobs.list_jobs(ws)] == [job_id]


def test_a_failing_job_records_the_error(ws, tmp_path):
    job = jobs.wait(ws, jobs.start(ws, ["info", str(tmp_path / "missing.csv")]), timeout=120)
    assert job.status == "failed" and "file not found" in job.message
    with pytest.raises(JobError, match="no job nope"):
        jobs.get(ws, "nope")


def _wait_for(cond, timeout=300.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_killed_job_is_dead_then_resumes_from_its_checkpoint(ws, monkeypatch):
    """An embed job flushes cache shards as it goes; after SIGKILL the resumed job embeds only the rest."""
    monkeypatch.setenv("WINNOW_EMBED_FLUSH", "256")
    loaded = open_dataset(ws, "demo", limit=2000)
    job_id = jobs.start(ws, ["embed", f"ws:{loaded.dataset_id}", "--batch-size", "32"])
    cache = ws.path / "cache" / "embeddings"
    assert _wait_for(lambda: any(cache.rglob("*.npz")) or jobs.get(ws, job_id).status != "running")
    job = jobs.get(ws, job_id)
    assert job.status == "running", f"the job ended before it could be killed: {job.status} {job.message}"
    os.killpg(job.pid, signal.SIGKILL)
    assert _wait_for(lambda: jobs.get(ws, job_id).status == "dead", timeout=30)
    assert "vanished" in jobs.get(ws, job_id).message
    new_id = jobs.resume(ws, job_id)
    done = jobs.wait(ws, new_id, timeout=600)
    assert done.status == "done", done.message
    # every distinct text was embedded exactly once: the resumed job reused the shards written before the kill
    import numpy as np
    from core.data import column

    stored = sum(len(np.load(f)["keys"]) for f in cache.rglob("shard-*.npz"))
    assert stored == len(set(column(loaded.ds, "text")))


def test_cancel_stops_a_running_job(ws):
    loaded = open_dataset(ws, "demo", limit=1000)
    job_id = jobs.start(ws, ["embed", f"ws:{loaded.dataset_id}"])
    assert _wait_for(lambda: jobs.get(ws, job_id).progress > 0 or not jobs.get(ws, job_id).active, timeout=120)
    job = jobs.cancel(ws, job_id)
    assert job.status == "cancelled"
    assert not jobs._alive(job.pid, None)
