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
    assert results["subset"].tolist() == specs
    assert results["accuracy"].tolist() == pytest.approx([0.805, 0.705])
    assert results["± acc"].iloc[0] == pytest.approx(0.00707, abs=1e-4)
    history = at.dataframe[-1].value
    assert history["run"].tolist() == [run_id] and history["done"].tolist() == [4]
