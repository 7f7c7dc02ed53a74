"""`edgefuse relay`: many runtimes in, many subscribers out, through ZeroMQ's own proxy (XSUB -> XPUB).

    edgefuse relay --in 'tcp://*:5556' --out 'tcp://*:5557' --metrics-port 9200
    edgefuse run ... --device-id cam-07 --connect tcp://hub:5556        # each runtime, PUB connected to --in
    edgefuse monitor --relay tcp://hub:5557                              # every device on one page
    edgefuse listen --endpoint tcp://hub:5557 --topic result/cam-07/     # one device, filtered by topic

The forwarding is libzmq's `zmq_proxy_steerable` in one thread: messages never pass through Python, and
subscriptions flow back upstream, so a runtime only sends what some subscriber asked for. Queues are bounded: `hwm`
messages per connected peer on both sides. A subscriber at its HWM misses messages (the relay never waits for one
slow reader; the others keep receiving everything) and sees the loss as `seq` gaps (SeqGaps below counts them).

Accounting (on by default): the proxy also copies every message to a capture socket; a second thread reads the
copies and counts, per device, messages in, bytes, `seq` gaps on the way in (losses between runtime and relay) and
when the device last spoke; subscription changes give the number of subscribed topics. libzmq's STATISTICS command
gives exact frame and byte totals on both sides. `accounting=False` leaves the proxy alone (the benchmark compares).

CURVE (optional): `curve_secret_key` (a zmq.auth certificate with the relay's secret key) and `curve_authorized_keys`
(a folder of client public-key certificates) make both sides CURVE servers: runtimes and subscribers are clients
(`runtime.publish.connect_curve_server_key` / `connect_curve_secret_key`; curve_client() below).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import struct
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import zmq

from edgefuse.errors import EdgefuseError


class RelayError(EdgefuseError):
    """The relay cannot start: bad endpoint, address in use, unreadable CURVE keys."""


def curve_client(sock: Any, server_key: str, client_key: str | None) -> None:
    """Make `sock` a CURVE client of a server whose public key certificate is `server_key`, using the secret
    certificate `client_key` (the server's authorized-keys folder must hold its public half); without one, a
    throwaway pair: encrypted, but refused by a relay that checks its clients."""
    from zmq.auth import load_certificate

    from edgefuse.runtime.publisher import PublishError

    try:
        server_public, _ = load_certificate(server_key)
        public, secret = load_certificate(client_key) if client_key else zmq.curve_keypair()
    except (OSError, ValueError) as err:
        raise PublishError(f"CURVE keys {server_key!r}, {client_key!r}: cannot load ({err})") from None
    if secret is None:
        raise PublishError(f"CURVE client key {client_key!r}: holds no secret key (use NAME.key_secret)")
    sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = server_public, public, secret


class SeqGaps:
    """Counts messages missed per device from the header `seq`, which counts per topic (docs/wire.md; the topic
    names the device): a jump from 4 to 9 is 4 missed. A seq that goes back (a runtime restarted) starts again."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, str], int] = {}
        self.missed: dict[str, int] = {}  # device -> messages missed
        self.received: dict[str, int] = {}

    def see(self, device: str, topic: str, seq: int) -> int:
        """Record one message; returns how many were missed just before it."""
        key = (device, topic)
        prev = self.last.get(key)
        self.last[key] = seq
        self.received[device] = self.received.get(device, 0) + 1
        gap = seq - prev - 1 if prev is not None and seq > prev else 0
        if gap:
            self.missed[device] = self.missed.get(device, 0) + gap
        return gap


def peek(frames: list[Any]) -> tuple[str, str, int] | None:
    """(device, topic, seq) from a message's first two frames without validating the payload; None if unreadable."""
    try:
        header = msgpack.unpackb(bytes(frames[1]), raw=False, max_bin_len=0, max_str_len=1024)
        return str(header.get("device", "")), bytes(frames[0]).decode(), int(header["seq"])
    except Exception:  # noqa: BLE001 - accounting never stops the relay; the subscriber's decoder reports it
        return None


class Relay:
    """XSUB bound to `in_endpoint`, XPUB bound to `out_endpoint`, libzmq's steerable proxy between them."""

    def __init__(
        self,
        in_endpoint: str,
        out_endpoint: str,
        hwm: int = 10_000,
        curve_secret_key: str | None = None,
        curve_authorized_keys: str | None = None,
        accounting: bool = True,
    ):
        self.ctx = zmq.Context()
        self._threads: list[threading.Thread] = []
        self._ctl: Any = None
        self.hwm, self.accounting = hwm, accounting
        self.auth: Any = None
        self.lock = threading.Lock()
        self.devices: dict[str, dict[str, float]] = {}  # device -> {messages, bytes, t_last (monotonic s)}
        self.gaps = SeqGaps()
        self.subscriptions: dict[bytes, int] = {}
        self.unreadable = 0
        self.t_start = time.monotonic()
        self.xsub = self._socket(zmq.XSUB, curve_secret_key, curve_authorized_keys)
        self.xpub = self._socket(zmq.XPUB, curve_secret_key, curve_authorized_keys)
        self.xsub.setsockopt(zmq.RCVHWM, hwm)
        self.xpub.setsockopt(zmq.SNDHWM, hwm)
        self.in_endpoint = self._bind(self.xsub, in_endpoint, "--in")
        self.out_endpoint = self._bind(self.xpub, out_endpoint, "--out")
        self.control = self.ctx.socket(zmq.REP)
        self.control.bind("inproc://relay-control")
        self._capture: Any = None
        if accounting:
            self._capture = self.ctx.socket(zmq.PUSH)
            self._capture.setsockopt(zmq.SNDHWM, hwm)
            self._capture.bind("inproc://relay-capture")

    def _socket(self, kind: int, secret_key: str | None, authorized: str | None) -> Any:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        if secret_key:
            from zmq.auth import load_certificate
            from zmq.auth.thread import ThreadAuthenticator

            try:
                public, secret = load_certificate(secret_key)
            except (OSError, ValueError) as err:
                raise RelayError(f"--curve-secret-key {secret_key}: cannot load ({err})") from None
            if secret is None:
                raise RelayError(f"--curve-secret-key {secret_key}: holds no secret key")
            if not authorized or not Path(authorized).is_dir():
                raise RelayError(f"--curve-authorized-keys {authorized!r}: must be a folder of client keys")
            if self.auth is None:
                self.auth = ThreadAuthenticator(self.ctx)
                self.auth.start()
                self.auth.configure_curve(domain="*", location=str(authorized))
            sock.curve_secretkey, sock.curve_publickey, sock.curve_server = secret, public, True
        return sock

    def _bind(self, sock: Any, endpoint: str, flag: str) -> str:
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as err:
            self.close()
            raise RelayError(f"{flag} {endpoint!r}: cannot bind ({err})") from None
        return sock.getsockopt_string(zmq.LAST_ENDPOINT)

    # running ----------------------------------------------------------------------------------------------------------
    def start(self) -> Relay:
        """Start the proxy (and the accounting reader) in daemon threads."""
        if self.accounting:
            reader = self.ctx.socket(zmq.PULL)
            reader.setsockopt(zmq.RCVHWM, self.hwm)
            reader.connect("inproc://relay-capture")
            self._threads.append(threading.Thread(target=self._count, args=(reader,), daemon=True, name="relay-acct"))
        self._threads.append(threading.Thread(target=self._proxy, daemon=True, name="relay-proxy"))
        for t in self._threads:
            t.start()
        self._ctl = self.ctx.socket(zmq.REQ)
        self._ctl.connect("inproc://relay-control")
        return self

    def _proxy(self) -> None:
        with contextlib.suppress(zmq.ZMQError):  # the context was terminated under it
            zmq.proxy_steerable(self.xsub, self.xpub, self._capture, self.control)

    def _count(self, reader: Any) -> None:
        try:
            while True:
                frames = reader.recv_multipart(copy=False)
                first = frames[0].bytes
                if len(frames) == 1 and first[:1] in (b"\x00", b"\x01"):  # a subscription going upstream
                    with self.lock:
                        n = self.subscriptions.get(first[1:], 0) + (1 if first[:1] == b"\x01" else -1)
                        self.subscriptions[first[1:]] = max(0, n)
                    continue
                info = peek(frames) if len(frames) >= 2 else None
                size = sum(len(f) for f in frames)
                with self.lock:
                    if info is None:
                        self.unreadable += 1
                        continue
                    device, topic, seq = info
                    d = self.devices.setdefault(device, {"messages": 0, "bytes": 0, "t_last": 0.0})
                    d["messages"] += 1
                    d["bytes"] += size
                    d["t_last"] = time.monotonic()
                    self.gaps.see(device, topic, seq)
        except zmq.ZMQError:
            pass
        finally:
            reader.close(linger=0)

    def statistics(self) -> dict[str, int]:
        """libzmq's proxy counters: frames and bytes in and out on each side (exact, kept by the proxy itself)."""
        self._ctl.send(b"STATISTICS")
        values = [struct.unpack("=Q", f)[0] for f in self._ctl.recv_multipart()]
        keys = ("in_frames", "in_bytes", "subs_frames_up", "subs_bytes_up",
                "subs_frames_down", "subs_bytes_down", "out_frames", "out_bytes")  # fmt: skip
        return dict(zip(keys, values, strict=True))

    def snapshot(self) -> dict[str, Any]:
        """Per-device accounting, subscriptions and the proxy's totals (what the metrics expose)."""
        now = time.monotonic()
        with self.lock:
            devices = {
                dev: {
                    "messages": int(d["messages"]),
                    "bytes": int(d["bytes"]),
                    "missed": self.gaps.missed.get(dev, 0),
                    "silent_s": now - d["t_last"],
                }
                for dev, d in self.devices.items()
            }
            subscribed = sum(1 for n in self.subscriptions.values() if n > 0)
            unreadable = self.unreadable
        return {"devices": devices, "subscribed_topics": subscribed, "unreadable": unreadable,
                "uptime_s": now - self.t_start, "proxy": self.statistics()}  # fmt: skip

    def close(self) -> None:
        """Stop the proxy (TERMINATE), then the reader (context term) and the authenticator."""
        if self._ctl is not None:
            self._ctl.send(b"TERMINATE")
            self._ctl.poll(1000)
            self._ctl.close(linger=0)
            self._ctl = None
        for t in self._threads:
            if t.name == "relay-proxy":
                t.join(2)
        for name in ("xsub", "xpub", "control", "_capture"):
            sock = getattr(self, name, None)
            if sock is not None and not sock.closed:
                sock.close(linger=0)
        if self.auth is not None:
            self.auth.stop()
            self.auth = None
        if not self.ctx.closed:
            self.ctx.term()  # the accounting reader's recv ends with ETERM and it closes its socket
        for t in self._threads:
            t.join(2)


def metrics_collector(relay: Relay) -> Any:
    """A Prometheus collector reading relay.snapshot() at scrape time."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector

    class RelayCollector(Collector):
        def describe(self) -> list:
            return []

        def collect(self) -> Any:
            s = relay.snapshot()
            frames = CounterMetricFamily("edgefuse_relay_frames", "Frames through the proxy.", labels=["direction"])
            nbytes = CounterMetricFamily("edgefuse_relay_bytes", "Bytes through the proxy.", labels=["direction"])
            for d in ("in", "out"):
                frames.add_metric([d], s["proxy"][f"{d}_frames"])
                nbytes.add_metric([d], s["proxy"][f"{d}_bytes"])
            msgs = CounterMetricFamily("edgefuse_relay_messages", "Messages in, per device.", labels=["device"])
            missed = CounterMetricFamily(
                "edgefuse_relay_missed", "Messages lost before the relay (seq gaps), per device.", labels=["device"]
            )
            silent = GaugeMetricFamily(
                "edgefuse_relay_silent_seconds", "Since the device's last message.", labels=["device"]
            )
            for dev, d in sorted(s["devices"].items()):
                msgs.add_metric([dev], d["messages"])
                missed.add_metric([dev], d["missed"])
                silent.add_metric([dev], d["silent_s"])
            subs = GaugeMetricFamily("edgefuse_relay_subscribed_topics", "Topic prefixes some subscriber asked for.")
            subs.add_metric([], s["subscribed_topics"])
            yield from (frames, nbytes, msgs, missed, silent, subs)

    return RelayCollector()


def cli_relay(args: argparse.Namespace) -> int:
    """`edgefuse relay --in tcp://*:5556 --out tcp://*:5557 [--hwm N] [--metrics-port P] [--curve-...]`."""
    relay = Relay(args.in_endpoint, args.out_endpoint, args.hwm, args.curve_secret_key, args.curve_authorized_keys,
                  accounting=not args.no_accounting)  # fmt: skip
    server = None
    try:
        relay.start()
        if args.metrics_port is not None:
            from prometheus_client import CollectorRegistry, start_http_server

            registry = CollectorRegistry()
            registry.register(metrics_collector(relay))
            server, _ = start_http_server(args.metrics_port, addr="127.0.0.1", registry=registry)
        print(f"edgefuse relay: runtimes -> {relay.in_endpoint}, subscribers <- {relay.out_endpoint}", flush=True)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
        s = relay.snapshot()
        print(f"edgefuse relay: {s['proxy']['in_frames']} frames in, {s['proxy']['out_frames']} out, "
              f"{len(s['devices'])} device(s)")  # fmt: skip
    finally:
        if server is not None:
            server.shutdown()
        relay.close()
    return 0
