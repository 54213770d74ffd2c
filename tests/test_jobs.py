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


# ------------------------------------------------------------------ one embedding per dataset and model
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    """A random 2-layer BERT with a small word vocabulary: the real Encoder code, fast enough for job tests."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_bert_jobs")
    words = "the a to i you it is was my flight not no and for on of".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *"abcdefghijklmnopqrstuvwxyz@.,!?"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True,
                      model_max_length=32).save_pretrained(folder)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).eval().save_pretrained(folder)
    return str(folder)


def _stored_keys(ws) -> int:
    import numpy as np

    return sum(len(np.load(f)["keys"]) for f in (ws.path / "cache" / "embeddings").rglob("*.npz"))


def test_a_job_waits_for_the_embedding_job_computing_the_same_embeddings(ws, tiny_model):
    """While another process holds the (dataset, model) embedding lock, a job says whom it waits for and how far
    that one is, then goes on once the lock is free."""
    from core import embed

    loaded = open_dataset(ws, "demo", limit=300)
    key = embed.resolve_model(tiny_model).key
    with jobs.exclusive(ws, f"embed-{loaded.dataset_id}-{key}") as step:
        step.track(None)(0.3, "12,000/38,158 texts")
        job_id = jobs.start(ws, ["embed", f"ws:{loaded.dataset_id}", "--model", tiny_model])
        assert _wait_for(lambda: "waiting" in jobs.get(ws, job_id).message or not jobs.get(ws, job_id).active,
                         timeout=120)
        job = jobs.get(ws, job_id)
        assert job.status == "running", job.message
        assert "waiting for the embedding job (12,000/38,158)" in job.message
        time.sleep(1.0)
        assert jobs.get(ws, job_id).active  # still waiting, not embedding beside the holder
        assert _stored_keys(ws) == 0
    done = jobs.wait(ws, job_id, timeout=300)
    assert done.status == "done", done.message
    assert "waiting for the embedding job" in jobs.log_tail(done, 200)


def test_two_jobs_needing_the_same_embeddings_compute_them_once(ws, tiny_model, monkeypatch):
    """The value-and-map case: an `embed` job and a `project` job started together on the same data and model embed
    each text once between them (the second reuses the first's embeddings)."""
    monkeypatch.setenv("WINNOW_EMBED_FLUSH", "64")
    from core.data import column

    loaded = open_dataset(ws, "demo", limit=4000)
    ds = f"ws:{loaded.dataset_id}"
    a = jobs.start(ws, ["embed", ds, "--model", tiny_model, "--batch-size", "8"])
    b = jobs.start(ws, ["project", ds, "--model", tiny_model, "--method", "pca", "--no-predictions"])
    ja, jb = jobs.wait(ws, a, timeout=600), jobs.wait(ws, b, timeout=600)
    assert (ja.status, jb.status) == ("done", "done"), (ja.message, jb.message)
    assert _stored_keys(ws) == len(set(column(loaded.ds, "text")))
    assert len(ws.embeddings(loaded.dataset_id)) == 1
