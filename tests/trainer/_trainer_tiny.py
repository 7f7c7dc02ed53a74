"""Tiny real data for the trainer tests: 200 smart_home samples written by the synth writer, read by the loader."""

from __future__ import annotations

from pathlib import Path

from edgefuse.spec import ScenarioSpec, load_spec, parse_spec, spec_to_dict
from edgefuse.trainer.data import load_dataset
from edgefuse.trainer.synth import write_dataset
from edgefuse.trainer.train import train

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SAMPLES = 200


def tiny_spec() -> ScenarioSpec:
    """smart_home at a fraction of the compute: 32x32 frames, 0.5 s of 8 kHz audio, narrower encoders."""
    d = spec_to_dict(load_spec(CONFIGS / "smart_home.yaml"))
    d["modalities"]["camera"]["shape"] = [32, 32]
    d["modalities"]["mic"].update(rate_hz=8000, window_s=0.5)
    enc = d["model"]["encoders"]
    enc["camera"].update(width=8, stages=2)
    enc["mic"].update(n_fft=256, hop=128, n_mels=24, width=8)
    enc["env"].update(width=16, layers=2)
    d["model"]["dim"] = 32
    d["train"].update(batch_size=32, threads=2)
    return parse_spec(d, "tiny smart_home")


def make_data(root: Path) -> tuple[ScenarioSpec, Path, object]:
    """Write and load the tiny dataset: (spec, data folder, Dataset)."""
    spec = tiny_spec()
    data = root / "data"
    write_dataset(spec, data, SAMPLES, seed=0, progress=False)
    return spec, data, load_dataset(spec, data, progress=False)


def make_run(tiny: tuple, root: Path, epochs: int) -> tuple[ScenarioSpec, Path, Path, object]:
    """Train the smart_home model for `epochs` on make_data's dataset: (spec, data folder, run folder, dataset)."""
    spec, data, ds = tiny
    run = root / "run"
    train(spec, data, run, epochs=epochs, progress=False, dataset=ds)
    return spec, data, run, ds
