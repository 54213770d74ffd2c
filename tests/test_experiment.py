"""core.experiment: subset specs resolved from the training pool, compare over seeds, checkpoints and resume."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core import experiment, finetune
from core.errors import DataError
from core.experiment import compare, resolve_subset
from tiny_text import _register, frame, tiny_bert  # noqa: F401 (a fixture)


def test_subsets_resolve_from_the_pool(ws):
    df = frame(50)
    did = _register(ws, df)
    pool = df.iloc[10:].reset_index(drop=True)  # rows u0..u9 play the test rows
    ws.decide(did, ["u12", "u13", "u3"], "remove", reason="noisy")
    assert resolve_subset(ws, did, "full", pool).uids == pool["uid"].tolist()
    cur = resolve_subset(ws, did, "curated", pool).uids
    assert len(cur) == 38 and "u12" not in cur and "u13" not in cur
    r0 = resolve_subset(ws, did, "random:0.5", pool, seed=0).uids
    r1 = resolve_subset(ws, did, "random:0.5", pool, seed=1).uids
    assert len(r0) == len(r1) == 20 and r0 != r1 and r0 == resolve_subset(ws, did, "random:20", pool, seed=0).uids
    sel = ws.create_run("selection", dataset_id=did, method="kmq", status="done")
    ws.save_run_frame(sel, pd.DataFrame({"uid": ["u1", "u20", "u21", "u22"]}))
    assert resolve_subset(ws, did, f"selection:{sel}", pool).uids == ["u20", "u21", "u22"]  # u1 is a test row
    vals = ws.create_run("values", dataset_id=did, method="knn_shapley", status="done")
    ws.save_run_frame(vals, pd.DataFrame({"uid": df["uid"], "value": np.arange(50.0)}))
    assert resolve_subset(ws, did, f"top-value:3:{vals}", pool).uids == ["u47", "u48", "u49"]
    with pytest.raises(DataError, match="unknown subset"):
        experiment.parse_subsets("full,best:3")
    with pytest.raises(DataError, match="exceeds|between"):
        resolve_subset(ws, did, "random:500", pool)
    empty = ws.create_run("selection", dataset_id=did, method="kmq", status="done")
    ws.save_run_frame(empty, pd.DataFrame({"uid": ["u1"]}))
    with pytest.raises(DataError, match="no rows"):
        resolve_subset(ws, did, f"selection:{empty}", pool)


def test_held_out_split_is_stratified_and_excluded(tiny_bert, ws, monkeypatch):
    df = frame(60)
    did = _register(ws, df)
    pool_idx, test_idx = experiment.held_out_split(df["label"].tolist())
    assert len(test_idx) == 12 and not set(pool_idx) & set(test_idx)
    assert (df["label"].iloc[test_idx] == "pos").sum() == 6
    trained_on: list[set[str]] = []
    real = finetune.train_and_evaluate

    def spy(texts, *a, **k):
        trained_on.append(set(texts))
        return real(texts, *a, **k)

    monkeypatch.setattr(finetune, "train_and_evaluate", spy)
    run_id = compare(ws, did, subsets="full", data=df, seeds=1, model=str(tiny_bert), epochs=1, batch_size=8,
                     threads=1)
    assert len(trained_on) == 1 and trained_on[0] <= set(df["text"].iloc[pool_idx])
    assert ws.run(run_id).result["n_test"] == 12


def test_compare_resumes_without_redoing_finished_runs(tiny_bert, ws, monkeypatch):
    df = frame(60)
    did = _register(ws, df)
    calls: list[tuple[int, int]] = []
    real = finetune.train_and_evaluate

    def counting(texts, *a, **k):
        calls.append((len(texts), k["seed"]))
        return real(texts, *a, **k)

    monkeypatch.setattr(finetune, "train_and_evaluate", counting)

    class Killed(Exception):
        pass

    def kill_after_first(fraction: float, message: str) -> None:
        if "finished" in message:  # the first fine-tune has finished and been checkpointed
            raise Killed()

    kw = dict(subsets=["full", "random:0.5"], data=df, seeds=2, model=str(tiny_bert), epochs=1, batch_size=8,
              lr=1e-3, threads=1)
    with pytest.raises(Killed):
        compare(ws, did, on_progress=kill_after_first, **kw)
    assert len(calls) == 1
    (first,) = ws.runs("compare")
    assert first.status == "failed" and list(ws.checkpoints(first.id)) == ["full|0"]

    run_id = compare(ws, did, **kw)
    assert run_id == first.id and len(calls) == 4  # 3 more, not 4
    run = ws.run(run_id)
    assert run.status == "done" and set(ws.checkpoints(run_id)) == {"full|0", "full|1", "random:0.5|0",
                                                                    "random:0.5|1"}
    table = {r["subset"]: r for r in run.result["table"]}
    assert table["full"]["runs"] == 2 and table["full"]["rows"] == 48
    assert table["random:0.5"]["rows"] == 24 and table["random:0.5"]["accuracy_std"] >= 0
    assert len(ws.load_run_frame(run_id)) == 4
    assert len(ws.runs("finetune")) == 4 and all(r.parent_id == run_id for r in ws.runs("finetune"))

    compare(ws, did, **kw)  # a finished experiment is not resumed: a new run trains again
    assert len(calls) == 8


def test_kmq_subset_uses_the_newest_clusters_and_skips_test_rows(ws):
    from core.selection import fit_clusters
    from core.selection.store import save_clusters

    df = frame(60)
    did = _register(ws, df)
    X = np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32)
    ws.write_array("artefacts/emb.npy", X)
    emb = ws.register_embedding(dataset_id=did, model="fake", dim=8, n_rows=60, relpath="artefacts/emb.npy")
    save_clusters(ws, did, fit_clusters(X, k=3, uids=df["uid"].tolist(), seed=0), embedding_id=emb)
    pool = df.iloc[10:].reset_index(drop=True)
    a = resolve_subset(ws, did, "kmq:20", pool, seed=0)
    assert len(a.uids) == 20 and set(a.uids) <= set(pool["uid"]) and "k=3" in a.note
    assert a.uids == resolve_subset(ws, did, "kmq:0.4", pool, seed=0).uids


def test_finetune_is_a_leaf_and_selection_never_imports_the_experiment():
    """finetune trains and evaluates; selection receives the train function; only the experiment sits above both."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "core"

    def core_imports(path: Path) -> set[str]:
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("core"):
                names.add(node.module if node.module != "core" else "core." + node.names[0].name)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names if a.name.startswith("core"))
        return names

    # core.sampling (the one stratified sampler, for the validation split) is itself a leaf: numpy only
    assert core_imports(root / "finetune.py") <= {"core.errors", "core.embed", "core.device", "core.sampling"}
    assert core_imports(root / "sampling.py") == set()
    for path in (root / "selection").glob("*.py"):
        assert not {m for m in core_imports(path) if m in ("core.finetune", "core.experiment")}, path.name


# ----------------------------------------------------------------------------------------------- fair protocols


def _spy(monkeypatch) -> list[dict]:
    """Record what every fine-tune of a comparison got (texts, labels, test texts and the options)."""
    calls: list[dict] = []
    real = finetune.train_and_evaluate

    def spy(texts, labels, eval_texts, eval_labels, **k):
        calls.append({"texts": list(texts), "labels": list(labels), "test": list(eval_texts), **k})
        return real(texts, labels, eval_texts, eval_labels, **k)

    monkeypatch.setattr(finetune, "train_and_evaluate", spy)
    return calls


TINY = dict(epochs=1, batch_size=8, lr=1e-3, threads=1)


def test_equal_steps_gives_every_subset_the_steps_of_the_largest_and_b_rows(tiny_bert, ws, monkeypatch):
    df = frame(80)
    did = _register(ws, df)
    ws.decide(did, [f"u{i}" for i in range(0, 80, 8)], "remove", reason="noisy")
    calls = _spy(monkeypatch)
    run_id = compare(ws, did, subsets="full,random:20,curated", data=df, seeds=1, model=str(tiny_bert), **TINY)
    ck = ws.checkpoints(run_id)
    pool = 80 - 16  # the held-out 20 %
    assert ck["full|0"]["n_rows"] == pool and ck["random:20|0"]["n_rows"] == 20
    assert ck["curated|0"]["n_rows"] < pool
    steps = {k: v["steps"] for k, v in ck.items()}
    assert set(steps.values()) == {pool // 8}, steps  # 1 epoch of the largest (64 rows / batch 8)
    assert {c["max_steps"] for c in calls} == {pool // 8}

    run2 = compare(ws, did, subsets="full,random:20", data=df, seeds=1, model=str(tiny_bert),
                   protocol="equal-epochs", **TINY)
    ck2 = ws.checkpoints(run2)
    assert ck2["full|0"]["steps"] == 8 and ck2["random:20|0"]["steps"] == 3  # ceil(20 / 8)


def test_convergence_carves_validation_from_every_subset(tiny_bert, ws, monkeypatch):
    df = frame(80)
    did = _register(ws, df)
    calls = _spy(monkeypatch)
    run_id = compare(ws, did, subsets="full,random:40", data=df, seeds=1, model=str(tiny_bert),
                     protocol="convergence", **dict(TINY, epochs=2))
    assert all(c["valid_fraction"] == 0.1 and c["max_steps"] is None and c["early_stopping_patience"] == 1
               for c in calls)
    ck = ws.checkpoints(run_id)
    assert ck["full|0"]["n_valid"] == 6 and ck["random:40|0"]["n_valid"] == 4
    with pytest.raises(DataError, match="validation split"):
        compare(ws, did, subsets="full", data=df, seeds=1, protocol="convergence", valid_fraction=0.0)


def test_paired_seeds_share_the_held_out_split_and_initialisation(tiny_bert, ws, monkeypatch):
    df = frame(80)
    did = _register(ws, df)
    calls = _spy(monkeypatch)
    compare(ws, did, subsets="full,random:0.5", data=df, seeds=2, model=str(tiny_bert), **TINY)
    by_seed: dict[int, list[dict]] = {}
    for c in calls:
        by_seed.setdefault(c["seed"], []).append(c)
    assert sorted(by_seed) == [0, 1] and all(len(v) == 2 for v in by_seed.values())
    for seed, cs in by_seed.items():
        assert cs[0]["test"] == cs[1]["test"]  # the same held-out split for every subset of a seed
        assert not set(cs[0]["test"]) & set(cs[0]["texts"]) - set(cs[0]["texts"]).difference(cs[0]["test"])
        full = next(c for c in cs if len(c["texts"]) == 64)
        assert set(full["texts"]).isdisjoint(set(full["test"])) or len(set(df["text"])) < 80
    assert by_seed[0][0]["test"] != by_seed[1][0]["test"]  # a new split per seed


def test_pool_cap_is_the_same_pool_for_every_subset(tiny_bert, ws, monkeypatch):
    df = frame(100)
    did = _register(ws, df)
    run_id = compare(ws, did, subsets="full,random:0.5", data=df, seeds=1, pool_max=40, model=str(tiny_bert),
                     **TINY)
    ck = ws.checkpoints(run_id)
    assert ck["full|0"]["n_rows"] == 40 and ck["random:0.5|0"]["n_rows"] == 20
    assert ck["full|0"]["steps"] == ck["random:0.5|0"]["steps"] == 5


def test_a_saved_selection_keeps_its_size_when_rows_fall_in_the_held_out_split(ws):
    df = frame(60)
    did = _register(ws, df)
    sel = ws.create_run("selection", dataset_id=did, method="kmq", status="done")
    want = [f"u{i}" for i in range(0, 60, 2)]  # 30 rows, 5 of which are test rows below
    ws.save_run_frame(sel, pd.DataFrame({"uid": want}))
    test = [f"u{i}" for i in range(0, 10)]
    pool = df[~df["uid"].isin(test)].reset_index(drop=True)
    got = resolve_subset(ws, did, f"selection:{sel}", pool, test_uids=test)
    assert len(got.uids) == 30 and not set(got.uids) & set(test)
    assert set(want) - set(test) <= set(got.uids) and "5 of its rows fell in the held-out split" in got.note
    assert len(resolve_subset(ws, did, f"random:{len(got.uids)}", pool).uids) == 30


def test_relabels_are_used_in_training_and_held_out_rows(tiny_bert, ws, monkeypatch):
    df = frame(60)
    did = _register(ws, df)
    flipped = [u for u, lab in zip(df["uid"], df["label"]) if lab == "neg"][:6]
    ws.decide(did, flipped, "relabel", reason="wrong label", note="pos")
    calls = _spy(monkeypatch)
    run_id = compare(ws, did, subsets="full", data=df, seeds=1, model=str(tiny_bert), **TINY)
    text_of = dict(zip(df["uid"], df["text"]))
    (c,) = calls
    trained = dict(zip(c["texts"], c["labels"]))
    seen = [u for u in flipped if text_of[u] in trained]
    assert seen and all(trained[text_of[u]] == "pos" for u in seen)
    assert ws.run(run_id).params["relabels"] == 6


# ----------------------------------------------------------------------------------------------- statistics


def test_t_interval_and_paired_difference_arithmetic():
    mean, half = experiment.t_interval([0.80, 0.82, 0.84])
    assert mean == pytest.approx(0.82) and half == pytest.approx(4.302653 * 0.02 / np.sqrt(3), rel=1e-5)
    assert np.isnan(experiment.t_interval([0.8])[1])
    d = experiment.paired_difference({0: 0.90, 1: 0.85, 2: 0.80}, {0: 0.88, 1: 0.84, 2: 0.77, 3: 0.5})
    assert d["n"] == 3 and d["mean"] == pytest.approx(0.02)
    assert d["half"] == pytest.approx(4.302653 * 0.01 / np.sqrt(3), rel=1e-5)
    assert d["low"] == pytest.approx(d["mean"] - d["half"])
    assert experiment.paired_difference({0: 0.9}, {1: 0.8}) is None


def _ckpts(accs: dict[str, list[float]], **extra) -> dict:
    return {f"{spec}|{s}": {"accuracy": a, "macro_f1": a - 0.01, "n_rows": 100, "n_train": 100, "train_seconds": 1.0,
                            "seed": s, "steps": 10, **extra}
            for spec, xs in accs.items() for s, a in enumerate(xs)}


def test_summary_has_intervals_paired_differences_and_a_verdict():
    ck = _ckpts({"full": [0.80, 0.81, 0.82, 0.80, 0.81], "random:50": [0.78, 0.80, 0.80, 0.79, 0.79],
                 "clean-kmq:50": [0.82, 0.82, 0.83, 0.81, 0.83]})
    table = experiment.summarize_compare(ck, ["full", "random:50", "clean-kmq:50"])
    row = {r["subset"]: r for r in table}
    d = row["clean-kmq:50"]["vs_full"]
    assert d["n"] == 5 and d["mean"] == pytest.approx(0.014) and d["low"] > 0
    assert row["clean-kmq:50"]["vs_random"]["mean"] == pytest.approx(0.030)
    assert "vs_full" not in row["full"] and row["full"]["accuracy_ci"] > 0
    line = experiment.verdict_line(table)
    assert line.startswith("clean-kmq:50 beats full by 1.4 ±") and "over 5 seeds" in line

    same = experiment.summarize_compare(_ckpts({"full": [0.80, 0.82], "kmq:50": [0.81, 0.80]}), ["full", "kmq:50"])
    assert experiment.verdict_line(same).startswith("no difference between kmq:50 and full detectable with 2 seeds")
    one = experiment.summarize_compare(_ckpts({"full": [0.80], "kmq:50": [0.83]}), ["full", "kmq:50"])
    assert "one seed" in experiment.verdict_line(one) and one[0]["accuracy_ci"] is None
    cells = experiment.table_rows(one)
    assert all("None" not in v and "nan" not in v for r in cells for v in r.values())
    assert cells[0]["vs full (points)"] == "n/a" and cells[1]["vs full (points)"] == "+3.0"


def test_warnings_name_majority_rate_missing_classes_clusters_and_one_seed():
    ck = _ckpts({"full": [0.51], "kmq:50": [0.50]}, majority=0.50)
    ck["kmq:50|0"].update(missing_classes=["neutral"], missing_clusters={"3": 12, "7": 5})
    table = experiment.summarize_compare(ck, ["full", "kmq:50"])
    w = experiment.compare_warnings(table, ck)
    assert any(x.startswith("one seed per subset") for x in w)
    assert any("majority-class rate (50.0 %)" in x and x.startswith("every model") for x in w)
    assert any("kmq:50 has no rows of class 'neutral'" in x for x in w)
    assert any("kmq:50 has no rows of 2 cluster(s)" in x and "cluster 3: 12 test rows" in x for x in w)
    fine = _ckpts({"full": [0.90, 0.91], "kmq:50": [0.90, 0.92]}, majority=0.5)
    assert experiment.compare_warnings(experiment.summarize_compare(fine, ["full", "kmq:50"]), fine) == []


def test_compare_records_majority_and_warns_about_a_missing_cluster(tiny_bert, ws, monkeypatch):
    from core.selection import fit_clusters
    from core.selection.store import save_clusters

    df = frame(80)
    did = _register(ws, df)
    X = np.random.default_rng(0).normal(size=(80, 4)).astype(np.float32)
    X[:, 0] += np.where(np.arange(80) % 4 < 2, 20.0, -20.0)  # two clusters, each with both labels
    cl = fit_clusters(X, k=2, uids=df["uid"].tolist(), seed=0)
    save_clusters(ws, did, cl)
    only0 = df["uid"][cl.labels == 0].tolist()  # some of them fall in the held-out split
    sel = ws.create_run("selection", dataset_id=did, method="manual", status="done")
    ws.save_run_frame(sel, pd.DataFrame({"uid": only0}))
    calls = _spy(monkeypatch)
    run_id = compare(ws, did, subsets=f"full,selection:{sel}", data=df, seeds=1, model=str(tiny_bert), **TINY)
    res = ws.run(run_id).result
    assert res["table"][0]["majority"] == pytest.approx(0.5)
    pool_idx, test_idx = experiment.held_out_split(df["label"].tolist(), seed=0)
    got = resolve_subset(ws, did, f"selection:{sel}", df.iloc[pool_idx], seed=0,
                         test_uids=df["uid"].iloc[test_idx].tolist())
    cluster_of = dict(zip(df["uid"], cl.labels))
    # cluster 0 has no pool rows left to replace its held-out rows: the subset stays in its cluster (and short)
    assert {cluster_of[u] for u in got.uids} == {0} and len(got.uids) == len(calls[1]["texts"]) <= len(only0)
    assert any(w.startswith(f"selection:{sel} has no rows of 1 cluster(s)") for w in res["warnings"]), res["warnings"]
    assert res["verdict"] and "None" not in res["verdict"]


# ----------------------------------------------------------------------------------------------- estimate


def test_estimate_arithmetic_equal_steps_and_equal_epochs():
    tp = experiment.Throughput(train_examples_per_second=100.0, predict_examples_per_second=300.0,
                               load_seconds=2.0, device="cpu", key="k")
    shapes = experiment.plan_runs({"full": 1000, "random:500": 500}, protocol="equal-steps", epochs=1,
                                  batch_size=32, valid_fraction=0.0)
    assert shapes["full"].steps == shapes["random:500"].steps == 32  # ceil(1000 / 32)
    assert shapes["full"].train_examples == 1000 and shapes["random:500"].train_examples == 1000
    est = experiment.estimate_seconds({"full": 1000, "random:500": 500}, seeds=2, n_test=300, throughput=tp,
                                      protocol="equal-steps", epochs=1, batch_size=32, valid_fraction=0.0)
    assert est["per_subset"]["full"] == pytest.approx(2 + 1000 / 100 + 300 / 300)
    assert est["total"] == pytest.approx(2 * 2 * 13.0) and est["train_examples"] == 4000
    eq = experiment.estimate_seconds({"full": 1000, "random:500": 500}, seeds=1, n_test=300, throughput=tp,
                                     protocol="equal-epochs", epochs=2, batch_size=32, valid_fraction=0.0)
    assert eq["per_subset"]["random:500"] == pytest.approx(2 + 1000 / 100 + 1)
    conv = experiment.estimate_seconds({"full": 1000}, seeds=1, n_test=300, throughput=tp, protocol="convergence",
                                       epochs=3, batch_size=32, valid_fraction=0.1)
    # 900 training rows x 3 epochs, plus 100 validation rows scored 3 times and the test set
    assert conv["per_subset"]["full"] == pytest.approx(2 + 2700 / 100 + (300 + 300) / 300)
    assert conv["upper_bound"] and experiment.format_duration(conv["total"]) == "31 s"
    assert experiment.format_duration(600) == "10.0 min" and experiment.format_duration(9000) == "2.5 h"


def test_estimate_by_tokens_charges_each_subset_its_own_padding():
    tp = experiment.Throughput(train_examples_per_second=100.0, predict_examples_per_second=300.0,
                               load_seconds=2.0, device="cpu", key="k", train_tokens_per_second=1200.0)
    kw = dict(seeds=1, n_test=300, throughput=tp, protocol="equal-steps", epochs=1, batch_size=32,
              valid_fraction=0.0)
    flat = experiment.estimate_seconds({"full": 1000, "random:500": 500}, lengths=[12] * 100, **kw)
    # every row 12 tokens: 12 tokens per example at 1,200 tokens/s is the 100 examples/s of the line
    assert flat["by_tokens"] and flat["per_subset"]["full"] == pytest.approx(2 + 1000 * 12 / 1200 + 1)
    assert flat["train_seconds"] == pytest.approx(2 * 1000 * 12 / 1200)  # the line's examples/s: 2,000 / 20 s
    mixed = experiment.estimate_seconds({"full": 1600, "random:64": 64}, lengths=[10] * 90 + [60] * 10, **kw)
    shapes = experiment.plan_runs({"full": 1600, "random:64": 64}, protocol="equal-steps", epochs=1,
                                  batch_size=32, valid_fraction=0.0)
    for spec, sh in shapes.items():
        tpe = finetune.padded_tokens_per_example([10] * 90 + [60] * 10, sh.n_train, 32)
        assert mixed["per_subset"][spec] == pytest.approx(2 + sh.train_examples * tpe / 1200 + 1)
    # the same steps, but the small subset's few wide batches pad more: it costs more per example
    assert mixed["per_subset"]["random:64"] > mixed["per_subset"]["full"]
    # without lengths (or a measurement from before tokens were counted) the examples rate is used
    plain = experiment.estimate_seconds({"full": 1000}, **kw)
    assert not plain["by_tokens"] and plain["per_subset"]["full"] == pytest.approx(2 + 10 + 1)


def test_estimate_before_start_measures_once_and_caches(tiny_bert, ws, monkeypatch):
    df = frame(200)
    did = _register(ws, df)
    calls = _spy(monkeypatch)
    est = experiment.estimate_compare(ws, did, "full,random:0.5", data=df, seeds=2, pool_max=100,
                                      model=str(tiny_bert), batch_size=8, threads=1)
    # an untimed 2-step warm-up, then the timed steps
    assert [c["max_steps"] for c in calls] == [2, experiment.CALIBRATION_STEPS]
    assert est["sizes"] == {"full": 100, "random:0.5": 50} and est["pool"] == 100 and est["n_test"] == 40
    assert est["total"] > 0 and est["line"].startswith("estimated about ")
    assert est["throughput"]["train_tokens_per_second"] > 0  # the calibration counted its steps' tokens
    lens = ws.get_setting(f"finetune.lengths.{did}|{tiny_bert}|128")  # and kept the data's token lengths
    assert len(lens) == 200 and min(lens) > 0
    again = experiment.estimate_compare(ws, did, "full,random:0.5", data=df, seeds=2, pool_max=100,
                                        model=str(tiny_bert), batch_size=8, threads=1)
    assert len(calls) == 2 and again["total"] == pytest.approx(est["total"])  # cached measurement
    run_id = compare(ws, did, subsets="full,random:0.5", data=df, seeds=2, pool_max=100, model=str(tiny_bert),
                     **TINY)
    assert ws.run(run_id).result["estimate_seconds"] == pytest.approx(est["total"])
    # every finished fine-tune folded its own speed into the measurement: the next estimate learns from them
    key = dict(model=str(tiny_bert), max_length=128, batch_size=8, threads=1, device=None)
    after = experiment.cached_throughput(ws, **key)
    shapes = experiment.plan_runs(est["sizes"], protocol="equal-steps", epochs=1, batch_size=8, valid_fraction=0.0)
    planned = 2 * sum(s.train_examples for s in shapes.values())  # 2 seeds: 2 x (100 + 98)
    # the examples each fine-tune's steps processed, as it counted them (its checkpoint), on top of the calibration's
    seen = sum(int(m["train_examples"]) for k, m in ws.checkpoints(run_id).items() if "|" in k)
    assert 0 < seen <= planned == 396
    assert after.basis_examples == est["throughput"]["basis_examples"] + seen
    assert after.train_examples_per_second != pytest.approx(est["throughput"]["train_examples_per_second"])


def test_refined_throughput_weights_rates_by_examples_and_forgets_old_calibrations(ws):
    key = dict(model=None, max_length=128, batch_size=32, threads=None, device=None)
    k = experiment.throughput_key(**key)
    calib = experiment.Throughput(train_examples_per_second=20.0, predict_examples_per_second=100.0,
                                  load_seconds=5.0, device="cpu", key=k, basis_examples=256)
    ws.set_setting(f"throughput.{k}", calib.to_dict())
    # a real fine-tune: 2,000 examples in 66.7 s of steps (30 /s), 1,000 test rows in 10 s, 3 s of the rest
    got = experiment.refine_throughput(ws, train_examples=2000, step_seconds=2000 / 30, predict_examples=1000,
                                       predict_seconds=10.0, overhead_seconds=3.0, device_label="cpu", **key)
    assert got.train_examples_per_second == pytest.approx(2256 / (256 / 20 + 2000 / 30))
    assert got.predict_examples_per_second == pytest.approx(1256 / (256 / 100 + 10.0))
    assert got.load_seconds == 3.0 and got.basis_examples == 2256
    assert experiment.cached_throughput(ws, **key) == got
    # a long history is remembered only up to REFINE_MEMORY_EXAMPLES: a machine that got slower shows within runs
    slow = got
    for _ in range(10):
        slow = experiment.refine_throughput(ws, train_examples=2000, step_seconds=200.0, predict_examples=1000,
                                            predict_seconds=10.0, overhead_seconds=3.0, device_label="cpu", **key)
    assert slow.train_examples_per_second < 12.0  # 10 /s now; the 30 /s of the past has faded
    # an old cached measurement (before the basis was recorded) counts as one calibration
    old = dict(calib.to_dict())
    del old["basis_examples"]
    ws.set_setting(f"throughput.{k}", old)
    again = experiment.refine_throughput(ws, train_examples=2000, step_seconds=2000 / 30, predict_examples=1000,
                                         predict_seconds=10.0, overhead_seconds=3.0, device_label="cpu", **key)
    assert again.train_examples_per_second == pytest.approx(got.train_examples_per_second)


def test_verdict_with_only_full_and_random_compares_them():
    table = experiment.summarize_compare(_ckpts({"full": [0.80, 0.82], "random:50": [0.70, 0.71]}),
                                         ["full", "random:50"])
    assert experiment.verdict_line(table).startswith("random:50 is worse than full by 10.5 ±")


def test_near_majority_margin_grows_on_a_small_test_set():
    ck = _ckpts({"full": [0.46, 0.455], "random:50": [0.50, 0.505]}, majority=0.425, n_test=200)
    w = experiment.compare_warnings(experiment.summarize_compare(ck, ["full", "random:50"]), ck)
    # 2 standard errors at 42.5 % on 200 rows = 7 points: full (45.8 %) is flagged, random (50.3 %) is not
    assert w == ["full is within 7 points of the majority-class rate (42.5 %): it learned little"]


def test_clean_kmq_and_iterative_specs_give_b_rows_from_the_pool(ws):
    from core.selection import fit_clusters
    from core.selection.store import save_clusters
    from core.valuation.base import Values
    from core.valuation.store import save_values

    df = frame(80)
    did = _register(ws, df)
    X = np.random.default_rng(0).normal(size=(80, 8)).astype(np.float32)
    ws.write_array("artefacts/emb.npy", X)
    emb = ws.register_embedding(dataset_id=did, model="fake", dim=8, n_rows=80, relpath="artefacts/emb.npy")
    save_clusters(ws, did, fit_clusters(X, k=3, uids=df["uid"].tolist(), seed=0), embedding_id=emb)
    v = np.full(80, 0.01)
    v[5:15] = -0.05  # significantly harmful: u5..u9 are test rows, u10..u14 pool rows
    vals = Values(uids=df["uid"].to_numpy(), values=v, stderr=np.full(80, 0.001), counts=np.full(80, 10),
                  method="ts_dshapley")
    run = ws.create_run("values", dataset_id=did, method="ts_dshapley")
    save_values(ws, run, vals)
    ws.update_run(run, status="done")
    pool = df.iloc[10:].reset_index(drop=True)  # u0..u9 play the test rows
    got = resolve_subset(ws, did, "clean-kmq:40", pool, seed=0)
    assert len(got.uids) == 40 and set(got.uids) <= set(pool["uid"])
    assert not {f"u{i}" for i in range(10, 15)} & set(got.uids) and "5 rows dropped: significantly harmful" in got.note
    assert got.uids == resolve_subset(ws, did, f"clean-kmq:0.571:{run}", pool, seed=0).uids
    it = resolve_subset(ws, did, "iterative:30", pool, seed=1)
    assert len(it.uids) == 30 and set(it.uids) <= set(pool["uid"]) and "iterative refinement" in it.note
    with pytest.raises(DataError, match="malformed"):
        experiment.parse_subsets("iterative")


def test_the_examples_behind_a_speed_are_the_ones_counted_else_derived():
    """A fine-tune records the examples its steps processed (a short last batch counts its own rows); a result from
    before that was recorded falls back to steps x batch size at its examples-per-second rate."""
    base = dict(accuracy=1.0, macro_f1=1.0, per_class={}, loss_curve=[], valid_curve=[], epochs_run=1,
                train_seconds=2.0, examples_per_second=50.0, n_train=100, params={"batch_size": 32}, steps=4)
    counted = finetune.FinetuneResult(**base, train_examples=100, step_seconds=2.0)
    assert experiment._steps_seen(counted, 128) == (100, 2.0)
    older = finetune.FinetuneResult(**base)
    assert experiment._steps_seen(older, 128) == (128, pytest.approx(128 / 50.0))
