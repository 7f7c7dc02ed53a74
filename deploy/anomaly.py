"""The anomaly model in a bundle: RUN/anomaly.pt -> BUNDLE/anomaly.onnx, checked against torch in ONNX Runtime.

The graph takes exactly the classifier's inputs (one tensor per modality, raw units, plus "mask") and gives
"anomaly_scores" (B, M) and "anomaly_fused" (B,); the thresholds go into the manifest's `anomaly` entry, so the
runtime needs nothing but the bundle. Parity: the max abs difference of the scores (validation-std units) between
ONNX Runtime fp32 and torch on the export's parity samples must stay under ANOMALY_PARITY_TOLERANCE.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgefuse._optional import require
from edgefuse.errors import BundleError
from edgefuse.manifest import AnomalyManifest

ANOMALY_FILE = "anomaly.onnx"
SCORES, FUSED = "anomaly_scores", "anomaly_fused"
ANOMALY_PARITY_TOLERANCE = 1e-3  # scores are in validation-std units: 1e-3 std is far below any threshold
EVAL_BATCH = 32


def _graph(model: Any) -> Any:
    torch = require("torch", "export")

    class Graph(torch.nn.Module):
        """Positional inputs in spec order, mask last: the exported calling convention (as model.onnx)."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: Any) -> tuple[Any, Any]:
            return self.model(dict(zip(self.model.modalities, tensors[:-1], strict=True)), tensors[-1])

    return Graph()


def anomaly_to_onnx(model: Any, spec: Any, path: Path, opset: int) -> None:
    """Write the AnomalyModel (eval mode) to `path` with a dynamic batch axis on every input and output."""
    from edgefuse.trainer.models.onnx import example_inputs, export_traced

    names_in = [*spec.modality_names, "mask"]
    model.eval()
    export_traced(_graph(model), example_inputs(spec), path, names_in, [SCORES, FUSED], opset)
    model.eval()  # the exporter restores the wrapper's (training) mode on every submodule: back to eval


def torch_anomaly(model: Any, spec: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    torch = require("torch", "export")
    out: dict[str, list[np.ndarray]] = {SCORES: [], FUSED: []}
    n = len(feeds["mask"])
    with torch.inference_mode():
        for s in range(0, n, EVAL_BATCH):
            x = {m: torch.from_numpy(np.ascontiguousarray(feeds[m][s : s + EVAL_BATCH])) for m in spec.modality_names}
            scores, fused = model(x, torch.from_numpy(np.ascontiguousarray(feeds["mask"][s : s + EVAL_BATCH])))
            out[SCORES].append(scores.numpy())
            out[FUSED].append(fused.numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def export_anomaly(
    run_dir: Path, out: Path, spec: Any, feeds: dict[str, np.ndarray], opset: int
) -> AnomalyManifest | None:
    """Write out/anomaly.onnx when the run has an anomaly model; returns its manifest entry (None: no model).

    BundleError when ONNX Runtime disagrees with torch, or the run's anomaly model was trained for another spec."""
    from edgefuse.deploy.export import ort_probs, ort_session
    from edgefuse.trainer.anomaly import ANOMALY_CHECKPOINT, load_anomaly

    if not (Path(run_dir) / ANOMALY_CHECKPOINT).is_file():
        return None
    a_spec, model, ckpt = load_anomaly(run_dir)
    if a_spec.modality_names != spec.modality_names or any(
        a_spec.modalities[m].input_shape != spec.modalities[m].input_shape for m in spec.modality_names
    ):
        raise BundleError(f"{run_dir}/{ANOMALY_CHECKPOINT}: trained on other modalities than the run's classifier")
    path = out / ANOMALY_FILE
    anomaly_to_onnx(model, a_spec, path, opset)
    session = ort_session(path)
    got = ort_probs(session, feeds)
    want = torch_anomaly(model, a_spec, feeds)
    diff = max(float(np.max(np.abs(got[k] - want[k]))) for k in (SCORES, FUSED))
    if not diff <= ANOMALY_PARITY_TOLERANCE:
        raise BundleError(
            f"{path.name}: ONNX Runtime differs from torch by {diff:.3g} > {ANOMALY_PARITY_TOLERANCE} (max abs score); "
            "the anomaly export is wrong, not written"
        )
    metrics = {k: v for k, v in ckpt["metrics"].items() if k != "history"}
    return AnomalyManifest(
        file=ANOMALY_FILE,
        scores=SCORES,
        fused=FUSED,
        modalities=list(a_spec.modality_names),
        fuse=model.fuse,
        quantile=a_spec.anomaly.quantile,
        threshold=float(model.fused_threshold),
        thresholds={m: float(t) for m, t in zip(model.modalities, model.thresholds.tolist(), strict=True)},
        parity_max_abs_diff=diff,
        metrics=metrics,
    )
