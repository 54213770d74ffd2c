"""core.data: every source format, column detection, validation messages, encodings, uids, warnings, registration."""
from __future__ import annotations

import csv
import gzip
import json
import os
import warnings
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import data
from core.errors import DataError, WinnowWarning, WorkspaceError

NASTY = ["plain", "comma, inside", 'quote " inside', "new\nline", "tab\tinside", "émoji 🎉 ünï", "  padded  ",
         "NA", "null", "semi;colon"]


def frame(n: int = 10) -> pd.DataFrame:
    """n rows, two classes, every text distinct, a float and a str metadata column."""
    texts = [f"{NASTY[i % len(NASTY)]} #{i}" for i in range(n)]
    return pd.DataFrame({"text": texts, "label": ["pos" if i % 3 else "neg" for i in range(n)],
                         "score": np.linspace(0, 1, n), "src": [f"s{i % 2}" for i in range(n)]})


def write(df: pd.DataFrame, path: Path) -> Path:
    """Write df in the format named by path's suffix (a folder without suffix: datasets.save_to_disk)."""
    suffix = "".join(path.suffixes)
    if suffix == ".csv":  # "\r\n" so that a "\r" inside a text gets quoted too
        df.to_csv(path, index=False, lineterminator="\r\n")
    elif suffix == ".csv.gz":
        path.write_bytes(gzip.compress(df.to_csv(index=False).encode()))
    elif suffix == ".tsv":
        df.to_csv(path, index=False, sep="\t", lineterminator="\r\n")
    elif suffix == ".jsonl":
        df.to_json(path, orient="records", lines=True, force_ascii=False)
    elif suffix == ".json":
        path.write_text(json.dumps(df.to_dict("records"), ensure_ascii=False), encoding="utf-8")
    elif suffix == ".parquet":
        df.to_parquet(path, index=False)
    elif suffix == "":
        datasets.Dataset.from_pandas(df, preserve_index=False).save_to_disk(str(path))
    else:
        raise AssertionError(suffix)
    return path


def load(source, **kw) -> data.LoadResult:
    """load_dataset with its (expected) WinnowWarnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WinnowWarning)
        return data.load_dataset(str(source), **kw)


def error(source, **kw) -> str:
    with pytest.raises(DataError) as e:
        load(source, **kw)
    return str(e.value)


# ---------------------------------------------------------------------------------------------------- formats


@pytest.mark.parametrize("name", ["d.csv", "d.csv.gz", "d.tsv", "d.jsonl", "d.json", "d.parquet", "folder"])
def test_every_format_round_trips_text_labels_and_metadata(tmp_path, name):
    df = frame()
    path = write(df, tmp_path / name)
    res = load(path)
    assert res.ds.column_names[:3] == ["uid", "text", "label"]
    assert res.ds["text"][:] == df["text"].tolist()  # exact: quotes, newlines, tabs, emoji, padding, "NA"
    assert res.ds["label"][:] == df["label"].tolist()
    assert res.classes == ["neg", "pos"]
    assert res.meta_cols == ["score", "src"]
    score = res.ds["score"][:]
    if name.startswith(("d.csv", "d.tsv")):  # a text format: each cell as the text it holds, no type inference
        assert all(isinstance(v, str) for v in score)
    assert np.allclose(np.asarray(score, dtype=float), df["score"])
    assert res.ds["src"][:] == df["src"].tolist()
    assert (res.text_col, res.label_col) == ("text", "label")
    assert res.source == str(path.resolve())
    assert res.ds.features["uid"].dtype == res.ds.features["text"].dtype == "string"
    assert len(set(res.ds["uid"][:])) == len(df)
    assert res.warnings == []


def test_json_as_columns_or_wrapped_records(tmp_path):
    df = frame(6)
    cols = tmp_path / "cols.json"
    cols.write_text(json.dumps(df.to_dict("list")))
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"data": df.to_dict("records")}))
    lines = tmp_path / "lines.json"  # JSON lines under a .json name
    df.to_json(lines, orient="records", lines=True)
    for p in (cols, wrapped, lines):
        assert load(p).ds["text"][:] == df["text"].tolist()


def test_datasetdict_folder_picks_train_and_says_so(tmp_path):
    df = frame(8)
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_pandas(df, preserve_index=False),
        "test": datasets.Dataset.from_pandas(df.iloc[:4], preserve_index=False),
    })
    dd.save_to_disk(str(tmp_path / "dd"))
    with pytest.warns(WinnowWarning, match="loaded 'train'"):
        res = data.load_dataset(str(tmp_path / "dd"))
    assert res.split == "train" and len(res.ds) == 8
    assert any("--split" in w for w in res.warnings)
    test = load(tmp_path / "dd", split="test")
    assert test.split == "test" and len(test.ds) == 4 and test.name == "dd:test"
    assert test.fingerprint != res.fingerprint
    msg = error(tmp_path / "dd", split="dev")
    assert "'dev'" in msg and "train, test" in msg and "--split" in msg


def test_classlabel_column_gives_class_names(tmp_path):
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"]),
                                  "idx": datasets.Value("int32")})
    ds = datasets.Dataset.from_dict({"sentence": ["a", "b", "c"], "label": [0, 1, 1], "idx": [7, 8, 9]},
                                    features=features)
    ds.save_to_disk(str(tmp_path / "f"))
    res = load(tmp_path / "f")
    assert res.ds["label"][:] == ["neg", "pos", "pos"]
    assert res.ds["uid"][:] == ["7", "8", "9"] and res.id_col == "idx"
    # an unlabelled split (label -1, as in GLUE test sets) is refused with a hint
    datasets.Dataset.from_dict({"sentence": ["a", "b"], "label": [-1, -1], "idx": [1, 2]},
                               features=features).save_to_disk(str(tmp_path / "u"))
    msg = error(tmp_path / "u")
    assert "'label'" in msg and "rows 1, 2" in msg and "unlabelled" in msg


# ---------------------------------------------------------------------------------------------------- columns


def test_common_column_names_any_case_and_metadata_kept(tmp_path):
    df = pd.DataFrame({"Tweet": ["a", "b", "c"], "SENTIMENT": ["x", "y", "x"], "user": ["u1", "u2", "u3"]})
    res = load(write(df, tmp_path / "t.csv"))
    assert (res.text_col, res.label_col) == ("Tweet", "SENTIMENT")
    assert res.ds.column_names == ["uid", "text", "label", "user"]


def test_explicit_columns_exact_or_any_case(tmp_path):
    df = pd.DataFrame({"body": ["a", "b", "c"], "y": [0, 1, 0], "text": ["m1", "m2", "m3"]})
    p = write(df, tmp_path / "e.csv")
    res = load(p, text_col="BODY", label_col="y")
    assert res.text_col == "body" and res.ds["text"][:] == ["a", "b", "c"]
    # a metadata column whose name is taken by the output ("text") is kept under another name
    assert res.ds["text_orig"][:] == ["m1", "m2", "m3"]
    msg = error(p, text_col="nope", label_col="y")
    assert "e.csv" in msg and "'nope'" in msg and "body, y, text" in msg and "--text-col" in msg


def test_ambiguous_columns_name_both_and_the_flag(tmp_path):
    p = write(pd.DataFrame({"text": ["a", "b"], "sentence": ["c", "d"], "label": [0, 1]}), tmp_path / "a.csv")
    msg = error(p)
    assert "a.csv" in msg and "'text'" in msg and "'sentence'" in msg
    assert "--text-col text" in msg and "--text-col sentence" in msg
    assert load(p, text_col="sentence").ds["text"][:] == ["c", "d"]
    p2 = write(pd.DataFrame({"text": ["a", "b"], "label": [0, 1], "category": ["x", "y"]}), tmp_path / "b.csv")
    msg = error(p2)
    assert "'label'" in msg and "'category'" in msg and "--label-col" in msg


def test_missing_columns_list_what_was_found(tmp_path):
    p = write(pd.DataFrame({"body": ["a", "b"], "label": [0, 1]}), tmp_path / "m.csv")
    msg = error(p)
    assert "m.csv" in msg and "no text column" in msg and "found: body, label" in msg and "--text-col" in msg
    p = write(pd.DataFrame({"text": ["a", "b"], "y": [0, 1]}), tmp_path / "n.csv")
    msg = error(p)
    assert "no label column" in msg and "found: text, y" in msg and "--label-col" in msg


# ---------------------------------------------------------------------------------------------------- labels


@pytest.mark.parametrize("labels, expected", [
    ([0, 1, 1], ["0", "1", "1"]),
    ([0.0, 1.0, 1.0], ["0", "1", "1"]),
    (["0.0", "1.0", "1"], ["0", "1", "1"]),
    ([" pos", "neg ", "pos"], ["pos", "neg", "pos"]),
    ([True, False, True], ["True", "False", "True"]),
])
@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_labels_are_strings(tmp_path, labels, expected, suffix):
    df = pd.DataFrame({"text": ["a", "b", "c"], "label": labels})
    res = load(write(df, tmp_path / f"l{suffix}"))
    assert res.ds["label"][:] == expected
    assert res.classes == sorted(set(expected))


def test_label_codes_and_unknown_label(tmp_path):
    res = load(write(frame(9), tmp_path / "c.csv"))
    y = data.label_codes(res.ds, res.classes)
    assert y.dtype == np.int64 and y.tolist() == [0, 1, 1, 0, 1, 1, 0, 1, 1]
    with pytest.raises(DataError, match="'pos' at rows 2, 3"):
        data.label_codes(res.ds, ["neg"])


# ---------------------------------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    msg = error(tmp_path / "nothere.csv")
    assert "file not found" in msg and "nothere.csv" in msg and "check the path" in msg


def test_unknown_format_lists_supported(tmp_path):
    p = tmp_path / "d.xlsx"
    p.write_bytes(b"PK\x03\x04")
    msg = error(p)
    assert "d.xlsx" in msg and "'.xlsx'" in msg
    for ext in (".csv", ".tsv", ".json", ".jsonl", ".parquet", "save_to_disk"):
        assert ext in msg


@pytest.mark.parametrize("content, expect", [
    (b"", "is empty"), (b"  \n\n", "is empty"), (b"text,label\n", "no data rows"), (b"[]", "no records"),
])
def test_empty_files(tmp_path, content, expect):
    name = "e.json" if content.startswith(b"[") else "e.csv"
    (tmp_path / name).write_bytes(content)
    msg = error(tmp_path / name)
    assert name in msg and expect in msg


def test_folder_that_is_not_a_datasets_folder(tmp_path):
    (tmp_path / "plain").mkdir()
    write(frame(4), tmp_path / "plain" / "x.csv")
    msg = error(tmp_path / "plain")
    assert "save_to_disk" in msg and "x.csv" in msg


def test_blank_text_rows_are_data_rows_from_one(tmp_path):
    p = tmp_path / "b.csv"
    p.write_text("text,label\nok,a\n   ,b\nfine,a\n,b\n")
    msg = error(p)
    assert "b.csv" in msg and "'text'" in msg and "2 empty or whitespace-only" in msg
    assert "rows 2, 4" in msg and "header not counted" in msg and "delete" in msg


def test_more_than_five_rows_are_summarised(tmp_path):
    p = tmp_path / "many.csv"
    p.write_text("text,label\n" + "".join(f"t{i},\n" if i % 2 else f"t{i},a\n" for i in range(20)))
    msg = error(p)
    assert "missing label" in msg and "'label'" in msg
    assert "rows 2, 4, 6, 8, 10 (and 5 more)" in msg


def test_missing_label_in_json_counts_records(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"text": "a", "label": "x"}\n{"text": "b"}\n{"text": "c", "label": null}\n')
    msg = error(p)
    assert "m.jsonl" in msg and "rows 2, 3" in msg and "records counted from 1" in msg


def test_one_class_is_refused(tmp_path):
    p = write(pd.DataFrame({"text": ["a", "b", "c"], "label": ["x", "x", "x"]}), tmp_path / "one.csv")
    msg = error(p)
    assert "one.csv" in msg and "only one class" in msg and "'x'" in msg and "at least two" in msg


def test_duplicate_and_empty_ids(tmp_path):
    p = write(pd.DataFrame({"ID": [1, 2, 1, 3, 2], "text": list("abcde"), "label": list("xyxyx")}), tmp_path / "d.csv")
    msg = error(p)
    assert "d.csv" in msg and "'ID'" in msg and "rows 1, 2, 3, 5" in msg and "'1' at rows 1, 3" in msg
    assert "unique" in msg
    p = tmp_path / "e.csv"
    p.write_text("id,text,label\n1,a,x\n,b,y\n")
    msg = error(p)
    assert "'id'" in msg and "row 2" in msg


def test_bad_json_and_bad_csv_name_file_lines(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": \n')
    msg = error(p)
    assert "bad.jsonl" in msg and "line 2 of the file" in msg
    p = tmp_path / "bad.json"
    p.write_text('[{"text": "a", "label": "x"},')
    assert "not valid JSON" in error(p)
    p = tmp_path / "bad.csv"
    p.write_text("text,label\na,x\nb,y,z,w\n")
    msg = error(p)
    assert "bad.csv" in msg and "line 3 of the file" in msg


# ---------------------------------------------------------------------------------------------------- encodings


def test_utf8_bom_and_utf16(tmp_path):
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbftext,label\ncaf\xc3\xa9,a\nb,b\n")
    res = load(p)
    assert res.text_col == "text" and res.ds["text"][:] == ["café", "b"] and res.encoding == "utf-8-sig"
    p = tmp_path / "u16.csv"
    p.write_bytes("text,label\nnaïve,a\nb,b\n".encode("utf-16"))
    assert load(p).ds["text"][:] == ["naïve", "b"]


def test_latin1_fails_with_hint_then_loads_with_encoding(tmp_path):
    p = tmp_path / "lat.csv"
    p.write_bytes("text,label\nfine,a\ncaf\xe9 au lait,b\n".encode("latin-1"))
    msg = error(p)
    assert "lat.csv" in msg and "utf-8" in msg and "0xe9" in msg and "byte offset 21" in msg
    assert "row 2" in msg and "line 3" in msg and "--encoding latin-1" in msg
    res = load(p, encoding="latin-1")
    assert res.ds["text"][:] == ["fine", "café au lait"] and res.encoding == "latin-1"
    assert "unknown encoding" in error(p, encoding="klingon")


# ---------------------------------------------------------------------------------------------------- uids


def test_uids_stable_across_loads_and_reorderings(tmp_path):
    df = pd.DataFrame({"text": ["a", "b", "c", "a", "d", "a"], "label": ["x", "y", "x", "x", "y", "y"]})
    p1 = write(df, tmp_path / "one.csv")
    first, again = load(p1), load(p1)
    assert first.ds["uid"][:] == again.ds["uid"][:] and first.fingerprint == again.fingerprint
    shuffled = df.iloc[[5, 4, 3, 2, 1, 0]]
    other = load(write(shuffled, tmp_path / "two.csv"))
    by_row = dict(zip(zip(first.ds["text"][:], first.ds["label"][:]), first.ds["uid"][:]))
    for t, lab, uid in zip(other.ds["text"][:], other.ds["label"][:], other.ds["uid"][:]):
        if (t, lab) != ("a", "x"):  # ("a", "x") appears twice: its two uids may swap, the set stays the same
            assert by_row[(t, lab)] == uid
    assert set(first.ds["uid"][:]) == set(other.ds["uid"][:])


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.text(min_size=1, max_size=12).filter(lambda s: data._visible(s) and "\r" not in s),
                               st.sampled_from(["p", "q", "r"])), min_size=2, max_size=12),
       seed=st.integers(0, 1000))
def test_uid_multiset_survives_any_permutation(tmp_path, rows, seed):
    df = pd.DataFrame(rows, columns=["text", "label"])
    if df["label"].nunique() < 2:
        return
    perm = np.random.default_rng(seed).permutation(len(df))
    a = load(write(df, tmp_path / "a.parquet"))
    b = load(write(df.iloc[perm], tmp_path / "b.parquet"))
    assert a.ds["text"][:] == df["text"].tolist()
    assert sorted(zip(a.ds["text"][:], a.ds["label"][:], a.ds["uid"][:])) == \
        sorted(zip(b.ds["text"][:], b.ds["label"][:], b.ds["uid"][:]))


def test_id_column_gives_uids(tmp_path):
    df = pd.DataFrame({"guid": ["g-1", "g-2", "g-3"], "text": list("abc"), "label": list("xyx")})
    res = load(write(df, tmp_path / "g.jsonl"))
    assert res.ds["uid"][:] == ["g-1", "g-2", "g-3"] and res.id_col == "guid" and "guid" in res.meta_cols
    df = pd.DataFrame({"uid": [10, 11, 12], "text": list("abc"), "label": list("xyx")})
    res = load(write(df, tmp_path / "u.parquet"))
    assert res.ds["uid"][:] == ["10", "11", "12"] and res.ds.column_names == ["uid", "text", "label"]


# ---------------------------------------------------------------------------------------------------- warnings and views


def dupes(tmp_path) -> Path:
    df = pd.DataFrame({"text": ["same", "other", "same", "clash", "clash", "x", "same"],
                       "label": ["a", "b", "a", "a", "b", "b", "a"]})
    return write(df, tmp_path / "dup.csv")


def test_duplicate_and_conflict_warnings(tmp_path):
    with pytest.warns(WinnowWarning) as rec:
        res = data.load_dataset(str(dupes(tmp_path)))
    texts = [str(w.message) for w in rec]
    assert texts == res.warnings and len(texts) == 2
    assert "2 text(s) appear more than once (5 rows, 3 extra copies)" in texts[0] and "rows 1, 3, 4, 5" in texts[0]
    assert "1 text(s) have conflicting labels (2 rows)" in texts[1] and "rows 4, 5" in texts[1]
    assert "'clash': a vs b" in texts[1] and "dup.csv" in texts[1]


def test_summarize_and_tables(tmp_path):
    res = load(dupes(tmp_path))
    s = data.summarize(res.ds)
    json.dumps(s)  # JSON-safe
    assert s["rows"] == 7 and s["classes"] == {"a": 4, "b": 3} and s["n_classes"] == 2
    assert s["length"]["chars"]["min"] == 1 and s["length"]["chars"]["max"] == 5
    assert s["length"]["words"]["max"] == 1 and s["length"]["chars"]["median"] == 4.0
    assert s["duplicates"] == {"groups": 2, "rows": 5, "extra": 3}
    assert s["conflicts"]["groups"] == 1 and s["conflicts"]["rows"] == 2
    assert s["conflicts"]["examples"] == [{"text": "clash", "count": 2, "labels": "a, b", "rows": [4, 5]}]
    dup = data.duplicate_table(res.ds)
    assert dup["text"].tolist() == ["same", "clash"] and dup["count"].tolist() == [3, 2]
    assert dup["rows"].tolist() == [[1, 3, 7], [4, 5]] and dup["labels"].tolist() == ["a ×3", "a, b"]
    assert len(dup["uids"][0]) == 3
    conf = data.conflict_table(res.ds)
    assert conf["text"].tolist() == ["clash"]
    clean = load(write(frame(), tmp_path / "c.csv"))
    assert data.duplicate_table(clean.ds).empty and data.summarize(clean.ds)["conflicts"]["examples"] == []


def test_stratified_sample_keeps_proportions(tmp_path):
    df = pd.DataFrame({"text": [f"t{i}" for i in range(100)], "label": ["a"] * 70 + ["b"] * 25 + ["c"] * 5})
    ds = load(write(df, tmp_path / "s.parquet")).ds
    s = data.stratified_sample(ds, 20, seed=1)
    assert len(s) == 20 and pd.Series(s["label"][:]).value_counts().to_dict() == {"a": 14, "b": 5, "c": 1}
    assert s["uid"][:] == data.stratified_sample(ds, 20, seed=1)["uid"][:]
    assert s["uid"][:] != data.stratified_sample(ds, 20, seed=2)["uid"][:]
    tiny = data.stratified_sample(ds, 3, seed=0)
    assert sorted(tiny["label"][:]) == ["a", "b", "c"]  # every class kept when n allows
    assert data.stratified_sample(ds, 500) is ds


# ---------------------------------------------------------------------------------------------------- demo, sst2, hub


def test_demo_loads_38158_rows_3_classes_with_confidence():
    res = load("demo")
    assert len(res.ds) == 38_158 and res.classes == ["negative", "neutral", "positive"]
    assert res.ds.column_names == ["uid", "text", "label", "confidence"]
    assert res.ds.features["confidence"].dtype == "float64"
    assert res.source == "demo" and res.encoding == "latin-1"
    assert len(set(res.ds["uid"][:])) == 38_158


def test_sst2_from_env_dir_and_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("WINNOW_SST2_DIR", str(tmp_path / "absent"))
    msg = error("sst2")
    assert "SST-2 is not available" in msg and "WINNOW_SST2_DIR" in msg
    folder = tmp_path / "sst2"
    folder.mkdir()
    (folder / "train.tsv").write_text('sentence\tlabel\nit \'s " great \t1\nbad \t0\n')
    (folder / "dev.tsv").write_text("sentence\tlabel\nok \t1\nmeh \t0\n")
    monkeypatch.setenv("WINNOW_SST2_DIR", str(folder))
    res = load("sst2")
    assert res.ds["text"][:] == ["it 's \" great ", "bad "] and res.classes == ["0", "1"] and res.source == "sst2"
    dev = load("sst2:dev")
    assert dev.ds["text"][:] == ["ok ", "meh "] and dev.source == "sst2:dev" and dev.split == "dev"
    assert "sst2:test" in error("sst2:valid") and load("sst2", split="dev").ds["text"][:] == ["ok ", "meh "]


@pytest.mark.skipif(not (data.sst2_dir() / "train.tsv").is_file(), reason="SST-2 not present")
def test_real_sst2_dev():
    res = load("sst2:dev")
    assert len(res.ds) == 6735 and res.classes == ["0", "1"]


def test_hub_unreachable_says_so(monkeypatch):
    def offline(name, split):
        raise ConnectionError(f"Couldn't reach '{name}' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(data, "_hub_load", offline)
    msg = error("someone/some-data")
    assert "could not be reached" in msg and "'someone/some-data'" in msg and "pass a local file" in msg


@pytest.mark.skipif(os.environ.get("HF_HUB_OFFLINE") != "1", reason="needs HF_HUB_OFFLINE=1 (no network)")
def test_hub_offline_for_real():
    assert "could not be reached" in error("winnow-test/does-not-exist")


def test_hub_dataset_with_classlabel(monkeypatch):
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["n", "p"])})
    ds = datasets.Dataset.from_dict({"text": ["a", "b"], "label": [1, 0]}, features=features)
    monkeypatch.setattr(data, "_hub_load", lambda name, split: ds)
    res = load("hf:org/set")
    assert res.ds["label"][:] == ["p", "n"] and res.format == "hub" and res.source == "org/set"
    assert any("loaded split 'train'" in w for w in res.warnings)


# ---------------------------------------------------------------------------------------------------- fingerprints and the workspace


def test_fingerprint_cheap_equals_loaded_and_tracks_bytes_and_options(tmp_path):
    p = write(frame(), tmp_path / "f.csv")
    fp = data.fingerprint_source(str(p))
    assert fp == load(p).fingerprint
    assert fp != data.fingerprint_source(str(p), text_col="text")
    folder = write(frame(), tmp_path / "folder")
    assert data.fingerprint_source(str(folder)) == load(folder).fingerprint
    p.write_text(p.read_text() + "extra,pos,0.5,s0\n")
    assert data.fingerprint_source(str(p)) != fp


def test_open_dataset_registers_once_and_reopens(ws, tmp_path):
    p = write(frame(12), tmp_path / "o.csv")
    first = data.open_dataset(ws, str(p))
    assert first.record.n_rows == 12 and first.classes == ["neg", "pos"] and first.record.text_col == "text"
    assert (first.record.dir / "data" / "state.json").is_file()
    assert first.record.meta["meta_cols"] == ["score", "src"]
    again = data.open_dataset(ws, str(p))
    assert again.dataset_id == first.dataset_id and len(ws.datasets()) == 1
    assert again.ds["uid"][:] == first.ds["uid"][:] and again.ds["text"][:] == frame(12)["text"].tolist()
    by_id = data.open_dataset(ws, f"ws:{first.dataset_id}")
    assert by_id.dataset_id == first.dataset_id and by_id.ds["uid"][:] == first.ds["uid"][:]
    sample = data.open_dataset(ws, str(p), limit=6, seed=0)
    assert sample.dataset_id != first.dataset_id and len(sample.ds) == 6 and "sample" in sample.record.name
    assert data.open_dataset(ws, str(p), limit=6, seed=0).dataset_id == sample.dataset_id
    assert set(sample.ds["uid"][:]) <= set(first.ds["uid"][:])
    sub = data.open_dataset(ws, f"ws:{first.dataset_id}", limit=6)  # same rows, same seed: the same sample
    assert sub.dataset_id == sample.dataset_id and len(ws.datasets()) == 2
    other = data.open_dataset(ws, f"ws:{first.dataset_id}", limit=6, seed=1)
    assert len(other.ds) == 6 and len(ws.datasets()) == 3
    with pytest.raises((DataError, WorkspaceError), match="no dataset 99"):
        data.open_dataset(ws, "ws:99")


def test_open_dataset_keeps_warnings_on_reopen(ws, tmp_path):
    p = dupes(tmp_path)
    with pytest.warns(WinnowWarning):
        first = data.open_dataset(ws, str(p))
    with pytest.warns(WinnowWarning) as rec:
        again = data.open_dataset(ws, str(p))
    assert again.dataset_id == first.dataset_id
    assert again.warnings == first.warnings == [str(w.message) for w in rec] and len(first.warnings) == 2


def test_open_dataset_reopen_is_fast_for_the_demo(ws):
    import time

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WinnowWarning)
        cold = data.open_dataset(ws, "demo")
        t = time.perf_counter()
        warm = data.open_dataset(ws, "demo")
        seconds = time.perf_counter() - t
    assert warm.dataset_id == cold.dataset_id and len(warm.ds) == 38_158 and "confidence" in warm.ds.column_names
    assert seconds < 1.5, seconds


def test_sst2_style_tsv_with_stray_quotes_parses_without_quoting(tmp_path):
    p = tmp_path / "s.tsv"
    p.write_text('sentence\tlabel\n"hello world\t1\nsays " hi "\t0\nplain\t1\n')
    assert load(p).ds["text"][:] == ['"hello world', 'says " hi "', "plain"]
    # ... while a TSV written with CSV quoting (pandas, csv module) is unquoted
    df = pd.DataFrame({"text": ['a"b', "plain", '"x"'], "label": ["x", "y", "x"]})
    assert load(write(df, tmp_path / "q.tsv")).ds["text"][:] == df["text"].tolist()


def test_semicolon_csv_is_sniffed(tmp_path):
    p = tmp_path / "semi.csv"
    p.write_text("text;label\nhello, world;a\nbye;b\n")
    assert load(p).ds["text"][:] == ["hello, world", "bye"]


def test_csv_module_quotes_survive(tmp_path):
    p = tmp_path / "q.csv"
    with open(p, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows([['he said "hi", then\nleft', "a"], ["b", "b"]])
    assert load(p).ds["text"][:] == ['he said "hi", then\nleft', "b"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(min_size=1, max_size=20).filter(data._visible), min_size=2, max_size=6),
       fmt=st.sampled_from(["csv", "tsv", "jsonl", "json"]))
def test_nasty_texts_round_trip_exactly(tmp_path, texts, fmt):
    df = pd.DataFrame({"text": texts, "label": ["a", "b"] * (len(texts) // 2) + ["a"] * (len(texts) % 2)})
    res = load(write(df, tmp_path / f"n.{fmt}"))
    assert res.ds["text"][:] == texts


@pytest.mark.parametrize("texts", [["0", "\t0\n"], ["0", "0\t\n"], ['say "hi"\tthere', "b\nc"]])
def test_a_tsv_whose_quoted_texts_hold_tabs_and_newlines_is_read_as_csv_quoting(tmp_path, texts):
    """pandas (and csv) quote a TSV text that holds a tab or a newline; such a file is CSV-quoted even when each of
    its physical lines has the header's number of tabs (found by the property test below)."""
    df = pd.DataFrame({"text": texts, "label": ["a", "b"]})
    assert load(write(df, tmp_path / "q.tsv")).ds["text"][:] == texts


def test_mixed_type_metadata_is_kept_as_text(tmp_path):
    p = tmp_path / "mixed.jsonl"
    p.write_text('{"text": "a", "label": "x", "extra": 1}\n{"text": "b", "label": "y", "extra": "two"}\n'
                 '{"text": "c", "label": "y"}\n')
    res = load(p)
    assert res.ds["extra"][:] == ["1", "two", None]
    assert any("'extra'" in w and "kept as text" in w for w in res.warnings)


def test_jsonl_with_unicode_line_separators_inside_strings(tmp_path):
    p = tmp_path / "u.jsonl"
    p.write_text('{"text": "a\u2028b\x85c", "label": "x"}\r\n{"text": "d", "label": "y"}\n', encoding="utf-8")
    assert load(p).ds["text"][:] == ["a\u2028b\x85c", "d"]


def test_zero_width_only_texts_are_blank(tmp_path):
    p = tmp_path / "zw.csv"
    p.write_text("text,label\nok,a\n\u200b\u200d,b\nfine,a\n\ufeff \u2060,b\n", encoding="utf-8")
    msg = error(p)
    assert "2 empty or whitespace-only" in msg and "zero-width" in msg and "rows 2, 4" in msg


def test_duplicate_id_error_quotes_the_files_own_values(tmp_path):
    p = tmp_path / "ids.csv"
    p.write_text("id,text,label\n3.0,a,x\n1,b,y\n3,c,x\n")
    msg = error(p)
    assert "'3.0' at row 1" in msg and "'3' at row 3" in msg
    p.write_text("id,text,label\n3.0,a,x\n1,b,y\n3.0,c,x\n")
    msg = error(p)
    assert "'3.0' at rows 1, 3" in msg and "'3'" not in msg.replace("'3.0'", "")
