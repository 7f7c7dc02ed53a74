"""`edgefuse listen`: subscribe to a runtime's PUB socket and print what it publishes, decoded with edgefuse.wire.

    edgefuse listen --endpoint tcp://127.0.0.1:5555 --count 10
    edgefuse listen --topic "" --json | jq .payload.top        # every topic, one JSON object per line
    edgefuse listen --curve-server-key keys/runtime.key --curve-key keys/client.key_secret   # a CURVE runtime

Malformed messages (garbage, truncated, oversized, another schema version) are never fatal: each is counted and
reported on stderr with what is wrong, and listening goes on.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any, TextIO

import zmq

from edgefuse.keys import curve_client
from edgefuse.wire import Message, WireError, decode

POLL_MS = 200  # how often the receive loop checks for a stop request
# a subscriber started before the runtime retries its connect this often: at ZeroMQ's default (100 ms, plus a random
# jitter of up to as much again) it missed a result sent 50 ms after the runtime's bind in 20 of 20 tries, since
# PUB drops what it sends before a subscriber has joined; at 10 ms it got that result 20 times of 20
RECONNECT_MS = 10


def format_line(msg: Message) -> str:
    """One human-readable line for a decoded message."""
    p, h = msg.payload, msg.header
    if msg.type == "result":
        tops = "  ".join(f"{head}={label} ({p['scores'][head][label]:.2f})" for head, label in p["top"].items())
        tops += "".join(f"  {head}={'+'.join(on) or '-'}" for head, on in p.get("multilabel", {}).items())
        tops += "".join(f"  {head}={v['value']:.3g} {v['unit']}".rstrip() for head, v in p.get("values", {}).items())
        mask = " ".join(f"{m}:{int(v)}" for m, v in p["mask"].items())
        lat = p["latency_ms"].get("e2e")
        lat_s = f"  e2e {lat:.1f} ms" if isinstance(lat, (int, float)) else ""
        group = f" {h['group']}" if h["group"] else ""
        return f"#{h['seq']:<6d}{group} t={p['t_tick_ns'] / 1e9:.3f}s  {tops}  [{mask}]{lat_s}"
    if msg.type == "stats":
        drops = sum(v for v in p["drops"].values() if isinstance(v, int))
        return f"stats ticks={p['ticks']} published={p['published']} drops={drops} sources={len(p['sources'])}"
    if msg.type == "thumb":
        size = len(msg.blobs[0]) if msg.blobs else 0
        return f"{msg.topic} {p['width']}x{p['height']} {p['format']} {size} B"
    if msg.type == "level":
        return f"{msg.topic} " + " ".join(f"{db:.1f} dB" for db in p["rms_db"])
    return f"{msg.topic} {len(p['values'])} rows x {len(p['channels'])} ch @ {p['rate_hz']:g} Hz"


def as_json(msg: Message) -> str:
    """The message as one JSON line: topic, header, payload (blobs by size only)."""
    obj: dict[str, Any] = {"topic": msg.topic, "header": msg.header, "payload": msg.payload}
    if msg.blobs:
        obj["blob_bytes"] = [len(b) for b in msg.blobs]
    return json.dumps(obj, separators=(",", ":"))


class Listener:
    """Decodes and prints messages from a SUB socket; counts what it received and what it refused."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None, json_lines: bool = False):
        # the streams of the moment (default sys.stdout / sys.stderr when called), not of when this module was imported
        self.out, self.err, self.json_lines = out or sys.stdout, err or sys.stderr, json_lines
        self.received = 0
        self.malformed = 0

    def handle(self, frames: list[bytes]) -> Message | None:
        """Decode and print one message; a malformed one is counted and warned about, never raised."""
        try:
            msg = decode(frames)
        except WireError as e:
            self.malformed += 1
            topic = bytes(frames[0][:40]).decode(errors="replace") if frames else ""
            print(
                f"edgefuse listen: warning: malformed message #{self.malformed} (topic {topic!r}): {e}", file=self.err
            )
            return None
        self.received += 1
        print(as_json(msg) if self.json_lines else format_line(msg), file=self.out, flush=True)
        return msg

    def run(self, sock: zmq.Socket, count: int | None = None, stop: threading.Event | None = None) -> None:
        """Receive until `count` valid messages were printed or `stop` is set."""
        while (count is None or self.received < count) and not (stop is not None and stop.is_set()):
            if sock.poll(POLL_MS):
                self.handle(sock.recv_multipart())


def cli_listen(args: argparse.Namespace) -> int:
    """`edgefuse listen [--endpoint E] [--topic T] [--count N] [--json]`."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)
    sock.setsockopt_string(zmq.SUBSCRIBE, args.topic)
    try:
        curve_client(sock, getattr(args, "curve_server_key", None), getattr(args, "curve_key", None), "listen")
    except Exception:
        sock.close()
        raise
    sock.connect(args.endpoint)
    listener = Listener(json_lines=args.json)
    try:
        listener.run(sock, args.count)
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        print(f"edgefuse listen: {listener.received} message(s), {listener.malformed} malformed", file=sys.stderr)
    return 0
