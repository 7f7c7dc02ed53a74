"""Clips shorter than the window, as recorded: what `train.pad_short` gives on Speech Commands. Information.

    python benchmarks/realdata/short_clips.py [--seeds 2] [--jobs 2]

Speech Commands clips shorter than 1 s are published zero-padded at their end to exactly 1 s (Warden 2018); in
speechcifar (benchmarks/realdata/speechcifar.py, converted first into data/realdata/speechcifar) about 7 % of the
clips end in such a run of exact zeros. Here each clip's trailing run of exact zero samples (at least 10 ms) is cut
off, which gives the clips as recorded; they are written as 16-bit WAVs in a temporary folder whose images link to the
converted ones, with the same labels.csv. Trained with the speechcifar spec plus `train.pad_short: true` (the short
clips now padded with silence at their start, ending where the window ends), against the published files with the
plain spec; seeds 0..N-1, test accuracy on all test samples and on the test samples whose clip was cut. One torch
thread per training, --jobs trainings at once; the runs and the folder are removed at the end.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import wave
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = ROOT / "data" / "realdata" / "speechcifar"
MIN_RUN = 160  # samples at 16 kHz (10 ms): a shorter run of exact zeros can be a quiet stretch of the recording


def cut_trailing_zeros(src: Path, root: Path) -> dict[str, float]:
    """root: speechcifar with each clip's trailing zeros cut; returns sample -> seconds of the clips that were cut."""
    cut = {}
    with open(src / "labels.csv", newline="") as f:
        samples = [r["sample"] for r in csv.DictReader(f)]
    for s in samples:
        d = root / "samples" / s
        d.mkdir(parents=True)
        (d / "image.jpg").symlink_to(src / "samples" / s / "image.jpg")
        with wave.open(str(src / "samples" / s / "audio.wav"), "rb") as w:
            params, x = w.getparams(), np.frombuffer(w.readframes(w.getnframes()), "<i2")
        nz = np.flatnonzero(x)
        end = int(nz[-1]) + 1 if len(nz) else 0
        if len(x) - end >= MIN_RUN and end > 0:
            x = x[:end]
            cut[s] = end / params.framerate
        with wave.open(str(d / "audio.wav"), "wb") as w:
            w.setparams(params)
            w.writeframes(x.tobytes())
    (root / "labels.csv").write_bytes((src / "labels.csv").read_bytes())
    return cut


def run(data: str, pad: bool, seed: int) -> tuple[list[str], np.ndarray]:
    """Train once; (test sample ids, whether each was classified right)."""
    import torch

    from edgefuse.spec import load_spec, parse_spec, spec_to_dict
    from edgefuse.trainer.checkpoint import load_run
    from edgefuse.trainer.data import load_dataset
    from edgefuse.trainer.evaluate import run_mask
    from edgefuse.trainer.train import predict_logits, to_tensors, train

    d = spec_to_dict(load_spec(HERE / "speechcifar.yaml"))
    d["train"]["pad_short"] = pad
    spec = parse_spec(d, "speechcifar")
    ds = load_dataset(spec, Path(data), progress=False)
    test = ds.subset("test")
    with tempfile.TemporaryDirectory(prefix="short-clips-run-") as tmp:
        train(spec, Path(data), Path(tmp), seed=seed, progress=False, dataset=ds)
        sp, model, ckpt = load_run(Path(tmp))
        x, _, _ = to_tensors(test)
        with torch.inference_mode():
            pred = predict_logits(model, x, run_mask(sp, ckpt, test.mask))["pair"].argmax(1).numpy()
    return test.ids, pred == np.asarray(test.targets["pair"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--jobs", type=int, default=1, help="trainings at once (each one torch thread)")
    args = p.parse_args()
    if not (DATA / "labels.csv").is_file():
        p.error(f"{DATA}: not converted yet: run benchmarks/realdata/speechcifar.py convert first")
    with tempfile.TemporaryDirectory(prefix="short-clips-") as tmp:
        cut = cut_trailing_zeros(DATA, Path(tmp) / "d")
        secs = np.array(list(cut.values()))
        print(
            f"{len(cut)} of {len(list((DATA / 'samples').iterdir()))} clips cut to {secs.min():.3f}-{secs.max():.3f} s "
            f"(median {np.median(secs):.3f} s)"
        )
        variants = {
            "published 1-s files": (str(DATA), False),
            "as recorded + train.pad_short": (str(Path(tmp) / "d"), True),
        }
        jobs = [(v, s) for v in variants for s in range(args.seeds)]
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            todo = [pool.submit(run, *variants[v], s) for v, s in jobs]
            results = [j.result() for j in todo]
    print("\n| variant | test accuracy per seed | mean | on the test clips that were cut (n) |\n|---|---|---|---|")
    for v in variants:
        got = [r for (w, _), r in zip(jobs, results, strict=True) if w == v]
        acc = [100 * right.mean() for _, right in got]
        short = [100 * right[[i in cut for i in ids]].mean() for ids, right in got]
        n = sum(i in cut for i in got[0][0])
        print(
            f"| {v} | {' / '.join(f'{a:.1f}' for a in acc)} | {np.mean(acc):.1f} % | "
            f"{' / '.join(f'{a:.1f}' for a in short)} ({n}) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
