"""ZeroMQ sensors: SUB to publishers written in any language (the message schema is in docs/sensors.md).

Each message is two frames, [topic, payload], the payload msgpack or JSON (a payload starting with "{" is JSON):

    {"v": 1, "source": "env-node-1", "seq": 42, "t_sensor_ns": 1718000000123456789,
     "channels": ["temperature", "humidity"], "values": [[21.5, 40.1]] or [21.5, 40.1], "rate_hz": 10.0}
    text modalities send "text": "..." instead of channels/values.

Every message is validated; a bad one is counted under its reason (stats()["rejected"]) and skipped, never raised.
Each publisher ("source" field) gets its own sequence tracking and its own ClockFit, because each has its own
clock: t_capture_ns is the publisher's t_sensor_ns mapped onto the host clock. A publisher that restarts (seq goes
back) is counted as a restart, not as drops. Channels a message leaves out keep their last value (a door contact
and a thermometer may publish separately into one series modality; NaN until first seen).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import zmq
from zmq.utils.monitor import parse_monitor_message

from edgefuse.runtime.clock import Sample, monotonic_ns
from edgefuse.runtime.clockfit import ClockFit
from edgefuse.runtime.sources import Source
from edgefuse.spec import ModalitySpec, SpecError

SCHEMA_VERSION = 1
MAX_PUBLISHERS = 64  # distinct "source" names tracked per modality; more is a misconfiguration or garbage


@dataclass(slots=True)
class Reading:
    """A validated sensor message."""

    publisher: str
    seq: int
    t_sensor_ns: int
    data: np.ndarray | str  # (n, C) float32 in the spec's channel order (NaN = not in this message), or text
    rate_hz: float


class Rejected(Exception):
    """A message that fails validation; `reason` is the counter it is filed under."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")


def decode_payload(payload: bytes, max_bytes: int) -> dict[str, Any]:
    """Bytes -> message mapping (msgpack, or JSON when it starts with '{')."""
    if len(payload) > max_bytes:
        raise Rejected("oversized", f"{len(payload)} bytes > {max_bytes}")
    try:
        msg = json.loads(payload) if payload[:1] == b"{" else msgpack.unpackb(payload, raw=False)
    except (ValueError, msgpack.UnpackException) as err:  # JSON/UTF-8 errors and msgpack's ExtraData are ValueErrors
        raise Rejected("decode", str(err)[:80]) from None
    if not isinstance(msg, dict):
        raise Rejected("schema", f"payload is a {type(msg).__name__}, not a mapping")
    return msg


def parse_message(msg: dict[str, Any], m: ModalitySpec) -> Reading:
    """Validate a decoded message against modality `m`; raises Rejected with the reason."""
    if msg.get("v") != SCHEMA_VERSION:
        raise Rejected("version", f"v={msg.get('v')!r}, expected {SCHEMA_VERSION}")
    pub, seq, t = msg.get("source"), msg.get("seq"), msg.get("t_sensor_ns")
    if not isinstance(pub, str) or not 0 < len(pub) <= 128:
        raise Rejected("schema", "'source' must be a non-empty string (<= 128 chars)")
    if not _is_int(seq) or seq < 0:
        raise Rejected("schema", "'seq' must be a non-negative integer")
    if not _is_int(t):
        raise Rejected("schema", "'t_sensor_ns' must be an integer (ns of the sensor's clock)")
    rate = msg.get("rate_hz", m.rate_hz)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate < 1e7:
        raise Rejected("schema", "'rate_hz' must be a positive number")
    if m.kind == "text":
        text = msg.get("text")
        if not isinstance(text, str):
            raise Rejected("schema", "'text' must be a string")
        return Reading(pub, seq, t, text, 0.0)
    return Reading(pub, seq, t, _values(msg, m), float(rate))


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _values(msg: dict[str, Any], m: ModalitySpec) -> np.ndarray:
    """'values' (one row or rows) and 'channels' -> (n, C) float32 in spec order, NaN where not sent."""
    names = m.channels if isinstance(m.channels, list) else [str(i) for i in range(m.n_channels)]
    chans = msg.get("channels", names)
    if not isinstance(chans, list) or not chans or not all(isinstance(c, str) for c in chans):
        raise Rejected("schema", "'channels' must be a non-empty list of names")
    unknown = [c for c in chans if c not in names]
    if unknown or len(set(chans)) != len(chans):
        raise Rejected("channels", f"unknown or repeated channels {unknown or chans}; expected names from {names}")
    vals = msg.get("values")
    if not isinstance(vals, list) or not vals:
        raise Rejected("values", "'values' must be a non-empty list (one row) or list of rows")
    try:
        rows = np.asarray(vals if isinstance(vals[0], list) else [vals], dtype=np.float32)  # (n, len(chans))
    except (ValueError, TypeError):
        raise Rejected("values", "'values' rows must be numbers of equal length") from None
    if rows.ndim != 2 or rows.shape[1] != len(chans):
        raise Rejected("values", f"rows must have {len(chans)} values (one per channel), got shape {rows.shape}")
    if np.isinf(rows).any():
        raise Rejected("values", "infinite value")
    out = np.full((rows.shape[0], len(names)), np.nan, np.float32)  # (n, C)
    out[:, [names.index(c) for c in chans]] = rows
    return out


class _Publisher:
    """Per-publisher state: its last sequence number and its clock."""

    def __init__(self, m: ModalitySpec):
        self.last_seq = -1
        self.clock = ClockFit(window_s=m.source.clock_window_s, jump_ms=m.source.clock_jump_ms)


class ZmqSensorSource(Source):
    """SUB socket connected to `source.uri` (comma-separated endpoints allowed), filtered by `source.topic`."""

    def __init__(
        self, source_id: str, modality: str, spec: ModalitySpec, realtime: bool = True, seed: int = 0, context=None
    ):
        super().__init__(source_id, modality, spec, realtime)
        if spec.kind == "image":
            raise SpecError(
                "<spec>", [(f"modalities.{modality}.source.type", "zmq sources carry series, audio or text")]
            )
        if not spec.source.uri:
            raise SpecError(
                "<spec>", [(f"modalities.{modality}.source.uri", "zmq needs an endpoint, e.g. tcp://host:5600")]
            )
        self.endpoints = [e.strip() for e in spec.source.uri.split(",") if e.strip()]
        self.counters.update(restarts=0, duplicates=0, disconnects=0)
        self.rejected: dict[str, int] = {}
        self.publishers: dict[str, _Publisher] = {}
        self._last_row = np.full(spec.n_channels, np.nan, np.float32)  # (C,) held values for channels not sent
        self._ctx: zmq.Context | None = None
        self._sock: zmq.Socket | None = None
        self._mon: zmq.Socket | None = None
        self._connects = 0

    def open(self) -> None:
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVHWM, 10000)
        # zmq drops the peer beyond this; between max_message_bytes and this we receive and count "oversized"
        self._sock.setsockopt(zmq.MAXMSGSIZE, 4 * self.spec.source.max_message_bytes + 1024)
        self._sock.setsockopt(zmq.RECONNECT_IVL, int(self.spec.source.reconnect_s * 1000))
        self._sock.setsockopt(zmq.RECONNECT_IVL_MAX, int(self.spec.source.reconnect_max_s * 1000))
        self._sock.setsockopt(zmq.SUBSCRIBE, self.spec.source.topic.encode())
        self._mon = self._sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        for e in self.endpoints:
            self._sock.connect(e)
        self._poller = zmq.Poller()
        self._poller.register(self._sock, zmq.POLLIN)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.disable_monitor()
            self._mon.close(0)  # type: ignore[union-attr]
            self._sock.close(0)
            self._sock = self._mon = None

    def read(self, timeout_s: float) -> list[Sample]:
        if self._sock is None:
            return []
        out: list[Sample] = []
        if self._poller.poll(timeout_s * 1000):
            for _ in range(10000):  # drain what is queued, bounded so read() returns
                try:
                    frames = self._sock.recv_multipart(zmq.NOBLOCK, copy=True)
                except zmq.Again:
                    break
                s = self._handle(frames, monotonic_ns())
                if s is not None:
                    out.append(s)
        self._poll_monitor()
        return out

    def stats(self) -> dict[str, Any]:
        st: dict[str, Any] = dict(self.counters)
        st["rejected"] = dict(self.rejected)
        st["publishers"] = {p: s.clock.stats() for p, s in self.publishers.items()}
        if self.publishers:  # the busiest publisher's clock as the source's headline numbers
            main = max(self.publishers.values(), key=lambda p: p.clock.updates)
            st.update(main.clock.stats())
        return st

    # internals ------------------------------------------------------------------------------------------------------
    def _handle(self, frames: list[bytes], t_arrival_ns: int) -> Sample | None:
        try:
            if len(frames) != 2:
                raise Rejected("frames", f"{len(frames)} frames, expected [topic, payload]")
            r = parse_message(decode_payload(frames[1], self.spec.source.max_message_bytes), self.spec)
            pub = self._publisher(r.publisher)
        except Rejected as err:
            self.rejected[err.reason] = self.rejected.get(err.reason, 0) + 1
            self.counters["errors"] += 1
            return None
        if not self._check_seq(pub, r.seq):
            return None
        n = 1 if isinstance(r.data, str) else r.data.shape[0]
        # the message leaves after its last row: fit the clock on that row's time
        t_last = r.t_sensor_ns + round((n - 1) * 1e9 / r.rate_hz) if r.rate_hz else r.t_sensor_ns
        pub.clock.update(t_last, t_arrival_ns)
        data = r.data if isinstance(r.data, str) else self._hold(r.data)
        rate = r.rate_hz if n > 1 else 0.0  # Sample convention: 0 for a single reading
        return self._sample(pub.clock.to_host(r.t_sensor_ns), t_arrival_ns, data, rate, publisher=r.publisher)

    def _publisher(self, name: str) -> _Publisher:
        pub = self.publishers.get(name)
        if pub is None:
            if len(self.publishers) >= MAX_PUBLISHERS:
                raise Rejected("publishers", f"more than {MAX_PUBLISHERS} distinct 'source' names")
            pub = self.publishers[name] = _Publisher(self.spec)
        return pub

    def _check_seq(self, pub: _Publisher, seq: int) -> bool:
        """Count gaps as drops (and leave the same gap in Sample.seq); a sequence that goes back is a restart."""
        if pub.last_seq >= 0:
            if seq == pub.last_seq:
                self.counters["duplicates"] += 1
                return False
            if seq < pub.last_seq:
                self.counters["restarts"] += 1
            elif seq > pub.last_seq + 1:
                gap = seq - pub.last_seq - 1
                self.counters["drops"] += gap
                self._seq += gap
        pub.last_seq = seq
        return True

    def _hold(self, rows: np.ndarray) -> np.ndarray:
        """Fill channels the message left out (NaN) with their last value; remember the newest values."""
        for i in range(rows.shape[0]):
            sent = ~np.isnan(rows[i])
            self._last_row[sent] = rows[i, sent]
            rows[i, ~sent] = self._last_row[~sent]
        return rows

    def _poll_monitor(self) -> None:
        while self._mon is not None:
            try:
                ev = parse_monitor_message(self._mon.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            if ev["event"] == zmq.EVENT_CONNECTED:
                self._connects += 1
                self.counters["reconnects"] = max(0, self._connects - len(self.endpoints))
            elif ev["event"] == zmq.EVENT_DISCONNECTED:
                self.counters["disconnects"] += 1
