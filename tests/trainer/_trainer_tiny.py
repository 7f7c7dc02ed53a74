"""Tiny real data for the trainer tests: 200 smart_home samples written by the synth writer, read by the loader."""

from __future__ import annotations

import sys
from pathlib import Path

from edgefuse.spec import ScenarioSpec, parse_spec
from edgefuse.trainer.data import load_dataset
from edgefuse.trainer.synth import write_dataset
from edgefuse.trainer.train import train

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
sys.path.insert(0, str(CONFIGS.parent / "benchmarks"))
from _specs import smart_home_test_scale  # noqa: E402

SAMPLES = 200


def tiny_spec() -> ScenarioSpec:
    """smart_home at a fraction of the compute: 32x32 frames, 0.5 s of 8 kHz audio, narrower encoders (the test scale
    of benchmarks/_specs.py, which the benchmarks share)."""
    d = smart_home_test_scale()
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
