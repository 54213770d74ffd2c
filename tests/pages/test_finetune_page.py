"""AppTest for the Fine-tune & compare page: starting a comparison records a `compare` job with the argv a user would
type; a comparison's results (mean ± std per subset) and the history show."""
from __future__ import annotations

from pathlib import Path

import pytest

from core import jobs
from core.workspace import Workspace

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGE = "pages/6_Fine-tune.py"


def _parses(argv: list[str]) -> None:
    """The job's argv is what a user would type: the CLI parser accepts it (argparse exits on a bad flag)."""
    from core.__main__ import build_parser

    build_parser().parse_args(argv)


def _open(ws: Workspace) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def _save_subset(ws: Workspace, ds_id: int, uids: list[str], n: int) -> int:
    from core.selection import select_random
    from core.selection.store import save_selection

    return save_selection(ws, ds_id, select_random(uids, budget=n, seed=0))


def test_finetune_page_starts_a_compare_job(demo_ws):
    ws, ds_id, uids = demo_ws["ws"], demo_ws["dataset_id"], demo_ws["uids"]
    sel = _save_subset(ws, ds_id, uids, 120)
    ws.decide(ds_id, uids[:3], "remove", reason="test")
    at = _open(ws)
    assert at.multiselect(key="finetune.selections").value == [sel]
    assert at.number_input(key="finetune.count").value == 120  # random at the saved subset's size
    at.checkbox(key="finetune.curated").check()
    at.number_input(key="finetune.seeds").set_value(2)
    at.number_input(key="finetune.epochs").set_value(1).run()
    at.button(key="finetune.start").click().run()
    assert not at.exception, at.exception
    job = jobs.get(ws, ws.get_setting(f"job.compare.{ds_id}"))
    try:
        assert job.argv[:2] == ["compare", f"ws:{ds_id}"]
        argv = job.argv
        assert argv[argv.index("--subsets") + 1] == f"full,curated,random:120,selection:{sel}"
        assert argv[argv.index("--seeds") + 1] == "2" and argv[argv.index("--epochs") + 1] == "1"
        assert "--eval" not in argv  # the held-out split by default
        _parses(argv)
    finally:
        jobs.cancel(ws, job.id)  # fine-tunes are slow; the engine has its own tests
    at.run()
    assert not at.exception, at.exception


def test_finetune_page_rejects_a_missing_test_file(demo_ws):
    ws, ds_id = demo_ws["ws"], demo_ws["dataset_id"]
    at = _open(ws)
    at.radio(key="finetune.eval_mode").set_value("a labelled file").run()
    at.button(key="finetune.start").click().run()
    assert not at.exception and at.error  # one readable line, no job
    assert ws.get_setting(f"job.compare.{ds_id}") is None


def test_finetune_page_shows_results_and_history(demo_ws):
    from core.experiment import summarize_compare

    ws, ds_id = demo_ws["ws"], demo_ws["dataset_id"]
    specs = ["full", "random:100"]
    ckpts = {}
    for spec in specs:
        for seed in (0, 1):
            acc = (0.8 if spec == "full" else 0.7) + 0.01 * seed
            ckpts[f"{spec}|{seed}"] = {"accuracy": acc, "macro_f1": acc - 0.05, "n_rows": 240 if spec == "full"
                                       else 100, "n_train": 216, "train_seconds": 3.0, "subset": spec,
                                       "seed": seed}
    run_id = ws.create_run("compare", dataset_id=ds_id, method="compare",
                           params={"subsets": specs, "seeds": [0, 1], "epochs": 1, "model": None,
                                   "eval": {"held_out": 0.2}})
    for k, v in ckpts.items():
        ws.save_checkpoint(run_id, k, v)
    ws.update_run(run_id, status="done", seconds=12.0,
                  result={"table": summarize_compare(ckpts, specs), "n_done": 4, "n_test": 60, "error": ""})
    at = _open(ws)
    assert not at.exception, at.exception
    results = at.dataframe[0].value
    assert results["subset"].tolist() == ["full", "random 100"]
    assert results["accuracy"].tolist() == pytest.approx([0.805, 0.705])
    assert results["± acc"].iloc[0] == pytest.approx(0.00707, abs=1e-4)
    history = at.dataframe[-1].value
    assert history["comparison"].tolist() == [ws.run(run_id).number] and history["done"].tolist() == [4]


def test_finetune_page_estimates_before_start_with_demo_defaults(demo_ws):
    from core import experiment

    ws, ds_id = demo_ws["ws"], demo_ws["dataset_id"]
    at = _open(ws)
    assert at.number_input(key="finetune.seeds").value == 2 and at.number_input(key="finetune.epochs").value == 1
    assert at.radio(key="finetune.protocol").value == "equal-steps"
    assert at.number_input(key="finetune.pool_max").value == experiment.DEMO_POOL_MAX  # the cap, visible
    at.button(key="finetune.calibrate").click().run()  # no measurement yet: a short calibration job
    assert not at.exception, at.exception
    job = jobs.get(ws, ws.get_setting(f"job.calibrate.{ds_id}"))
    try:
        assert job.argv[-1] == "--estimate" and "--protocol" in job.argv
        _parses(job.argv)
    finally:
        jobs.cancel(ws, job.id)
    # a measured speed (as the job caches it) gives the estimate before Start
    tp = experiment.Throughput(train_examples_per_second=50.0, predict_examples_per_second=150.0, load_seconds=3.0,
                               device="cpu (2 threads)", key="")
    key = experiment.throughput_key(model=None, max_length=128, batch_size=32, threads=None, device=None)
    ws.set_setting(f"throughput.{key}", dict(tp.to_dict(), key=key))
    at = _open(ws)
    est = next(i.value.replace("\\", "") for i in at.info if "estimated about" in i.value)
    assert "examples/s on cpu (2 threads) (measured)" in est


def test_finetune_page_shows_verdict_intervals_and_warnings(demo_ws):
    from core.experiment import compare_warnings, summarize_compare, verdict_line

    ws, ds_id = demo_ws["ws"], demo_ws["dataset_id"]
    specs = ["full", "random:100", "kmq:100"]
    ckpts = {}
    for spec, base in (("full", 0.80), ("random:100", 0.78), ("kmq:100", 0.79)):
        for seed in (0, 1, 2):
            ckpts[f"{spec}|{seed}"] = {"accuracy": base + 0.01 * seed, "macro_f1": base - 0.05, "n_rows": 100,
                                       "n_train": 100, "train_seconds": 3.0, "subset": spec, "seed": seed,
                                       "steps": 7, "majority": 0.5,
                                       "missing_classes": ["neutral"] if spec == "kmq:100" else []}
    table = summarize_compare(ckpts, specs)
    run_id = ws.create_run("compare", dataset_id=ds_id, method="compare",
                           params={"subsets": specs, "seeds": [0, 1, 2], "epochs": 1, "model": None,
                                   "protocol": "equal-steps", "eval": {"held_out": 0.2}})
    for k, v in ckpts.items():
        ws.save_checkpoint(run_id, k, v)
    ws.update_run(run_id, status="done", seconds=600.0,
                  result={"table": table, "n_done": 9, "n_test": 60, "error": "", "estimate_seconds": 540.0,
                          "verdict": verdict_line(table), "warnings": compare_warnings(table, ckpts)})
    at = _open(ws)
    assert not at.exception, at.exception
    plain = lambda els: [e.value.replace("\\", "") for e in els]  # noqa: E731 (markdown escapes off)
    assert any(i.startswith("kmq:100 is worse than full by 1.0 ± 0.0 points over 3 seeds") for i in plain(at.info))
    assert any("has no rows of class 'neutral'" in w for w in plain(at.warning))
    assert any("Estimated 9.0 min before it started; it took 10.0 min" in c for c in plain(at.caption))
    results = at.dataframe[0].value
    assert results["vs full (points)"].tolist()[0] == "n/a" and results["vs full (points)"].tolist()[1] == "-2.0 ± 0.0"
    assert not results.astype(str).isin(["None", "nan"]).any().any()
