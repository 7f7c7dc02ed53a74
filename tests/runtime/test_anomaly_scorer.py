"""The anomaly model in a bundle, end to end without torch at run time: exported next to model.onnx with ONNX
Runtime parity checked, run each tick on the classifier's feeds, published as the result's `anomaly` key, alerts
counted; bundles without one load and publish as before."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _anomaly_bundle import make_anomaly_bundle
from test_pipeline import _recorded, tiny_spec

from edgefuse.runtime.pipeline import BoundModel, Pipeline
from edgefuse.wire import WireError, decode, encode


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_anomaly_bundle(tmp_path_factory.mktemp("anomaly_bundle"))


def test_export_writes_anomaly_onnx_with_parity_and_thresholds(bundle):
    out, m, thresholds = bundle
    a = m.anomaly
    assert a is not None and (out / a.file).is_file() and a.file in m.files
    assert a.parity_max_abs_diff <= 1e-3
    assert a.threshold == pytest.approx(thresholds["fused"]) and a.modalities == ["cam", "mic", "env", "txt"]
    assert a.thresholds == pytest.approx(thresholds["modalities"])
    assert json.loads((out / "manifest.json").read_text())["anomaly"]["quantile"] == 0.9
    assert "history" not in a.metrics


def test_scorer_runs_onnx_and_leaves_masked_modalities_out(bundle):
    from edgefuse.deploy.bundle import load_bundle
    from edgefuse.deploy.export import random_feeds
    from edgefuse.runtime.anomaly import AnomalyScorer

    out, m, _ = bundle
    scorer = AnomalyScorer.load(load_bundle(out), device="cpu")
    feeds = random_feeds(m.scenario(), 6, seed=9)
    feeds["mask"][:] = 1.0
    feeds["mask"][2, 0] = 0.0  # no camera in row 2
    res = scorer.run(feeds)
    assert res["anomaly_scores"].shape == (6, 4) and res["anomaly_fused"].shape == (6,)
    assert res["anomaly_scores"][2, 0] == 0.0
    row = scorer.result(res, 2, feeds["mask"][2])
    assert set(row["modalities"]) == {"mic", "env", "txt"}
    assert row["score"] == pytest.approx(max(row["modalities"].values()))  # fuse: max of the present ones
    assert row["alert"] is (row["score"] > m.anomaly.threshold)


def test_replay_publishes_the_anomaly_key_and_counts_alerts(bundle):
    out, m, _ = bundle
    spec = tiny_spec()
    model = BoundModel.load(out, backend="onnxruntime")
    results: list[dict] = []
    pipe = Pipeline(spec, model, {}, None, on_result=lambda g, p: results.append(p))
    pipe.replay(_recorded(spec, 3.0))
    assert len(results) == 31
    scores = np.array([p["anomaly"]["score"] for p in results])
    assert np.isfinite(scores).all() and scores.std() > 0  # the frames change per tick: so do the scores
    # a threshold at the median of these scores: about half the ticks alert, and the summary counts exactly those
    model.anomaly.info.threshold = float(np.median(scores))
    results.clear()
    pipe = Pipeline(spec, model, {}, None, on_result=lambda g, p: results.append(p))
    pipe.replay(_recorded(spec, 3.0))
    alerts = [p["anomaly"]["alert"] for p in results]
    assert alerts == [bool(s > np.median(scores)) for s in scores]
    assert pipe.summary()["anomaly_alerts"] == sum(alerts) > 0
    for p in results:
        present = {k for k, v in p["mask"].items() if v}
        assert set(p["anomaly"]["modalities"]) == present
        frames = encode("result", "result/dev/", 1, 1, "", p)
        assert decode(frames).payload["anomaly"] == p["anomaly"]  # the wire schema accepts it as published
    model.close()


def test_wire_refuses_a_malformed_anomaly_key():
    p = {"t_tick_ns": 1, "capture_ns": {}, "mask": {}, "scores": {}, "top": {}, "latency_ms": {}}
    for bad, where in (
        ({"score": "high", "threshold": 1.0, "alert": True, "modalities": {}}, "payload.anomaly.score"),
        ({"score": 1.0, "threshold": 1.0, "alert": True}, "payload.anomaly.modalities: missing"),
        ({"score": 1.0, "threshold": 1.0, "alert": 1, "modalities": {}}, "payload.anomaly.alert"),
    ):
        with pytest.raises(WireError, match=where):
            decode(encode("result", "result/dev/", 1, 1, "", {**p, "anomaly": bad}))


def test_a_bundle_without_anomaly_publishes_as_before(tmp_path):
    pytest.importorskip("torch")
    from edgefuse.deploy.export import export_bundle
    from edgefuse.trainer.checkpoint import save_run
    from edgefuse.trainer.models import build_model

    spec = tiny_spec()
    save_run(tmp_path / "run", spec, build_model(spec).eval(), {}, {}, data_dir=tmp_path, n_samples=0, masked=[])
    m = export_bundle(tmp_path / "run", tmp_path / "bundle", parity_samples=4)
    assert m.anomaly is None and not (tmp_path / "bundle" / "anomaly.onnx").exists()
    model = BoundModel.load(tmp_path / "bundle", backend="onnxruntime")
    assert model.anomaly is None
    results: list[dict] = []
    pipe = Pipeline(spec, model, {}, None, on_result=lambda g, p: results.append(p))
    pipe.replay(_recorded(spec, 1.0))
    assert results and all("anomaly" not in p for p in results)
    assert pipe.summary()["anomaly_alerts"] is None
    model.close()


def test_the_scorer_runs_where_torch_cannot_be_imported(bundle):
    import subprocess
    import sys

    out, _, _ = bundle
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from edgefuse.runtime.pipeline import BoundModel\n"
        f"m = BoundModel.load({str(out)!r}, backend='onnxruntime')\n"
        "rng = np.random.default_rng(0)\n"
        "feeds = {t.name: (rng.integers(1, 60, [2, *t.shape[1:]]) if t.dtype == 'int64' else "
        "rng.random([2, *t.shape[1:]])).astype(t.dtype) for t in m.backend.inputs}\n"
        "feeds['mask'][:] = 1\n"
        "res = m.anomaly.result(m.anomaly.run(feeds), 0, feeds['mask'][0])\n"
        "assert set(res['modalities']) == {'cam', 'mic', 'env', 'txt'}, res\n"
        "assert 'torch' not in [k for k in sys.modules if sys.modules[k] is not None], 'torch was imported'\n"
        "assert not [k for k in sys.modules if k.startswith('edgefuse.trainer')], 'the trainer was imported'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
