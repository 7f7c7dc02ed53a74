"""ONNX Runtime backend: the best execution provider this onnxruntime build has (TensorRT, CUDA, then the CPU), or
the CPU only with device="cpu".

INT8 on a GPU provider runs model.int8-trt.onnx (symmetric Q/DQ, what TensorRT and CUDA take); on the CPU it runs
model.int8.onnx (uint8 activations, the x86 fast path)."""

from __future__ import annotations

from typing import Any

import onnxruntime as ort

from edgefuse.deploy.backends import Backend, Feeds, ort_providers, register_backend
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
    """Providers in preference order (TensorRT EP, CUDA EP, CPU last); device "cpu" keeps only the CPU."""
    return ort_providers(ort.get_available_providers(), device)


@register_backend("onnxruntime")
class OnnxRuntimeBackend(Backend):
    """One ONNX Runtime InferenceSession on a bundle variant (model.onnx, model.fp16.onnx, model.int8.onnx)."""

    def __init__(self, bundle: Bundle, precision: str = "fp32", threads: int | None = None, device: str = "auto"):
        providers = pick_providers(device)
        on_gpu = providers[0] != "CPUExecutionProvider"
        variant = "int8-trt" if precision == "int8" and on_gpu and "int8-trt" in bundle.manifest.variants else precision
        path = bundle.variant_path(variant)
        self.precision, self.variant, self.file = precision, variant, path.name
        self.inputs = list(bundle.manifest.inputs)
        self.outputs = list(bundle.manifest.outputs)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=session_options(threads), providers=providers)
        except Exception as err:  # noqa: BLE001 - ORT raises its own types; name the file
            raise BundleError(f"{path}: ONNX Runtime cannot load it: {err}") from None
        self.providers = self.session.get_providers()
        self._output_names = [t.name for t in self.outputs]
        got = {i.name for i in self.session.get_inputs()}
        want = {t.name for t in self.inputs}
        if got != want:
            raise BundleError(f"{path}: model inputs {sorted(got)} do not match the manifest's {sorted(want)}")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "device": self.providers[0], "file": self.file, "providers": self.providers}

    def execute(self, prepared: Feeds) -> Feeds:
        values = self.session.run(self._output_names, prepared)
        return dict(zip(self._output_names, values, strict=True))

    def close(self) -> None:
        self.session = None  # type: ignore[assignment] - the session frees its memory when collected
