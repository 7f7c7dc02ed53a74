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

import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import orjson
import zmq
from zmq.utils.monitor import parse_monitor_message

from edgefuse.keys import curve_client_keys, set_curve_client
from edgefuse.runtime.clock import Sample, monotonic_ns
from edgefuse.runtime.clockfit import ClockFit
from edgefuse.runtime.sources import Source, Throttle
from edgefuse.spec import ModalitySpec, SpecError

SCHEMA_VERSION = 1
MAX_PUBLISHERS = 64  # distinct "source" names tracked per modality; beyond it the least recently seen is evicted
PROBATION_AT = MAX_PUBLISHERS // 2  # with more names than this, a new name's first message only anchors its clock
INT64_MAX = (1 << 63) - 1
FLOAT32_MAX = float(np.finfo(np.float32).max)
RATE_RANGE = 10.0  # a message's rate_hz must lie within [spec rate / 10, spec rate * 10]
ROWS_PER_WINDOW = 4  # rows one message may carry: 4 windows' worth (at least 64); more is refused as "rows"
RATE_SLACK = 4.0  # per-publisher budget: 4x the spec's rate in rows/s (+10/s), burst of one message's row cap
MAX_LEAD_S = 1.0  # a mapped capture time this far after its arrival is refused ("time")
MAX_AGE_S = 300.0  # ... and this far before it
READ_SLICE_S = 0.01  # read() returns what it has after this long, however much is queued
SILENT_S = 5.0  # connected with nothing heard this long: warned (a topic that matches nothing), at most every 30 s
MAX_GAP = 1 << 20  # a sequence gap beyond this counts as this many drops (a wild seq is not a billion drops)


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


_MSGPACK_MAP = {*range(0x80, 0x90), 0xDE, 0xDF}  # fixmap, map16, map32: the first byte of any msgpack map


def decode_payload(payload: bytes, max_bytes: int) -> dict[str, Any]:
    """Bytes -> message mapping (msgpack, or JSON when it starts with '{'); sizes and nesting are capped."""
    if len(payload) > max_bytes:
        raise Rejected("oversized", f"{len(payload)} bytes > {max_bytes}")
    if payload[:1] != b"{" and (not payload or payload[0] not in _MSGPACK_MAP):
        raise Rejected("schema", "payload is not a map (msgpack) or an object (JSON)")  # refused before decoding
    try:
        if payload[:1] == b"{":
            # orjson: nesting capped at 1024 without recursion; NaN, Infinity and numbers beyond a double refused
            # (integers beyond 64 bits become floats, which the integer fields then refuse)
            msg = orjson.loads(payload)
        else:
            msg = msgpack.unpackb(
                payload,
                raw=False,
                strict_map_key=False,
                max_str_len=max_bytes,
                max_bin_len=max_bytes,
                max_array_len=max_bytes,
                max_map_len=max_bytes // 2,
                max_ext_len=0,
            )
    except (ValueError, TypeError, OverflowError, RecursionError, msgpack.UnpackException) as err:
        # JSON/UTF-8 errors, msgpack's ExtraData/StackError/limits, unhashable map keys
        raise Rejected("decode", str(err)[:80]) from None
    if not isinstance(msg, dict):
        raise Rejected("schema", f"payload is a {type(msg).__name__}, not a mapping")
    return msg


def parse_message(msg: dict[str, Any], m: ModalitySpec, budget: Callable[[str, int], None] | None = None) -> Reading:
    """Validate a decoded message against modality `m`; raises Rejected with the reason.

    Every field is bounded: seq and t_sensor_ns within int64, rate_hz within RATE_RANGE of the spec's rate, rows
    within the row cap, values finite and representable as float32. `budget(publisher, rows)` is called once the
    header checks out and before any value is converted, so a publisher over its budget costs no conversion.
    """
    if msg.get("v") != SCHEMA_VERSION:
        raise Rejected("version", f"v={str(msg.get('v'))[:20]}, expected {SCHEMA_VERSION}")
    pub, seq, t = msg.get("source"), msg.get("seq"), msg.get("t_sensor_ns")
    if not isinstance(pub, str) or not 0 < len(pub) <= 128:
        raise Rejected("schema", "'source' must be a non-empty string (<= 128 chars)")
    if not _is_int(seq) or not 0 <= seq <= INT64_MAX:
        raise Rejected("schema", "'seq' must be an integer in [0, 2**63)")
    if not _is_int(t):
        raise Rejected("schema", "'t_sensor_ns' must be an integer (ns of the sensor's clock)")
    if not -INT64_MAX <= t <= INT64_MAX:
        raise Rejected("time", "'t_sensor_ns' is beyond int64")
    rate = msg.get("rate_hz", m.rate_hz)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate) or rate <= 0:
        raise Rejected("schema", "'rate_hz' must be a positive number")
    if m.kind == "text":
        text = msg.get("text")
        if not isinstance(text, str):
            raise Rejected("schema", "'text' must be a string")
        if budget is not None:
            budget(pub, 1)
        return Reading(pub, seq, t, text, 0.0)
    if not m.rate_hz / RATE_RANGE <= rate <= m.rate_hz * RATE_RANGE:
        raise Rejected("rate", f"rate_hz {rate:.4g} outside [{m.rate_hz / RATE_RANGE:g}, {m.rate_hz * RATE_RANGE:g}]")
    vals = msg.get("values")
    rows = len(vals) if isinstance(vals, list) and vals and isinstance(vals[0], list) else 1
    if rows > max_rows(m):
        raise Rejected("rows", f"{rows} rows in one message > {max_rows(m)}")
    if budget is not None:
        budget(pub, rows)
    data = _values(msg, m)
    if t + round((data.shape[0] - 1) * 1e9 / rate) > INT64_MAX:
        raise Rejected("time", "the last row's time is beyond int64")
    return Reading(pub, seq, t, data, float(rate))


def max_rows(m: ModalitySpec) -> int:
    """Rows one message may carry for modality `m`."""
    return max(64, ROWS_PER_WINDOW * m.n_steps)


def max_payload_bytes(m: ModalitySpec) -> int:
    """The largest payload worth decoding for `m`: source.max_message_bytes, and for series/audio no more than
    the row cap at a generous 32 bytes per value (+4 KiB of fields), so an over-long block is refused by its size
    before msgpack or JSON builds a Python object per value."""
    if m.kind == "text":
        return m.source.max_message_bytes
    return min(m.source.max_message_bytes, max_rows(m) * m.n_channels * 32 + 4096)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _values(msg: dict[str, Any], m: ModalitySpec) -> np.ndarray:
    """'values' (one row or rows) and 'channels' -> (n, C) float32 in spec order, NaN where not sent."""
    names = m.channels if isinstance(m.channels, list) else [str(i) for i in range(m.n_channels)]
    chans = msg.get("channels", names)
    if not isinstance(chans, list) or not 0 < len(chans) <= len(names) or not all(isinstance(c, str) for c in chans):
        raise Rejected("schema", "'channels' must be a non-empty list of names")
    unknown = [c for c in chans if c not in names]
    if unknown or len(set(chans)) != len(chans):
        raise Rejected("channels", f"unknown or repeated channels {unknown[:4] or chans}; expected names from {names}")
    vals = msg.get("values")
    if not isinstance(vals, list) or not vals:
        raise Rejected("values", "'values' must be a non-empty list (one row) or list of rows")
    block = isinstance(vals[0], list)
    try:
        # one C-level conversion for the whole block; float64 first so out-of-float32 values are seen, not clipped
        rows = np.asarray(vals if block else [vals], dtype=np.float64)  # (n, len(chans))
    except (ValueError, TypeError, OverflowError):
        raise Rejected("values", "'values' rows must be numbers of equal length") from None
    if rows.ndim != 2 or rows.shape[1] != len(chans):
        raise Rejected("values", f"rows must have {len(chans)} values (one per channel), got shape {rows.shape}")
    if not np.isfinite(rows).all() or (np.abs(rows) > FLOAT32_MAX).any():
        raise Rejected("values", "values must be finite and within float32 range")
    out = np.full((rows.shape[0], len(names)), np.nan, np.float32)  # (n, C)
    out[:, [names.index(c) for c in chans]] = rows
    return out


class _Publisher:
    """Per-publisher state: its last sequence number, its clock, and its row budget (a token bucket)."""

    def __init__(self, m: ModalitySpec, now_ns: int):
        self.last_seq = -1
        self.clock = ClockFit(window_s=m.source.clock_window_s, jump_ms=m.source.clock_jump_ms)
        self.rows_per_s = RATE_SLACK * m.rate_hz + 10.0
        self.burst = float(max_rows(m))
        self.tokens = self.burst
        self.seen_ns = now_ns
        self.accepted = 0  # messages that became samples

    def spend(self, rows: int, now_ns: int) -> bool:
        """Take `rows` from the budget (refilled at rows_per_s); False when it is exhausted."""
        self.tokens = min(self.burst, self.tokens + (now_ns - self.seen_ns) / 1e9 * self.rows_per_s)
        self.seen_ns = now_ns
        if rows > self.tokens:
            return False
        self.tokens -= rows
        return True


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
        self._max_bytes = max_payload_bytes(spec)
        # CURVE keys load here, on the caller's thread, so a bad key file is a startup error naming the setting
        src = spec.source
        self._curve = curve_client_keys(src.curve_server_key, src.curve_secret_key, f"modalities.{modality}.source")
        self.counters.update(restarts=0, duplicates=0, disconnects=0, evicted=0, probation=0)
        self.rejected: dict[str, int] = {}
        self.publishers: dict[str, _Publisher] = {}
        self._last_row = np.full(spec.n_channels, np.nan, np.float32)  # (C,) held values for channels not sent
        self._ctx: zmq.Context | None = None
        self._sock: zmq.Socket | None = None
        self._mon: zmq.Socket | None = None
        self._connects = 0
        self._t_heard_ns = 0  # when a message (any, even a refused one) last arrived, or the socket opened
        self._silence = Throttle(logging.getLogger(__name__), every_s=SILENT_S * 6)

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
        set_curve_client(self._sock, self._curve)
        self._mon = self._sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        for e in self.endpoints:
            self._sock.connect(e)
        self._poller = zmq.Poller()
        self._poller.register(self._sock, zmq.POLLIN)
        self._t_heard_ns = monotonic_ns()

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
            # drain what is queued, but hand samples on at least every READ_SLICE_S: under a flood of messages
            # (valid or not) the good ones, fair-queued per connection by ZeroMQ, still reach the sync in time
            deadline = monotonic_ns() + int(READ_SLICE_S * 1e9)
            while (now := monotonic_ns()) < deadline:
                try:
                    frames = self._sock.recv_multipart(zmq.NOBLOCK, copy=True)
                except zmq.Again:
                    break
                self._t_heard_ns = now
                s = self._handle(frames, now)
                if s is not None:
                    out.append(s)
        self._poll_monitor()
        self._check_silence()
        return out

    def _check_silence(self) -> None:
        """A publisher connected but nothing heard: most often a topic that does not match (ZeroMQ filters on the
        publisher's side, so those messages never arrive to be counted). Said in the log, throttled, and counted."""
        if self._connects == 0 or monotonic_ns() - self._t_heard_ns < SILENT_S * 1e9:
            return
        self.counters["silent"] = self.counters.get("silent", 0) + 1
        self._t_heard_ns = monotonic_ns()
        self._silence.warning(
            "source %s (%s): connected, but no message on topic %r for %.0f s; check the publisher's topic "
            "(`edgefuse doctor --config` lists the topics it hears)",
            self.id,
            ",".join(self.endpoints),
            self.spec.source.topic,
            SILENT_S,
        )

    def stats(self) -> dict[str, Any]:
        st: dict[str, Any] = dict(self.counters)
        st["rejected"] = dict(self.rejected)
        st["publishers"] = {p: {**s.clock.stats(), "accepted": s.accepted} for p, s in self.publishers.items()}
        if self.publishers:  # the busiest publisher's clock as the source's headline numbers
            main = max(self.publishers.values(), key=lambda p: p.clock.updates)
            st.update(main.clock.stats())
        return st

    # internals ------------------------------------------------------------------------------------------------------
    def _handle(self, frames: list[bytes], t_arrival_ns: int) -> Sample | None:
        """One message -> a Sample, or None (counted by reason). Never raises: one message never stops a source."""
        try:
            return self._accept(frames, t_arrival_ns)
        except Rejected as err:
            reason = err.reason
        except Exception:  # noqa: BLE001 - a decoder bug must cost one message, not the source
            reason = "internal"
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self.counters["errors"] += 1
        if reason == "rate":
            self.counters["drops"] += 1
        return None

    def _accept(self, frames: list[bytes], t_arrival_ns: int) -> Sample | None:
        if len(frames) != 2:
            raise Rejected("frames", f"{len(frames)} frames, expected [topic, payload]")

        def budget(name: str, rows: int) -> None:
            p = self._publisher(name, t_arrival_ns)
            if not p.spend(rows, t_arrival_ns):
                raise Rejected("rate", f"publisher {name!r} over {p.rows_per_s:g} rows/s")

        r = parse_message(decode_payload(frames[1], self._max_bytes), self.spec, budget)
        pub = self.publishers[r.publisher]
        n = 1 if isinstance(r.data, str) else r.data.shape[0]
        # the message leaves after its last row: fit the clock on that row's time
        t_last = r.t_sensor_ns + round((n - 1) * 1e9 / r.rate_hz) if n > 1 else r.t_sensor_ns
        pub.clock.update(t_last, t_arrival_ns)
        t_capture = pub.clock.to_host(r.t_sensor_ns)
        if not -MAX_AGE_S * 1e9 <= t_capture - t_arrival_ns <= MAX_LEAD_S * 1e9:
            raise Rejected("time", f"capture time maps {(t_capture - t_arrival_ns) / 1e9:.3g} s from its arrival")
        if not self._check_seq(pub, r.seq):
            return None
        if pub.clock.updates == 1 and len(self.publishers) > PROBATION_AT:
            # many names at once (a flood of them): a new name's first reading only anchors its clock. With no
            # history its time maps to when it was processed, late by any backlog, and would put the modality's
            # newest stamp ahead of the real sensors' (their readings would then be refused as out of order)
            self.counters["probation"] += 1
            return None
        pub.accepted += 1
        data = r.data if isinstance(r.data, str) else self._hold(r.data)
        rate = r.rate_hz if n > 1 else 0.0  # Sample convention: 0 for a single reading
        return self._sample(t_capture, t_arrival_ns, data, rate, publisher=r.publisher)

    def _publisher(self, name: str, now_ns: int) -> _Publisher:
        """This name's state; a new name evicts the least recently seen one when the table is full."""
        pub = self.publishers.get(name)
        if pub is None:
            if len(self.publishers) >= MAX_PUBLISHERS:
                stale = min(self.publishers, key=lambda p: self.publishers[p].seen_ns)
                del self.publishers[stale]
                self.counters["evicted"] += 1
            pub = self.publishers[name] = _Publisher(self.spec, now_ns)
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
                gap = min(seq - pub.last_seq - 1, MAX_GAP)  # a wild jump counts as one big gap, bounded
                self.counters["drops"] += gap
                self._seq += gap
        pub.last_seq = seq
        return True

    def _hold(self, rows: np.ndarray) -> np.ndarray:
        """Fill channels the message left out (NaN) with their last value; remember the newest values.

        Vectorized forward fill over the block: no Python loop per row."""
        block = np.concatenate([self._last_row[None], rows])  # (n+1, C)
        idx = np.where(np.isnan(block), 0, np.arange(block.shape[0])[:, None])  # (n+1, C) row of the last value
        np.maximum.accumulate(idx, axis=0, out=idx)
        filled = block[idx, np.arange(block.shape[1])]
        self._last_row = filled[-1].copy()
        return filled[1:]

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
                self._reconnect(ev.get("endpoint"))

    def _reconnect(self, endpoint: Any) -> None:
        """Connect again at once. libzmq does not retry a peer it dropped for a protocol error, which includes a
        message above ZMQ_MAXMSGSIZE, so one oversized message would otherwise cost the sensor for good."""
        ep = endpoint.decode() if isinstance(endpoint, bytes) else endpoint
        if ep not in self.endpoints or self._sock is None:
            return
        with contextlib.suppress(zmq.ZMQError):  # already gone from the socket's list
            self._sock.disconnect(ep)
        self._sock.connect(ep)
