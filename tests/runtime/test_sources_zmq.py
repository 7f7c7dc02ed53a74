"""ZeroMQ sensor source against real PUB sockets on 127.0.0.1: schema, fuzzing, restarts, drops, clock jumps."""

from __future__ import annotations

import json
import time

import msgpack
import numpy as np
import pytest
import zmq

from edgefuse.runtime.clock import monotonic_ns
from edgefuse.runtime.sources import make_sources
from edgefuse.runtime.sources.zmq_sensor import Rejected, decode_payload, parse_message
from edgefuse.spec import SpecError, parse_spec

CHANNELS = ["motion", "door", "temperature"]


def spec_for(uri: str, **source):
    return parse_spec(
        {
            "name": "t",
            "modalities": {
                "env": {
                    "kind": "series",
                    "rate_hz": 100,
                    "window_s": 1.0,
                    "channels": CHANNELS,
                    "source": {"type": "zmq", "uri": uri, "reconnect_s": 0.05, "reconnect_max_s": 0.1, **source},
                }
            },
            "labels": {"event": ["a", "b"]},
            "model": {"encoders": {"env": {"type": "cnn1d"}}},
        }
    )


class Publisher:
    """An XPUB socket: like a PUB, but it sees subscriptions, so a test knows when the subscriber is listening."""

    def __init__(self, port: int | None = None):
        self.sock = zmq.Context.instance().socket(zmq.XPUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        if port is None:
            self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        else:
            self.sock.bind(f"tcp://127.0.0.1:{port}")
            self.port = port
        self.uri = f"tcp://127.0.0.1:{self.port}"

    def wait_subscribed(self, src, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            src.read(0.01)  # let the source run its monitor
            if self.sock.poll(10):
                assert self.sock.recv()[:1] == b"\x01"
                return
        raise AssertionError("subscriber never subscribed")

    def send(self, msg, topic=b"env", fmt="msgpack") -> None:
        payload = json.dumps(msg).encode() if fmt == "json" else msgpack.packb(msg)
        self.sock.send_multipart([topic, payload])

    def close(self) -> None:
        self.sock.close(0)


def msg(seq: int, values, channels=CHANNELS, t_ns: int | None = None, source="node-1", **kw):
    return {
        "v": 1,
        "source": source,
        "seq": seq,
        "t_sensor_ns": monotonic_ns() if t_ns is None else t_ns,
        "channels": channels,
        "values": values,
        **kw,
    }


def collect(src, n: int, timeout_s: float = 3.0) -> list:
    out: list = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        out += src.read(0.02)
    return out


@pytest.fixture()
def pub_src():
    pub = Publisher()
    src = make_sources(spec_for(pub.uri, topic="env"))["env"]
    src.open()
    pub.wait_subscribed(src)
    yield pub, src
    src.close()
    pub.close()


def test_valid_messages_msgpack_and_json_channel_order_and_hold(pub_src):
    pub, src = pub_src
    pub.send(msg(0, [1, 0, 21.5]))
    pub.send(msg(1, [[0.5, 20.0]], channels=["motion", "temperature"], rate_hz=100.0), fmt="json")  # door held
    pub.send(msg(2, [[1, 1, 22.0], [0, 1, 22.5]], rate_hz=50.0))
    pub.send(msg(0, [1, 0, 0], source="x"), topic=b"other")  # filtered by topic
    got = collect(src, 3)
    assert [s.seq for s in got] == [0, 1, 2]
    np.testing.assert_allclose(got[0].data, [[1, 0, 21.5]])
    np.testing.assert_allclose(got[1].data, [[0.5, 0, 20.0]])  # door: held from message 0
    assert got[2].data.shape == (2, 3) and got[2].rate_hz == 50.0 and got[2].data.dtype == np.float32
    assert all(s.source == "env" and s.meta["publisher"] == "node-1" for s in got)
    # the sensor clock is the host clock here: mapped capture time = first arrival's delay, under a few ms
    for s in got:
        assert 0 <= s.t_arrival_ns - s.t_capture_ns < 50e6
    st = src.stats()
    assert st["samples"] == 3 and st["errors"] == 0 and st["drops"] == 0


def test_fuzz_garbage_truncated_oversized_wrong_types_never_stop_the_source(pub_src):
    pub, src = pub_src
    rng = np.random.default_rng(1234)
    n_random = 300
    for _ in range(n_random):
        pub.sock.send_multipart([b"env", rng.bytes(int(rng.integers(0, 200)))])
    good = msgpack.packb(msg(5, [1, 0, 20.0]))
    for cut in range(1, len(good), 7):  # truncated valid messages
        pub.sock.send_multipart([b"env", good[:cut]])
    n_trunc = len(range(1, len(good), 7))
    pub.sock.send_multipart([b"env", b"\x80" * (1 << 20 + 1)])  # 2 MiB > max_message_bytes
    pub.sock.send_multipart([b"env"])  # one frame
    pub.sock.send_multipart([b"env", b"a", b"b"])  # three frames
    pub.send(msg(6, [1, 0, 20.0], channels=["motion", "door", "pressure"]))  # unknown channel
    pub.send(msg(7, ["x", "y", "z"]))  # strings as values
    pub.send(msg(8, [1, 2]))  # wrong row length
    pub.send({**msg(9, [1, 0, 0]), "seq": "nine"})  # wrong type
    pub.send({**msg(10, [1, 0, 0]), "v": 2})  # future schema
    pub.send([1, 2, 3])  # not a mapping
    pub.send(msg(11, [1, 0, 19.0]))  # the next valid message still gets through
    got = collect(src, 1)
    assert len(got) == 1 and got[0].data[0, 2] == pytest.approx(19.0)
    rej = src.stats()["rejected"]
    n_bad = n_random + n_trunc + 9  # + oversized, 2 bad framings, 6 bad messages
    assert sum(rej.values()) == n_bad == src.stats()["errors"]
    assert rej["oversized"] == 1 and rej["frames"] == 2 and rej["channels"] == 1 and rej["version"] >= 1
    assert rej["values"] >= 2 and rej["schema"] >= 2 and rej["decode"] > 100


def test_sequence_gap_counts_drops_and_shows_in_sample_seq(pub_src):
    pub, src = pub_src
    for seq in (0, 1, 5, 6, 6, 7):  # 2..4 lost, 6 duplicated
        pub.send(msg(seq, [0, 0, 20.0]))
    got = collect(src, 5)
    assert [s.seq for s in got] == [0, 1, 5, 6, 7]
    st = src.stats()
    assert st["drops"] == 3 and st["duplicates"] == 1


def test_publisher_restart_is_not_counted_as_drops():
    pub = Publisher()
    src = make_sources(spec_for(pub.uri))["env"]
    src.open()
    try:
        pub.wait_subscribed(src)
        for seq in range(10):
            pub.send(msg(seq, [0, 0, 20.0]))
        assert len(collect(src, 10)) == 10
        port = pub.port
        pub.close()  # the sensor process dies...
        time.sleep(0.1)
        pub = Publisher(port)  # ...and a new one binds the same port, counting from 0 again
        pub.wait_subscribed(src)
        for seq in range(5):
            pub.send(msg(seq, [1, 1, 21.0]))
        got = collect(src, 5)
        assert [s.seq for s in got] == [10, 11, 12, 13, 14]
        st = src.stats()
        assert st["restarts"] == 1 and st["drops"] == 0 and st["reconnects"] >= 1 and st["disconnects"] >= 1
    finally:
        src.close()
        pub.close()


def test_sensor_clock_offset_estimated_and_jump_reanchored(pub_src):
    pub, src = pub_src
    offset = 3_000_000_000  # the sensor's clock reads 3 s ahead of the host
    for seq in range(30):
        t_true = monotonic_ns()
        pub.send(msg(seq, [0, 0, 20.0], t_ns=t_true + offset))
        time.sleep(0.003)
    got = collect(src, 30)
    st = src.stats()
    assert st["clock_offset_ms"] == pytest.approx(-3000, abs=20) and st["clock_jumps"] == 0
    offset += 7_000_000_000  # the sensor steps its clock 7 s forward (an NTP step)
    for seq in range(30, 40):
        t_true = monotonic_ns()
        pub.send(msg(seq, [0, 0, 20.0], t_ns=t_true + offset))
        time.sleep(0.003)
    got += collect(src, 10)
    st = src.stats()
    assert st["clock_jumps"] == 1 and st["clock_offset_ms"] == pytest.approx(-10000, abs=20)
    # before and after the jump, capture times stay on the host clock: just before their arrival
    assert len(got) == 40
    assert all(0 <= (s.t_arrival_ns - s.t_capture_ns) / 1e6 < 20 for s in got)


def test_parse_message_reasons_and_config_errors():
    spec = spec_for("tcp://127.0.0.1:1")
    m = spec.modalities["env"]
    with pytest.raises(Rejected) as e:
        decode_payload(b"{not json", 100)
    assert e.value.reason == "decode"
    with pytest.raises(Rejected) as e:
        parse_message(msg(0, [1, 2, 3], t_ns=True), m)  # a bool is not a time
    assert e.value.reason == "schema"
    with pytest.raises(Rejected) as e:
        parse_message(msg(0, [1, 2, float("inf")]), m)
    assert e.value.reason == "values"
    bad = spec.model_copy(deep=True)
    bad.modalities["env"].source.uri = None
    with pytest.raises(SpecError, match=r"modalities.env.source.uri"):
        make_sources(bad)


def test_example_publisher_in_another_process(tmp_path, free_endpoint):
    # examples/sensor_publisher.py binds; our source connects to it (another process, JSON payloads, batched rows)
    import subprocess
    import sys

    uri = free_endpoint()
    src = make_sources(spec_for(uri))["env"]
    m = src.spec
    cmd = [sys.executable, "examples/sensor_publisher.py", "--endpoint", uri, "--channels", ",".join(m.channels)]
    cmd += ["--rate", "100", "--rows", "4", "--format", "json", "--count", "60"]
    pub = subprocess.Popen(cmd)
    src.open()
    try:
        got = collect(src, 20, timeout_s=10)
    finally:
        pub.wait(20)
        src.close()
    assert len(got) >= 20 and all(s.data.shape == (4, 3) and s.rate_hz == 100 for s in got)
    # the example stamps with the wall clock: the fitted offset is host monotonic - wall clock (+ a small delay)
    expected_ms = (monotonic_ns() - time.time_ns()) / 1e6
    assert src.stats()["clock_offset_ms"] == pytest.approx(expected_ms, abs=30)
    assert src.stats()["errors"] == 0


@pytest.mark.parametrize(("scene", "event"), [("quiet", "idle"), ("cooking", "cooking"), ("alarm", "alarm")])
def test_example_publisher_values_lie_in_the_smart_home_training_ranges(scene, event):
    # the example once sent smoke ~5 and the model said `alarm` on 58 of 60 ticks: its rows must look like the
    # generator's rows for the same event (each channel inside the range of 40 generated episodes, widened by 10%)
    import importlib.util

    import numpy as np

    from edgefuse.spec import load_spec
    from edgefuse.trainer.synth import get_generator

    spec = load_spec("configs/smart_home.yaml")
    m = spec.modalities["env"]
    gen = get_generator(spec)
    rng = np.random.default_rng(0)
    rows = np.concatenate(
        [gen.render_env(gen.episode({"event": event}, rng, 6.0), (0.0, 6.0), m, rng) for _ in range(40)]
    )  # (T, C)
    lo, hi = rows.min(0), rows.max(0)
    pad = 0.1 * (hi - lo) + 1e-3
    ex_spec = importlib.util.spec_from_file_location("sensor_publisher", "examples/sensor_publisher.py")
    ex = importlib.util.module_from_spec(ex_spec)
    ex_spec.loader.exec_module(ex)
    sent = np.array([ex.reading(1.7e9 + t, m.channels, scene, t) for t in np.arange(0.0, 6.0, 0.1)])  # (60, C)
    bad = [(c, float(sent[:, i].min()), float(sent[:, i].max()), float(lo[i]), float(hi[i]))
           for i, c in enumerate(m.channels)
           if sent[:, i].min() < lo[i] - pad[i] or sent[:, i].max() > hi[i] + pad[i]]  # fmt: skip
    assert bad == []
