"""Export writes exactly the curated rows, round-trips every text, and explains every removal."""
from __future__ import annotations

import json

import datasets
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import DataError
from core.export import export_dataset
from core.workspace import Workspace

NASTY = ["héllo wörld", "emoji 😀👍🏽 ok", "line\nbreak", "tab\there", 'quote " and \'', "comma, comma",
         "<script>alert(1)</script>", "NA", "", "  leading and trailing  ", "crlf\r\nline", "null", "=1+1"]


def _setup(tmp_path, texts, labels=None):
    ws = Workspace(tmp_path / "ws")
    n = len(texts)
    labels = labels or [("pos", "neg")[i % 2] for i in range(n)]
    ds = datasets.Dataset.from_dict({"uid": [f"u{i}" for i in range(n)], "text": list(texts), "label": labels,
                                     "confidence": [0.5 + i / (2 * n) for i in range(n)]})
    ds_id = ws.register_dataset(name="toy", source="toy.csv", fingerprint=f"fp{n}-{hash(tuple(texts))}", n_rows=n,
                                classes=sorted(set(labels)), text_col="text", label_col="label")
    return ws, ds_id, ds


def _read_back(path, fmt):
    if fmt == "csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    if fmt == "jsonl":
        return pd.read_json(path, lines=True, dtype=False)
    if fmt == "parquet":
        return pd.read_parquet(path)
    return datasets.load_from_disk(str(path)).to_pandas()


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "datasets"])
def test_export_minus_removals_with_manifest(tmp_path, fmt):
    ws, ds_id, ds = _setup(tmp_path, NASTY)
    ws.decide(ds_id, ["u1", "u3"], "remove", reason="mislabelled", source="lasso")
    ws.decide(ds_id, ["u5"], "relabel", note="should be neg")
    res = export_dataset(ws, ds_id, ds, fmt=fmt, out=tmp_path / "out" / "curated")
    back = _read_back(res.path, fmt)
    expected = [t for i, t in enumerate(NASTY) if i not in (1, 3)]
    assert back["text"].tolist() == expected
    assert back["uid"].tolist() == [f"u{i}" for i in range(len(NASTY)) if i not in (1, 3)]
    assert "confidence" in back.columns  # metadata survives
    m = json.loads(res.manifest_path.read_text())
    assert (m["rows_before"], m["rows_after"]) == (len(NASTY), len(NASTY) - 2)
    assert {r["uid"]: (r["reason"], r["source"]) for r in m["removals"]} == {
        "u1": ("mislabelled", "lasso"), "u3": ("mislabelled", "lasso")}
    assert m["other_decisions"][0]["note"] == "should be neg"
    assert m["dataset"]["fingerprint"] and m["winnow_version"]


def test_csv_export_loads_with_datasets(tmp_path):
    ws, ds_id, ds = _setup(tmp_path, [t for t in NASTY if t])
    res = export_dataset(ws, ds_id, ds, fmt="jsonl", out=tmp_path / "c.jsonl")
    back = datasets.load_dataset("json", data_files=str(res.path), split="train")
    assert back["text"] == [t for t in NASTY if t]


def test_export_of_a_saved_subset(tmp_path):
    ws, ds_id, ds = _setup(tmp_path, [f"text {i}" for i in range(10)])
    rid = ws.create_run("selection", dataset_id=ds_id, method="kmq", params={"budget": 4, "values_run": None},
                        status="done")
    ws.save_run_frame(rid, pd.DataFrame({"uid": ["u0", "u2", "u4", "u6"], "cluster": 0, "reason": "kmq"}))
    ws.decide(ds_id, ["u2"], "remove", reason="dup")
    res = export_dataset(ws, ds_id, ds, fmt="parquet", out=tmp_path / "s.parquet", subset_run_id=rid)
    assert pd.read_parquet(res.path)["uid"].tolist() == ["u0", "u4", "u6"]
    m = res.manifest
    assert m["selection"]["subset_run"] == rid and m["selection"]["strategy"] == "kmq"
    assert m["rows_removed_by_decision"] == 1 and m["rows_left_out_by_subset"] == 6


def test_export_errors_are_clear(tmp_path):
    ws, ds_id, ds = _setup(tmp_path, ["a", "b"])
    with pytest.raises(DataError, match="unknown export format 'xlsx'"):
        export_dataset(ws, ds_id, ds, fmt="xlsx", out=tmp_path / "x")
    ws.decide(ds_id, ["u0", "u1"], "remove")
    with pytest.raises(DataError, match="nothing left to export"):
        export_dataset(ws, ds_id, ds, fmt="csv", out=tmp_path / "x.csv")


_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(_text, min_size=1, max_size=8), fmt=st.sampled_from(["csv", "jsonl", "parquet"]))
def test_any_text_round_trips(tmp_path, texts, fmt):
    ws, ds_id, ds = _setup(tmp_path, texts)
    res = export_dataset(ws, ds_id, ds, fmt=fmt, out=tmp_path / f"rt.{fmt}")
    assert _read_back(res.path, fmt)["text"].tolist() == texts
