"""Write a synthetic dataset in the folder dataset format (docs/dataset.md) and the `edgefuse synth` verb.

One sample is one episode cut at the tick t = episode_duration_s(spec): the frame nearest the tick, the last
window of audio and series (exactly n_steps rows), and the utterances of the last text window. Sample i draws all
its randomness from numpy's Generator seeded with (seed, i), so a sample never depends on how many others there
are, and the same seed writes the same bytes.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import multiprocessing
import os
import shutil
import time
import wave
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from edgefuse.errors import DataError
from edgefuse.spec import ScenarioSpec, SpecError, load_spec
from edgefuse.trainer.synth.base import Generator, dataset_starts, episode_duration_s, get_generator
from edgefuse.trainer.synth.captions import references, split_references

SPLITS = ("train", "val", "test")
EXT = {"image": ".png", "audio": ".wav", "series": ".csv", "text": ".txt"}


def cut_sample(gen: Generator, labels: dict[str, str], rng: np.random.Generator) -> dict[str, object]:
    """Render one episode's final window: modality -> what its file holds (frame, (n, C) rows or text)."""
    spec = gen.spec
    d = episode_duration_s(spec)
    streams = gen.render(labels, rng, d, start_s=dataset_starts(spec, d))
    out: dict[str, object] = {}
    for name, data in streams.items():
        m = spec.modalities[name]
        if m.kind == "image":
            out[name] = data[-1]  # type: ignore[index]
        elif m.kind == "text":
            out[name] = " ".join(u for t, u in data if d - m.window_s < t <= d)  # type: ignore[union-attr]
        else:
            out[name] = data[-m.n_steps :]  # type: ignore[index]
    return out


def write_wav(path: Path, x: np.ndarray, rate_hz: float) -> None:
    """(n, C) float in [-1, 1] -> PCM16 WAV."""
    pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(x.shape[1])
        f.setsampwidth(2)
        f.setframerate(round(rate_hz))
        f.writeframes(pcm.tobytes())


def write_series_csv(path: Path, x: np.ndarray, channels: list[str]) -> None:
    """(T, C) rows -> CSV with a header of channel names, one row per time step."""
    buf = io.StringIO()
    buf.write(",".join(channels) + "\n")
    np.savetxt(buf, x, fmt="%.6g", delimiter=",")
    path.write_text(buf.getvalue())


def write_sample(folder: Path, spec: ScenarioSpec, sample: dict[str, object]) -> None:
    """Write one sample's modality files into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in sample.items():
        m = spec.modalities[name]
        path = folder / f"{name}{EXT[m.kind]}"
        if m.kind == "image":
            cv2.imwrite(str(path), data)  # type: ignore[arg-type]
        elif m.kind == "audio":
            write_wav(path, data, m.rate_hz)  # type: ignore[arg-type]
        elif m.kind == "series":
            write_series_csv(path, data, list(m.channels))  # type: ignore[arg-type]
        else:
            path.write_text(str(data), encoding="utf-8")


def assign_splits(spec: ScenarioSpec, n: int, seed: int) -> list[str]:
    """Exact split sizes from spec.synth.splits (largest remainder), shuffled by the seed."""
    fracs = spec.synth.splits if spec.synth is not None else {"train": 0.7, "val": 0.15, "test": 0.15}
    bad = [s for s in fracs if s not in SPLITS]
    if bad:
        raise SpecError(f"spec '{spec.name}'", [("synth.splits", f"unknown split(s) {bad}; use {list(SPLITS)}")])
    names = list(fracs)
    raw = np.array([fracs[s] * n for s in names])
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    split = np.repeat(names, counts)
    return [str(s) for s in np.random.default_rng([seed, 0x5B117]).permutation(split)]


def _prepare_out(out: Path) -> None:
    """Create `out`, or clear a dataset that `edgefuse synth` wrote there before; never touch other folders."""
    if out.exists() and any(out.iterdir()):
        if not (out / "dataset.json").exists():
            raise DataError(out, "exists, is not empty and holds no dataset.json: choose a new folder for synth")
        for sub in ("samples", ".cache"):
            shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def _write_range(
    spec: ScenarioSpec, out: Path, seed: int, indices: range
) -> list[tuple[dict[str, str], list[tuple[str, bool]]]]:
    """Render and write samples `indices`; returns their labels and, when the spec has `captions:`, their caption
    references (trainer/synth/captions.py). Runs in the writer or in a worker process."""
    gen = get_generator(spec, seed)
    out_rows = []
    for i in indices:
        rng = np.random.default_rng([seed, i])
        lab = gen.sample_labels(rng)
        write_sample(out / "samples" / f"{i:06d}", spec, cut_sample(gen, lab, rng))
        slots = gen.caption_slots(gen.last_episode, episode_duration_s(spec)) if spec.captions is not None else None
        out_rows.append((lab, references(slots) if slots else []))
    return out_rows


def write_captions(path: Path, refs: list[list[tuple[str, bool]]], splits: list[str]) -> None:
    """captions.csv: sample,caption; test samples get the held-out template combinations, the others the rest."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["sample", "caption"])
        for i, (r, split) in enumerate(zip(refs, splits, strict=True)):
            w.writerows([f"{i:06d}", text] for text in split_references(r, split))


def default_workers(samples: int) -> int:
    """Worker processes `edgefuse synth` uses: up to 4 cores for big datasets, none for small ones (startup ~1 s)."""
    return 1 if samples < 400 else max(1, min(4, (os.cpu_count() or 1)))


def write_dataset(
    spec: ScenarioSpec, out: str | Path, samples: int, seed: int, progress: bool = True, workers: int = 1
) -> Path:
    """Render `samples` episodes of the spec's generator into the folder dataset format at `out`.

    Sample i depends only on (seed, i), so any number of `workers` processes writes the same bytes. Workers are
    spawned (the caller may hold torch or OpenCV threads a fork would break), which needs a caller that is an
    importable script or module: the CLI, a test, a notebook; not `python - < script`.
    """
    out = Path(out)
    gen = get_generator(spec, seed)
    splits = assign_splits(spec, samples, seed)
    _prepare_out(out)
    heads = list(spec.head_kinds)  # every head kind: labels.csv has one column per head
    step = max(1, min(64, math.ceil(samples / (4 * max(1, workers)))))
    chunks = [range(a, min(a + step, samples)) for a in range(0, samples, step)]
    labels: list[dict[str, str]] = []
    refs: list[list[tuple[str, bool]]] = []
    with tqdm(total=samples, desc=f"synth {spec.name}", unit="sample", disable=not progress) as bar:
        if workers <= 1:
            for chunk in chunks:
                rows = _write_range(spec, out, seed, chunk)
                labels += [lab for lab, _ in rows]
                refs += [r for _, r in rows]
                bar.update(len(chunk))
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                for rows in pool.map(_write_range, *zip(*[(spec, out, seed, c) for c in chunks], strict=True)):
                    labels += [lab for lab, _ in rows]
                    refs += [r for _, r in rows]
                    bar.update(len(rows))
    rows = [[f"{i:06d}", splits[i]] + [lab[h] for h in heads] for i, lab in enumerate(labels)]
    with open(out / "labels.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["sample", "split", *heads])
        w.writerows(rows)
    if any(refs):
        write_captions(out / "captions.csv", refs, splits)
    else:
        (out / "captions.csv").unlink(missing_ok=True)  # a rewrite without captions leaves none behind
    meta = {
        "format": "edgefuse folder dataset",
        "version": 1,
        "spec": spec.name,
        "generator": gen.name,
        "seed": seed,
        "samples": samples,
        "episode_duration_s": episode_duration_s(spec),
        "noise": gen.noise,
    }
    (out / "dataset.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out


def cli_synth(args: argparse.Namespace) -> int:
    """`edgefuse synth --config configs/smart_home.yaml --out data/home [--samples 2400] [--seed 0]`."""
    spec = load_spec(args.config)
    get_generator(spec)  # a spec without a usable generator fails here, before anything is written
    n = args.samples if args.samples is not None else (spec.synth.samples if spec.synth else 0)
    if n <= 0:
        raise SpecError(args.config, [("synth.samples", "give --samples or set synth.samples > 0")])
    t0 = time.perf_counter()
    path = write_dataset(spec, args.out, n, args.seed, progress=True, workers=default_workers(n))
    print(f"wrote {n} {spec.name} samples to {path} in {time.perf_counter() - t0:.1f} s (seed {args.seed})")
    return 0
