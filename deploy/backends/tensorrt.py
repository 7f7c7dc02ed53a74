"""TensorRT backend: a bundle's engine (built by `edgefuse build-engine` on this host) run with execute_async_v3.

    backend = load_backend("bundles/home", backend="tensorrt", precision="fp16")            # pycuda buffers
    backend = load_backend("bundles/home", backend="tensorrt", buffers="torch")             # torch CUDA tensors

Buffers: page-locked host arrays and device allocations per batch size, allocated on first use and reused; two sets
per size so that batch k+1 is copied host -> device on a copy stream while batch k computes on the compute stream
(events order the two). Device memory comes from pycuda (the `trt` extra; no torch needed, as on an edge box) or,
with buffers="torch", from torch CUDA tensors (their data_ptr() is what TensorRT is given).

Engines are picked and checked by edgefuse.deploy.engine: an engine built for another GPU or TensorRT version, or
from an older export of the bundle, is refused with the command that rebuilds it. Batches larger than the engine's
optimization profile are run in chunks of its max batch. One backend serves one caller at a time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from edgefuse._optional import available, require
from edgefuse.deploy.backends import Backend, Feeds, register_backend
from edgefuse.deploy.bundle import Bundle
from edgefuse.deploy.engine import check_engine, detect_host, find_engine, rebuild_command
from edgefuse.errors import BundleError

U, H, R = TypeVar("U"), TypeVar("H"), TypeVar("R")


def overlapped(units: Iterable[U], submit: Callable[[U], H], finish: Callable[[H], R], depth: int = 2) -> Iterator[R]:
    """Submit up to `depth` units of asynchronous work before finishing the oldest: results come in order, and
    unit k+1 is already enqueued (its copies running) while unit k computes."""
    inflight: deque[H] = deque()
    for unit in units:
        if len(inflight) == depth:
            yield finish(inflight.popleft())
        inflight.append(submit(unit))
    while inflight:
        yield finish(inflight.popleft())


def chunks(prepared: Feeds, max_batch: int, static: bool = False) -> list[tuple[Feeds, bool]]:
    """A batch cut into pieces of at most `max_batch` rows, each with a flag marking the batch's last piece.
    `static` (a fixed-batch engine: DLA) pads every piece to exactly `max_batch` rows (see pad_rows)."""
    n = len(next(iter(prepared.values())))
    starts = list(range(0, n, max_batch)) or [0]
    pieces = [({k: v[s : s + max_batch] for k, v in prepared.items()}, s == starts[-1]) for s in starts]
    return [(pad_rows(p, max_batch), last) for p, last in pieces] if static and n else pieces


def pad_rows(feeds: Feeds, n: int) -> Feeds:
    """Feeds of fewer than n rows padded to n by repeating the last row (the padded rows' outputs are dropped by
    _finish: a fixed-shape engine takes exactly n rows). The "_rows" entry keeps the real row count."""
    rows = len(next(iter(feeds.values())))
    if rows == n:
        return feeds
    idx = np.minimum(np.arange(n), rows - 1)
    return {**{k: v[idx] for k, v in feeds.items()}, "_rows": np.empty(rows, np.int8)}


# ---------------------------------------------------------------------------------------------------------------------
# Device memory: pycuda or torch, behind the same few calls


class PyCudaMemory:
    """Page-locked host arrays, device allocations, streams and events from pycuda, on the primary context (the one
    TensorRT's runtime-API calls use), made current around every call so any thread may drive the backend."""

    name = "pycuda"

    def __init__(self, device: int = 0):
        self.cuda = require("pycuda.driver", "the TensorRT backend's buffers")
        self.cuda.init()
        self.ctx = self.cuda.Device(device).retain_primary_context()

    @contextmanager
    def active(self) -> Iterator[None]:
        self.ctx.push()
        try:
            yield
        finally:
            self.cuda.Context.pop()

    def stream(self) -> Any:
        return self.cuda.Stream()

    def handle(self, stream: Any) -> int:
        return stream.handle

    def event(self) -> Any:
        return self.cuda.Event()

    def host(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, Any]:
        a = self.cuda.pagelocked_empty(shape, dtype)
        return a, a

    def device(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[Any, int]:
        alloc = self.cuda.mem_alloc(max(1, int(np.prod(shape)) * dtype.itemsize))
        return alloc, int(alloc)

    def h2d(self, dev: Any, host: Any, stream: Any) -> None:
        self.cuda.memcpy_htod_async(dev, host, stream)

    def d2h(self, host: Any, dev: Any, stream: Any) -> None:
        self.cuda.memcpy_dtoh_async(host, dev, stream)

    def record(self, event: Any, stream: Any) -> None:
        event.record(stream)

    def wait(self, stream: Any, event: Any) -> None:
        stream.wait_for_event(event)

    def sync(self, event: Any) -> None:
        event.synchronize()

    def free(self, dev: Any) -> None:
        dev.free()

    def close(self) -> None:
        self.ctx.detach()  # releases this retain of the primary context


class TorchMemory:
    """The same calls on torch: pinned CPU tensors (NumPy views for filling), CUDA tensors as device buffers."""

    name = "torch"

    def __init__(self, device: int = 0):
        self.torch = require("torch", "torch tensors as TensorRT buffers")
        if not self.torch.cuda.is_available():
            raise BundleError("buffers='torch' needs torch with CUDA; this torch sees no CUDA device")
        self.device = self.torch.device("cuda", device)

    def active(self) -> Any:
        return self.torch.cuda.device(self.device)

    def stream(self) -> Any:
        return self.torch.cuda.Stream(self.device)

    def handle(self, stream: Any) -> int:
        return stream.cuda_stream

    def event(self) -> Any:
        return self.torch.cuda.Event()

    def _dtype(self, dtype: np.dtype) -> Any:
        return self.torch.from_numpy(np.empty(0, dtype)).dtype

    def host(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, Any]:
        t = self.torch.empty(shape, dtype=self._dtype(dtype), pin_memory=True)
        return t.numpy(), t  # the array shares the pinned tensor's memory

    def device(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[Any, int]:
        t = self.torch.empty(shape, dtype=self._dtype(dtype), device=self.device)
        return t, t.data_ptr()

    def h2d(self, dev: Any, host: Any, stream: Any) -> None:
        with self.torch.cuda.stream(stream):
            dev.copy_(host, non_blocking=True)

    def d2h(self, host: Any, dev: Any, stream: Any) -> None:
        with self.torch.cuda.stream(stream):
            host.copy_(dev, non_blocking=True)

    def record(self, event: Any, stream: Any) -> None:
        event.record(stream)

    def wait(self, stream: Any, event: Any) -> None:
        stream.wait_event(event)

    def sync(self, event: Any) -> None:
        event.synchronize()

    def free(self, dev: Any) -> None:
        pass  # the caching allocator takes the tensor back when it is dropped

    def close(self) -> None:
        pass


def device_memory(buffers: str, device: int = 0) -> PyCudaMemory | TorchMemory:
    """buffers: "pycuda", "torch", or "auto" (pycuda when importable, else torch with CUDA)."""
    if buffers == "pycuda" or (buffers == "auto" and available("pycuda.driver")):
        return PyCudaMemory(device)
    if buffers == "torch" or (buffers == "auto" and available("torch")):
        return TorchMemory(device)
    if buffers == "auto":
        require("pycuda.driver", "the TensorRT backend's buffers")  # raises, naming the `trt` extra
    raise BundleError(f"buffers={buffers!r}: choose auto, pycuda or torch")


# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class _Slot:
    """One buffer set for one batch size: pinned host arrays (+ copy handles), device buffers, two events."""

    host: dict[str, np.ndarray] = field(default_factory=dict)
    host_h: dict[str, Any] = field(default_factory=dict)
    dev: dict[str, Any] = field(default_factory=dict)
    ptr: dict[str, int] = field(default_factory=dict)
    copied: Any = None  # inputs are on the device
    done: Any = None  # outputs are back on the host


@register_backend("tensorrt")
class TensorRTBackend(Backend):
    """A TensorRT engine of the bundle, checked against this host; `engine` names one explicitly (refused with
    what differs if it was built elsewhere)."""

    def __init__(
        self,
        bundle: Bundle,
        precision: str = "fp32",
        engine: str | Path | None = None,
        buffers: str = "auto",
        device: int = 0,
        dla_core: int | None = None,
    ):
        trt = require("tensorrt", "the TensorRT backend")
        host = detect_host(device)
        if host is None:
            raise BundleError("the TensorRT backend needs a CUDA GPU; pycuda/torch see none on this host")
        path = Path(engine) if engine else find_engine(bundle.dir, precision, host, dla_core)
        if path is None:
            where = "the GPU" if dla_core is None else f"DLA core {dla_core}"
            raise BundleError(
                f"{bundle.dir}: no {precision} TensorRT engine for {where} built on this host ({host.gpu_name}, "
                f"{host.sm}, TensorRT {host.trt_version}); build one: {rebuild_command(bundle.dir, precision, dla_core)}"
            )
        tag = check_engine(path, host, bundle.dir)
        if tag.precision != precision:
            raise BundleError(f"{path}: a {tag.precision} engine, but precision {precision} was asked")
        self.precision, self.engine_path = precision, path
        self.inputs, self.outputs = list(bundle.manifest.inputs), list(bundle.manifest.outputs)
        self.max_batch = int(tag.batch["max"])
        self.static = tag.static_batch is not None  # a fixed-shape engine (DLA): every chunk padded to max_batch
        self.tag, self.gpu, self.buffers = tag, device, buffers
        self.mem = device_memory(buffers, device)
        with self.mem.active():
            self._load(trt, path, tag.dla_core)
        self._slots: dict[tuple[int, int], _Slot] = {}
        self._parity = 0

    def _load(self, trt: Any, path: Path, dla_core: int | None) -> None:
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))  # kept: it must outlive the engine
        if dla_core is not None:
            self.runtime.DLA_core = dla_core
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BundleError(f"{path}: TensorRT could not deserialize it (see TensorRT's log above)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        want = {t.name for t in self.inputs} | {t.name for t in self.outputs}
        if set(names) != want:
            raise BundleError(f"{path}: engine tensors {sorted(names)} differ from the manifest's {sorted(want)}")
        self.copy_stream, self.compute_stream = self.mem.stream(), self.mem.stream()

    def _slot(self, n: int, parity: int) -> _Slot:
        """The buffer set for batch size n (one of two), allocated on first use."""
        key = (n, parity)
        if key not in self._slots:
            slot = _Slot(copied=self.mem.event(), done=self.mem.event())
            for t in self.inputs:
                self.context.set_input_shape(t.name, (n, *t.shape[1:]))
            shapes = {t.name: (n, *t.shape[1:]) for t in self.inputs}
            shapes |= {t.name: tuple(self.context.get_tensor_shape(t.name)) for t in self.outputs}
            for name, shape in shapes.items():
                slot.host[name], slot.host_h[name] = self.mem.host(shape, self.dtypes[name])
                slot.dev[name], slot.ptr[name] = self.mem.device(shape, self.dtypes[name])
            self._slots[key] = slot
        return self._slots[key]

    def _submit(self, unit: tuple[Feeds, bool]) -> tuple[_Slot | None, bool, int]:
        """Enqueue one chunk: H2D on the copy stream, compute + D2H on the compute stream after the copy's event."""
        feeds, last = unit
        rows = len(feeds.pop("_rows", feeds[self.inputs[0].name]))  # the real rows of a padded chunk
        n = len(feeds[self.inputs[0].name])
        if n == 0:  # an empty batch cannot enter the engine (profile min >= 1): nothing to compute
            return None, last, 0
        self._parity ^= 1  # consecutive chunks never share a buffer set: the previous one may still be in flight
        with self.mem.active():
            slot = self._slot(n, self._parity)
            for t in self.inputs:
                np.copyto(slot.host[t.name], feeds[t.name], casting="unsafe")  # engine dtype (fp16 I/O included)
                self.mem.h2d(slot.dev[t.name], slot.host_h[t.name], self.copy_stream)
            self.mem.record(slot.copied, self.copy_stream)
            self.mem.wait(self.compute_stream, slot.copied)
            for t in self.inputs:
                if not self.context.set_input_shape(t.name, slot.host[t.name].shape):
                    raise BundleError(f"{self.engine_path}: input {t.name!r} shape {slot.host[t.name].shape} rejected")
            for name, ptr in slot.ptr.items():
                self.context.set_tensor_address(name, ptr)
            if not self.context.execute_async_v3(self.mem.handle(self.compute_stream)):
                raise BundleError(f"{self.engine_path}: TensorRT failed to enqueue the batch (see its log)")
            for t in self.outputs:
                self.mem.d2h(slot.host_h[t.name], slot.dev[t.name], self.compute_stream)
            self.mem.record(slot.done, self.compute_stream)
        return slot, last, rows

    def _finish(self, submitted: tuple[_Slot | None, bool, int]) -> tuple[Feeds, bool]:
        slot, last, rows = submitted
        if slot is None:
            return {t.name: np.zeros((0, *t.shape[1:]), np.float32) for t in self.outputs}, last
        with self.mem.active():
            self.mem.sync(slot.done)
        # copies: the pinned buffers are reused by the next batch of this size; padding rows dropped
        return {t.name: slot.host[t.name][:rows].astype(np.float32, copy=True) for t in self.outputs}, last

    def _results(self, prepared: Iterable[Feeds]) -> Iterator[Feeds]:
        units = (u for p in prepared for u in chunks(p, self.max_batch, self.static))
        parts: list[Feeds] = []
        for outputs, last in overlapped(units, self._submit, self._finish, depth=2):
            parts.append(outputs)
            if last:
                yield {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
                parts = []

    def execute(self, prepared: Feeds) -> Feeds:
        return next(self._results([prepared]))

    def run_pipelined(self, batches: Iterable[Feeds]) -> Iterator[Feeds]:
        """run() of each batch, with batch k+1 checked, staged and copied to the GPU while batch k computes."""
        return self._results(self.prepare(feeds) for feeds in batches)

    def describe(self) -> dict[str, Any]:
        where = f"cuda:{self.gpu}" if self.tag.dla_core is None else f"dla:{self.tag.dla_core} (GPU fallback)"
        batch = f"fixed batch {self.tag.static_batch}" if self.static else f"batch {self.tag.batch}"
        return {
            **super().describe(),
            "device": where,
            "file": self.engine_path.name,
            "engine_mb": round(self.engine_path.stat().st_size / 1e6, 3),
            "detail": f"TensorRT {self.tag.trt_version}, {batch}, buffers {self.mem.name}, tf32 {self.tag.tf32}",
        }

    def close(self) -> None:
        if getattr(self, "context", None) is None:
            return
        with self.mem.active():
            for slot in self._slots.values():
                self.mem.sync(slot.done)
                for dev in slot.dev.values():
                    self.mem.free(dev)
            self._slots.clear()
            self.context = self.engine = self.runtime = None
        self.mem.close()
