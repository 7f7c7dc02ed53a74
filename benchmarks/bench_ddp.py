"""Distributed-training benchmark: training samples/s with 1 process vs N data-parallel processes (torchrun, gloo).

    python benchmarks/bench_ddp.py --config configs/smart_home.yaml --samples 600 --epochs 2 --rounds 2 \
        --markdown BENCHMARKS.md

Writes one synthetic dataset, then trains it with `edgefuse train` (train.threads = 2, the spec's, and = 1) and
`edgefuse train --nproc N` (train.threads = 2 shared by the ranks), in rounds (the host is shared, so ratios within
a round are what count). samples/s = training samples x
epochs run / the run's train_time_s (rank 0's loop: training and its validation; process start-up and data
loading excluded). Early stopping is off (patience = epochs) so both runs do the same epochs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from _sections import write_section

from edgefuse.spec import load_spec, spec_to_dict


def run(config: Path, data: Path, out: Path, epochs: int, nproc: int, threads: int) -> dict:
    argv = [sys.executable, "-m", "edgefuse.cli", "train", "--config", str(config), "--data", str(data),
            "--out", str(out), "--epochs", str(epochs), "--nproc", str(nproc)]  # fmt: skip
    subprocess.run(argv, check=True, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    m = json.loads((out / "metrics.json").read_text())
    return {"nproc": nproc, "threads": threads, "samples_per_s": m["n_train"] * m["epochs_run"] / m["train_time_s"],
            "train_time_s": m["train_time_s"], "val_accuracy": m["val_accuracy"]}  # fmt: skip


GPU_NOTE = (
    "On GPUs (nccl, one process per GPU) expect the usual DDP scaling for a compute-bound model, close to N x "
    "samples/s with N GPUs; these models are small (50-330k parameters), so per-step work is tiny and a bigger "
    "`train.batch_size` is needed for the all-reduce not to dominate. Not measured here: this host has no GPU."
)


def VARIANTS(nproc: int) -> list[tuple[int, int]]:  # noqa: N802 - a constant list, spelled as one
    """(processes, train.threads) per run of a round."""
    return [(1, 2), (1, 1), (nproc, 2)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/smart_home.yaml")
    ap.add_argument("--samples", type=int, default=600)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--markdown", default=None, help="write the Distributed training section of this BENCHMARKS.md")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        d = spec_to_dict(load_spec(args.config))
        d["train"]["patience"] = args.epochs
        configs = {}
        for threads in (1, 2):
            d["train"]["threads"] = threads
            configs[threads] = root / f"spec{threads}.yaml"
            configs[threads].write_text(yaml.safe_dump(d, sort_keys=False))
        subprocess.run([sys.executable, "-m", "edgefuse.cli", "synth", "--config", str(configs[2]), "--out",
                        str(root / "data"), "--samples", str(args.samples)], check=True, capture_output=True)  # fmt: skip
        rows = []
        for r in range(args.rounds):
            for nproc, threads in VARIANTS(args.nproc):
                out = root / f"run{r}-{nproc}-{threads}"
                rows.append(run(configs[threads], root / "data", out, args.epochs, nproc, threads))
                print(f"round {r}: {nproc} process(es), train.threads {threads}: "
                      f"{rows[-1]['samples_per_s']:.1f} samples/s "
                      f"({rows[-1]['train_time_s']:.1f} s, val acc {rows[-1]['val_accuracy']:.3f})", flush=True)  # fmt: skip
    k = len(VARIANTS(args.nproc))
    rounds = [rows[i : i + k] for i in range(0, len(rows), k)]
    ratios = [(r[2]["samples_per_s"] / r[0]["samples_per_s"], r[2]["samples_per_s"] / r[1]["samples_per_s"])
              for r in rounds]  # fmt: skip
    for a, b in ratios:
        print(f"{args.nproc} processes vs 1 process with 2 threads: {a:.2f}x; vs 1 process with 1 thread: {b:.2f}x")
    if args.markdown:
        write_section(Path(args.markdown), "ddp", _markdown(rows, ratios, args))
    return 0


def _markdown(rows: list[dict], ratios: list[float], args: argparse.Namespace) -> str:
    cmd = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    lines = [
        "## Distributed training (samples/s, 1 vs N processes)",
        "",
        f"{dt.date.today().isoformat()}, `{cmd}`: {args.samples} synthetic samples, {args.epochs} epochs per run, "
        f"1 and {args.nproc} gloo processes alternating, on this shared 2-core CPU host (train.threads = 2, shared "
        "by the ranks: 1 thread each with 2 processes).",
        "",
        "| round | processes | train.threads | samples/s | train s | val accuracy |",
        "|---|---|---|---|---|---|",
    ]
    k = len(VARIANTS(args.nproc))
    for i, r in enumerate(rows):
        lines.append(f"| {i // k} | {r['nproc']} | {r['threads']} | {r['samples_per_s']:.1f} | "
                     f"{r['train_time_s']:.1f} | {r['val_accuracy']:.3f} |")  # fmt: skip
    lines += [
        "",
        f"{args.nproc} processes vs 1 process, samples/s ratio per round: "
        + "; ".join(f"{a:.2f}x vs 2 threads, {b:.2f}x vs 1 thread" for a, b in ratios)
        + ".",
        "",
        GPU_NOTE,
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
