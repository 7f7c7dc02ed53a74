"""Runtime sources: one small class per device kind, all stamping samples on the host monotonic clock.

A source has an explicit lifecycle: `open()`, then `read(timeout_s)` in a loop (one thread per source), then
`close()`. `read` returns what arrived since the last call and never raises on a transient device or network
fault: it reconnects and counts instead (`stats()`).

Two clocks:
  realtime=True   samples arrive as the device delivers them; t_capture_ns / t_arrival_ns are host monotonic ns.
  realtime=False  (synthetic, replay, video files) samples come on a virtual clock as fast as possible: each
                  `read(timeout_s)` advances that clock by timeout_s and returns the samples it covers, so a caller
                  stepping every source by the same amount gets them in lockstep. `now_ns()` is that clock.

Types are registered by name (the spec's `source.type`); `make_sources(spec)` builds one source per modality.

    sources = make_sources(load_spec("configs/smart_home.yaml"), realtime=False)
    for s in sources.values():
        s.open()
    batch = sources["env"].read(0.1)  # list[Sample]
"""

from __future__ import annotations

import importlib
import time
from typing import Any

from edgefuse.runtime.clock import Sample, monotonic_ns
from edgefuse.spec import ModalitySpec, ScenarioSpec


class Source:
    """A stream of Samples from one device (or simulation) for one modality."""

    def __init__(self, source_id: str, modality: str, spec: ModalitySpec, realtime: bool = True):
        self.id = source_id  # modality name, or "group/modality" with several sensor groups
        self.modality = modality
        self.kind = spec.kind
        self.spec = spec
        self.realtime = realtime
        self.counters: dict[str, int] = {"samples": 0, "drops": 0, "overflows": 0, "reconnects": 0, "errors": 0}
        self._seq = 0

    # lifecycle ------------------------------------------------------------------------------------------------------
    def open(self) -> None:
        """Connect to the device; a device that is absent now is retried by read(), not raised."""

    def read(self, timeout_s: float) -> list[Sample]:
        """Samples that arrived since the last call; blocks up to timeout_s (realtime) or steps the virtual clock."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the device; safe to call twice."""

    def stats(self) -> dict[str, Any]:
        """Counters: samples, drops (sequence gaps), overflows, reconnects, errors (+ clock fit for clocked sensors)."""
        return dict(self.counters)

    def now_ns(self) -> int:
        """This source's clock: host monotonic ns, or the virtual clock when not realtime."""
        return monotonic_ns()

    # helpers for subclasses -----------------------------------------------------------------------------------------
    def _sample(self, t_capture_ns: int, t_arrival_ns: int, data: Any, rate_hz: float = 0.0, **meta: Any) -> Sample:
        """A Sample with the next sequence number, counted."""
        s = Sample(self.id, self._seq, int(t_capture_ns), int(t_arrival_ns), data, rate_hz, meta)
        self._seq += 1
        self.counters["samples"] += 1
        return s

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, kind={self.kind!r})"


class Backoff:
    """Exponential reconnect delay: first_s, doubled per failure up to max_s, reset on success."""

    def __init__(self, first_s: float, max_s: float):
        self.first_s, self.max_s = first_s, max(max_s, first_s)
        self.delay_s = first_s
        self.next_try = 0.0  # time.monotonic() of the next allowed attempt

    def due(self) -> bool:
        return time.monotonic() >= self.next_try

    def wait(self, timeout_s: float) -> None:
        """Sleep until the next attempt is due, at most timeout_s."""
        time.sleep(max(0.0, min(timeout_s, self.next_try - time.monotonic())))

    def failed(self) -> None:
        self.next_try = time.monotonic() + self.delay_s
        self.delay_s = min(self.delay_s * 2, self.max_s)

    def succeeded(self) -> None:
        self.delay_s, self.next_try = self.first_s, 0.0


# ---------------------------------------------------------------------------------------------------------------------
# Registry: source type name -> "module:Class". Imported on first use, so a host without sounddevice can still run
# cameras and ZeroMQ sensors.

SOURCE_TYPES: dict[str, str] = {
    "camera": "edgefuse.runtime.sources.camera:CameraSource",
    "microphone": "edgefuse.runtime.sources.microphone:MicrophoneSource",
    "zmq": "edgefuse.runtime.sources.zmq_sensor:ZmqSensorSource",
    "synthetic": "edgefuse.runtime.sources.synthetic:SyntheticSource",
    "replay": "edgefuse.runtime.sources.replay:ReplaySource",
}


def register_source(type_name: str, target: str) -> None:
    """Register a source class ("module:Class") under a type name a config can pick.

    make_sources() calls `Class(source_id, modality, modality_spec, realtime=..., seed=..., context=...)`, where
    context is what the optional classmethod `shared_context(spec, modality, group, seed, realtime, shared)` returned (one
    object shared by the sources of one call, e.g. a simulated world), or None.
    """
    SOURCE_TYPES[type_name] = target


def source_class(type_name: str) -> type[Source]:
    module, _, cls = SOURCE_TYPES[type_name].partition(":")
    return getattr(importlib.import_module(module), cls)


def group_names(spec: ScenarioSpec) -> list[str | None]:
    """Sensor group names: [None] for one group (ids are bare modality names), else ["g0", "g1", ...]."""
    n = spec.runtime.groups
    return [None] if n == 1 else [f"g{i}" for i in range(n)]


def source_id(modality: str, group: str | None) -> str:
    return modality if group is None else f"{group}/{modality}"


def make_sources(
    spec: ScenarioSpec, group: str | None = None, seed: int = 0, realtime: bool = True
) -> dict[str, Source]:
    """One unopened source per modality of `spec`, keyed by source id.

    Synthetic modalities of one call share one simulated world (`.world`), so every stream shows the same events;
    replay modalities share one session and one time anchor, so their relative timing is kept.
    """
    out: dict[str, Source] = {}
    shared: dict[str, Any] = {}
    for i, (name, m) in enumerate(spec.modalities.items()):
        sid = source_id(name, group)
        cls = source_class(m.source.type)
        ctx = cls.shared_context(spec, name, group, seed, realtime, shared) if hasattr(cls, "shared_context") else None
        out[sid] = cls(sid, name, m, realtime=realtime, seed=seed * 1000 + i, context=ctx)
    return out


__all__ = [
    "Backoff",
    "SOURCE_TYPES",
    "Sample",
    "Source",
    "group_names",
    "make_sources",
    "register_source",
    "source_class",
    "source_id",
]
