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


def _auto_backend(bundle: Any, precision: str) -> str:
    """TensorRT when the bundle holds an engine built for this GPU and TensorRT version, else ONNX Runtime."""
    try:
        from edgefuse.deploy.engine import find_engine
    except Exception:  # noqa: BLE001 - no engine module or no TensorRT: ONNX Runtime serves
        return "onnxruntime"
    try:
        return "tensorrt" if find_engine(bundle.dir, precision) is not None else "onnxruntime"
    except Exception:  # noqa: BLE001 - no GPU / driver problems: fall back rather than fail to start
        return "onnxruntime"


def load_backend(bundle_dir: str | Path, backend: str = "auto", precision: str = "fp32", **kw: Any) -> Backend:
    """Load a verified bundle on a backend ("auto" | "onnxruntime" | "tensorrt" | "torch") at a precision."""
    from edgefuse.deploy.bundle import load_bundle

    if precision not in PRECISIONS:
        raise BundleError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    bundle = load_bundle(bundle_dir)
    name = _auto_backend(bundle, precision) if backend == "auto" else backend
    return backend_class(name)(bundle, precision, **kw)


__all__ = ["Backend", "Feeds", "check_feeds", "register_backend", "backend_class", "load_backend"]
