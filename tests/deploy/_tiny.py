"""A tiny four-modality scenario and a briefly trained run of it, shared by the deploy tests (seconds, not minutes)."""

from __future__ import annotations

import wave
from pathlib import Path

import cv2
import numpy as np
import torch

from edgefuse.spec import ScenarioSpec, parse_spec
from edgefuse.trainer.checkpoint import save_run
from edgefuse.trainer.data import load_dataset
from edgefuse.trainer.models import build_model

TINY = {
    "name": "tiny",
    "modalities": {
        "cam": {"kind": "image", "rate_hz": 5, "shape": [16, 16], "channels": 3},
        "mic": {"kind": "audio", "rate_hz": 4000, "window_s": 0.25, "channels": 1},
        "env": {"kind": "series", "rate_hz": 10, "window_s": 2.0, "channels": ["a", "b"]},
        "text": {"kind": "text", "rate_hz": 1, "shape": [8]},
    },
    "labels": {"event": ["x", "y", "z"], "urgent": ["no", "yes"]},
    "model": {
        "dim": 16,
        "encoders": {
            "cam": {"type": "dwcnn", "width": 4, "stages": 2},
            "mic": {"type": "logmel_cnn", "n_fft": 128, "hop": 64, "n_mels": 12, "width": 4},
            "env": {"type": "cnn1d", "width": 8, "kernel": 3, "layers": 2},
            "text": {"type": "hashed_embedding", "buckets": 64, "width": 8},
        },
        "fusion": {"method": "attention", "heads": 2},
    },
    "train": {"threads": 1},
    "synth": {"generator": "tiny", "samples": 300},
}


def tiny_spec() -> ScenarioSpec:
    return parse_spec(TINY, "tiny")


def tiny_arrays(spec: ScenarioSpec, n: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray, dict]:
    """(inputs, mask, targets) where the event shows in the image and env, urgency in the audio and text."""
    rng = np.random.default_rng(seed)
    event, urgent = rng.integers(0, 3, n), rng.integers(0, 2, n)
    cam = rng.random((n, 3, 16, 16), dtype=np.float32) * 0.5
    cam[np.arange(n), event] += 0.5  # the event brightens one colour channel
    t = np.arange(1000) / 4000
    tone = np.where(urgent[:, None] == 1, np.sin(2 * np.pi * 1200 * t), np.sin(2 * np.pi * 200 * t))  # (N, T)
    mic = (0.5 * tone + 0.05 * rng.standard_normal((n, 1000)))[:, None].astype(np.float32)  # (N, 1, T)
    env = rng.standard_normal((n, 2, 20)).astype(np.float32) + 20.0  # raw units: an offset the model standardizes
    env[:, 0] += event[:, None] * 1.5
    text = rng.integers(1, 64, (n, 8), dtype=np.int64)
    text[:, 0] = 1 + urgent * 7  # token 1 or 8 first
    mask = np.ones((n, 4), dtype=np.float32)
    mask[rng.random(n) < 0.2, 1] = 0  # mic sometimes missing
    inputs = {"cam": cam, "mic": mic, "env": env, "text": text}
    return inputs, mask, {"event": event, "urgent": urgent}


WORDS = {0: "hello i have a quick question about my order", 1: "please help now this is urgent"}
FILLER = ["thanks", "the", "account", "today", "again", "call", "bill", "maybe"]


def write_dataset(root: Path, n: int = 240, seed: int = 0, test_fraction: float = 0.4) -> Path:
    """tiny_arrays written as a folder dataset (docs/dataset.md): PNG, PCM16 WAV, .npy series, .txt text."""
    spec = tiny_spec()
    inputs, mask, targets = tiny_arrays(spec, n, seed)
    rng = np.random.default_rng(seed + 1)
    rows = ["sample,split,event,urgent"]
    for i in range(n):
        folder = root / "samples" / f"s{i:04d}"
        folder.mkdir(parents=True)
        bgr = (inputs["cam"][i] * 255).round().astype(np.uint8).transpose(1, 2, 0)[..., ::-1]  # (H, W, 3)
        cv2.imwrite(str(folder / "cam.png"), np.ascontiguousarray(bgr))
        if mask[i, 1]:
            pcm = np.round(np.clip(inputs["mic"][i, 0], -1, 1) * 32767).astype("<i2")
            with wave.open(str(folder / "mic.wav"), "wb") as f:
                f.setnchannels(1)
                f.setsampwidth(2)
                f.setframerate(4000)
                f.writeframes(pcm.tobytes())
        np.save(folder / "env.npy", inputs["env"][i].T)  # (T, C)
        words = [WORDS[int(targets["urgent"][i])], *rng.choice(FILLER, 3)]
        (folder / "text.txt").write_text(" ".join(words))
        split = "test" if i < n * test_fraction else "train"
        rows.append(f"s{i:04d},{split},{'xyz'[targets['event'][i]]},{['no', 'yes'][targets['urgent'][i]]}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def make_run(run_dir: Path, steps: int = 60, seed: int = 0, data_dir: Path | None = None) -> ScenarioSpec:
    """Train the tiny model briefly (on tiny_arrays, or the train split of `data_dir`) and save it as a run
    folder (checkpoint.pt + metrics.json)."""
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the test machine is shared: one thread avoids OpenMP spin-waiting against others
    try:
        return _train_and_save(run_dir, steps, seed, data_dir)
    finally:
        torch.set_num_threads(threads)


def _train_and_save(run_dir: Path, steps: int, seed: int, data_dir: Path | None) -> ScenarioSpec:
    spec = tiny_spec()
    model = build_model(spec)
    if data_dir is None:
        inputs, mask, targets = tiny_arrays(spec, 256, seed)
    else:
        ds = load_dataset(spec, data_dir, progress=False).subset("train")
        inputs, mask, targets = ds.inputs, ds.mask, ds.targets
    n = len(mask)
    env = inputs["env"]
    norm = {"env": (env.mean((0, 2)).astype(np.float32), env.std((0, 2)).astype(np.float32))}
    model.set_normalization(norm)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = {m: torch.from_numpy(a) for m, a in inputs.items()}
    y = {h: torch.from_numpy(v) for h, v in targets.items()}
    mk = torch.from_numpy(mask)
    model.train()
    for step in range(steps):
        idx = torch.arange(step * 32, step * 32 + 32) % n
        logits = model({m: a[idx] for m, a in x.items()}, mk[idx])
        loss = sum(torch.nn.functional.cross_entropy(z, y[h][idx]) for h, z in logits.items())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.inference_mode():
        logits = model(x, mk)
    metrics = {f"train_accuracy_{h}": float((z.argmax(1) == y[h]).float().mean()) for h, z in logits.items()}
    save_run(run_dir, spec, model, norm, metrics, data_dir=data_dir or run_dir, n_samples=n, masked=[])
    return spec
