"""Bad input never crashes: every malformed file gives exit 2 and one line `winnow: error: ...` (issue 12 §5)."""
from __future__ import annotations

import gzip
import io
import itertools
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.__main__ import main

_counter = itertools.count()


def run_info(tmp_path: Path, path: Path, *extra: str) -> int:
    return main(["--workspace", str(tmp_path / "ws"), "info", str(path), *extra])


def one_error_line(capsys, path: Path) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("winnow: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    assert path.name in errors[0], errors[0]
    return errors[0]


def good_csv(n: int = 4, sep: str = ",") -> str:
    return "".join(f"{a}{sep}{b}\n" for a, b in [("text", "label")] + [(f"t{i}", "ab"[i % 2]) for i in range(n)])


def good_parquet() -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": ["a", "b", "c"], "label": ["x", "y", "x"]}), buf)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------ named cases


def test_ragged_row_is_an_error_naming_the_row_or_skipped_with_a_warning(tmp_path, capsys):
    p = tmp_path / "rag.csv"
    p.write_text("text,label\nhello,world,pos\nfine,neg\nok,pos\n")
    assert run_info(tmp_path, p) == 2
    msg = one_error_line(capsys, p)
    assert "row 1" in msg and "more fields than the header" in msg and "--skip-bad-rows" in msg
    assert run_info(tmp_path, p, "--skip-bad-rows", "--json") == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["rows"] == 2
    assert "winnow: warning:" in out.err and "left out row 1" in out.err
    t = tmp_path / "rag.tsv"
    t.write_text("text\tlabel\na\tx\nb\tc\ty\nd\ty\n")
    assert run_info(tmp_path, t) == 2
    assert "row 2" in one_error_line(capsys, t)


@pytest.mark.parametrize("name, content, words", [
    ("deep.json", "[" * 2000 + "]" * 2000, "nested too deeply"),
    ("deep.jsonl", '{"text": "a", "label": "x"}\n{"text": ' + "[" * 2000 + "]" * 2000 + ', "label": "y"}\n',
     "line 2 of the file is nested too deeply"),
    ("sur.json", '[{"text": "a", "label": "x"}, {"text": "b\\ud800", "label": "y"}]', "row 2, column 'text'"),
    ("sur.jsonl", '{"text": "a", "label": "x"}\n{"text": "\\udc00b", "label": "y"}\n', "lone surrogate"),
    ("hdr.csv", '"te\nxt",label\na,x\nb,y\n', "rename the column 'te\\nxt'"),
])
def test_named_bad_text_files(tmp_path, capsys, name, content, words):
    p = tmp_path / name
    p.write_text(content, encoding="utf-8")
    assert run_info(tmp_path, p) == 2
    assert words in one_error_line(capsys, p)


def test_corrupt_gzip_and_damaged_parquet(tmp_path, capsys):
    gz = gzip.compress(good_csv(50).encode())
    p = tmp_path / "bad.csv.gz"
    p.write_bytes(gz[:10] + bytes(b ^ 0x5A for b in gz[10:30]) + gz[30:])
    assert run_info(tmp_path, p) == 2
    assert "not a valid gzip file" in one_error_line(capsys, p)
    good = good_parquet()
    foot = tmp_path / "foot.parquet"
    foot.write_bytes(good[:-8] + (2 ** 31 - 1).to_bytes(4, "little") + b"PAR1")  # footer length past the start
    assert run_info(tmp_path, foot) == 2
    assert "damaged or truncated" in one_error_line(capsys, foot)
    dup = tmp_path / "dup.parquet"
    pq.write_table(pa.table([pa.array(["a", "b"]), pa.array(["x", "y"]), pa.array([1, 2])],
                            names=["text", "label", "label"]), dup)
    assert run_info(tmp_path, dup) == 2
    msg = one_error_line(capsys, dup)
    assert "duplicate column names ('label')" in msg and "__fragment_index" not in msg


# ------------------------------------------------------------------------------------------------ property


@st.composite
def malformed(draw):
    """(file name, bytes) of a file of some supported format that Winnow must refuse."""
    fmt = draw(st.sampled_from(["csv", "tsv", "json", "jsonl", "parquet", "csv.gz"]))
    n = draw(st.integers(2, 6))
    if fmt in ("csv", "tsv"):
        sep = "," if fmt == "csv" else "\t"
        text = good_csv(n, sep)
        lines = text.splitlines(keepends=True)
        kinds = ["ragged", "bad_byte", "no_label", "blank_text", "empty", "header_only", "one_class"]
        kind = draw(st.sampled_from(kinds + (["unclosed_quote"] if fmt == "csv" else [])))  # TSV quotes may be text
        row = draw(st.integers(1, n))
        if kind == "ragged":
            extra = sep.join(["x"] * draw(st.integers(1, 3)))
            lines[row] = lines[row].rstrip("\n") + sep + extra + "\n"
            return f"{fmt}", "".join(lines).encode()
        if kind == "bad_byte":
            raw = text.encode()
            at = draw(st.integers(0, len(raw)))
            return fmt, raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\x80\x80"])) + raw[at:]
        if kind == "unclosed_quote":
            lines[row] = '"' + lines[row]
            return fmt, "".join(lines).encode()
        if kind == "no_label":
            return fmt, "".join(ln.split(sep)[0] + "\n" for ln in lines).encode()
        if kind == "blank_text":
            blank = draw(st.sampled_from(["", " ", "\u200b", "\u200b\u200d", "\ufeff "]))
            lines[row] = blank + sep + lines[row].split(sep, 1)[1]
            return fmt, "".join(lines).encode()
        if kind == "empty":
            return fmt, draw(st.sampled_from([b"", b"\n", b"   \n\n"]))
        if kind == "header_only":
            return fmt, lines[0].encode()
        return fmt, "".join([lines[0]] + [f"t{i}{sep}same\n" for i in range(n)]).encode()
    if fmt == "json":
        recs = json.dumps([{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(n)])
        kind = draw(st.sampled_from(["truncated", "deep", "surrogate", "scalar", "not_objects"]))
        if kind == "truncated":
            return fmt, recs[: draw(st.integers(1, len(recs) - 1))].encode()
        if kind == "deep":
            d = draw(st.integers(1500, 3000))
            return fmt, ("[" * d + "]" * d).encode()
        if kind == "surrogate":
            return fmt, recs.replace(f'"t{draw(st.integers(0, n - 1))}"',
                                     '"x' + draw(st.sampled_from(["\\ud800", "\\udfff", "\\udbff"])) + '"').encode()
        if kind == "scalar":
            return fmt, draw(st.sampled_from([b"3", b'"text"', b"null", b"true"]))
        return fmt, json.dumps([1, "a", None][: draw(st.integers(1, 3))]).encode()
    if fmt == "jsonl":
        lines = [json.dumps({"text": f"t{i}", "label": "ab"[i % 2]}) for i in range(n)]
        row = draw(st.integers(0, n - 1))
        kind = draw(st.sampled_from(["truncated", "deep", "surrogate", "missing_text"]))
        if kind == "truncated":
            lines[row] = lines[row][: draw(st.integers(1, len(lines[row]) - 1))]
        elif kind == "deep":
            d = draw(st.integers(1500, 3000))
            lines[row] = '{"text": ' + "[" * d + "]" * d + ', "label": "a"}'
        elif kind == "surrogate":
            lines[row] = lines[row].replace(f'"t{row}"', '"\\ud83d"')
        else:
            lines[row] = json.dumps({"label": "a"})
        return fmt, ("\n".join(lines) + "\n").encode()
    if fmt == "parquet":
        good = good_parquet()
        kind = draw(st.sampled_from(["random", "truncated", "duplicate"]))
        if kind == "random":
            return fmt, draw(st.binary(min_size=1, max_size=64))
        if kind == "truncated":
            return fmt, good[: draw(st.integers(1, len(good) - 1))]
        buf = io.BytesIO()
        name = draw(st.sampled_from(["text", "label"]))
        pq.write_table(pa.table([pa.array(["a", "b"]), pa.array(["x", "y"]), pa.array([1, 2])],
                                names=["text", "label", name]), buf)
        return fmt, buf.getvalue()
    gz = gzip.compress(good_csv(n).encode())
    kind = draw(st.sampled_from(["flipped", "truncated", "not_gzip"]))
    if kind == "flipped":  # in the checksum or length trailer: always detected (a flip in the stream may not be)
        at = draw(st.integers(len(gz) - 8, len(gz) - 1))
        return fmt, gz[:at] + bytes([gz[at] ^ draw(st.integers(1, 255))]) + gz[at + 1:]
    if kind == "truncated":
        return fmt, gz[: draw(st.integers(1, len(gz) - 1))]
    return fmt, b"plain text, not gzip\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(case=malformed())
def test_any_malformed_file_gives_one_error_line(tmp_path, capsys, case):
    fmt, content = case
    p = tmp_path / f"bad{next(_counter)}.{fmt}"
    p.write_bytes(content)
    capsys.readouterr()
    rc = run_info(tmp_path, p)
    err_line = one_error_line(capsys, p)
    assert rc == 2 and err_line.startswith("winnow: error: ")


def test_library_warnings_reach_the_user_in_winnow_words(capsys):
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from core.__main__ import _show_warning

    old = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = _show_warning
            X = np.random.default_rng(0).normal(size=(60, 5))
            for _ in range(3):  # the same warning from a loop is said once
                LogisticRegression(max_iter=1).fit(X, (X[:, 0] > 0).astype(int))
            np.log(np.zeros(2))
    finally:
        warnings.showwarning = old
    err = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("winnow: warning: ") for line in err), err
    assert sum("stopped before fully converging" in line for line in err) == 1
    assert sum("numeric step met invalid or extreme values" in line for line in err) == 1
    assert ConvergenceWarning  # the scikit-learn class it rewords
