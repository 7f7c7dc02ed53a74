"""The bundle's anomaly model at run time: ONNX Runtime on anomaly.onnx, fed the very feeds of the classifier.

    scorer = AnomalyScorer.load(bundle)        # None when the bundle has no anomaly model
    out = scorer.run(feeds)                    # {"anomaly_scores": (B, M), "anomaly_fused": (B,)}
    scorer.result(out, i)                      # the result message's `anomaly` value for row i (docs/wire.md)

It is a Backend (deploy/backends) on its own ONNX file: the same input checks and the same ONNX Runtime session
settings and execution-provider choice as the classifier's onnxruntime backend. No torch, no trainer import.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgefuse.deploy.backends import Backend, Feeds
from edgefuse.errors import BundleError
from edgefuse.manifest import AnomalyManifest, TensorSpec


class AnomalyScorer(Backend):
    """anomaly.onnx of a bundle on ONNX Runtime; `result` turns a row of its outputs into the wire's `anomaly`."""

    name = "onnxruntime"

    def __init__(self, bundle: Any, device: str = "auto", threads: int | None = None):
        import onnxruntime as ort

        from edgefuse.deploy.backends.onnxruntime import pick_providers, session_options

        a: AnomalyManifest = bundle.manifest.anomaly
        self.info = a
        path = bundle.dir / a.file
        self.inputs = list(bundle.manifest.inputs)
        n = len(a.modalities)
        self.outputs = [
            TensorSpec(name=a.scores, dtype="float32", shape=[-1, n]),
            TensorSpec(name=a.fused, dtype="float32", shape=[-1]),
        ]
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=session_options(threads), providers=pick_providers(device)
            )
        except Exception as err:  # noqa: BLE001 - ORT raises its own types; name the file
            raise BundleError(f"{path}: ONNX Runtime cannot load the anomaly model: {err}") from None
        got = {i.name for i in self.session.get_inputs()}
        if got != {t.name for t in self.inputs}:
            raise BundleError(
                f"{path}: inputs {sorted(got)} do not match the manifest's {[t.name for t in self.inputs]}"
            )
        self.file = path.name
        self._names = [a.scores, a.fused]

    @classmethod
    def load(cls, bundle: Any, device: str = "auto", threads: int | None = None) -> AnomalyScorer | None:
        """The bundle's anomaly scorer, or None when it has no anomaly model (older bundles load as before)."""
        if bundle.manifest.anomaly is None:
            return None
        return cls(bundle, "cpu" if device.startswith("dla") else device, threads)

    def execute(self, prepared: Feeds) -> Feeds:
        return dict(zip(self._names, self.session.run(self._names, prepared), strict=True))

    def result(self, out: Feeds, i: int, mask: np.ndarray) -> dict[str, Any]:
        """Row i as the result's `anomaly`: fused score, its threshold, alert, and the present modalities' scores."""
        a = self.info
        score = float(out[a.fused][i])
        row = out[a.scores][i]
        return {
            "score": score,
            "threshold": a.threshold,
            "alert": bool(score > a.threshold),
            "modalities": {m: float(row[j]) for j, m in enumerate(a.modalities) if mask[j] > 0.5},
        }

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "file": self.file, "device": self.session.get_providers()[0]}

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
