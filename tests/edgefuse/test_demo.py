"""`edgefuse demo` end to end on tiny data: every stage runs and results reach a real ZeroMQ subscriber."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from edgefuse.cli import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_demo_runs_every_stage_and_a_subscriber_receives_the_results(tmp_path, capsys, free_endpoint):
    d = yaml.safe_load((CONFIGS / "smart_home.yaml").read_text())
    d["train"].update(epochs=2, patience=2)
    d["runtime"]["publish"]["endpoint"] = free_endpoint()  # no clash with a running edgefuse
    config = tmp_path / "home.yaml"
    config.write_text(yaml.safe_dump(d))
    out = tmp_path / "demo"

    rc = main(["demo", "--config", str(config), "--out", str(out), "--samples", "64", "--duration", "3"])

    assert rc == 0
    demo = json.loads((out / "demo.json").read_text())
    assert set(demo["stage_seconds"]) == {"synth", "train", "eval", "export", "run"}
    assert 0.0 <= demo["test_accuracy"] <= 1.0 and demo["params"] > 10_000
    rt = demo["runtime"]
    assert rt["ticks"] >= 4  # 2 Hz for 3 s
    assert rt["published"] == rt["ticks"]  # a subscriber that reads keeps up: nothing failed
    assert 0 < demo["subscriber_received"] <= rt["published"]
    assert (out / "bundle" / "model.int8.onnx").exists() and (out / "run" / "report.md").exists()
    printed = capsys.readouterr().out
    assert "=== edgefuse demo summary" in printed
    lines = [ln for ln in printed.splitlines() if ln.startswith("#") and "event=" in ln and "[camera:" in ln]
    assert len(lines) == demo["subscriber_received"]  # the subscriber printed each result live, as `listen` does
