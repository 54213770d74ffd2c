"""Server time per interaction (Streamlit AppTest, one script run each), Winnow beside a minimal page (the floor).

The workspace: the demo tweets (all 38,158 by default) with fake embeddings, KNN-Shapley values and a map
(tests/demo_workspace.py), copied to a temp folder and given 40,000 recorded decisions (80 batches of 500), the
size at which the old decision replay cost a second per reader. Each interaction is one script run, timed around
`AppTest.run` (which includes AppTest's own parsing of the page, also in the floor): the user's whole wait on the
server for that click. A lasso or box is injected as the selection payload chromium sends: for each point inside
the shape, every per-point array of the trace (x, y, customdata, marker colour, text when present), as plotly does.

The floor is a page holding only the same `st.plotly_chart` (the same figures, cached) and a selection table of the
selected rows' texts. AppTest runs whole pages: on the map a lasso reruns a fragment in the real server, so these
figures are an upper bound there; Remove, Keep and the sidebar's Undo run the selection panel's fragment alone, as
the server does (`Session.run(fragment=...)`). `--profile DIR` writes a cProfile file per interaction and prints the top
functions of the slowest. Beside each wall time, the CPU time of the script thread (the same run): steadier than
wall time on a busy machine, which is where provisional figures get taken.

    python benchmarks/bench_server.py                              # full demo (builds a PCA map first)
    python benchmarks/bench_server.py --workspace /tmp/wsfull      # reuse a built workspace (copied, not changed)
    python benchmarks/bench_server.py --n 2000 --decisions 4000
"""
from __future__ import annotations

import argparse
import base64
import cProfile
import datetime as dt
import functools
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from _floor import _chart, floor_files  # noqa: E402  (benchmarks/ is on the path of a script run from it)

def _decode(v):
    """A plotly array from a JSON spec (a list, or {'dtype', 'bdata'} base64)."""
    import numpy as np

    if isinstance(v, dict) and "bdata" in v:
        arr = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        return arr.reshape(v["shape"]) if "shape" in v and isinstance(v["shape"], list) else arr
    return v


def selection_payload(at, shape: str, fraction: float) -> tuple[str, str, int]:
    """(chart widget id, payload JSON, points) for a lasso (ellipse) or box around the middle of the shown points,
    with every per-point array value of the trace for each selected point, as chromium sends it."""
    import numpy as np

    proto = _chart(at)
    spec = json.loads(proto.spec)
    tr = spec["data"][0]
    x, y = np.asarray(_decode(tr["x"]), float), np.asarray(_decode(tr["y"]), float)
    cx, cy = np.nanmedian(x), np.nanmedian(y)
    rx = (np.nanquantile(x, 0.99) - np.nanquantile(x, 0.01)) * fraction / 2
    ry = (np.nanquantile(y, 0.99) - np.nanquantile(y, 0.01)) * fraction / 2
    if shape == "lasso":
        inside = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1
        t = np.linspace(0, 2 * np.pi, 17)
        region = {"lasso": [{"xref": "x", "yref": "y", "x": (cx + rx * np.cos(t)).tolist(),
                             "y": (cy + ry * np.sin(t)).tolist()}], "box": []}
    else:
        inside = (np.abs(x - cx) <= rx) & (np.abs(y - cy) <= ry)
        region = {"box": [{"xref": "x", "yref": "y", "x": [cx - rx, cx + rx], "y": [cy - ry, cy + ry]}], "lasso": []}
    idx = np.flatnonzero(inside)
    arrays = {"customdata": _decode(tr.get("customdata"))}
    if isinstance(tr.get("text"), (list, dict)):
        arrays["text"] = _decode(tr["text"])
    mc = (tr.get("marker") or {}).get("color")
    if isinstance(mc, (list, dict)):
        arrays["marker.color"] = _decode(mc)
    points = []
    for i in idx.tolist():
        p = {"curve_number": 0, "point_number": i, "point_index": i, "x": float(x[i]), "y": float(y[i])}
        for k, arr in arrays.items():
            if arr is not None:
                v = arr[i]
                p[k] = v.item() if hasattr(v, "item") else v
        points.append(p)
    payload = {"selection": {"points": points, "point_indices": idx.tolist(), **region}}
    return proto.id, json.dumps(payload), len(idx)


def payload_cost(payload: str, repeat: int = 5) -> dict[str, float]:
    """Milliseconds (the fastest of `repeat`) of what Streamlit does with a selection payload on every script run
    while the selection stands: parse it (the widget's deserializer), deep-copy the value it returns
    (SessionState.register_widget) and serialise it again (get_serialized) - beside the same payload without its
    `customdata` (the row positions; point_index maps to rows as well), to show what one array fewer saves."""
    import copy

    def once(text: str) -> tuple[float, float, float]:
        t0 = time.perf_counter()
        value = json.loads(text)
        t1 = time.perf_counter()
        copy.deepcopy(value)
        t2 = time.perf_counter()
        json.dumps(value)
        return t1 - t0, t2 - t1, time.perf_counter() - t2

    slim = json.loads(payload)
    for point in slim["selection"]["points"]:
        point.pop("customdata", None)
    out = {"MB": len(payload) / 1e6}
    for name, text in (("payload", payload), ("without customdata", json.dumps(slim))):
        best = [min(parts) for parts in zip(*(once(text) for _ in range(repeat)))]
        out[name] = 1000 * sum(best)
        if name == "payload":
            out.update(parse=1000 * best[0], deepcopy=1000 * best[1], serialise=1000 * best[2])
    return out


_PROFILE: dict[str, cProfile.Profile | None] = {"current": None}
_CPU = {"seconds": 0.0}  # CPU time of the script thread, summed over runs (steady on a busy machine, unlike wall)


def _profile_script_thread() -> None:
    """cProfile the script thread and add up its CPU time (AppTest runs the page in a thread of its own)."""
    from streamlit.runtime.scriptrunner import script_runner as sr

    if getattr(sr.ScriptRunner, "_bench_wrapped", False):
        return
    orig = sr.ScriptRunner._run_script

    def wrapped(self, *a, **k):  # type: ignore[no-untyped-def]
        prof = _PROFILE["current"]
        if prof is not None:
            prof.enable()
        cpu = time.thread_time()
        try:
            return orig(self, *a, **k)
        finally:
            _CPU["seconds"] += time.thread_time() - cpu
            if prof is not None:
                prof.disable()

    sr.ScriptRunner._run_script = wrapped
    sr.ScriptRunner._bench_wrapped = True


class Session:
    """An AppTest with a plotly selection that persists across runs (AppTest does not track the chart widget)."""

    def __init__(self, script: Path, profile_dir: Path | None, tag: str) -> None:
        from streamlit.runtime.scriptrunner.script_cache import ScriptCache
        from streamlit.testing.v1 import AppTest, app_test

        # AppTest compiles every page afresh on each run (a new ScriptCache per run); a server compiles each once.
        shared = ScriptCache()
        app_test.ScriptCache = lambda: shared  # type: ignore[attr-defined]
        self.at = AppTest.from_file(str(script), default_timeout=600)
        self.selection: tuple[str, str] | None = None
        self.profile_dir, self.tag = profile_dir, tag
        self.cpu = 0.0

    def run(self, name: str, fragment: str | None = None) -> float:
        """Seconds of wall time of one script run; its CPU seconds (script thread) are left in `self.cpu`.

        `fragment`: the key of a fragment (`@st.fragment(key=...)`) to run alone, as the server does when a widget
        inside it is used (AppTest itself always runs the whole page); its elements replace the tree's, so run the
        whole page again before looking for widgets outside it."""
        from streamlit.proto.WidgetStates_pb2 import WidgetState
        from streamlit.testing.v1 import local_script_runner

        at = self.at
        tree = getattr(at, "_tree", None)
        states = tree.get_widget_states() if tree is not None and hasattr(tree, "get_widget_states") else None
        if self.selection is not None and states is not None:
            cid, payload = self.selection
            ids = {c.proto.id for c in at.get("plotly_chart")}
            if cid in ids:  # the same chart (a new figure is a new widget: its selection is gone)
                states.widgets.append(WidgetState(id=cid, string_value=payload))
            else:
                self.selection = None
        rerun_data = local_script_runner.RerunData
        if fragment is not None:  # the browser sends every widget's state, the chart's selection too
            fid = at._fragment_storage.resolve_target(fragment)[0]
            local_script_runner.RerunData = functools.partial(rerun_data, fragment_id=fid)  # type: ignore[misc]
        prof = cProfile.Profile() if self.profile_dir else None
        _profile_script_thread()
        _PROFILE["current"] = prof
        cpu = _CPU["seconds"]
        t0 = time.perf_counter()
        try:
            at._run(states) if states is not None else at.run()
        finally:
            local_script_runner.RerunData = rerun_data  # type: ignore[misc]
        _PROFILE["current"] = None
        sec = time.perf_counter() - t0
        self.cpu = _CPU["seconds"] - cpu
        if at.exception:
            raise RuntimeError(f"{self.tag} / {name}: {at.exception[0].value}")
        if prof:
            self.profile_dir.mkdir(parents=True, exist_ok=True)
            prof.dump_stats(self.profile_dir / f"{self.tag}-{name.replace(' ', '_').replace('/', '-')}.prof")
        return sec

    def select(self, shape: str, fraction: float) -> int:
        cid, payload, n = selection_payload(self.at, shape, fraction)
        self.selection = (cid, payload)
        return n


def prepare_workspace(args: argparse.Namespace) -> tuple[Path, float]:
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    from demo_workspace import build_workspace

    t0 = time.perf_counter()
    src = Path(args.workspace) if args.workspace else None
    if src is None or not (src / "winnow.db").exists():
        src = src or Path(tempfile.mkdtemp(prefix="winnow-bench-server-")) / "template"
        build_workspace(src, n=args.n, projection=args.projection)
    dest = Path(tempfile.mkdtemp(prefix="winnow-bench-server-")) / "ws"
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("jobs", "locks"))
    from core.workspace import Workspace

    ws = Workspace(dest)
    ds_id = int(ws.get_setting("active_dataset"))
    from core import data
    import numpy as np

    uids = [str(u) for u in data.open_dataset(ws, f"ws:{ds_id}").ds["uid"]]
    rng = np.random.default_rng(0)
    per = 500
    for b in range(args.decisions // per):
        pick = rng.choice(len(uids), size=per, replace=False)
        action = ("remove", "keep", "clear", "remove")[b % 4]
        ws.decide(ds_id, [uids[i] for i in pick], action, reason=f"bench batch {b}", source="lasso")
    return dest, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=None, help="demo rows (a stratified sample); default: all 38,158")
    ap.add_argument("--projection", choices=("auto", "umap", "pca"), default="pca",
                    help="map of a freshly built workspace (server time does not depend on it; default pca)")
    ap.add_argument("--workspace", default=None, help="a built workspace to copy (else one is built)")
    ap.add_argument("--decisions", type=int, default=40_000, help="decision events recorded first (default 40000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per interaction; the median is shown (default 3)")
    ap.add_argument("--app", default=str(ROOT / "app.py"), help="the app to time (default: this checkout's)")
    ap.add_argument("--profile", default=None, metavar="DIR", help="write a cProfile file per interaction here")
    ap.add_argument("--browser", action=argparse.BooleanOptionalAction, default=True,
                    help="also time the round trips in chromium (benchmarks/bench_map.py; default on when "
                         "/usr/bin/chromium exists)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    ws_path, prep = prepare_workspace(args)
    os.environ["WINNOW_HOME"] = str(ws_path)
    app_root = Path(args.app).resolve().parent
    sys.path.insert(0, str(app_root))
    prof_dir = Path(args.profile) if args.profile else None
    results: dict[str, dict[str, str]] = {}
    cpu: dict[str, dict[str, str]] = {}
    notes: dict[str, str] = {}

    def timed(sess: Session, name: str, before=None, repeat: int = args.repeat, undo=None,
              fragment: str | None = None) -> None:
        times, cpus = [], []
        for _ in range(repeat):
            if before is not None:
                before()
            times.append(sess.run(name, fragment))
            cpus.append(sess.cpu)
            if undo is not None:
                undo()
        results.setdefault(name, {})[sess.tag] = f"{statistics.median(times) * 1000:,.0f}"
        cpu.setdefault(name, {})[sess.tag] = f"{statistics.median(cpus) * 1000:,.0f}"

    w = Session(Path(args.app), prof_dir, "winnow")
    at = w.at
    t = w.run("open the Data page (cold: loads the dataset)")
    results["open the app (cold process)"] = {"winnow": f"{t * 1000:,.0f}"}
    cpu["open the app (cold process)"] = {"winnow": f"{w.cpu * 1000:,.0f}"}
    at.switch_page("pages/3_Map.py")
    t = w.run("open the Map (cold caches)")
    results["open the Map (cold caches)"] = {"winnow": f"{t * 1000:,.0f}"}
    cpu["open the Map (cold caches)"] = {"winnow": f"{w.cpu * 1000:,.0f}"}
    timed(w, "Map rerun, nothing changed")
    timed(w, "recolour (label)", before=lambda: at.radio(key="map.colour").set_value("label"),
          undo=lambda: at.radio(key="map.colour").set_value("value") and w.run("recolour back"))
    n_lasso = w.select("lasso", 0.5)
    notes["lasso"] = f"{n_lasso:,} points"
    cost = payload_cost(w.selection[1])
    timed(w, "lasso -> selection table")
    n_box = w.select("box", 0.2)
    notes["box"] = f"{n_box:,} points"
    timed(w, "box -> selection table")
    w.select("lasso", 0.5)
    w.run("lasso again")
    # The decision buttons and the sidebar's Undo on the Map live in the selection panel's fragment: the server
    # runs that fragment alone (then the whole page again here, untimed, to find the next button)
    timed(w, "Remove the lasso's rows", before=lambda: at.button(key="map.remove").click(), repeat=1,
          fragment="map.panel")
    w.run("whole page after Remove")
    timed(w, "Keep the lasso's rows", before=lambda: at.button(key="map.keep").click(), repeat=1,
          fragment="map.panel")
    w.run("whole page after Keep")
    undo_key = next((b.key for b in at.button if str(b.key).startswith("sidebar.undo")), None)  # (the map's own)
    if undo_key is not None:
        timed(w, "Undo in the sidebar (sidebar update)", before=lambda: at.button(key=undo_key).click(), repeat=1,
              fragment="map.panel")
    w.run("whole page after Undo")
    w.selection = None
    label = sorted({str(v) for v in at.multiselect(key="map.labels").options})[0]
    timed(w, "filter (one label)", before=lambda: at.multiselect(key="map.labels").set_value([label]),
          undo=lambda: at.multiselect(key="map.labels").set_value([]) and w.run("unfilter"))

    at.switch_page("pages/4_Inspect.py")
    w.run("open Inspect")
    timed(w, "Inspect page (open, warm)")

    def inspect_key() -> None:
        first = next(b for b in at.button if str(b.key).startswith("inspect.remove."))
        first.click()
    timed(w, "Inspect key X (remove the first card)", before=inspect_key)

    at.switch_page("pages/5_Select.py")
    w.run("open Select")
    sel = [b for b in at.selectbox if b.key == "select.strategy"]
    if sel and not [s for s in at.slider if s.key == "select.fraction"]:  # no clusters: a strategy without them
        for opt in sel[0].options:
            at.selectbox(key="select.strategy").set_value(opt)
            w.run("Select strategy")
            if [s for s in at.slider if s.key == "select.fraction"]:
                notes["select"] = f"strategy {opt}"
                break
    sliders = [s for s in at.slider if s.key == "select.fraction"]
    if sliders:
        vals = iter([0.4, 0.5, 0.6, 0.35, 0.45])
        timed(w, "Select slider -> preview", before=lambda: at.slider(key="select.fraction").set_value(next(vals)))

    # the floor: the same chart alone
    tmp = Path(tempfile.mkdtemp(prefix="winnow-floor-"))
    at.switch_page("pages/3_Map.py")
    w.run("back to the Map")
    os.environ.update(floor_files(at, tmp, ws_path))
    f = Session(tmp / "floor_app.py", prof_dir, "floor")
    t = f.run("open (cold)")
    results["open the Map (cold caches)"]["floor"] = f"{t * 1000:,.0f}"
    cpu["open the Map (cold caches)"]["floor"] = f"{f.cpu * 1000:,.0f}"
    timed(f, "Map rerun, nothing changed")
    timed(f, "recolour (label)", before=lambda: f.at.radio(key="colour").set_value("label"),
          undo=lambda: f.at.radio(key="colour").set_value("value") and f.run("recolour back"))
    f.select("lasso", 0.5)
    timed(f, "lasso -> selection table")
    f.select("box", 0.2)
    timed(f, "box -> selection table")

    load = os.getloadavg()
    print(f"{dt.datetime.now():%Y-%m-%d %H:%M} · {os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f} "
          f"{load[2]:.1f} · Python {platform.python_version()} · AppTest, median of {args.repeat} · "
          f"{args.decisions:,} decisions recorded · workspace ready in {prep:.0f} s · lasso {notes.get('lasso')}, "
          f"box {notes.get('box')}")
    print()
    print("| interaction | Winnow server ms | floor server ms (chart alone) | Winnow / floor "
          "| Winnow CPU ms (script thread) | floor CPU ms |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        a, b = r.get("winnow", "-"), r.get("floor", "-")
        ratio = "-"
        if a != "-" and b != "-":
            ratio = f"{float(a.replace(',', '')) / max(float(b.replace(',', '')), 1e-9):.1f}x"
        c = cpu.get(name, {})
        print(f"| {name} | {a} | {b} | {ratio} | {c.get('winnow', '-')} | {c.get('floor', '-')} |")
    print()
    print(f"The lasso's payload alone ({n_lasso:,} points, {cost['MB']:.1f} MB of JSON), as Streamlit "
          f"handles it on every run while the selection stands: {cost['payload']:,.0f} ms (parse "
          f"{cost['parse']:,.0f}, deep copy {cost['deepcopy']:,.0f}, serialise {cost['serialise']:,.0f}; fastest of "
          f"5); without customdata: {cost['without customdata']:,.0f} ms.")
    sys.stdout.flush()  # (the server table first: the browser part takes minutes)
    browser: dict = {}
    if args.browser and Path("/usr/bin/chromium").exists():
        sys.path.insert(0, str(ROOT / "benchmarks"))
        import bench_map

        copy = Path(tempfile.mkdtemp(prefix="winnow-bench-browser-")) / "ws"
        shutil.copytree(ws_path, copy, ignore=shutil.ignore_patterns("jobs", "locks"))
        browser = bench_map.browser_table(copy, tmp, dict(os.environ), max(1, min(args.repeat, 2)))
        shutil.rmtree(copy.parent, ignore_errors=True)

    if browser:
        w, f = browser["winnow"], browser.get("floor", {})
        print()
        print(f"Browser round trips (chromium --headless, software WebGL, a fresh server each; "
              f"{w.get('points drawn', 0):,} points, lasso {w.get('lasso points')}, box {w.get('box points')}):")
        print()
        bench_map.print_table(w, f)
    if prof_dir:
        worst = max((k for k in results if "cold" not in k and "open" not in k),
                    key=lambda k: float(results[k].get("winnow", "0").replace(",", "") or 0))
        path = prof_dir / f"winnow-{worst.replace(' ', '_').replace('/', '-')}.prof"
        if path.exists():
            out = io.StringIO()
            pstats.Stats(str(path), stream=out).sort_stats("cumulative").print_stats(25)
            print(f"\nProfile of the slowest interaction ({worst}):\n")
            print(out.getvalue()[-6000:])
    shutil.rmtree(ws_path.parent, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
