"""How close the Fine-tune page's estimate comes to the comparison's real duration (goal: within ±30 %).

Each repeat starts from a fresh workspace holding the demo, as a new user does, and then, in one run and on the
same rows:

1. measures this machine's speed as the page's "Measure this machine's speed" button does (a
   `python -m core compare ... --estimate` process) and reads the estimate the page then shows;
2. the peer: the estimate of the calibration Winnow used before (8 timed steps on 256 rows, examples per second,
   no warm-up, a fixed 1 ms a row of set-up), measured in its own fresh process on the same rows;
3. runs the page's default comparison (`python -m core compare ...`, the command the page shows) and takes the
   duration it records (what the page reports as "it took");
4. reads the estimate again: every finished fine-tune folded its own speed into the measurement.

    python benchmarks/bench_estimate.py                 # 2 repeats, about 13 minutes on 2 cores
    python benchmarks/bench_estimate.py --repeats 1
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core import experiment  # noqa: E402
from core.workspace import Workspace  # noqa: E402

# the page's defaults: full set and random at 1,000 rows, its caps, seeds, epochs and protocol
SUBSETS = "full,random:1000"
ARGV = ["--subsets", SUBSETS, "--seeds", str(experiment.DEMO_SEEDS), "--epochs", str(experiment.DEMO_EPOCHS),
        "--protocol", "equal-steps", "--pool-max", str(experiment.DEMO_POOL_MAX),
        "--eval-max", str(experiment.DEMO_EVAL_MAX), "--eval-fraction", "0.2"]
OPTS = dict(seeds=experiment.DEMO_SEEDS, epochs=experiment.DEMO_EPOCHS, protocol="equal-steps",
            pool_max=experiment.DEMO_POOL_MAX, eval_max=experiment.DEMO_EVAL_MAX, eval_fraction=0.2)
OLD_SETUP_SECONDS_PER_ROW = 0.001


def _core(ws: Path, *args: str) -> float:
    """Run `python -m core --workspace WS ARGS` in a fresh process; its wall seconds."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "core", "--workspace", str(ws), *args], check=True, env=env, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def old_estimate(ws_path: str) -> dict[str, float]:
    """The previous calibration and arithmetic (run in its own process by `--old`): 8 timed steps on 256 of 512
    sampled rows, the speed in examples per second, a prediction pass over 128 rows, set-up at 1 ms a row."""
    import numpy as np

    from core import finetune

    ws = Workspace(ws_path)
    df = experiment._load_data(ws, 1)
    sample = df.sample(n=min(len(df), 512), random_state=0)
    texts, labels = sample["text"].tolist(), [str(v) for v in sample["label"]]
    rng = np.random.default_rng(0)
    idx = rng.choice(len(texts), size=min(len(texts), 8 * 32), replace=False)
    pidx = rng.choice(len(texts), size=min(len(texts), 4 * 32), replace=False)
    t0 = time.perf_counter()
    res = finetune.train_and_evaluate([texts[i] for i in idx], [labels[i] for i in idx],
                                      [texts[i] for i in pidx], [labels[i] for i in pidx],
                                      classes=sorted(set(labels)), epochs=1, batch_size=32, valid_fraction=0.0,
                                      max_steps=8, require_test_classes=False)
    wall = time.perf_counter() - t0
    train_s = res.steps * 32 / res.examples_per_second
    tp = experiment.Throughput(train_examples_per_second=res.examples_per_second,
                               predict_examples_per_second=res.n_test / res.eval_seconds,
                               load_seconds=max(0.0, wall - train_s - res.eval_seconds), device=res.device, key="old")
    n_rows = int(ws.dataset(1).n_rows)
    pool, n_test = experiment._pool_size(n_rows, has_eval_file=False, eval_fraction=0.2,
                                         eval_max=experiment.DEMO_EVAL_MAX, pool_max=experiment.DEMO_POOL_MAX)
    sizes = experiment.subset_sizes(ws, 1, experiment.parse_subsets(SUBSETS), n_rows=n_rows, pool=pool)
    est = experiment.estimate_seconds(sizes, seeds=experiment.DEMO_SEEDS, n_test=n_test, throughput=tp,
                                      protocol="equal-steps", epochs=experiment.DEMO_EPOCHS, batch_size=32,
                                      valid_fraction=0.0, setup_seconds=OLD_SETUP_SECONDS_PER_ROW * n_rows)
    return {"total": est["total"], "eps": res.examples_per_second}


def one_repeat(root: Path, i: int) -> dict[str, float]:
    ws_path = root / f"ws{i}"
    ws = Workspace(ws_path)
    from core import data

    data.open_dataset(ws, "demo")
    load = os.getloadavg()[0]
    calib_s = _core(ws_path, "compare", "ws:1", *ARGV, "--estimate")
    est = experiment.estimate_compare(ws, 1, SUBSETS, measure=False, **OPTS)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    old = json.loads(subprocess.run([sys.executable, __file__, "--old", str(ws_path)], check=True, env=env,
                                    capture_output=True, text=True).stdout.strip().splitlines()[-1])
    wall = _core(ws_path, "compare", "ws:1", *ARGV)
    run = Workspace(ws_path).runs("compare")[0]
    after = experiment.estimate_compare(Workspace(ws_path), 1, SUBSETS, measure=False, **OPTS)
    return {"load": load, "calib_s": calib_s, "estimate": est["total"], "eps": est["throughput"]
            ["train_examples_per_second"], "tok": est["throughput"]["train_tokens_per_second"],
            "old": old["total"], "old_eps": old["eps"], "actual": float(run.seconds or 0.0), "wall": wall,
            "after": after["total"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--old", metavar="WORKSPACE", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.old:
        print(json.dumps(old_estimate(args.old)))
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="winnow-estimate-") as tmp:
        for i in range(args.repeats):
            r = one_repeat(Path(tmp), i)
            rows.append(r)
            print(f"repeat {i + 1}: estimate {r['estimate']:.0f} s, peer {r['old']:.0f} s, actual {r['actual']:.0f} s",
                  file=sys.stderr, flush=True)
    la = os.getloadavg()
    print(f"{dt.datetime.now():%Y-%m-%d %H:%M} · {os.cpu_count()} CPUs, load average {la[0]:.1f} {la[1]:.1f} "
          f"{la[2]:.1f} · Python {platform.python_version()} · the demo (38,158 rows), `compare ws:1 "
          f"{' '.join(ARGV)}` · a fresh workspace each repeat\n")

    def err(est: float, actual: float) -> str:
        return f"{100 * (est - actual) / actual:+.0f} %"

    print("| repeat | load at start | calibration s | Winnow estimate s (examples/s, tokens/s) | peer estimate s "
          "(examples/s) | actual s | Winnow error | peer error | estimate after the run s | its error |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(rows, 1):
        print(f"| {i} | {r['load']:.1f} | {r['calib_s']:.0f} | {r['estimate']:.0f} ({r['eps']:.1f}, {r['tok']:.0f}) "
              f"| {r['old']:.0f} ({r['old_eps']:.1f}) | {r['actual']:.0f} | {err(r['estimate'], r['actual'])} "
              f"| {err(r['old'], r['actual'])} | {r['after']:.0f} | {err(r['after'], r['actual'])} |")
    print("\nerror = (estimate - actual) / actual; actual = the duration the comparison records (the page's "
          "\"it took\"); goal ±30 %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
