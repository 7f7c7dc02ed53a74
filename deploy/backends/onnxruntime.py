"""ONNX Runtime backend: CPU by default, CUDA first where this onnxruntime build and host provide it."""

from __future__ import annotations

import onnxruntime as ort

from edgefuse.deploy.backends import Backend, Feeds, register_backend
from edgefuse.deploy.bundle import Bundle
from edgefuse.errors import BundleError


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """All graph optimizations; intra-op threads = `threads` (None: ONNX Runtime's default, one per core)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        so.intra_op_num_threads = threads
    # a batch of small models gains nothing from inter-op parallelism; keep the thread count predictable
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3  # errors only: ORT warns about every fp16/QDQ fallback otherwise
    return so


def pick_providers(device: str = "auto") -> list[str]:
    """Providers in preference order: CUDA first when available (device auto or cuda), CPU always last."""
    have = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda" and "CUDAExecutionProvider" not in have:
        raise BundleError("device 'cuda' asked but this onnxruntime has no CUDAExecutionProvider")
    cuda = ["CUDAExecutionProvider"] if "CUDAExecutionProvider" in have else []
    return [*cuda, "CPUExecutionProvider"]


@register_backend("onnxruntime")
class OnnxRuntimeBackend(Backend):
    """One ONNX Runtime InferenceSession on a bundle variant (model.onnx, model.fp16.onnx, model.int8.onnx)."""

    def __init__(self, bundle: Bundle, precision: str = "fp32", threads: int | None = None, device: str = "auto"):
        path = bundle.variant_path(precision)
        self.precision = precision
        self.inputs = list(bundle.manifest.inputs)
        self.outputs = list(bundle.manifest.outputs)
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=session_options(threads), providers=pick_providers(device)
            )
        except Exception as err:  # noqa: BLE001 - ORT raises its own types; name the file
            raise BundleError(f"{path}: ONNX Runtime cannot load it: {err}") from None
        self.providers = self.session.get_providers()
        self._output_names = [t.name for t in self.outputs]
        got = {i.name for i in self.session.get_inputs()}
        want = {t.name for t in self.inputs}
        if got != want:
            raise BundleError(f"{path}: model inputs {sorted(got)} do not match the manifest's {sorted(want)}")

    def execute(self, prepared: Feeds) -> Feeds:
        values = self.session.run(self._output_names, prepared)
        return dict(zip(self._output_names, values, strict=True))

    def close(self) -> None:
        self.session = None  # type: ignore[assignment] - the session frees its memory when collected
