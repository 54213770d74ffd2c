"""Page-test fixtures: the demo workspace (tests/demo_workspace.py) built once per session, copied per test."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.workspace import Workspace
from app_text import markdown_text, shown_text  # noqa: F401  (re-exported for the page tests)
from demo_workspace import HOSTILE, build_workspace


@pytest.fixture(scope="session")
def _template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "ws"
    build_workspace(path)
    return path


@pytest.fixture
def demo_ws(_template, tmp_path, monkeypatch) -> dict:
    """A fresh copy of the demo workspace, set as WINNOW_HOME; returns facts about it."""
    path = tmp_path / "ws"
    shutil.copytree(_template, path)
    monkeypatch.setenv("WINNOW_HOME", str(path))
    ws = Workspace(path)
    ds_id = int(ws.get_setting("active_dataset"))
    from core import data

    loaded = data.open_dataset(ws, f"ws:{ds_id}")
    uids = [str(u) for u in loaded.ds["uid"]]
    texts = [str(t) for t in loaded.ds["text"]]
    values = ws.latest_run("values", dataset_id=ds_id)
    return {"ws": ws, "path": path, "dataset_id": ds_id, "uids": uids, "texts": texts,
            "labels": [str(v) for v in loaded.ds["label"]], "hostile_uid": uids[texts.index(HOSTILE)],
            "values_id": values.id if values else None}


ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app(demo_ws):
    """An AppTest of app.py on the demo workspace, already run once (the Data page)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.run()
    assert not at.exception, at.exception
    return at
