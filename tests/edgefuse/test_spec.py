"""Scenario spec validation: the three shipped configs load, and bad specs report every problem with its path."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from edgefuse.spec import SpecError, load_spec, parse_spec, spec_to_dict

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def raw(name: str = "smart_home") -> dict:
    return yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())


@pytest.mark.parametrize("name", ["smart_home", "driving", "customer_service"])
def test_shipped_configs_load_and_round_trip(name):
    spec = load_spec(CONFIGS / f"{name}.yaml")
    assert spec.name == name
    assert set(spec.model.encoders) == set(spec.modalities)
    again = parse_spec(spec_to_dict(spec))
    assert again == spec


def test_input_shapes_follow_rates_and_windows():
    spec = load_spec(CONFIGS / "smart_home.yaml")
    assert spec.modalities["camera"].input_shape == (3, 64, 64)
    assert spec.modalities["mic"].input_shape == (1, 16000)  # 1.0 s at 16 kHz
    assert spec.modalities["env"].input_shape == (6, 40)  # 6 named channels, 4 s at 10 Hz
    cs = load_spec(CONFIGS / "customer_service.yaml")
    assert cs.modalities["transcript"].input_shape == (32,)
    assert cs.modalities["transcript"].input_dtype == "int64"
    assert cs.heads == ["intent", "sentiment", "escalate"]


def test_every_problem_is_reported_at_once_with_its_dotted_path():
    d = raw()
    d["modalities"]["camera"]["shapee"] = [1, 2]  # typo
    d["modalities"]["mic"]["rate_hz"] = -5
    d["model"]["encoders"]["mic"] = {"type": "gru"}  # a series encoder on audio
    d["labels"]["event"] = ["only_one"]
    del d["model"]["encoders"]["env"]
    d["colour"] = "blue"
    with pytest.raises(SpecError) as info:
        parse_spec(d, "bad.yaml")
    paths = [p for p, _ in info.value.problems]
    assert paths == [
        "modalities.camera.shapee",
        "modalities.mic.rate_hz",
        "colour",
        "labels.event",
        "model.encoders.env",
        "model.encoders.mic.type",
    ]
    text = str(info.value)
    assert text.startswith("bad.yaml: 6 problem(s)")
    assert "unknown key" in text and "cannot encode audio" in text


@pytest.mark.parametrize(
    "mutate, path, words",
    [
        (lambda d: d["modalities"]["camera"].pop("shape"), "modalities.camera", "image needs shape"),
        (lambda d: d["modalities"]["env"].update(channels=["a", "a"]), "modalities.env", "unique"),
        (lambda d: d["modalities"]["mic"].update(shape=[4]), "modalities.mic", "derived from window_s"),
        (lambda d: d["modalities"]["mic"].update(window_s=0), "modalities.mic", "window_s > 0"),
        (lambda d: d["model"]["fusion"].update(method="magic"), "model.fusion.method", "Input should be"),
        (lambda d: d["runtime"].update(trigger="lidar"), "runtime.trigger", "no modality named 'lidar'"),
        (lambda d: d["synth"].update(splits={"train": 0.5, "test": 0.2}), "synth.splits", "sum to 1"),
        (lambda d: d["model"]["encoders"].update(radar={"type": "cnn1d"}), "model.encoders.radar", "no modality"),
    ],
)
def test_single_problems_name_their_field(mutate, path, words):
    d = copy.deepcopy(raw())
    mutate(d)
    with pytest.raises(SpecError) as info:
        parse_spec(d, "s.yaml")
    assert any(p == path and words in m for p, m in info.value.problems), info.value.problems


def test_unreadable_and_malformed_files_name_the_file(tmp_path):
    with pytest.raises(SpecError, match=r"(?s)missing\.yaml: .*cannot read"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match=r"(?s)broken\.yaml: .*<yaml>"):
        load_spec(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="expected a mapping"):
        load_spec(listy)


def test_device_id_defaults_to_the_host_name_and_refuses_a_slash():
    import socket

    from edgefuse.spec import default_device_id

    spec = load_spec(Path(__file__).resolve().parents[2] / "configs" / "smart_home.yaml")
    assert spec.runtime.device_id is None and spec.runtime.device == default_device_id()
    assert default_device_id().split(".")[0] in socket.gethostname()
    d = spec_to_dict(spec)
    d["runtime"]["device_id"] = "cam-07"
    assert parse_spec(d, "x").runtime.device == "cam-07"
    d["runtime"]["device_id"] = "hall/cam"  # a topic segment: no slash
    with pytest.raises(SpecError, match="runtime.device_id"):
        parse_spec(d, "x")


def test_a_newly_registered_source_type_is_accepted_without_editing_the_spec():
    from edgefuse.runtime.sources import register_source
    from edgefuse.spec import SOURCE_TYPES

    d = raw()
    d["modalities"]["env"]["source"] = {"type": "can_bus_test"}
    with pytest.raises(SpecError, match=r"modalities\.env\.source\.type: .*registered source types: .*zmq"):
        parse_spec(copy.deepcopy(d))
    register_source("can_bus_test", "my_plugin.can:CanSource")
    try:
        assert parse_spec(copy.deepcopy(d)).modalities["env"].source.type == "can_bus_test"
    finally:
        SOURCE_TYPES.pop("can_bus_test")
