"""int8 embeddings against float32 on the valuation benchmark: the same rows, flips and seeds, both precisions side by
side in one run, so the default precision is decided by the rule of issue 17: the int8 path becomes the default if,
and only if, the ROC-AUC for the flipped rows stays within 0.005 of the float32 path on every data set (here: for
every method in the table, the default TS-DShapley first).

    nice -n 10 python benchmarks/bench_int8.py                      # SST-2 2k and 10k, demo 5k, 10 % and 30 % flips
    python benchmarks/bench_int8.py --sizes 2000 --datasets sst2 --noise 0.1 --methods ts_dshapley

The data sets, flips and seeds are `bench_valuation.py`'s own (its `sst2`, `demo` and row selection); only the
embedding precision differs. Embeddings go through `core.embed.embed_texts` and its cache ($WINNOW_HOME/cache), so a
second run embeds nothing. TMC-Shapley, the budget, TMC-agreement, removal and human tables are left out (slow, and
not part of the AUC table the rule reads). One core per method, as in bench_valuation.py.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

import bench_valuation as bv  # noqa: E402
from core.valuation import flip_labels, value_dataset  # noqa: E402
from core.valuation.audit import detection_scores  # noqa: E402
from core.valuation.consensus import combine  # noqa: E402

TOLERANCE = 0.005  # issue 17: int8 becomes the default only if every ROC-AUC stays within this of float32
DEFAULT_METHODS = ("ts_dshapley", "label_quality", "knn_shapley", "data_oob", "loo")
CONSENSUS = "consensus, equal weights"
MEMBERS = ("label_quality", "knn_shapley", "data_oob", "ts_dshapley")


def embedder(precision: str, seconds: dict[str, float]):
    """bench_valuation's `embed`, through core.embed at `precision` (time spent added to seconds[precision])."""
    from core.embed import embed_texts

    def embed(texts: list[str]) -> np.ndarray:
        t0 = time.perf_counter()
        X = np.asarray(embed_texts(texts, precision=precision), dtype=np.float32)
        seconds[precision] = seconds.get(precision, 0.0) + time.perf_counter() - t0
        return X
    return embed


def load(precision: str, args, seconds: dict[str, float]) -> list[tuple]:
    """[(data set, rows, X, y, n_classes, valid)] for one precision: bench_valuation's rows, selection and seeds."""
    bv.embed = embedder(precision, seconds)  # sst2() and demo() look `embed` up when called
    sets = args.datasets.split(",")
    out = []
    if "sst2" in sets:
        X_all, y_all, valid, _ = bv.sst2(max(args.sizes), args.valid_n, args.seed)
        for n in sorted(args.sizes):
            sel = np.sort(np.random.default_rng(args.seed + n).permutation(len(y_all))[:n]) if n < len(y_all) \
                else np.arange(len(y_all))
            out.append(("SST-2", n, X_all[sel], y_all[sel], 2, valid))
    if "demo" in sets:
        Xd, yd, classes, _ = bv.demo(args.demo_n, args.seed)
        out.append(("demo tweets", len(yd), Xd, yd, len(classes), None))
    return out


def aucs(X, y, n_classes, valid, noise, methods, seed) -> dict[str, tuple[float, float]]:
    """{method: (ROC-AUC for the flipped rows, seconds)} on one noisy data set."""
    y_noisy, flipped = flip_labels(y, noise, n_classes=n_classes, seed=seed)
    uids = np.array([f"r{i}" for i in range(len(y))])
    out, got = {}, {}
    for m in methods:
        opts = {"n_jobs": 1} if m == "ts_dshapley" else {}
        t0 = time.perf_counter()
        v = value_dataset(X, y_noisy, uids, method=m, valid=valid, seed=seed, **opts)
        out[m.replace("_", "-")] = (detection_scores(v.values, flipped)["auc"], time.perf_counter() - t0)
        got[m] = v
    if all(m in got for m in MEMBERS):
        cons = combine([got[m] for m in MEMBERS])
        out[CONSENSUS] = (detection_scores(cons.values, flipped)["auc"],
                          sum(out[m.replace("_", "-")][1] for m in MEMBERS))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000], help="SST-2 training rows")
    ap.add_argument("--demo-n", type=int, default=5000)
    ap.add_argument("--valid-n", type=int, default=1000, help="dev.tsv rows for valuation")
    ap.add_argument("--noise", type=float, nargs="+", default=[0.1, 0.3], help="shares of labels flipped")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--datasets", default="sst2,demo")
    ap.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                    help="valuation methods (the equal-weight consensus is added when its four members are run)")
    args = ap.parse_args()

    start = time.perf_counter()
    load0 = os.getloadavg()
    emb_seconds: dict[str, float] = {}
    data = {p: load(p, args, emb_seconds) for p in ("float32", "int8")}
    cos = []
    for (name, n, Xf, *_), (_, _, Xi, *_) in zip(data["float32"], data["int8"]):
        c = np.sum(Xf * Xi, axis=1) / (np.linalg.norm(Xf, axis=1) * np.linalg.norm(Xi, axis=1))
        cos.append(f"{name} {n:,}: cosine int8 vs float32 mean {c.mean():.4f}, min {c.min():.4f}")
    rows = []
    for noise in args.noise:
        for (name, n, Xf, y, k, vf), (_, _, Xi, yi, _, vi) in zip(data["float32"], data["int8"]):
            assert np.array_equal(y, yi)
            a = aucs(Xf, y, k, vf, noise, args.methods, args.seed)
            b = aucs(Xi, y, k, vi, noise, args.methods, args.seed)
            for m in a:
                rows.append((name, n, noise, m, a[m][0], b[m][0], a[m][1], b[m][1]))
                print(f"  {name} {n} {noise:.0%} {m}: float32 {a[m][0]:.4f} int8 {b[m][0]:.4f}", file=sys.stderr,
                      flush=True)
    load1 = os.getloadavg()

    import sklearn

    print(f"{time.strftime('%Y-%m-%d %H:%M')} · {os.cpu_count()} CPUs · load average before "
          f"{load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, after {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} · "
          f"numpy {np.__version__} · scikit-learn {sklearn.__version__} · seed {args.seed} · embedding "
          + ", ".join(f"{p} {s:.0f} s" for p, s in emb_seconds.items()) + " (0 s: from the cache)")
    print()
    for line in cos:
        print(f"- {line}")
    print()
    print("| data set | rows | flipped | method | ROC-AUC float32 | ROC-AUC int8 | int8 - float32 | within 0.005 | "
          "seconds float32 | seconds int8 |")
    print("|---|---:|---:|---|---:|---:|---:|---|---:|---:|")
    for name, n, noise, m, af, ai, sf, si in rows:
        d = ai - af
        print(f"| {name} | {n:,} | {noise:.0%} | {m} | {af:.4f} | {ai:.4f} | {d:+.4f} | "
              f"{'yes' if abs(d) <= TOLERANCE else '**no**'} | {sf:.1f} | {si:.1f} |")
    worst = max(rows, key=lambda r: abs(r[5] - r[4]))
    default = [r for r in rows if r[3] == "ts-dshapley"]
    ok_all = all(abs(r[5] - r[4]) <= TOLERANCE for r in rows)
    ok_default = all(abs(r[5] - r[4]) <= TOLERANCE for r in default)
    print()
    print(f"Largest |int8 - float32|: {abs(worst[5] - worst[4]):.4f} ({worst[0]} {worst[1]:,}, {worst[2]:.0%} "
          f"flipped, {worst[3]}).")
    if default:
        d = max(abs(r[5] - r[4]) for r in default)
        print(f"Default method (ts-dshapley): largest |int8 - float32| {d:.4f} over {len(default)} data sets.")
    print(f"Rule (ROC-AUC within {TOLERANCE} of float32 on every data set, every method above): "
          + ("met: int8 may become the default." if ok_all else
             "not met: float32 stays the default." + (" (the default method alone would meet it)" if ok_default
                                                      and default else "")))
    print(f"\nbenchmark wall time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
