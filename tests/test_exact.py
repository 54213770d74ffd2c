"""What comes out is what went in: every kept cell exported exactly as read, in every format (issue 12 §1)."""
from __future__ import annotations

import csv
import importlib
import json
import tempfile
import warnings
from pathlib import Path

import datasets
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import data
from core.errors import WinnowWarning
from core.export import FORMATS, export_dataset
from core.workspace import Workspace


def open_quiet(ws, path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WinnowWarning)
        return data.open_dataset(ws, str(path), **kw)


def write_csv(path: Path, header: list[str], rows: list[list[str]], sep: str = ",") -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter=sep, lineterminator="\r\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def read_back(res) -> pd.DataFrame:
    """Read an export with the reader its manifest names."""
    reader = res.manifest["reader"]
    module, _, fn = reader["call"].rpartition(".")
    kwargs = dict(reader["kwargs"])
    if kwargs.get("dtype") == "str":
        kwargs["dtype"] = str
    out = getattr(importlib.import_module(module), fn)(str(res.path), **kwargs)
    return out.to_pandas() if isinstance(out, datasets.Dataset) else out


def export(ws, loaded, fmt, out, **kw):
    return export_dataset(ws, loaded.dataset_id, loaded.ds, fmt=fmt, out=out, **kw)


ZIPS = ["00501", "02134", "07030", "10001", "00000", "90210"]
REGIONS = ["NA", "N/A", "None", "null", "", "nan", "EU", "#N/A"]


def test_leading_zeros_and_na_like_cells_survive_every_format(tmp_path):
    rows = [[f"text {i}", ("pos", "neg")[i % 2], ZIPS[i % len(ZIPS)], REGIONS[i % len(REGIONS)]] for i in range(23)]
    src = write_csv(tmp_path / "z.csv", ["text", "label", "zip", "region"], rows)
    ws = Workspace(tmp_path / "ws")
    loaded = open_quiet(ws, src)
    assert data.column(loaded.ds, "zip") == [r[2] for r in rows]
    assert data.column(loaded.ds, "region") == [r[3] for r in rows]
    for fmt in FORMATS:
        res = export(ws, loaded, fmt, tmp_path / f"out-{fmt}")
        back = read_back(res)
        assert back["zip"].tolist() == [r[2] for r in rows], fmt  # 00501 stays 00501, never 501
        assert back["region"].tolist() == [r[3] for r in rows], fmt  # NA stays NA, not empty
    # byte-identical CSV cells: the exported CSV parsed by the csv module gives the very same strings
    with open(tmp_path / "out-csv.csv", newline="", encoding="utf-8") as f:
        cells = list(csv.reader(f))
    assert [c[2:] for c in cells[1:]] == [r[1:] for r in rows]  # label, zip, region (after uid, text)
    assert pq.read_table(tmp_path / "out-parquet.parquet").schema.field("zip").type == pa.string()


def test_jsonl_export_is_strict_json(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in [
        {"text": "a", "label": "x", "score": 1.5, "tag": None},
        {"text": "b", "label": "y", "score": None},
        {"text": "c", "label": "y", "score": 2.0, "tag": "NA"},
    ]) + "\n")
    ws = Workspace(tmp_path / "ws")
    res = export(ws, open_quiet(ws, p), "jsonl", tmp_path / "o.jsonl")
    text = res.path.read_text()
    assert "NaN" not in text

    def refuse(c):
        raise AssertionError(f"non-JSON constant {c}")

    recs = [json.loads(line, parse_constant=refuse) for line in text.splitlines()]
    assert [r["score"] for r in recs] == [1.5, None, 2.0]
    assert [r["tag"] for r in recs] == [None, None, "NA"]
    import pyarrow.json as pj

    assert pj.read_json(res.path).num_rows == 3  # a strict parser accepts it


def test_normalised_labels_warn_once_and_export_the_original_cells(tmp_path):
    labels = ["0.0", "1.0", "2.50", "pos ", " neg", "pos", "neg", "1", "0"]
    rows = [[f"t{i}", lab] for i, lab in enumerate(labels)]
    src = write_csv(tmp_path / "l.csv", ["text", "label"], rows)
    ws = Workspace(tmp_path / "ws")
    with pytest.warns(WinnowWarning, match="trailing .0") as rec:
        loaded = data.open_dataset(ws, str(src))
    notes = [str(w.message) for w in rec if "original cell" in str(w.message)]
    assert len(notes) == 1 and "4 cell(s)" in notes[0] and "'pos '" in notes[0]
    assert sorted(loaded.classes) == ["0", "1", "2.50", "neg", "pos"]  # merged for class identity
    assert data.column(loaded.ds, "label") == ["0", "1", "2.50", "pos", "neg", "pos", "neg", "1", "0"]
    for fmt in FORMATS:
        back = read_back(export(ws, loaded, fmt, tmp_path / f"l-{fmt}"))
        assert back["label"].tolist() == labels, fmt
    # the warning is part of the dataset record (shown on the Data page and by `info`)
    assert any("original cell" in w for w in ws.dataset(loaded.dataset_id).meta["warnings"])


def test_typed_formats_keep_their_types(tmp_path):
    table = pa.table({"text": ["a", "b", "c", "d"], "label": pa.array([0, 1, 1, 0], pa.int64()),
                      "n": pa.array([1, None, 3, 4], pa.int64()), "when": pa.array([1.5, 2.0, None, 4.25])})
    pq.write_table(table, tmp_path / "t.parquet")
    ws = Workspace(tmp_path / "ws")
    loaded = open_quiet(ws, tmp_path / "t.parquet")
    assert loaded.classes == ["0", "1"]
    res = export(ws, loaded, "parquet", tmp_path / "o.parquet")
    back = pq.read_table(res.path)
    assert back.schema.field("label").type == pa.int64() and back.column("label").to_pylist() == [0, 1, 1, 0]
    assert back.schema.field("n").type == pa.int64() and back.column("n").to_pylist() == [1, None, 3, 4]
    recs = [json.loads(x) for x in export(ws, loaded, "jsonl", tmp_path / "o.jsonl").path.read_text().splitlines()]
    assert [r["label"] for r in recs] == [0, 1, 1, 0] and [r["n"] for r in recs] == [1, None, 3, 4]
    assert [r["when"] for r in recs] == [1.5, 2.0, None, 4.25]


def test_json_values_come_back_as_the_same_json_values(tmp_path):
    recs = [{"text": "a", "label": 1, "extra": 1, "obj": {"k": [1, 2]}},
            {"text": "b", "label": 2.0, "extra": "two", "obj": None},
            {"text": "c", "label": 1.0, "extra": None, "obj": [1, "x"]},
            {"text": "d", "label": "2", "extra": True, "obj": "s"}]
    p = tmp_path / "j.json"
    p.write_text(json.dumps(recs))
    ws = Workspace(tmp_path / "ws")
    loaded = open_quiet(ws, p)
    assert loaded.classes == ["1", "2"]
    back = [json.loads(x) for x in export(ws, loaded, "jsonl", tmp_path / "o.jsonl").path.read_text().splitlines()]
    for b, r in zip(back, recs):
        assert {k: b[k] for k in r} == r
        assert all(type(b[k]) is type(r[k]) for k in r)  # 1.0 stays a float, 2 an int, "2" a string


# ------------------------------------------------------------------------------------------- round-trip property

CELLS = st.one_of(
    st.sampled_from(["00501", "007", "NA", "N/A", "None", "null", "NaN", "nan", "", " ", "1.0", "0.0", "2.50",
                     "1e3", "-0", "True", "=1+1", "+x", "@a", "a,b", 'q"q', "line\nbreak", "crlf\r\nx", "  pad  "]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8),
)
LABELS = st.sampled_from(["pos", "pos ", " pos", "neg", "neg\t", "0", "0.0", "1", "1.0", "01", "2.50", "NA"])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(CELLS, LABELS, CELLS, CELLS), min_size=2, max_size=8), sep=st.sampled_from([",", "\t"]))
def test_round_trip_of_text_cells_in_every_export_format(tmp_path, rows, sep):
    rows = [[f"text {i} {r[0]}", *r[1:]] for i, r in enumerate(rows)]
    if len({data._as_strings(pd.Series([r[1]])).iat[0] for r in rows}) < 2:
        rows[0][1] = "pos" if rows[1][1].strip() != "pos" else "neg"
    rows = [r for r in rows]
    d = Path(tempfile.mkdtemp(dir=tmp_path))
    src = write_csv(d / ("s.tsv" if sep == "\t" else "s.csv"), ["text", "label", "zip", "region"], rows, sep)
    ws = Workspace(d / "ws")
    loaded = open_quiet(ws, src)
    for fmt in FORMATS:
        back = read_back(export(ws, loaded, fmt, d / f"o-{fmt}"))
        for j, name in enumerate(["text", "label", "zip", "region"]):
            assert back[name].tolist() == [r[j] for r in rows], (fmt, name)


JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                        st.floats(allow_nan=False, allow_infinity=False, width=32),
                        st.sampled_from(["00501", "NA", "", "1.0", "null"]),
                        st.lists(st.integers(0, 3), max_size=2), st.dictionaries(st.sampled_from("ab"), st.integers(0, 3)))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(vals=st.lists(st.tuples(JSON_VALUES, JSON_VALUES, st.sampled_from([0, 1, 1.0, "1", "x", "x "])),
                     min_size=2, max_size=6))
def test_round_trip_of_json_values(tmp_path, vals):
    recs = [{"text": f"t{i}", "label": lab, "a": a, "b": b} for i, (a, b, lab) in enumerate(vals)]
    recs[0]["label"], recs[1]["label"] = "x", "y"
    d = Path(tempfile.mkdtemp(dir=tmp_path))
    (d / "s.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    ws = Workspace(d / "ws")
    loaded = open_quiet(ws, d / "s.jsonl")
    res = export(ws, loaded, "jsonl", d / "o.jsonl")
    back = [json.loads(x) for x in res.path.read_text().splitlines()]
    assert [{k: b[k] for k in r} for b, r in zip(back, recs)] == recs
    for fmt in ("parquet", "datasets", "csv"):
        assert len(read_back(export(ws, loaded, fmt, d / f"o-{fmt}"))) == len(recs)


# ------------------------------------------------------------------------------------------------ relabels


@pytest.mark.parametrize("fmt", FORMATS)
def test_relabelled_rows_are_exported_with_their_new_label(tmp_path, fmt):
    rows = [[f"t{i}", ("pos ", "neg")[i % 2], f"0{i}"] for i in range(6)]
    src = write_csv(tmp_path / "r.csv", ["text", "label", "zip"], rows)
    ws = Workspace(tmp_path / "ws")
    loaded = open_quiet(ws, src)
    uids = data.column(loaded.ds, "uid")
    ws.decide(loaded.dataset_id, [uids[0]], "relabel", reason="mislabelled", note="neg")
    ws.decide(loaded.dataset_id, [uids[1]], "relabel", note="not a class, just a note")
    ws.decide(loaded.dataset_id, [uids[3]], "remove")
    res = export(ws, loaded, fmt, tmp_path / f"r-{fmt}")
    back = read_back(res)
    assert back["label"].tolist() == ["neg", "neg", "pos ", "pos ", "neg"]  # new label; others as read
    assert back["zip"].tolist() == ["00", "01", "02", "04", "05"]
    m = res.manifest
    assert m["rows_relabelled"] == 1
    assert m["relabels"] == [{"uid": uids[0], "old": "pos ", "new": "neg", "reason": "mislabelled", "note": "neg",
                              "source": "manual", "time": m["relabels"][0]["time"], "exported": True}]
    assert [d["note"] for d in m["other_decisions"]] == ["not a class, just a note"]


def test_a_typed_label_column_keeps_its_type_when_relabelled(tmp_path):
    pq.write_table(pa.table({"text": ["a", "b", "c"], "label": pa.array([0, 1, 1], pa.int64())}), tmp_path / "t.parquet")
    ws = Workspace(tmp_path / "ws")
    loaded = open_quiet(ws, tmp_path / "t.parquet")
    ws.decide(loaded.dataset_id, [data.column(loaded.ds, "uid")[2]], "relabel", note="0")
    back = pq.read_table(export(ws, loaded, "parquet", tmp_path / "o.parquet").path)
    assert back.schema.field("label").type == pa.int64() and back.column("label").to_pylist() == [0, 1, 0]


def test_cli_relabel_needs_a_class_and_export_says_how_many(tmp_path, capsys):
    from core.__main__ import main

    src = write_csv(tmp_path / "c.csv", ["id", "text", "label"], [[f"r{i}", f"t{i}", "ab"[i % 2]] for i in range(6)])
    ws = str(tmp_path / "ws")
    assert main(["--workspace", ws, "decisions", "add", str(src), "relabel", "r0", "--note", "zzz"]) == 2
    assert "one of the classes 'a', 'b'" in capsys.readouterr().err
    assert main(["--workspace", ws, "decisions", "add", str(src), "relabel", "r0", "r2", "--note", "b"]) == 0
    assert main(["--workspace", ws, "export", str(src), "--out", str(tmp_path / "o.csv")]) == 0
    assert "relabelled: 2 rows" in capsys.readouterr().out
    back = pd.read_csv(tmp_path / "o.csv", dtype=str, keep_default_na=False)
    assert back["label"].tolist() == ["b", "b", "b", "b", "a", "b"]


@pytest.mark.slow
def test_the_demo_exports_every_row_minus_the_removed_ones_cell_for_cell(tmp_path):
    ws = Workspace(tmp_path / "ws")
    loaded = open_quiet(ws, "demo")
    uids = data.column(loaded.ds, "uid")
    ws.decide(loaded.dataset_id, uids[:5], "remove", reason="test")
    res = export(ws, loaded, "csv", tmp_path / "demo.csv")
    back = read_back(res)
    assert len(back) == 38_158 - 5 == res.manifest["rows_after"]
    src = pd.read_csv(data.demo_path(), dtype=str, keep_default_na=False, encoding="latin-1").iloc[5:]
    assert back["text"].tolist() == src["text"].tolist()
    assert back["label"].tolist() == src["sentiment"].tolist()
    assert back["confidence"].tolist() == src["confidence"].tolist()  # typed on load, written as read
