"""ZeroMQ PUB of results and monitoring topics (edgefuse.wire, docs/wire.md) that never blocks the pipeline.

Every send is non-blocking, and a slow or dead subscriber never costs the others anything. The socket runs with
XPUB_NODROP, so a send that some subscriber's queue (at the high-water mark) cannot take fails with EAGAIN; the
publisher then lets libzmq process its pending commands (a drained queue's read count arrives that way) and tries
once more, and if that fails too, counts it (publish failure reason "slow_subscriber") and sends the same message in
lossy mode, which reaches every subscriber that has room and skips only the full ones. `PublishSpec.count_drops:
false` keeps libzmq's plain lossy mode throughout (the full subscriber still misses messages, but nothing is counted
here). Subscribers see what they missed as gaps in header.seq. Either way a send never stalls a tick.

Relays: the same socket also connects to every `connect` endpoint (an `edgefuse relay --in`, runtime/relay.py),
so many runtimes reach many subscribers through one address; `endpoint: null` binds nothing. Every topic and
header carries the device id (`runtime.device_id`, default the host name).

CURVE (optional): `curve_secret_key` is a zmq.auth certificate file holding the server's secret key;
`curve_authorized_keys` a folder of client public-key certificates. A ThreadAuthenticator admits only those clients.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from edgefuse import wire
from edgefuse.errors import EdgefuseError
from edgefuse.runtime.clock import monotonic_ns
from edgefuse.spec import PublishSpec, default_device_id

THUMB_MAX_SIDE = 160  # thumbnails are for a dashboard glance, not for analysis
THUMB_QUALITY = 70
SERIES_MAX_ROWS = 50  # decimated rows per series message
CONNECT_WAIT_S = 2.0  # how long a runtime waits at start for its relays to accept the connection


class PublishError(EdgefuseError):
    """The publisher cannot start: bad endpoint, address in use, unreadable CURVE keys."""


class Publisher:
    """Publishes results and monitoring messages on one PUB socket. Use from one thread only (ZeroMQ sockets are
    not thread-safe); the pipeline's output thread owns it."""

    def __init__(
        self,
        spec: PublishSpec,
        endpoint: str | None = None,
        context: zmq.Context | None = None,
        device: str | None = None,
    ):
        self.spec = spec
        self.device = device or default_device_id()  # in every topic and header (docs/wire.md)
        self._lock = threading.Lock()  # guards close() against a concurrent publish from a stopping thread
        self.ctx = context or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.SNDHWM, spec.hwm)
        self.sock.setsockopt(zmq.LINGER, 0)  # close never waits on a subscriber that does not read
        if spec.count_drops:
            self.sock.setsockopt(zmq.XPUB_NODROP, 1)
        self.auth: Any = None
        if spec.curve_secret_key:
            self._setup_curve(spec)
        want = endpoint or spec.endpoint
        self.endpoint: str | None = None
        if want:
            try:
                self.sock.bind(want)
            except zmq.ZMQError as err:
                self.close()
                raise PublishError(f"runtime.publish.endpoint {want!r}: cannot bind ({err})") from None
            self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)  # the real port when bound to ":*"
        self._connect_relays(spec)
        self.seq: dict[str, int] = {}  # topic -> next sequence number
        self.sent: dict[str, int] = {}
        self.failures: dict[str, int] = {}

    def _setup_curve(self, spec: PublishSpec) -> None:
        from zmq.auth import load_certificate
        from zmq.auth.thread import ThreadAuthenticator

        key_file = Path(spec.curve_secret_key)  # type: ignore[arg-type]
        try:
            public, secret = load_certificate(key_file)
        except (OSError, ValueError) as err:
            raise PublishError(f"runtime.publish.curve_secret_key {key_file}: cannot load ({err})") from None
        if secret is None:
            raise PublishError(f"runtime.publish.curve_secret_key {key_file}: holds no secret key")
        keys = spec.curve_authorized_keys
        if not keys or not Path(keys).is_dir():
            raise PublishError(f"runtime.publish.curve_authorized_keys {keys!r}: must be a folder of client keys")
        self.auth = ThreadAuthenticator(self.ctx)
        self.auth.start()
        self.auth.configure_curve(domain="*", location=str(keys))
        self.sock.curve_secretkey = secret
        self.sock.curve_publickey = public
        self.sock.curve_server = True

    def _connect_relays(self, spec: PublishSpec) -> None:
        """Connect to every relay in `connect` (runtime/relay.py): ZeroMQ reconnects by itself if one restarts."""
        if not spec.connect and not spec.endpoint:
            self.close()
            raise PublishError("runtime.publish: endpoint is null and connect is empty; nothing to publish to")
        if spec.connect and spec.connect_curve_server_key:
            from edgefuse.runtime.relay import curve_client

            try:
                curve_client(self.sock, spec.connect_curve_server_key, spec.connect_curve_secret_key)
            except PublishError:
                self.close()
                raise
        if not spec.connect:
            return
        monitor = self.sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        for relay in spec.connect:
            try:
                self.sock.connect(relay)
            except zmq.ZMQError as err:
                self.sock.disable_monitor()
                monitor.close(linger=0)
                self.close()
                raise PublishError(f"runtime.publish.connect {relay!r}: cannot connect ({err})") from None
        # PUB drops what it sends before a peer is there: wait (a little) for the relays, so a short run, a fast
        # replay, does not lose its first results. A relay that is down is not waited for longer: ZeroMQ keeps
        # reconnecting in the background.
        deadline, joined = time.monotonic() + CONNECT_WAIT_S, 0
        while joined < len(spec.connect) and monitor.poll(max(0, int(1000 * (deadline - time.monotonic())))):
            joined += monitor.recv_multipart() is not None
        self.sock.disable_monitor()
        monitor.close(linger=0)
        if joined:
            time.sleep(0.1)  # the relay's subscriptions follow the handshake

    # sending ----------------------------------------------------------------------------------------------------------
    def publish(self, mtype: str, topic: str, group: str, payload: dict, blobs: tuple[bytes, ...] = ()) -> bool:
        """Send one message without blocking; False (and counted by reason) when it could not be sent."""
        seq = self.seq.get(topic, 0)  # per topic: a subscriber of one topic sees a gap only for its own losses
        try:
            frames = wire.encode(mtype, topic, seq, monotonic_ns(), group, payload, blobs, self.device)
        except (TypeError, ValueError, OverflowError):
            return self._failed("encode")
        with self._lock:
            if self.sock.closed:
                return self._failed("closed")
            try:
                self._send(frames)
            except zmq.ZMQError:
                return self._failed("send")
        self.seq[topic] = seq + 1
        self.sent[mtype] = self.sent.get(mtype, 0) + 1
        return True

    def _send(self, frames: list[bytes]) -> None:
        """Send to every subscriber with room; a full one misses this message (counted when count_drops).

        libzmq learns that a subscriber has read its queue from commands the socket processes only now and then
        (throttled, during sends); until then a healthy reader's drained queue can look full, and both the lossy
        mode and XPUB_NODROP then skip it too (measured: a lockstep reader lost about one message per hwm / 2 while
        another subscriber was stuck). Reading ZMQ_EVENTS processes the pending commands at once, without blocking."""
        self.sock.getsockopt(zmq.EVENTS)
        for attempt in range(2):
            try:
                self.sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
                return
            except zmq.Again:
                if attempt == 0:  # commands may have arrived since: look again before calling a subscriber full
                    self.sock.getsockopt(zmq.EVENTS)
        self._failed("slow_subscriber")
        # XPUB_NODROP is read on every send: lossy for this one message, so the subscribers with room still get it
        self.sock.setsockopt(zmq.XPUB_NODROP, 0)
        try:
            self.sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
        finally:
            self.sock.setsockopt(zmq.XPUB_NODROP, 1)

    def _failed(self, reason: str) -> bool:
        self.failures[reason] = self.failures.get(reason, 0) + 1
        return False

    def result(self, group: str, payload: dict) -> bool:
        return self.publish("result", wire.topic("result", self.device, group), group, payload)

    def stats(self, payload: dict) -> bool:
        return self.publish("stats", wire.topic("stats", self.device), "", payload)

    def thumb(self, source: str, frame: np.ndarray, t_capture_ns: int, group: str = "") -> bool:
        """A small JPEG of a BGR/gray frame on `thumb/<source>`."""
        import cv2  # only image modalities need OpenCV (the `opencv` extra, or a system cv2)

        h, w = frame.shape[:2]
        scale = min(1.0, THUMB_MAX_SIDE / max(h, w))
        if scale < 1.0:
            frame = cv2.resize(
                frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
            )
        ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, THUMB_QUALITY])
        if not ok:
            return self._failed("encode")
        payload = {
            "t_capture_ns": int(t_capture_ns),
            "width": frame.shape[1],
            "height": frame.shape[0],
            "format": "jpeg",
        }
        return self.publish("thumb", wire.topic("thumb", self.device, source), group, payload, (jpeg.tobytes(),))

    def level(self, source: str, block: np.ndarray, t_capture_ns: int, group: str = "") -> bool:
        """Per-channel RMS level in dBFS of an audio block (n, C) on `level/<source>`."""
        rms = np.sqrt(np.mean(np.square(block.astype(np.float64)), axis=0))  # (C,)
        db = [round(20 * math.log10(max(float(r), 1e-10)), 2) for r in rms]
        return self.publish(
            "level", wire.topic("level", self.device, source), group, {"t_capture_ns": int(t_capture_ns), "rms_db": db}
        )

    def series(
        self, source: str, rows: np.ndarray, t_capture_ns: int, rate_hz: float, channels: list[str], group: str = ""
    ) -> bool:
        """Sensor rows (n, C), decimated to at most SERIES_MAX_ROWS, on `series/<source>`; rate_hz is after decimation."""
        step = max(1, math.ceil(len(rows) / SERIES_MAX_ROWS))
        values = np.asarray(rows[::step], dtype=np.float64)
        values = np.where(np.isfinite(values), values, 0.0).round(6).tolist()
        payload = {
            "t_capture_ns": int(t_capture_ns),
            "rate_hz": float(rate_hz) / step,
            "channels": channels,
            "values": values,
        }
        return self.publish("series", wire.topic("series", self.device, source), group, payload)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def close(self) -> None:
        """Close the socket (LINGER 0: unsent messages are discarded) and stop the authenticator; idempotent."""
        with self._lock:
            if not self.sock.closed:
                self.sock.close(linger=0)
        if self.auth is not None:
            self.auth.stop()
            self.auth = None
