"""Spec variants the benchmarks share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgefuse.spec import load_spec, spec_to_dict

ROOT = Path(__file__).resolve().parents[1]


def smart_home_test_scale() -> dict[str, Any]:
    """The shipped smart_home spec (raw mapping) at the test suite's scale: 32x32 frames, 0.5 s of 8 kHz audio,
    narrower encoders, dim 32. Callers adjust it further and parse it; the tests take theirs from here too
    (tests/trainer/_trainer_tiny.py, tests/deploy/test_caption_export.py)."""
    d = spec_to_dict(load_spec(ROOT / "configs" / "smart_home.yaml"))
    d["modalities"]["camera"]["shape"] = [32, 32]
    d["modalities"]["mic"].update(rate_hz=8000, window_s=0.5)
    enc = d["model"]["encoders"]
    enc["camera"].update(width=8, stages=2)
    enc["mic"].update(n_fft=256, hop=128, n_mels=24, width=8)
    enc["env"].update(width=16, layers=2)
    d["model"]["dim"] = 32
    return d
