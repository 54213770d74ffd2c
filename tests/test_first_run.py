"""The progressive first run (core.first_run, `python -m core first-run`) and the ETA every progress bar shows."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core import first_run
from core.__main__ import main
from core.eta import Eta, format_duration, format_eta


def run(ws_path, *argv):
    return main(["--workspace", str(ws_path), *map(str, argv)])


# ------------------------------------------------------------------------------------------------ ETA
class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_eta_comes_from_the_measured_rate_of_its_own_stage():
    clock = _Clock()
    eta = Eta(clock=clock)
    assert eta.seconds_left(0.0) is None  # nothing measured yet
    clock.t += 1.0
    assert eta.seconds_left(0.05) is None  # too early (under 2 s)
    clock.t += 9.0
    assert eta.seconds_left(0.25) == pytest.approx(30.0)  # 10 s for a quarter: 30 s to go
    assert eta.text(0.25) == "about 30 s left"
    assert eta.seconds_left(1.0) == 0.0 and eta.text(1.0) == ""
    resumed = Eta(clock=clock)  # a stage resumed at 40 % measures from there
    resumed.seconds_left(0.4)
    clock.t += 12.0
    assert resumed.seconds_left(0.6) == pytest.approx(24.0)


def test_durations_read_like_a_person_would_say_them():
    assert format_duration(3.2) == "3 s"
    assert format_duration(42) == "40 s"
    assert format_duration(130) == "2 min 10 s"
    assert format_duration(180) == "3 min"
    assert format_duration(14 * 60 + 20) == "14 min"
    assert format_duration(3 * 3600 + 300) == "3 h 05 min"
    assert format_eta(None) == "" and format_eta(75) == "about 1 min 20 s left"


def test_cli_progress_messages_carry_the_time_left(ws, monkeypatch):
    from core import jobs
    from core.cli.common import Progress

    clock = _Clock()
    monkeypatch.setattr("core.eta.time.monotonic", clock)
    job_id = "j1"
    ws._job_insert(job_id, ["value", "demo"], "value", "/dev/null")
    prog = Progress(ws, job_id, "value", enabled=False)
    stage = prog.stage(0.2, 1.0, "valuation")
    stage(0.0, "0/100 tasks")
    clock.t += 20.0
    jobs._Throttle.last.clear()  # (the job's record is throttled to twice a second)
    stage(0.5, "50/100 tasks")
    assert prog.message == "valuation: 50/100 tasks · about 20 s left"
    assert jobs.get(ws, job_id).message == prog.message  # the app's job panel shows the same text


# ------------------------------------------------------------------------------------------------ sampling and notes
def test_sample_is_stratified_and_only_for_large_data():
    labels = ["a"] * 900 + ["b"] * 90 + ["c"] * 10
    pos = first_run.sample_positions(labels, 100, seed=0)
    got = pd.Series(np.asarray(labels)[pos]).value_counts().to_dict()
    assert got == {"a": 90, "b": 9, "c": 1} and np.all(np.diff(pos) > 0)
    assert np.array_equal(pos, first_run.sample_positions(labels, 100, seed=0))
    assert first_run.needs_sample(38_158) and not first_run.needs_sample(5_000)


def test_preliminary_note_says_what_is_shown_and_when_the_rest_lands(ws):
    ds = ws.register_dataset(name="d", source="t", fingerprint="f", n_rows=38_158, classes=["a", "b"])
    full = ws.create_run("values", dataset_id=ds, method="ts_dshapley", params={"seed": 0})
    assert first_run.preliminary_note(ws, ds, ws.run(full), job_active=True) is None
    rid = ws.create_run("values", dataset_id=ds, method="ts_dshapley",
                        params={"seed": 0, "preliminary": True, "sample": 4000, "of": 38_158})
    run = ws.run(rid)
    first_run.set_state(ws, ds, phase="full", finish_at=1_000.0 + 180)
    note = first_run.preliminary_note(ws, ds, run, job_active=True, now=1_000.0)
    assert note == "Preliminary: 4,000 of 38,158 rows valued (a stratified sample); the rest in about 3 min."
    assert first_run.preliminary_note(ws, ds, run, job_active=True, now=1_179.0).endswith("any moment now.")
    assert "stopped before it finished" in first_run.preliminary_note(ws, ds, run, job_active=False)


def test_rest_estimate_scales_the_sample_times():
    est = first_run.estimate_rest({"embed": 20.0, "value": 5.0, "project": 40.0, "project_fit": 4.0,
                                   "cluster": 6.0}, sample=4000, rows=40_000, to_embed=36_000,
                                  embedded_in_sample=4000)
    assert est == pytest.approx({"embed": 180.0, "value": 50.0, "project": 16.0, "cluster": 9.0})  # 200/500 epochs


# ------------------------------------------------------------------------------------------------ the command
@pytest.mark.slow
def test_first_run_shows_a_sample_then_replaces_it_with_every_row(tmp_path, capsys):
    """Real MiniLM on 240 demo tweets: a 90-row preliminary stage, then every row; same values as `value`."""
    wsp = tmp_path / "ws"
    args = ["demo", "--limit", "240", "--method", "knn-shapley"]
    assert run(wsp, "first-run", *args, "--sample", "90", "--sample-above", "150") == 0
    from core.workspace import Workspace

    ws = Workspace(wsp)
    ds = int(ws.get_setting("active_dataset"))
    runs = ws.runs("values", dataset_id=ds, status="done")
    assert len(runs) == 2
    full, prelim = runs  # newest first: the full run replaces the preliminary one as the active run
    assert first_run.is_preliminary(prelim) and not first_run.is_preliminary(full)
    assert (prelim.params["sample"], prelim.params["of"]) == (90, 240)
    assert len(ws.load_run_frame(prelim.id)) == 90 and len(ws.load_run_frame(full.id)) == 240
    assert ws.latest_run("values", dataset_id=ds).id == full.id
    # the sample's map and clusters are on the sample's own (preliminary) embedding; every row has its own
    prelim_emb = ws.embedding_by_id(prelim.embedding_id)
    assert prelim_emb.meta.get("preliminary") and prelim_emb.n_rows == 90
    for kind in ("projection", "clusters"):
        by_emb = {r.embedding_id: r for r in ws.runs(kind, dataset_id=ds, status="done")}
        assert set(by_emb) == {prelim.embedding_id, full.embedding_id}, kind
        assert len(ws.load_run_frame(by_emb[full.embedding_id].id)) == 240
    clusters = ws.latest_run("clusters", dataset_id=ds)
    assert clusters.result["summaries"] and clusters.result.get("values_run_id") == full.id
    assert (first_run.state(ws, ds) or {})["phase"] == "done"
    assert first_run.preliminary_note(ws, ds, full) is None

    # same answers: `value` with the same options gives the full run's values
    assert run(wsp, "value", *args, "--out", tmp_path / "v.csv") == 0
    mine = ws.load_run_frame(full.id).set_index("uid")["value"]
    plain = pd.read_csv(tmp_path / "v.csv", dtype={"uid": str}).set_index("uid")["value"]
    assert np.allclose(mine.loc[plain.index].to_numpy(), plain.to_numpy())

    # resumable: a second call finds everything done and records nothing new
    before = {r.id for r in ws.runs()}
    assert run(wsp, "first-run", *args, "--sample", "90", "--sample-above", "150") == 0
    assert {r.id for r in ws.runs()} == before


@pytest.mark.slow
def test_a_cold_first_run_samples_what_its_embedding_time_allows_and_resumes_with_the_same_rows(tmp_path,
                                                                                                monkeypatch):
    """On a cold cache the preliminary sample is the stratified prefix embedded before the clock ran out."""
    from core import embed
    from core.workspace import Workspace

    monkeypatch.setattr(first_run, "SAMPLE_SECONDS", 0.0)  # the time is up after the first chunk ...
    monkeypatch.setattr(first_run, "SAMPLE_MIN", 40)  # ... once this many rows are embedded
    monkeypatch.setattr(first_run, "_CHUNK", 20)
    wsp = tmp_path / "ws"
    args = ["demo", "--limit", "240", "--method", "knn-shapley", "--sample", "90", "--sample-above", "150"]
    assert run(wsp, "first-run", *args) == 0
    ws = Workspace(wsp)
    ds = int(ws.get_setting("active_dataset"))
    full, prelim = ws.runs("values", dataset_id=ds, status="done")
    assert (prelim.params["sample"], prelim.params["of"]) == (40, 240)
    sample = ws.load_run_frame(prelim.id)
    assert len(sample) == 40 and len(ws.load_run_frame(full.id)) == 240
    # the 40 rows are the first 40 of the 90-row sample's stratified order, so their classes are in proportion
    from core import data

    loaded = data.open_dataset(ws, "demo", limit=240)
    labels = [str(v) for v in data.column(loaded.ds, "label")]
    uids = np.asarray([str(u) for u in data.column(loaded.ds, "uid")])
    want = np.sort(first_run.sample_order(labels, 90, 0)[:40])
    assert sorted(sample["uid"]) == sorted(uids[want])
    for c in set(labels):
        assert abs(sum(labels[i] == c for i in want) - 40 * labels.count(c) / 240) <= 2, c
    # resumed with a warm cache: the same 40 rows again (the sample is not redrawn), nothing new recorded
    before = {r.id for r in ws.runs()}
    monkeypatch.setattr(embed, "Encoder", None)  # nothing may be embedded now
    assert run(wsp, "first-run", *args) == 0
    assert {r.id for r in ws.runs()} == before


def test_first_run_of_the_consensus_passes_the_agreement_column_to_the_sample_and_every_row(tmp_path):
    """The Value page starts a first consensus run with --agreement: both stages' weights track the column."""
    wsp = tmp_path / "ws"
    assert run(wsp, "first-run", "demo", "--limit", "240", "--method", "consensus", "--members",
               "knn-shapley,label-quality", "--agreement", "confidence", "--sample", "90", "--sample-above",
               "150") == 0
    from core.workspace import Workspace

    ws = Workspace(wsp)
    ds = int(ws.get_setting("active_dataset"))
    full, prelim = ws.runs("values", dataset_id=ds, status="done")
    assert first_run.is_preliminary(prelim) and not first_run.is_preliminary(full)
    for r in (prelim, full):
        check = r.result["method_params"]["self_check"]
        assert check["agreement_column"] == "confidence"
        assert set(check["member_agreement"]) == {"knn_shapley", "label_quality"}


@pytest.mark.slow
def test_warm_up_compiles_the_map_kernels_into_numbas_cache_for_every_later_process(tmp_path):
    """The README's set-up step: `core warm-up` leaves UMAP's compiled kernels on disk, so a new install's first
    map loads them instead of compiling."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    kernels = tmp_path / "numba"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(kernels))
    got = subprocess.run([sys.executable, "-m", "core", "--workspace", str(tmp_path / "ws"), "warm-up"], env=env,
                         cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=900)
    assert got.returncode == 0, got.stderr
    assert "the map's kernels are ready" in got.stderr
    compiled = {p.name.split(".")[0] for p in kernels.rglob("*.nbi")}
    assert "layouts" in compiled and "umap_" in compiled, compiled  # the layout optimiser and the fuzzy graph
