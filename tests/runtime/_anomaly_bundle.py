"""A tiny bundle with an anomaly model, shared by the runtime and monitor tests (seconds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_pipeline import tiny_spec

from edgefuse.spec import parse_spec, spec_to_dict


def anomaly_spec():
    d = spec_to_dict(tiny_spec())
    d["anomaly"] = {"latent": 4, "hidden": 16, "quantile": 0.9}
    return parse_spec(d, "tiny + anomaly")


def make_anomaly_bundle(root: Path) -> tuple[Path, Any, dict]:
    """A real bundle with anomaly.onnx in root/bundle: untrained weights, score statistics and thresholds fitted on
    random data; returns (bundle folder, manifest, thresholds)."""
    torch = pytest.importorskip("torch")
    from edgefuse.deploy.export import export_bundle, random_feeds
    from edgefuse.trainer.anomaly import fit_thresholds, save_anomaly
    from edgefuse.trainer.checkpoint import save_run
    from edgefuse.trainer.data import Dataset
    from edgefuse.trainer.models import build_model
    from edgefuse.trainer.models.anomaly import build_anomaly_model

    torch.manual_seed(0)
    spec = anomaly_spec()
    save_run(root / "run", spec, build_model(spec).eval(), {}, {}, data_dir=root, n_samples=0, masked=[])
    model = build_anomaly_model(spec).eval()
    feeds = random_feeds(spec, 64, seed=3)
    val = Dataset(spec, [str(i) for i in range(64)], np.array(["val"] * 64), feeds, feeds["mask"], {})
    thresholds = fit_thresholds(model, val, spec.anomaly.quantile)
    save_anomaly(root / "run", spec, model, {}, {"thresholds": thresholds, "history": []}, root)
    manifest = export_bundle(root / "run", root / "bundle", parity_samples=8)
    return root / "bundle", manifest, thresholds
