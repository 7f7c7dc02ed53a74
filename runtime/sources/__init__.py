"""Runtime sources: one small class per device kind, all stamping samples on the host monotonic clock.

A source has an explicit lifecycle: `open()`, then `read(timeout_s)` in a loop (one thread per source), then
`close()`. `read` returns what arrived since the last call and never raises on a transient device or network
fault: it reconnects and counts instead (`stats()`).

Two clocks:
  realtime=True   samples arrive as the device delivers them; t_capture_ns / t_arrival_ns are host monotonic ns.
  realtime=False  (synthetic, replay, video files) samples come on a virtual clock as fast as possible: each
                  `read(timeout_s)` advances that clock by timeout_s and returns the samples it covers, so a caller
                  stepping every source by the same amount gets them in lockstep. `now_ns()` is that clock.

Every source says what it is at start-up (`describe()`: modality, type, device, rate, live/synthetic/replay), logs
each open failure and reconnect with its device at a rate that does not flood the log (`Throttle`), and masks its
modality (delivers nothing) while its device is missing or its clock runs off real time (`Pacing`). A source with
`required: true` raises SourceUnavailable from open() instead, which stops the run with one line.

Types are registered by name (the spec's `source.type`); `make_sources(spec)` builds one source per modality.

    sources = make_sources(load_spec("configs/smart_home.yaml"), realtime=False)
    for s in sources.values():
        s.open()
    batch = sources["env"].read(0.1)  # list[Sample]
"""

from __future__ import annotations

import importlib
import logging
import time
from collections import deque
from typing import Any

from edgefuse.errors import EdgefuseError
from edgefuse.runtime.clock import Sample, monotonic_ns
from edgefuse.spec import SOURCE_TYPES, ModalitySpec, ScenarioSpec

log = logging.getLogger(__name__)


class SourceUnavailable(EdgefuseError):
    """A required source (`source.required: true`) could not be opened; the message names it and the fix."""


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
        self.type_name = spec.source.type
        self.problem: str | None = None  # why the modality is masked now (missing library, device, pacing)

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

    @property
    def live(self) -> str:
        """ "live" (a real device or network), "synthetic" (simulated) or "replay" (a recording)."""
        return self.type_name if self.type_name in ("synthetic", "replay") else "live"

    def device(self) -> str:
        """The device, file or endpoint this source reads, as the user named it."""
        src = self.spec.source
        return f"{src.uri} topic {src.topic}" if src.type == "zmq" and src.topic else (src.uri or "default")

    def describe(self) -> str:
        """The start-up line: modality, type, device, rate, live or not."""
        rate = f"{self.spec.rate_hz:g} Hz" if self.kind != "text" else "events"
        return f"source {self.id}: {self.kind} from {self.type_name} {self.device()!r} at {rate} ({self.live})"

    def unavailable(self, problem: str) -> None:
        """The device cannot be used now: mask the modality, say why once; raise if the modality is required."""
        if self.spec.source.required:
            raise SourceUnavailable(f"required source {self.id} ({self.device()!r}): {problem}")
        if problem != self.problem:
            log.error("source %s (%s): %s; its modality is masked", self.id, self.device(), problem)
        self.problem = problem

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


class Throttle:
    """Logs a recurring failure at most once per every_s seconds, with how many were held back."""

    def __init__(self, logger: logging.Logger, every_s: float = 30.0):
        self.log, self.every_s = logger, every_s
        self._next = 0.0
        self._held = 0

    def warning(self, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now < self._next:
            self._held += 1
            return
        held, self._held, self._next = self._held, 0, now + self.every_s
        self.log.warning(msg + (f" ({held} more since the last report)" if held else ""), *args)


class Pacing:
    """Checks that a source delivers at its nominal rate in real time: samples counted against the host clock.

    hold=True (a device reopened after it was flagged) starts not ok, until the first measurement says otherwise.
    ok() turns False when the rate over the last window_s (or over min_s, if already beyond 4x the tolerance) is
    above tolerance x nominal, or, with check_slow, below nominal / tolerance. An unpaced device (e.g. ALSA's `file`
    plugin over `null`) delivers millions of samples per second; queuing them would only flood the runtime.
    """

    def __init__(
        self,
        nominal_hz: float,
        window_s: float = 3.0,
        tolerance: float = 1.2,
        min_s: float = 0.5,
        check_slow: bool = True,
        hold: bool = False,
    ):
        self.nominal_hz, self.window_ns, self.tolerance = nominal_hz, round(window_s * 1e9), tolerance
        self.min_ns, self.check_slow = round(min_s * 1e9), check_slow
        self.ratio: float | None = None  # measured rate / nominal over the last check
        self._ok = not hold
        self._points: deque[tuple[int, int]] = deque()  # (host ns, samples so far)

    def reset(self) -> None:
        """Start over (a reopened device): the old points say nothing about the new stream."""
        self._points.clear()
        self.ratio, self._ok = None, True

    def update(self, count: int, t_ns: int) -> bool:
        """Add the running sample count at host time t_ns; returns ok()."""
        pts = self._points
        pts.append((t_ns, count))
        while len(pts) > 2 and t_ns - pts[1][0] >= self.window_ns:
            pts.popleft()
        span = t_ns - pts[0][0]
        if span >= self.min_ns:
            r, tol = (count - pts[0][1]) / (span / 1e9) / self.nominal_hz, self.tolerance
            self.ratio = r
            if span < self.window_ns:  # before a full window only a gross excess counts
                self._ok = r <= 4 * tol
            else:
                self._ok = r <= tol and (not self.check_slow or r >= 1 / tol)
        return self._ok

    def ok(self) -> bool:
        return self._ok


# ---------------------------------------------------------------------------------------------------------------------
# Registry: source type name -> "module:Class", edgefuse.spec.SOURCE_TYPES (the one list the spec validates against).
# Imported on first use, so a host without sounddevice can still run cameras and ZeroMQ sensors.


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
    "Pacing",
    "SourceUnavailable",
    "Throttle",
    "SOURCE_TYPES",
    "Sample",
    "Source",
    "group_names",
    "make_sources",
    "register_source",
    "source_class",
    "source_id",
]
