"""edgefuse relay: real Publishers (8 devices) -> a real libzmq proxy on 127.0.0.1 -> 2 real SUB sockets."""

from __future__ import annotations

import threading
import time

import pytest
import zmq

from edgefuse import wire
from edgefuse.runtime.publisher import Publisher
from edgefuse.runtime.relay import Relay, SeqGaps
from edgefuse.spec import PublishSpec

ANY = "tcp://127.0.0.1:*"

HWM = 1000  # per peer, at the relay
DEVICES = [f"cam-{i:02d}" for i in range(8)]


def payload(i: int) -> dict:
    return wire.result_payload(i, {"cam": i}, {"cam": True}, {"event": {"a": 0.75, "b": 0.25}}, {"infer": 1.0})


class Reader:
    """A SUB socket on the relay's out side, read in a thread: every result decoded, per-device counts and gaps."""

    def __init__(self, ctx: zmq.Context, endpoint: str, rcvhwm: int = 1000):
        self.sock = ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, rcvhwm)
        self.sock.setsockopt(zmq.RCVBUF, 1 << 16)  # a small kernel buffer: a stalled reader fills up sooner
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.subscribe(b"")
        self.sock.connect(endpoint)
        self.gaps, self.results, self.devices_seen = SeqGaps(), {}, set()
        self.reading = threading.Event()
        self.reading.set()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.reading.wait(0.05) or not self.sock.poll(20):
                continue
            msg = wire.decode(self.sock.recv_multipart())
            self.devices_seen.add(msg.device)
            if msg.type == "result":
                self.gaps.see(msg.device, msg.topic, msg.header["seq"])
                self.results[msg.device] = self.results.get(msg.device, 0) + 1

    def total(self) -> int:
        return sum(self.results.values())

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.sock.close()


def wait_for(cond, timeout: float = 5.0, what="") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what() if callable(what) else what}"
        time.sleep(0.005)


def test_relay_delivers_every_message_from_8_publishers_to_2_subscribers_and_counts_a_stalled_ones_losses():
    relay = Relay(ANY, ANY, hwm=HWM).start()
    ctx = zmq.Context()
    pubs = [Publisher(PublishSpec(endpoint=None, connect=[relay.in_endpoint], hwm=1000), context=ctx, device=d)
            for d in DEVICES]  # fmt: skip
    a, b = Reader(ctx, relay.out_endpoint), Reader(ctx, relay.out_endpoint, rcvhwm=100)
    try:
        # subscriptions travel subscriber -> relay -> publisher: publish stats until both readers hear every device
        def hello() -> bool:
            for p in pubs:
                p.stats({"t_ns": 0, "sources": {}, "drops": {}, "latency_ms": {}, "ticks": 0, "published": 0})
            time.sleep(0.02)
            return a.devices_seen == b.devices_seen == set(DEVICES)

        wait_for(hello, what="subscriptions to reach all publishers")
        sent = dict.fromkeys(DEVICES, 0)

        def burst(n: int, reader: Reader) -> None:
            """n results from every device, then wait until `reader` has them all: always under the HWM."""
            for i in range(n):
                for p in pubs:
                    assert p.result("", payload(i)), p.failures
                    sent[p.device] += 1
            wait_for(
                lambda: reader.total() == sum(sent.values()),
                what=lambda: (
                    f"{sum(sent.values())} results: {reader.total()} {reader.gaps.missed} {relay.snapshot()} {[p.failures for p in pubs]}"
                ),
            )

        for _ in range(8):  # 8 x 8 x 20 = 1280 results, 160 at a time (HWM 1000)
            burst(20, a)
            wait_for(lambda: b.total() == sum(sent.values()), what="the second reader")
        assert a.results == b.results == sent  # every message, to both subscribers
        assert a.gaps.missed == b.gaps.missed == {}

        b.reading.clear()  # the second subscriber stalls; the first must not notice
        for _ in range(120):  # 120 x 400 = 48000 more (9 MB), past what b's queues and socket buffers hold
            burst(50, a)
        assert a.results == sent and a.gaps.missed == {}
        b.reading.set()
        before = b.total()
        wait_for(lambda: b.total() > before and b.total() == (time.sleep(0.3) or b.total()), what="b to drain")

        def b_accounts_for_all() -> bool:
            # one more from each device, so a loss at the tail shows as a gap; again until b has the newest of each
            # (just after b drains, the relay may still drop for it until its pipe has room again)
            burst(1, a)
            time.sleep(0.05)
            return all(b.results[d] + b.gaps.missed.get(d, 0) == sent[d] for d in DEVICES)

        wait_for(b_accounts_for_all, timeout=20.0, what="b's last")
        lost = sum(b.gaps.missed.values())
        assert lost > 1000, b.gaps.missed  # the relay dropped for b instead of blocking everyone
        for d in DEVICES:  # every message b did not get is counted as missed, exactly
            assert b.results[d] + b.gaps.missed.get(d, 0) == sent[d]
        assert all(p.failures == {} for p in pubs)  # nothing was refused upstream of the relay

        snap = relay.snapshot()
        assert set(snap["devices"]) == set(DEVICES)
        # stats hellos and results; none lost between a runtime and the relay
        assert all(snap["devices"][d]["messages"] >= sent[d] and snap["devices"][d]["missed"] == 0 for d in DEVICES)
        assert snap["proxy"]["in_frames"] >= 3 * sum(sent.values()) and snap["subscribed_topics"] == 1
    finally:
        a.close()
        b.close()
        for p in pubs:
            p.close()
        ctx.term()
        relay.close()


def test_relay_metrics_and_cli_errors(free_endpoint):
    from prometheus_client import CollectorRegistry, generate_latest

    from edgefuse.cli import main
    from edgefuse.runtime.relay import metrics_collector

    relay = Relay(ANY, ANY).start()
    pub = Publisher(PublishSpec(endpoint=None, connect=[relay.in_endpoint]), device="box-1")
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.subscribe(b"result/box-1/")  # one device, by topic
    sub.connect(relay.out_endpoint)
    try:
        wait_for(lambda: pub.result("", payload(0)) and sub.poll(50) and bool(sub.recv_multipart()), what="a result")
        registry = CollectorRegistry()
        registry.register(metrics_collector(relay))
        # the per-device count comes from the relay's capture thread, which may trail the delivery on a loaded host
        line = 'edgefuse_relay_messages_total{device="box-1"}'
        wait_for(lambda: line in generate_latest(registry).decode(), what="the device's message count")
        text = generate_latest(registry).decode()
        assert line in text
        assert "edgefuse_relay_subscribed_topics 1.0" in text
    finally:
        sub.close(linger=0)
        pub.close()
        relay.close()
    busy = Relay(ANY, ANY)
    try:
        assert main(["relay", "--in", busy.in_endpoint, "--out", free_endpoint()]) == 1  # address in use: one line
    finally:
        busy.close()
    with pytest.raises(Exception, match="nothing to publish to"):
        Publisher(PublishSpec(endpoint=None))


def test_curve_relay_admits_only_authorized_runtimes_and_subscribers(tmp_path):
    from zmq.auth import create_certificates, load_certificate

    from edgefuse.runtime.relay import curve_client

    (tmp_path / "ok").mkdir()
    create_certificates(tmp_path, "relay")
    create_certificates(tmp_path / "ok", "client")  # the relay's authorized folder holds client.key (public)
    relay = Relay(ANY, ANY, curve_secret_key=str(tmp_path / "relay.key_secret"),
                  curve_authorized_keys=str(tmp_path / "ok")).start()  # fmt: skip
    ctx = zmq.Context()
    spec = PublishSpec(endpoint=None, connect=[relay.in_endpoint], connect_curve_server_key=str(tmp_path / "relay.key"),
                       connect_curve_secret_key=str(tmp_path / "ok" / "client.key_secret"))  # fmt: skip
    pub = Publisher(spec, context=ctx, device="cam-s")
    subs = {}
    for name, key in (("member", str(tmp_path / "ok" / "client.key_secret")), ("stranger", None)):
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        curve_client(s, str(tmp_path / "relay.key"), key)
        s.subscribe(b"result/cam-s/")
        s.connect(relay.out_endpoint)
        subs[name] = s
    try:
        got = None
        deadline = time.monotonic() + 10
        while got is None and time.monotonic() < deadline:
            pub.result("", payload(1))
            if subs["member"].poll(50):
                got = wire.decode(subs["member"].recv_multipart())
        assert got is not None and got.device == "cam-s" and got.payload["top"] == {"event": "a"}
        for _ in range(20):
            pub.result("", payload(2))
        assert not subs["stranger"].poll(300)  # a client whose key the relay does not know receives nothing
        assert relay.snapshot()["devices"]["cam-s"]["messages"] >= 21  # the runtime got in, over CURVE
        assert load_certificate(tmp_path / "relay.key")[1] is None  # the public certificate holds no secret
    finally:
        for s in subs.values():
            s.close()
        pub.close()
        ctx.term()
        relay.close()


def test_relay_and_fleet_monitor_commands_end_to_end(free_endpoint):
    """`edgefuse relay` and `edgefuse monitor --relay` as an operator runs them: real processes, real sockets."""
    import json
    import signal
    import socket
    import subprocess
    import sys
    import urllib.request

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    ins, outs, metrics_port, web_port = free_endpoint(), free_endpoint(), free_port(), free_port()
    cli = [sys.executable, "-m", "edgefuse.cli"]
    relay = subprocess.Popen([*cli, "relay", "--in", ins, "--out", outs, "--metrics-port", str(metrics_port)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    monitor = subprocess.Popen([*cli, "monitor", "--relay", outs, "--port", str(web_port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    pub = None
    try:

        def get(url: str) -> bytes:
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    return resp.read()
            except OSError:
                return b""

        wait_for(lambda: get(f"http://127.0.0.1:{web_port}/api/fleet") != b"", 30, "the monitor")
        wait_for(lambda: b"edgefuse_relay_subscribed_topics 1.0" in get(f"http://127.0.0.1:{metrics_port}/metrics"),
                 30, "the monitor's subscription at the relay")  # fmt: skip
        pub = Publisher(PublishSpec(endpoint=None, connect=[ins]), device="box-9")

        def seen() -> bool:
            pub.result("", payload(3))
            fleet = json.loads(get(f"http://127.0.0.1:{web_port}/api/fleet") or b"{}")
            return any(d["device"] == "box-9" and d["results"] >= 3 for d in fleet.get("devices", []))

        wait_for(lambda: seen() or bool(time.sleep(0.05)), 20, "box-9 on the fleet page")
        state = json.loads(get(f"http://127.0.0.1:{web_port}/api/state?device=box-9"))
        assert state["results"][-1]["top"] == {"event": "a"}
        assert b"<title>edgefuse fleet</title>" in get(f"http://127.0.0.1:{web_port}/")
        assert b"<title>edgefuse monitor</title>" in get(f"http://127.0.0.1:{web_port}/device/box-9")
        text = get(f"http://127.0.0.1:{metrics_port}/metrics").decode()
        assert 'edgefuse_relay_messages_total{device="box-9"}' in text
    finally:
        if pub is not None:
            pub.close()
        for proc in (monitor, relay):
            proc.send_signal(signal.SIGTERM)
        outs_errs = [p.communicate(timeout=15) for p in (monitor, relay)]
    assert relay.returncode == 0 and monitor.returncode == 0, outs_errs
    assert "frames in" in outs_errs[1][0]  # the relay's closing line
