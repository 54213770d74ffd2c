"""GPU check: fine-tune the default model on 2,000 SST-2 rows on CUDA and on the CPU; accuracies and examples/s.

Run it on any machine with a CUDA GPU (it is never needed by the tests):

    python benchmarks/gpu_check.py                       # 2,000 train.tsv rows, 1 epoch, scored on test.tsv
    python benchmarks/gpu_check.py --n 2000 --cpu-n 500  # a shorter CPU leg (CPU examples/s is what matters)

Both legs use `core.finetune.train_and_evaluate` with the same rows, seed and options; only the device differs (on
CUDA: bf16 autocast where supported, the same batch size unless --gpu-batch-size is given). Prints a header line
(date, CPUs, GPU, versions, load average) and a markdown table. Without CUDA it says so and runs the CPU leg only.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core import finetune  # noqa: E402
from core.device import select_device  # noqa: E402


def read_tsv(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False, dtype=str)
    return pd.DataFrame({"text": df["sentence"].str.strip(), "label": df["label"].str.strip()})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2000, help="train.tsv rows (default 2000)")
    p.add_argument("--cpu-n", type=int, default=None, help="rows of the CPU leg (default: --n)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--gpu-batch-size", type=int, default=None, help="batch size on CUDA (default: --batch-size)")
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None)
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets" / "sst2"))
    args = p.parse_args(argv)

    import torch
    import transformers

    data = Path(args.data_dir)
    if not (data / "train.tsv").exists():
        print(f"SST-2 not found in {data}", file=sys.stderr)
        return 1
    cuda = torch.cuda.is_available()
    gpu = select_device("cuda").label if cuda else "no CUDA device"
    print(f"{datetime.date.today()} | {os.cpu_count()} CPUs | {gpu} | Python {platform.python_version()} | torch "
          f"{torch.__version__} | transformers {transformers.__version__} | load "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    rng = np.random.default_rng(args.seed)
    train, test = read_tsv(data / "train.tsv"), read_tsv(data / "test.tsv")
    rows = train.iloc[np.sort(rng.choice(len(train), args.n, replace=False))].reset_index(drop=True)
    classes = sorted(set(rows["label"]))
    legs = ([("cuda", args.n, args.gpu_batch_size or args.batch_size)] if cuda else []) + [
        ("cpu", args.cpu_n or args.n, args.batch_size)]
    out = []
    for device, n, bs in legs:
        sub = rows.iloc[:n]
        print(f"[{time.strftime('%H:%M:%S')}] {device}: {n} rows", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        res = finetune.train_and_evaluate(sub["text"].tolist(), sub["label"].tolist(), test["text"].tolist(),
                                          test["label"].tolist(), classes=classes, model=args.model,
                                          epochs=args.epochs, batch_size=bs, lr=args.lr, max_length=args.max_length,
                                          seed=args.seed, valid_fraction=0.0, device=device)
        out.append({"device": res.device, "rows": n, "batch": bs, "accuracy": res.accuracy,
                    "macro_f1": res.macro_f1, "eps": res.examples_per_second,
                    "predict_eps": res.n_test / max(res.eval_seconds, 1e-9), "wall": time.perf_counter() - t0})
    print()
    print(f"SST-2: {args.n:,} train.tsv rows, {args.epochs} epoch(s), lr {args.lr}, max_length {args.max_length}, "
          f"seed {args.seed}; accuracy on test.tsv ({len(test)} rows)")
    print()
    print("| device | rows | batch | accuracy | macro-F1 | training examples/s | prediction examples/s | wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in out:
        print(f"| {r['device']} | {r['rows']:,} | {r['batch']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | "
              f"{r['eps']:.1f} | {r['predict_eps']:.1f} | {r['wall']:.0f} |")
    if not cuda:
        print("\nno CUDA device here: run this script on a machine with a GPU for the CUDA row")
    return 0


if __name__ == "__main__":
    sys.exit(main())
