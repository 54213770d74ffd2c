"""Every page names runs and subsets by their number within the dataset and kind (issue 17: "subset 1", not
"subset 13"): Value, Map, Select, Fine-tune and Export, with a second dataset's runs in between."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("streamlit.testing.v1")

from app_text import markdown_text, shown_text  # noqa: E402


@pytest.fixture
def interleaved(demo_ws, tmp_path):
    """The demo workspace plus another dataset whose runs take ids first: the active dataset's new valuation run is
    its run 2 and its first saved subset is its subset 1, though their ids are larger."""
    from core import data
    from core.selection import select_random
    from core.selection.store import save_selection

    ws, ds_id, uids = demo_ws["ws"], demo_ws["dataset_id"], demo_ws["uids"]
    f = tmp_path / "other.csv"
    pd.DataFrame({"text": [f"other {i}" for i in range(10)], "label": ["a", "b"] * 5}).to_csv(f, index=False)
    other = data.open_dataset(ws, str(f)).dataset_id
    for _ in range(3):
        save_selection(ws, other, select_random([f"o{i}" for i in range(10)], budget=4, seed=0))
        ws.update_run(ws.create_run("values", dataset_id=other, method="random"), status="done")
    values = ws.create_run("values", dataset_id=ds_id, method="random", params={"seed": 1})
    ws.save_run_frame(values, pd.DataFrame({"uid": uids, "value": np.linspace(-1, 1, len(uids)), "stderr": np.nan,
                                            "count": 1}))
    ws.update_run(values, status="done", seconds=0.1)
    ws.set_setting(f"active_values.{ds_id}", values)
    subset = save_selection(ws, ds_id, select_random(uids, budget=50, seed=0), values_run_id=values)
    ws.update_run(subset, status="done")
    assert ws.run(values).number == 2 and values > 2 and ws.run(subset).number == 1 and subset > 1
    return dict(demo_ws, values=values, subset=subset)


def _all_text(at) -> str:
    return "\n".join([*markdown_text(at), *shown_text(at), *(str(m.label) for m in at.metric)])


def test_pages_show_numbers_within_the_dataset(app, interleaved):
    values, subset = interleaved["values"], interleaved["subset"]
    app.run()
    assert "run 2: random" in [t.value for t in app.sidebar.text]  # the sidebar's active valuation

    app.switch_page("pages/2_Value.py").run()
    assert not app.exception, app.exception
    shown = app.selectbox(key="value.shown")
    assert shown.value == values and shown.format_func(values).startswith("run 2: random")
    assert 2 in app.dataframe[0].value["run"].tolist() and values not in app.dataframe[0].value["run"].tolist()

    app.switch_page("pages/3_Map.py").run()
    assert not app.exception, app.exception
    assert "values: random, run 2" in _all_text(app)

    app.switch_page("pages/5_Select.py").run()
    app.selectbox(key="select.strategy").set_value("random").run()
    assert not app.exception, app.exception
    assert "values of valuation run 2 (random)" in _all_text(app)
    assert {m.label for m in app.metric} >= {"vs saved subset 1"}
    assert app.dataframe[-1].value["subset"].tolist() == [1]
    assert app.dataframe[-1].value["values run"].tolist() == [2]  # the valuation it used, by number too

    app.switch_page("pages/6_Fine-tune.py").run()
    assert not app.exception, app.exception
    sel = app.multiselect(key="finetune.selections")
    assert sel.format_func(subset).startswith("subset 1: random")

    app.switch_page("pages/7_Export.py").run()
    app.radio(key="export.what").set_value("A saved subset").run()
    assert not app.exception, app.exception
    box = app.selectbox(key="export.subset")
    assert box.value == subset and box.format_func(subset).startswith("subset 1: random")
    assert app.text_input(key="export.path").value.endswith("-subset1.csv")
    assert f"subset {subset}" not in _all_text(app)
