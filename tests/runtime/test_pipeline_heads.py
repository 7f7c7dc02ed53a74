"""Multilabel and regression heads through the live pipeline: a real exported bundle, real threads, a real ZeroMQ
subscriber on loopback; the published `multilabel` and `values` keys follow the manifest's thresholds and unit."""

from __future__ import annotations

import numpy as np
import pytest
from test_pipeline import TINY, run_live

from edgefuse.manifest import load_manifest
from edgefuse.runtime.pipeline import BoundModel
from edgefuse.spec import parse_spec
from edgefuse.wire import WireError, decode, encode, result_payload

EVENTS = ["bell", "kettle", "tv"]


def heads_spec():
    return parse_spec(
        {**TINY, "multilabel": {"events": EVENTS}, "regression": {"speed": {"unit": "km/h", "min": 0, "max": 5}}}
    )


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """The tiny model with all three head kinds (untrained weights), thresholds set to 0.3 / 0.5 / 0.7."""
    torch = pytest.importorskip("torch")
    from edgefuse.deploy.export import export_bundle
    from edgefuse.trainer.checkpoint import save_run
    from edgefuse.trainer.models import build_model

    root = tmp_path_factory.mktemp("bundle")
    torch.manual_seed(0)
    spec = heads_spec()
    model = build_model(spec).eval()
    model.thresholds.copy_(torch.tensor([0.3, 0.5, 0.7]))
    model.set_targets_normalization({"speed": (2.5, 2.0)})  # values in km/h around 2.5, clipped to [0, 5]
    save_run(root / "run", spec, model, {}, {}, data_dir=root, n_samples=0, masked=[])
    export_bundle(root / "run", root / "bundle", parity_samples=4)
    return root / "bundle"


def test_live_results_publish_labels_above_threshold_and_values_with_units(bundle):
    spec = heads_spec()
    assert load_manifest(bundle / "manifest.json").outputs[1].thresholds == pytest.approx([0.3, 0.5, 0.7])
    summary, got = run_live(spec, BoundModel.load(bundle, backend="onnxruntime"), 1.5)
    assert summary["errors"] == [] and len(got) >= 5
    for msg, _ in got:
        p = msg.payload
        assert set(p["top"]) == {"event"}  # a multilabel head has no single top label
        s = p["scores"]["events"]
        assert list(s) == EVENTS and all(0 <= v <= 1 for v in s.values())
        assert p["multilabel"]["events"] == [e for e, t in zip(EVENTS, (0.3, 0.5, 0.7), strict=True) if s[e] >= t]
        assert p["values"]["speed"]["unit"] == "km/h" and 0.0 <= p["values"]["speed"]["value"] <= 5.0
        assert "speed" not in p["scores"]
    values = {m.payload["values"]["speed"]["value"] for m, _ in got}
    assert len(values) > 1  # the value follows the inputs


def test_wire_refuses_malformed_head_results_naming_the_field():
    def frames(**extra):
        payload = result_payload(1, {"a": 1}, {"a": True}, {"ev": {"x": 0.6, "y": 0.2}}, {"e2e": 1.0}, extra)
        return encode("result", "result/g", 0, 1, "g", payload)

    ok = decode(frames(multilabel={"ev": ["x"]}, values={"v": {"value": 3.5, "unit": "s"}}))
    assert ok.payload["top"] == {} and ok.payload["multilabel"] == {"ev": ["x"]}
    with pytest.raises(WireError, match=r"payload\.multilabel\.ev: expected a list of labels of scores\.ev"):
        decode(frames(multilabel={"ev": ["z"]}))
    with pytest.raises(WireError, match=r"payload\.values\.v: expected \{value: finite number, unit: str\}"):
        decode(frames(values={"v": {"value": float("nan"), "unit": "s"}}))
    with pytest.raises(WireError, match=r"payload\.values\.v"):
        decode(frames(values={"v": 3.0}))
    assert np.isfinite(ok.payload["values"]["v"]["value"])
