"""The synthetic generators' optional heads: overlapping smart_home activities and the driving / customer_service
regression targets are written to labels.csv and rendered in the signals; specs without them are unchanged."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from edgefuse.spec import SpecError, load_spec, parse_spec, spec_to_dict
from edgefuse.trainer.data import load_dataset, read_wav
from edgefuse.trainer.synth import get_generator, write_dataset

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def spec_with(name: str, **sections):
    d = spec_to_dict(load_spec(CONFIGS / f"{name}.yaml"))
    d.update(sections)
    return parse_spec(d, name)


def rows_of(data: Path) -> list[dict[str, str]]:
    with open(data / "labels.csv") as f:
        return list(csv.DictReader(f))


def test_smart_home_activities_overlap_and_the_kettle_is_heard(tmp_path: Path):
    spec = spec_with("smart_home", multilabel={"activities": ["tv", "kettle", "washer"]})
    data = write_dataset(spec, tmp_path / "d", 24, seed=3, progress=False)
    rows = rows_of(data)
    sets = [set(filter(None, r["activities"].split("|"))) for r in rows]
    assert any(len(s) >= 2 for s in sets) and any(not s for s in sets)  # overlaps, and episodes with none
    ratio = []
    for r, s in zip(rows, sets, strict=True):
        x, rate = read_wav(data / "samples" / r["sample"] / "mic.wav")
        spec_mag = np.abs(np.fft.rfft(x[:, 0]))
        f = np.fft.rfftfreq(len(x), 1 / rate)
        band = spec_mag[(f > 1800) & (f < 2600)].max() / np.median(spec_mag[(f > 1000) & (f < 4000)])
        ratio.append((("kettle" in s), band))
    with_k = [b for k, b in ratio if k]
    without = [b for k, b in ratio if not k]
    assert with_k and without and min(with_k) > np.median(without)  # a whistle stands out of the room


def test_a_spec_without_the_extra_heads_renders_the_same_bytes(tmp_path: Path):
    """The optional heads draw nothing from the random streams unless the spec declares them."""
    plain = load_spec(CONFIGS / "smart_home.yaml")
    a = write_dataset(plain, tmp_path / "a", 6, seed=1, progress=False)
    b = write_dataset(plain, tmp_path / "b", 6, seed=1, progress=False)
    assert (a / "labels.csv").read_text() == (b / "labels.csv").read_text()
    assert rows_of(a)[0].keys() == {"sample", "split", "event"}


def test_driving_speed_is_the_can_speed_at_the_tick(tmp_path: Path):
    spec = spec_with("driving", regression={"speed": {"unit": "km/h", "min": 0, "max": 200}})
    data = write_dataset(spec, tmp_path / "d", 8, seed=0, progress=False)
    ds = load_dataset(spec, data, progress=False)
    can = ds.inputs["can"][:, 0, -1]  # (N,) the CAN speed channel's last row, km/h
    present = ds.mask[:, spec.modality_names.index("can")] > 0
    assert np.all(np.abs(can[present] - ds.extra["speed"][present]) < 5)
    assert 20 < ds.extra["speed"].mean() < 110


def test_customer_service_risk_is_in_range_and_follows_the_sentiment(tmp_path: Path):
    spec = spec_with("customer_service", regression={"escalation_risk": {"min": 0, "max": 1}})
    data = write_dataset(spec, tmp_path / "d", 30, seed=0, progress=False)
    rows = rows_of(data)
    risk = {m: [float(r["escalation_risk"]) for r in rows if r["sentiment"] == m] for m in ("calm", "angry")}
    assert all(0 <= v <= 1 for vs in risk.values() for v in vs)
    assert np.mean(risk["angry"]) > np.mean(risk["calm"]) + 0.3


def test_a_head_the_generator_cannot_render_is_refused_naming_it():
    with pytest.raises(SpecError, match=r"regression\.speed: generator 'smart_home' renders \[\]"):
        get_generator(spec_with("smart_home", regression={"speed": {"unit": "km/h"}}))
    with pytest.raises(SpecError, match=r"multilabel\.activities: unknown labels \['vacuum'\]"):
        get_generator(spec_with("smart_home", multilabel={"activities": ["tv", "vacuum"]}))
