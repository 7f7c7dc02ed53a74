"""Unevenly recorded classes: what `train.balanced` changes where one class has a tenth of another's samples.

    python benchmarks/realdata/longtail.py [--datasets dsads,speechcifar] [--rho 10] [--seeds 3] [--jobs 2]

Per dataset (converted first by benchmarks/realdata/<name>.py into data/realdata/<name>): its train and val splits are
cut to a long tail, the k-th class (of K, in a fixed shuffled order) keeping round(n_c * rho^(-k / (K - 1))) of its
n_c samples, so the rarest keeps 1/rho; the test split is kept whole. Each seed trains once, with the dataset's spec
(benchmarks/realdata/<name>.yaml) and `train.balanced: true`. That run is scored twice: with its class bias, and with
the bias set to 0, which is exactly the run without the option (the bias is set after training and changes nothing
else: tests/trainer/test_train.py). Scores on the whole test split: accuracy, macro F1 and the mean recall of the
three worst classes; and "accuracy at the training frequencies", the per-class recalls weighted by the training
split's class frequencies (the accuracy expected where the classes occur as often as they were recorded).
Each cut is a labels.csv in a temporary folder whose samples/ links to the converted samples (removed at the end, with
the runs). One torch thread per training, --jobs trainings at once. Writes the "longtail" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import csv
import platform
import random
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _sections import write_section  # noqa: E402

DATASETS = ("dsads", "speechcifar")


def write_cut(src: Path, root: Path, rho: float) -> dict[str, int]:
    """root/labels.csv: src's rows with train and val cut to the long tail, test whole; root/samples -> src's.
    Returns the training samples per class."""
    with open(src / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    head = next(k for k in rows[0] if k not in ("sample", "split"))
    classes = sorted({r[head] for r in rows})
    random.Random(0).shuffle(classes)  # which classes are rare: fixed, not the spec's order
    keep, counts = [], {}
    for split in ("train", "val"):
        for k, c in enumerate(classes):
            of_class = [r for r in rows if r["split"] == split and r[head] == c]
            n = max(1, round(len(of_class) * rho ** (-k / (len(classes) - 1))))
            keep += of_class[:n]
            if split == "train":
                counts[c] = n
    keep += [r for r in rows if r["split"] == "test"]
    root.mkdir(parents=True)
    (root / "samples").symlink_to(src / "samples", target_is_directory=True)
    with open(root / "labels.csv", "w", newline="") as out:
        w = csv.DictWriter(out, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(keep)
    return counts


def run(name: str, data: str, seed: int) -> dict[str, dict[str, float]]:
    """Train `name` on the cut at `data` with train.balanced; its test scores with the class bias and without."""
    import torch

    from edgefuse.spec import load_spec, parse_spec, spec_to_dict
    from edgefuse.trainer.checkpoint import load_run
    from edgefuse.trainer.data import load_dataset
    from edgefuse.trainer.datacheck import class_counts
    from edgefuse.trainer.evaluate import head_metrics, run_mask
    from edgefuse.trainer.train import predict_logits, to_tensors, train

    d = spec_to_dict(load_spec(HERE / f"{name}.yaml"))
    d["train"]["balanced"] = True
    spec = parse_spec(d, name)
    ds = load_dataset(spec, Path(data), progress=False)
    (head,) = spec.heads
    prior = class_counts(spec, {head: ds.targets[head][ds.split == "train"]})[head] / (ds.split == "train").sum()
    test = ds.subset("test")
    y = np.asarray(test.targets[head])
    out = {}
    with tempfile.TemporaryDirectory(prefix="longtail-run-") as tmp:
        train(spec, Path(data), Path(tmp), seed=seed, progress=False, dataset=ds)
        sp, model, ckpt = load_run(Path(tmp))
        x, _, _ = to_tensors(test)
        mask = run_mask(sp, ckpt, test.mask)
        for tag in ("balanced", "plain"):
            if tag == "plain":
                model.class_bias.zero_()
            with torch.inference_mode():
                pred = predict_logits(model, x, mask)[head].argmax(1).numpy()
            m = head_metrics(y, pred, spec.labels[head])  # the eval report's accuracy, macro F1 and recalls
            recall = np.array([m["per_class"][c]["recall"] for c in spec.labels[head]])
            out[tag] = {
                "accuracy": m["accuracy"],
                "macro_f1": m["macro_f1"],
                "worst3_recall": float(np.sort(recall)[:3].mean()),
                "accuracy_at_train_freq": float(prior @ recall),
            }
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated, of {', '.join(DATASETS)}")
    p.add_argument("--rho", type=float, default=10.0, help="most / fewest training samples per class")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=1, help="trainings at once (each one torch thread)")
    args = p.parse_args()
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    for n in names:
        if n not in DATASETS:
            p.error(f"--datasets: unknown {n!r}; known: {', '.join(DATASETS)}")
        if not (ROOT / "data" / "realdata" / n / "labels.csv").is_file():
            p.error(f"--datasets: {n} is not converted yet: run benchmarks/realdata/{n}.py convert first")
    if args.rho < 1:
        p.error("--rho must be at least 1")
    start = datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory(prefix="longtail-") as tmp:
        counts = {n: write_cut(ROOT / "data" / "realdata" / n, Path(tmp) / n, args.rho) for n in names}
        jobs = [(n, str(Path(tmp) / n), s) for n in names for s in range(args.seeds)]
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(run, *zip(*jobs, strict=True)))
    by = {n: [r for (m, _, _), r in zip(jobs, results, strict=True) if m == n] for n in names}
    keys = ("accuracy", "macro_f1", "worst3_recall", "accuracy_at_train_freq")
    lines = [
        "## Unevenly recorded classes (`train.balanced`)",
        "",
        f"`python benchmarks/realdata/longtail.py --datasets {','.join(names)} --rho {args.rho:g} --seeds {args.seeds} "
        f"--jobs {args.jobs}` on {platform.machine()} ({start:%Y-%m-%d %H:%M} UTC); {args.seeds} seeds, mean ± std "
        "(ddof 1) in %. Train and val cut to a long tail (the rarest class keeps 1/rho of its samples), test whole; "
        "each seed's one run scored with its class bias (balanced) and with the bias at 0 (plain, the same as "
        "training without the option).",
        "",
        "| dataset | train per class | scores | test accuracy | macro F1 | worst-3 recall | accuracy at training "
        "frequencies |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in names:
        c = sorted(counts[n].values())
        for tag in ("plain", "balanced"):
            cells = []
            for k in keys:
                v = 100 * np.array([r[tag][k] for r in by[n]])
                cells.append(f"{v.mean():.1f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.1f}")
            lines.append(f"| {n} | {c[0]}-{c[-1]} ({sum(c)}) | {tag} | " + " | ".join(cells) + " |")
    for n in names:
        lines.append("")
        lines.append(
            f"{n}, per seed (plain → balanced): "
            + "; ".join(
                f"seed {s}: accuracy {100 * r['plain']['accuracy']:.1f} → {100 * r['balanced']['accuracy']:.1f}, "
                f"worst-3 recall {100 * r['plain']['worst3_recall']:.1f} → {100 * r['balanced']['worst3_recall']:.1f}"
                for s, r in enumerate(by[n])
            )
        )
    text = "\n".join(lines)
    print(text)
    write_section(ROOT / "BENCHMARKS.md", "longtail", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
