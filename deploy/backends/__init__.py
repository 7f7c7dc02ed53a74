"""Inference backends behind one small interface, registered by name: onnxruntime, tensorrt, torch.

A backend runs one bundle variant on batches of named NumPy arrays:

    from edgefuse.deploy.backends import load_backend
    backend = load_backend("bundles/home", backend="auto", precision="fp32")
    probs = backend.run({"camera": x_cam, "mic": x_mic, "env": x_env, "mask": mask})  # {"scores_event": (N, C)}

Implementing a backend: subclass Backend, decorate with @register_backend("name"), take
`__init__(self, bundle: Bundle, precision: str, **kw)`, set name/precision/inputs/outputs, implement `execute`.
`prepare` (validation, contiguous copies, pinned-buffer staging) is the host-side work that `run_pipelined`
overlaps with the `execute` of the previous batch; override it when a backend stages inputs differently.
"""

from __future__ import annotations

import importlib
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefuse.errors import BundleError, InputError
from edgefuse.manifest import PRECISIONS, TensorSpec

Feeds = dict[str, np.ndarray]

# where each backend lives and which pip extra provides what it imports
BACKEND_MODULES = {
    "onnxruntime": ("edgefuse.deploy.backends.onnxruntime", "edgefuse (base install: onnxruntime)"),
    "tensorrt": ("edgefuse.deploy.backends.tensorrt", "edgefuse[trt]"),
    "torch": ("edgefuse.deploy.backends.torch", "edgefuse[train]"),
}
_REGISTRY: dict[str, type[Backend]] = {}


def check_feeds(feeds: Feeds, inputs: list[TensorSpec]) -> int:
    """Validate feeds against the model inputs; returns the batch size. InputError names the tensor."""
    if not isinstance(feeds, dict):
        raise InputError(f"feeds must be a dict of name -> array, got {type(feeds).__name__}")
    expected = {t.name for t in inputs}
    unknown = sorted(set(feeds) - expected)
    if unknown:
        raise InputError(f"unknown input {unknown[0]!r}; the model takes {sorted(expected)}")
    batch: tuple[str, int] | None = None
    for t in inputs:
        if t.name not in feeds:
            raise InputError(f"missing input {t.name!r} ({t.dtype}, shape {t.shape})")
        a = feeds[t.name]
        if not isinstance(a, np.ndarray):
            raise InputError(f"input {t.name!r}: expected a numpy array, got {type(a).__name__}")
        if a.dtype != np.dtype(t.dtype):
            raise InputError(f"input {t.name!r}: dtype {a.dtype}, expected {t.dtype}")
        if a.ndim != len(t.shape):
            raise InputError(f"input {t.name!r}: rank {a.ndim} (shape {list(a.shape)}), expected shape {t.shape}")
        for axis, (got, want) in enumerate(zip(a.shape, t.shape, strict=True)):
            if want >= 0 and got != want:
                raise InputError(f"input {t.name!r}: shape {list(a.shape)}, expected {t.shape} (axis {axis})")
        if batch is None:
            batch = (t.name, a.shape[0])
        elif a.shape[0] != batch[1]:
            raise InputError(
                f"input {t.name!r}: batch size {a.shape[0]} disagrees with {batch[0]!r} (batch size {batch[1]})"
            )
    return batch[1] if batch else 0


class Backend(ABC):
    """Runs one precision variant of a bundle on batches (axis 0) of named arrays."""

    name: str = ""  # "onnxruntime" | "tensorrt" | "torch"
    precision: str = "fp32"  # "fp32" | "fp16" | "int8"
    reason: str = "asked"  # why this backend runs (auto's choice, or asked by name)
    inputs: list[TensorSpec]  # shape -1 = batch axis
    outputs: list[TensorSpec]

    def prepare(self, feeds: Feeds) -> Any:
        """Host-side work before compute: validate and make each input contiguous, in the model's input order."""
        check_feeds(feeds, self.inputs)
        return {t.name: np.ascontiguousarray(feeds[t.name]) for t in self.inputs}

    @abstractmethod
    def execute(self, prepared: Any) -> Feeds:
        """Compute on what `prepare` returned; output name -> (N, ...) array."""

    def run(self, feeds: Feeds) -> Feeds:
        """Run one batch of N samples (axis 0): input name -> array, returns output name -> array."""
        return self.execute(self.prepare(feeds))

    def run_pipelined(self, batches: Iterable[Feeds]) -> Iterator[Feeds]:
        """Yield run(batch) for each batch, preparing batch k+1 on a thread while batch k computes."""
        slots: queue.Queue = queue.Queue(maxsize=1)  # one batch prepared ahead: bounded memory
        stop = threading.Event()  # set when the consumer stops early, so the producer does not block forever
        done = object()

        def put(item: tuple) -> bool:
            while not stop.is_set():
                try:
                    slots.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def producer() -> None:
            try:
                for feeds in batches:
                    if not put((self.prepare(feeds), None)):
                        return
            except BaseException as err:  # noqa: BLE001 - re-raised in the consumer
                put((None, err))
                return
            put((done, None))

        thread = threading.Thread(target=producer, name=f"{self.name}-prepare", daemon=True)
        thread.start()
        try:
            while True:
                prepared, err = slots.get()
                if err is not None:
                    raise err
                if prepared is done:
                    break
                yield self.execute(prepared)
        finally:
            stop.set()
            thread.join()

    def describe(self) -> dict[str, Any]:
        """What exactly runs, for the start-up line and the run summary: backend, precision, device, file."""
        return {"name": self.name, "precision": self.precision, "reason": self.reason}

    def close(self) -> None:  # noqa: B027 - optional hook: backends holding nothing need not override it
        """Release sessions, engines and device memory."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, precision={self.precision!r})"


def register_backend(name: str) -> Callable[[type[Backend]], type[Backend]]:
    """Class decorator: make a Backend loadable by `load_backend(..., backend=name)`."""

    def deco(cls: type[Backend]) -> type[Backend]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def backend_class(name: str) -> type[Backend]:
    """The Backend class registered as `name`, importing its module; BundleError says what to install."""
    if name not in _REGISTRY:
        if name not in BACKEND_MODULES:
            raise BundleError(f"unknown backend {name!r}; choose from auto, {', '.join(BACKEND_MODULES)}")
        module, extra = BACKEND_MODULES[name]
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise BundleError(f"backend {name!r} is not available ({err}); install {extra}") from None
    if name not in _REGISTRY:
        raise BundleError(f"backend {name!r}: {BACKEND_MODULES[name][0]} registers no backend")
    return _REGISTRY[name]


def parse_device(device: str) -> tuple[str, int | None]:
    """ "cuda:1" -> ("cuda", 1), "dla" -> ("dla", None), "cpu"/"auto" -> (kind, None)."""
    kind, _, index = device.partition(":")
    if kind not in ("auto", "cpu", "cuda", "dla") or (index and not index.isdigit()):
        raise BundleError(f"device {device!r}: use auto, cpu, cuda, cuda:N, dla or dla:N")
    return kind, int(index) if index else None


@dataclass
class Choice:
    """What `choose` decided: the backend, its keyword arguments, and why (for the start-up line)."""

    backend: str
    precision: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


def ort_providers(available: list[str], kind: str) -> list[str]:
    """ONNX Runtime providers to ask for, best first: TensorRT EP, CUDA EP, then the CPU (always last).
    kind "cpu" keeps only the CPU; "cuda" refuses a build without a GPU provider."""
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    gpu = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
    if kind == "cuda" and not gpu:
        raise BundleError("device 'cuda' asked, but this onnxruntime has no TensorRT or CUDA execution provider")
    return [*gpu, "CPUExecutionProvider"]


def choose(
    bundle_dir: str | Path,
    backend: str = "auto",
    precision: str = "fp32",
    device: str = "auto",
    cuda_graphs: bool = False,
    threads: int | None = None,
    find: Callable[..., Path | None] | None = None,
) -> Choice:
    """Pick the backend and its arguments for runtime.model. `auto`: this host's TensorRT engine at `precision`
    (on a DLA core when device is dla:N), else ONNX Runtime with the best execution provider it has.

    `find(bundle_dir, precision, dla_core=...)` is edgefuse.deploy.engine.find_engine (tests pass their own)."""
    kind, index = parse_device(device)
    cpu_kw = {"threads": threads} if threads else {}
    if backend == "torch":
        torch_device = "auto" if kind == "auto" else f"{kind}:{index}" if index is not None else kind
        return Choice("torch", precision, {"device": torch_device, "cuda_graphs": cuda_graphs, **cpu_kw}, "asked")
    dla = (index or 0) if kind == "dla" else None
    gpu = index or 0
    if backend == "tensorrt":
        return Choice("tensorrt", precision, {"device": 0 if dla is not None else gpu, "dla_core": dla}, "asked")
    if backend == "auto" and kind != "cpu":
        engine = _find_engine(find, bundle_dir, precision, dla)
        if engine is not None:
            kw = {"device": 0 if dla is not None else gpu, "dla_core": dla, "engine": engine}
            return Choice("tensorrt", precision, kw, f"auto: a {precision} engine built for this host: {engine.name}")
        if dla is not None:
            raise BundleError(
                f"{bundle_dir}: no {precision} engine for DLA core {dla} built on this host; build one: "
                f"edgefuse build-engine --bundle {bundle_dir} --precision {precision} --dla {dla}"
            )
    if backend not in ("auto", "onnxruntime"):
        raise BundleError(f"unknown backend {backend!r}; choose from auto, {', '.join(BACKEND_MODULES)}")
    ort_device = "cpu" if kind == "cpu" else "cuda" if kind == "cuda" else "auto"
    why = "asked" if backend == "onnxruntime" else f"auto: no {precision} TensorRT engine fits this host"
    return Choice("onnxruntime", precision, {"device": ort_device, **cpu_kw}, why)


def _find_engine(find: Callable[..., Path | None] | None, bundle_dir: Any, precision: str, dla: int | None):
    if find is None:
        try:
            from edgefuse.deploy.engine import find_engine as find
        except Exception:  # noqa: BLE001 - no engine module usable: ONNX Runtime serves
            return None
    try:
        return find(bundle_dir, precision, dla_core=dla)
    except Exception:  # noqa: BLE001 - no GPU / driver problems: fall back rather than fail to start
        return None


def load_backend(bundle_dir: str | Path, backend: str = "auto", precision: str = "fp32", **kw: Any) -> Backend:
    """Load a verified bundle on a backend ("auto" | "onnxruntime" | "tensorrt" | "torch") at a precision.

    With backend "auto", `device`, `cuda_graphs` and `threads` in `kw` go through `choose` (runtime.model)."""
    from edgefuse.deploy.bundle import load_bundle

    if precision not in PRECISIONS:
        raise BundleError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    bundle = load_bundle(bundle_dir)
    if backend == "auto":
        choice = choose(bundle.dir, "auto", precision, **kw)
        be = backend_class(choice.backend)(bundle, precision, **choice.kwargs)
        be.reason = choice.reason
        return be
    return backend_class(backend)(bundle, precision, **kw)


def load_model(bundle_dir: str | Path, model: Any) -> Backend:
    """Load the backend a runtime.model section (edgefuse.spec.RuntimeModelSpec) asks for."""
    from edgefuse.deploy.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    choice = choose(bundle.dir, model.backend, model.precision, model.device, model.cuda_graphs, model.threads)
    be = backend_class(choice.backend)(bundle, choice.precision, **choice.kwargs)
    be.reason = choice.reason
    return be


__all__ = [
    "Backend",
    "Choice",
    "Feeds",
    "backend_class",
    "check_feeds",
    "choose",
    "load_backend",
    "load_model",
    "register_backend",
]
