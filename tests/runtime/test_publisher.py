"""The publisher on real ZeroMQ sockets over loopback: delivery, never blocking at the HWM, CURVE, monitoring."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
import zmq
import zmq.auth

from edgefuse.runtime.publisher import Publisher, PublishError
from edgefuse.spec import PublishSpec
from edgefuse.wire import decode, result_payload

ANY = "tcp://127.0.0.1:*"


def payload(i: int = 0) -> dict:
    return result_payload(i, {"cam": i}, {"cam": True}, {"event": {"a": 0.9, "b": 0.1}}, {"e2e": 1.0})


def subscriber(ctx: zmq.Context, endpoint: str, topic: str = "", **opts) -> zmq.Socket:
    sub = ctx.socket(zmq.SUB)
    for k, v in opts.items():
        setattr(sub, k, v)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt_string(zmq.SUBSCRIBE, topic)
    sub.connect(endpoint)
    return sub


def receive_while_publishing(pub: Publisher, sub: zmq.Socket, send, timeout_s: float = 3.0) -> list[bytes] | None:
    """PUB/SUB drops until the subscription has propagated: publish until the subscriber hears something."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        send()
        if sub.poll(50):
            return sub.recv_multipart()
    return None


def test_results_reach_a_subscriber_and_decode():
    ctx = zmq.Context()
    pub = Publisher(PublishSpec(endpoint=ANY), context=ctx, device="cam-07")
    sub = subscriber(ctx, pub.endpoint, "result/cam-07/")  # one device's results, by topic prefix
    try:
        assert pub.endpoint.startswith("tcp://127.0.0.1:")
        frames = receive_while_publishing(pub, sub, lambda: pub.result("g0", payload(5)))
        msg = decode(frames)
        assert msg.topic == "result/cam-07/g0" and msg.header["group"] == "g0" and msg.payload["top"] == {"event": "a"}
        assert msg.device == "cam-07" and msg.tail == "g0"
        first = msg.header["seq"]
        pub.result("g0", payload(6))
        assert decode(sub.recv_multipart()).header["seq"] == first + 1  # per-type sequence: gaps show losses
        pub.stats({"t_ns": 1, "sources": {}, "drops": {}, "latency_ms": {}, "ticks": 0, "published": 0})
        assert not sub.poll(100)  # filtered out by the topic prefix
    finally:
        sub.close()
        pub.close()
        ctx.term()


def test_a_subscriber_that_never_reads_costs_counted_failures_not_time():
    ctx = zmq.Context()
    pub = Publisher(PublishSpec(endpoint=ANY, hwm=10), context=ctx)
    # the dead subscriber: tiny receive buffers, never reads
    sub = subscriber(ctx, pub.endpoint, rcvhwm=1, rcvbuf=4096)
    try:
        receive_while_publishing(pub, sub, lambda: pub.result("", payload()))  # connected and subscribed
        big = payload()
        big["pad"] = "x" * 20_000  # fills socket buffers quickly
        worst = 0.0
        for _ in range(3000):
            t0 = time.perf_counter()
            pub.result("", big)
            worst = max(worst, time.perf_counter() - t0)
            if pub.failures.get("hwm", 0) > 50:
                break
        assert pub.failures.get("hwm", 0) > 50, pub.failures
        assert worst < 0.05  # never blocks on the subscriber
    finally:
        sub.close()
        pub.close()
        ctx.term()


def test_curve_admits_only_authorized_clients(tmp_path):
    keys, authorized, stranger = tmp_path / "keys", tmp_path / "authorized", tmp_path / "stranger"
    for d in (keys, authorized, stranger):
        d.mkdir()
    server_pub, server_secret = zmq.auth.create_certificates(keys, "server")
    client_pub, client_secret = zmq.auth.create_certificates(authorized, "client")
    _, other_secret = zmq.auth.create_certificates(stranger, "other")
    ctx = zmq.Context()
    spec = PublishSpec(endpoint=ANY, curve_secret_key=str(server_secret), curve_authorized_keys=str(authorized))
    pub = Publisher(spec, context=ctx)

    def curve_sub(secret_file) -> zmq.Socket:
        public, secret = zmq.auth.load_certificate(secret_file)
        server_key, _ = zmq.auth.load_certificate(server_pub)
        return subscriber(ctx, pub.endpoint, curve_publickey=public, curve_secretkey=secret, curve_serverkey=server_key)

    good, bad = curve_sub(client_secret), curve_sub(other_secret)
    try:
        assert receive_while_publishing(pub, good, lambda: pub.result("", payload())) is not None
        assert not bad.poll(300)
        pub.result("", payload())
        assert not bad.poll(300)
    finally:
        good.close()
        bad.close()
        pub.close()
        ctx.term()


def test_bad_endpoint_and_bad_keys_are_clear_errors(tmp_path):
    ctx = zmq.Context()
    pub = Publisher(PublishSpec(endpoint=ANY), context=ctx, device="box")
    try:
        with pytest.raises(PublishError, match=r"runtime\.publish\.endpoint .* cannot bind"):
            Publisher(PublishSpec(endpoint=pub.endpoint), context=ctx)
        with pytest.raises(PublishError, match="curve_secret_key"):
            Publisher(PublishSpec(endpoint=ANY, curve_secret_key=str(tmp_path / "nope")), context=ctx)
    finally:
        pub.close()
        ctx.term()


def test_monitoring_topics_decode_with_their_content():
    ctx = zmq.Context()
    pub = Publisher(PublishSpec(endpoint=ANY), context=ctx, device="box")
    sub = subscriber(ctx, pub.endpoint)
    try:
        frame = np.zeros((480, 640, 3), np.uint8)
        frame[:, :320] = 255
        msg = decode(receive_while_publishing(pub, sub, lambda: pub.thumb("g1/cam", frame, 42, "g1")))
        assert msg.topic == "thumb/box/g1/cam" and (msg.payload["width"], msg.payload["height"]) == (160, 120)
        img = cv2.imdecode(np.frombuffer(msg.blobs[0], np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (120, 160, 3) and img[:, :70].mean() > 240 and img[:, 90:].mean() < 15
        t = np.arange(1600) / 16000
        pub.level("mic", (0.5 * np.sin(2 * np.pi * 440 * t))[:, None], 7)
        msg = decode(sub.recv_multipart())
        assert msg.topic == "level/box/mic" and abs(msg.payload["rms_db"][0] - (-9.03)) < 0.05
        rows = np.arange(200, dtype=np.float32).reshape(100, 2)
        pub.series("env", rows, 9, 10.0, ["a", "b"])
        msg = decode(sub.recv_multipart())
        assert msg.payload["values"][:2] == [[0.0, 1.0], [4.0, 5.0]] and msg.payload["rate_hz"] == 5.0
        assert len(msg.payload["values"]) == 50
    finally:
        sub.close()
        pub.close()
        ctx.term()
