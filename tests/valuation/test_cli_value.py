"""CLI: `value`, `audit`, `runs` on a small CSV with fake (label-informed, hashed) embeddings."""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from core.__main__ import main
from core.cli import common

TS = ["--n-passes", "2", "--n-permutations", "2", "--subset-size", "30", "--n-jobs", "1"]


def _vector(text: str) -> np.ndarray:
    """A fixed vector per text: the class word picks a centre, the hash of the text adds noise."""
    rng = np.random.default_rng(int(hashlib.sha1(text.encode()).hexdigest()[:8], 16))
    centre = {"good": 1.0, "bad": -1.0, "meh": 0.0}[text.split()[0]]
    v = rng.normal(0, 0.6, 6)
    v[0] += 2 * centre
    v[1] += 2 * abs(centre)
    return v.astype(np.float32)


@pytest.fixture
def fake_embeddings(monkeypatch):
    calls = []

    def get_embeddings(args, ws, loaded, on_progress=None):
        texts = list(loaded.ds["text"])
        calls.append(len(texts))
        X = np.stack([_vector(t) for t in texts])
        if any("nan" in t for t in texts):
            X[[i for i, t in enumerate(texts) if "nan" in t]] = np.nan
        if on_progress:
            on_progress(1.0, "embedded", None)
        return 1, X

    monkeypatch.setattr(common, "get_embeddings", get_embeddings)
    return calls


def _csv(path, n=120, classes=("good", "bad", "meh"), flip=0.1, seed=0, extra_text=""):
    rng = np.random.default_rng(seed)
    labels = [classes[i % len(classes)] for i in range(n)]
    texts = [f"{lab} text {i}{extra_text}" for i, lab in enumerate(labels)]
    flipped = rng.choice(n, int(flip * n), replace=False)
    for i in flipped:
        labels[i] = [c for c in classes if c != labels[i]][0]
    pd.DataFrame({"id": [f"row{i}" for i in range(n)], "text": texts, "label": labels}).to_csv(path, index=False)
    return path, {f"row{i}" for i in flipped}


def _run(ws, *argv):
    return main(["--workspace", str(ws.path), *map(str, argv)])


def test_value_writes_csv_and_records_the_run(ws, tmp_path, fake_embeddings, capsys):
    data, _ = _csv(tmp_path / "d.csv")
    out = tmp_path / "values.csv"
    assert _run(ws, "value", data, "--out", out, "--suggest-removal", *TS) == 0
    df = pd.read_csv(out)
    assert list(df.columns) == ["uid", "value", "stderr", "count"] and len(df) == 120
    assert (df["count"] == 2).all()
    run = ws.latest_run("values")
    assert run.method == "ts_dshapley" and run.status == "done" and run.embedding_id == 1
    assert run.result["n_rows"] == 120 and "removal" in run.result
    assert run.result["suggested_removal"] == run.result["removal"]["n_remove_total"]
    assert run.result["method_params"]["n_passes"] == 2
    frame = ws.load_run_frame(run.id)
    assert list(frame.columns[:4]) == ["uid", "value", "stderr", "count"]
    assert "suggested removal" in capsys.readouterr().out


def test_other_methods_and_options(ws, tmp_path, fake_embeddings):
    data, flipped = _csv(tmp_path / "d.csv")
    assert _run(ws, "value", data, "--method", "knn_shapley", "--k", "5") == 0
    assert ws.latest_run("values", method="knn_shapley").result["method_params"]["k"] == 5
    assert _run(ws, "value", data, "--method", "consensus", "--members", "knn-shapley,label-quality") == 0
    run = ws.latest_run("values", method="consensus")
    assert {"rank_knn_shapley", "rank_label_quality"} <= set(ws.load_run_frame(run.id).columns)


def test_valid_file_and_its_errors(ws, tmp_path, fake_embeddings, capsys):
    data, _ = _csv(tmp_path / "d.csv")
    valid, _ = _csv(tmp_path / "v.csv", n=45, flip=0.0, seed=1, extra_text=" v")
    assert _run(ws, "value", data, "--valid", valid, "--method", "loo") == 0
    assert ws.latest_run("values").result["method_params"]["validation"] == "file"
    extra, _ = _csv(tmp_path / "x.csv", n=40, classes=("good", "bad", "meh", "odd"), flip=0.0, extra_text=" x")
    # 'odd' rows get the 'meh' vector: only the label is new
    df = pd.read_csv(extra)
    df["text"] = df["text"].str.replace("odd", "meh")
    df.to_csv(extra, index=False)
    capsys.readouterr()
    assert _run(ws, "value", data, "--valid", extra, "--method", "knn-shapley") == 2
    assert "has label(s) 'odd' that the data lacks" in capsys.readouterr().err
    missing, _ = _csv(tmp_path / "m.csv", n=40, classes=("good", "bad"), flip=0.0, extra_text=" m")
    assert _run(ws, "value", data, "--valid", missing, "--method", "knn-shapley") == 2
    assert "class(es) 'meh' missing from --valid" in capsys.readouterr().err


def test_bad_data_gives_one_line_and_exit_2(ws, tmp_path, fake_embeddings, capsys):
    data, _ = _csv(tmp_path / "d.csv")
    assert _run(ws, "value", data, "--subset-size", "2", "--n-passes", "1") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("winnow: error: class ") and "--subset-size" in err
    nan, _ = _csv(tmp_path / "n.csv", extra_text=" nan")
    assert _run(ws, "value", nan, "--method", "knn-shapley") == 2
    assert "NaN or infinite values in 120 row(s)" in capsys.readouterr().err
    assert _run(ws, "value", data, "--method", "magic") == 2
    assert "unknown valuation method 'magic'" in capsys.readouterr().err
    failed = ws.runs("values", status="failed")
    assert len(failed) == 2 and "subset" in failed[-1].result["error"]


def test_killed_run_resumes_from_its_checkpoint(ws, tmp_path, fake_embeddings, monkeypatch, capsys):
    import importlib

    ts = importlib.import_module("core.valuation.ts_dshapley")  # the package attribute is the function

    data, _ = _csv(tmp_path / "d.csv", n=150)
    argv = ["value", data, "--valid", _csv(tmp_path / "v.csv", n=45, flip=0.0, seed=1, extra_text=" v")[0],
            "--n-passes", "5", "--n-permutations", "2", "--subset-size", "30", "--n-jobs", "1", "--seed", "3"]
    real = ts._run_task
    calls = []

    def dying(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("killed")
        return real(*a, **k)

    monkeypatch.setattr(ts, "_run_task", dying)
    with pytest.raises(RuntimeError, match="killed"):
        _run(ws, *argv)
    run = ws.runs("values")[0]
    assert run.status == "failed" and ws.checkpoints(run.id)["partial"]["fraction"] > 0
    calls.clear()
    monkeypatch.setattr(ts, "_run_task", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    assert _run(ws, *argv) == 0
    assert "resuming run" in capsys.readouterr().err
    again = ws.run(run.id)
    assert again.status == "done" and again.result["resumed"] and len(ws.runs("values")) == 1
    assert len(calls) == 4  # the first task was checkpointed: only the other four ran
    monkeypatch.setattr(ts, "_run_task", real)
    assert _run(ws, *argv, "--no-resume") == 0
    fresh = ws.runs("values")[0]
    np.testing.assert_array_equal(ws.load_run_frame(fresh.id)["value"], ws.load_run_frame(run.id)["value"])


def test_audit_and_runs(ws, tmp_path, fake_embeddings, capsys):
    data, _ = _csv(tmp_path / "d.csv", flip=0.0)
    assert _run(ws, "audit", data, "--flip", "0.1", "--methods", "knn-shapley,random", "--seed", "1") == 0
    out = capsys.readouterr().out
    assert "ROC-AUC" in out and "precision@flipped" in out and "knn-shapley" in out
    run = ws.latest_run("audit")
    assert [r["method"] for r in run.result["rows"]] == ["knn-shapley", "random"] and run.result["n_flipped"] == 12
    frame = ws.load_run_frame(run.id)
    assert frame["flipped"].sum() == 12 and {"value_knn_shapley", "value_random"} <= set(frame.columns)
    assert _run(ws, "value", data, "--method", "random") == 0
    capsys.readouterr()
    assert _run(ws, "runs") == 0
    out = capsys.readouterr().out
    assert "audit" in out and "random" in out and "knn-shapley AUC" in out
    assert _run(ws, "runs", "--kind", "audit") == 0
    assert "| values" not in capsys.readouterr().out
    assert _run(ws, "audit", data, "--methods", "") == 2


def test_value_records_the_cleaned_split_and_consensus_weights(ws, tmp_path, fake_embeddings, capsys):
    data, _ = _csv(tmp_path / "d.csv", n=150, flip=0.15)
    assert _run(ws, "value", data, "--method", "knn-shapley", "--seed", "1") == 0
    run = ws.latest_run("values")
    cleaning = run.result["method_params"]["valid_cleaning"]
    assert run.params["clean_valid"] == 0.2 and cleaning["threshold"] == 0.2 and cleaning["held_out"]["rows"] == 15
    assert _run(ws, "value", data, "--method", "knn-shapley", "--clean-valid", "0") == 0
    assert "valid_cleaning" not in ws.latest_run("values").result["method_params"]
    assert _run(ws, "value", data, "--method", "consensus", "--members", "knn-shapley,label-quality") == 0
    check = ws.latest_run("values").result["method_params"]["self_check"]
    assert set(check["weights"]) == {"knn_shapley", "label_quality"} and check["n_injected"] == 15
    assert _run(ws, "value", data, "--method", "consensus", "--members", "knn-shapley,label-quality",
                "--weights", "equal") == 0
    assert ws.latest_run("values").result["method_params"]["weights"] == "equal"
    assert _run(ws, "value", data, "--clean-valid", "1.5") == 2
    assert "--clean-valid must be between 0 and 1" in capsys.readouterr().err


def test_agreement_column_in_the_self_check_and_the_consensus(ws, tmp_path, fake_embeddings, capsys):
    data, _ = _csv(tmp_path / "d.csv", n=150, flip=0.1)
    frame = pd.read_csv(data)
    rng = np.random.default_rng(3)
    frame["confidence"] = np.round(rng.uniform(0.3, 1.0, len(frame)), 3)
    frame.loc[:9, "confidence"] = np.nan  # unknown on some rows
    frame["note"] = "n/a"
    frame.to_csv(data, index=False)
    assert _run(ws, "audit", data, "--flip", "0.1", "--methods", "knn-shapley,label-quality,consensus",
                "--agreement", "confidence") == 0
    assert "Spearman with confidence" in capsys.readouterr().out
    run = ws.latest_run("audit")
    assert run.result["agreement_column"] == "confidence" and run.params["agreement_column"] == "confidence"
    assert all(np.isfinite(r["agreement"]) for r in run.result["rows"])
    assert _run(ws, "value", data, "--method", "consensus", "--members", "knn-shapley,label-quality",
                "--agreement", "confidence") == 0
    check = ws.latest_run("values").result["method_params"]["self_check"]
    assert check["agreement_column"] == "confidence" and set(check["member_agreement"]) == {"knn_shapley",
                                                                                             "label_quality"}
    assert ws.latest_run("values").params["options"]["agreement_name"] == "confidence"
    capsys.readouterr()
    assert _run(ws, "value", data, "--method", "knn-shapley", "--agreement", "confidence") == 2
    assert "--agreement is an option of the consensus" in capsys.readouterr().err
    assert _run(ws, "audit", data, "--methods", "random", "--agreement", "nope") == 2
    assert "--agreement nope: the data has no such extra column (its extra columns: " in capsys.readouterr().err
    assert _run(ws, "audit", data, "--methods", "random", "--agreement", "note") == 2
    assert "the column has only 0 numeric value(s)" in capsys.readouterr().err
