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
    assert rej["values"] >= 2 and rej["schema"] >= 2 and rej["decode"] + rej["schema"] > 250  # most not even decoded


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


def test_hostile_numbers_and_nesting_are_counted_not_raised(pub_src):
    # each of these stopped the whole runtime once (issue 11); now each costs one counted message
    pub, src = pub_src
    big_int = b'{"v":1,"source":"n","seq":0,"t_sensor_ns":1,"values":[' + b"9" * 400 + b",0,0]}"
    pub.sock.send_multipart([b"env", big_int])
    pub.sock.send_multipart([b"env", b"{" + b"[" * 5000])  # 5,000 nested arrays
    pub.sock.send_multipart([b"env", b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}"])  # deep but well-formed
    pub.sock.send_multipart([b"env", b"\x91" * 5000 + b"\x01"])  # msgpack: 5,000 nested arrays (not a map: schema)
    pub.send(msg(0, [[0, 0, 1], [0, 0, 2]], rate_hz=1e-300))  # rows 1e300 s apart
    pub.send(msg(1, [0, 0, 1], rate_hz=9.9e6))  # a rate that would size buffers in GB
    pub.send(msg(2, [0, 0, 1e300]))  # beyond float32
    pub.send(msg(3, [0, 0, 1], t_ns=-(2**63)))  # int64 minimum after a normal time (below)
    pub.send(msg(10**30, [0, 0, 1]), fmt="json")  # seq beyond int64
    pub.send(msg(4, [0, 0, float("nan")]))
    pub.send(msg(5, [[[0, 0, 1]]]))  # a block nested one level too deep
    pub.send(msg(6, [[0, 0, 1]] * 10_000))  # more rows than 4 windows (400 at 100 Hz x 1 s)
    pub.send(msg(7, [0, 0, 21.0]))  # valid: still gets through, with the host-clock time
    got = collect(src, 1)
    assert len(got) == 1 and got[0].data[0, 2] == pytest.approx(21.0)
    assert 0 <= got[0].t_arrival_ns - got[0].t_capture_ns < 50e6
    st = src.stats()
    assert st["errors"] == 12 and sum(st["rejected"].values()) == 12
    assert st["rejected"] == {"decode": 3, "schema": 2, "rate": 2, "values": 3, "time": 1, "rows": 1}


def test_a_wild_clock_never_puts_a_capture_time_far_from_its_arrival():
    spec = spec_for("tcp://127.0.0.1:1")
    src = make_sources(spec)["env"]
    now = monotonic_ns()
    assert src._handle([b"env", msgpack.packb(msg(0, [0, 0, 1], t_ns=now))], now) is not None
    wild = (-(2**63) + 1, 2**63 - 1, now + 10**15, now - 10**15, now, -(2**63) + 1, now)
    got = [src._handle([b"env", msgpack.packb(msg(i, [0, 0, 1], t_ns=t))], now + i) for i, t in enumerate(wild, 1)]
    # each is either refused ("time": beyond int64 or mapped far from its arrival) or, after the clock fit
    # re-anchored on a step, mapped onto the host clock; nothing far off ever reaches the synchronizer
    accepted = [s for s in got if s is not None]
    assert all(abs(s.t_capture_ns - s.t_arrival_ns) < 1e9 for s in accepted)
    assert len(accepted) + src.stats()["rejected"]["time"] == len(wild)
    assert set(src.stats()["rejected"]) == {"time"}


def test_publisher_rate_limit_drops_a_flood_but_not_a_neighbour():
    spec = spec_for("tcp://127.0.0.1:1")
    src = make_sources(spec)["env"]
    t0 = monotonic_ns()
    big = msgpack.packb(msg(0, [[0, 0, 1]] * 400, t_ns=t0, source="flood"))
    accepted = 0
    for i in range(20):  # 20 x 400 rows within 0.2 s: 40,000 rows/s against a 410 rows/s budget
        frames = [b"env", msgpack.packb(msg(i, [[0, 0, 1]] * 400, t_ns=t0 + i * 10**7, source="flood"))]
        accepted += src._handle(frames, t0 + i * 10**7) is not None
        good = msgpack.packb(msg(i, [0, 0, 2], t_ns=t0 + i * 10**7, source="neighbour"))
        assert src._handle([b"env", good], t0 + i * 10**7) is not None  # the other publisher is never throttled
    assert accepted == 1 and big  # the first block fits the burst; the rest are refused as rate
    st = src.stats()
    assert st["rejected"] == {"rate": 19} and st["drops"] == 19


def test_publisher_table_evicts_the_least_recent_so_a_new_sensor_is_accepted():
    from edgefuse.runtime.sources.zmq_sensor import MAX_PUBLISHERS

    src = make_sources(spec_for("tcp://127.0.0.1:1"))["env"]
    t = monotonic_ns()
    accepted = 0
    for i in range(MAX_PUBLISHERS + 10):
        frames = [b"env", msgpack.packb(msg(0, [0, 0, 1], t_ns=t + i, source=f"junk-{i}"))]
        accepted += src._handle(frames, t + i) is not None
    # up to half a table, a new name's first reading is used; beyond, it only anchors the name's clock
    assert accepted == MAX_PUBLISHERS // 2 and src.stats()["probation"] == MAX_PUBLISHERS + 10 - accepted
    real = [msgpack.packb(msg(i, [0, 0, 5], t_ns=t + 100 + i, source="real-sensor")) for i in range(2)]
    assert src._handle([b"env", real[0]], t + 100) is None  # probation: the table is full of other names
    assert src._handle([b"env", real[1]], t + 101) is not None  # accepted from its second message on
    st = src.stats()
    assert len(st["publishers"]) == MAX_PUBLISHERS and "real-sensor" in st["publishers"]
    assert "junk-0" not in st["publishers"] and st["evicted"] == 11 and st["errors"] == 0


def test_large_valid_blocks_decode_without_a_per_row_loop():
    # 140k rows: the old per-row Python loop took ~0.5 s; the size cap refuses it outright, and a capped block
    # (4 windows) decodes, holds and maps in milliseconds
    spec = spec_for("tcp://127.0.0.1:1")
    src = make_sources(spec)["env"]
    t = monotonic_ns()
    assert src._handle([b"env", msgpack.packb(msg(0, [[0, 1, 2]] * 140_000, t_ns=t))], t) is None
    rows = [[float(i), float("nan"), 2.0] for i in range(400)]
    rows[0][1] = 7.0
    payload = msgpack.packb(msg(1, rows, t_ns=t - 4 * 10**9, rate_hz=100.0))
    t0 = time.perf_counter()
    s = src._handle([b"env", payload], t)
    elapsed = time.perf_counter() - t0
    assert s is None  # NaN is not a finite value
    rows[5][1] = 7.0
    clean = [[r[0], 3.0 if r[1] != r[1] else r[1], r[2]] for r in rows]
    t0 = time.perf_counter()
    # another publisher: node-1 spent its row budget on the bad block (bad traffic costs its sender's budget)
    s = src._handle([b"env", msgpack.packb(msg(2, clean, t_ns=t - 4 * 10**9, rate_hz=100.0, source="node-2"))], t)
    elapsed = max(elapsed, time.perf_counter() - t0)
    assert s is not None and s.data.shape == (400, 3) and s.data[399, 0] == 399.0
    assert elapsed < 0.05
    # 140k rows are refused by size before decoding: more bytes than 4 windows of rows can take
    assert src.stats()["rejected"] == {"oversized": 1, "values": 1}


def test_hold_fills_channels_left_out_from_the_last_value_across_blocks():
    src = make_sources(spec_for("tcp://127.0.0.1:1"))["env"]
    t = monotonic_ns()
    a = src._handle([b"env", msgpack.packb(msg(0, [[1.0, 2.0]], channels=["motion", "door"], t_ns=t))], t)
    assert np.isnan(a.data[0, 2])  # temperature: never seen yet
    b = src._handle(
        [b"env", msgpack.packb(msg(1, [[20.0], [21.0]], channels=["temperature"], t_ns=t + 1, rate_hz=100.0))],
        t + 10**7,
    )
    np.testing.assert_array_equal(b.data, [[1.0, 2.0, 20.0], [1.0, 2.0, 21.0]])
    c = src._handle([b"env", msgpack.packb(msg(2, [[5.0]], channels=["door"], t_ns=t + 2 * 10**7))], t + 2 * 10**7)
    np.testing.assert_array_equal(c.data, [[1.0, 5.0, 21.0]])


def test_a_message_above_the_zmq_size_limit_costs_the_sensor_under_a_second(pub_src):
    pub, src = pub_src
    pub.send(msg(0, [0, 0, 1.0]))
    assert len(collect(src, 1)) == 1
    pub.sock.send_multipart([b"env", b"\x00" * (5 << 20)])  # 5 MiB > ZMQ_MAXMSGSIZE: libzmq drops the peer
    t_sent = time.monotonic()
    got, seq = [], 1
    while not got and time.monotonic() - t_sent < 3:
        pub.send(msg(seq, [0, 0, 2.0]))  # valid data keeps coming, as from a live sensor
        seq += 1
        got = src.read(0.02)
        if pub.sock.poll(0):
            pub.sock.recv()  # the resubscription after the reconnect
    assert got and got[0].data[0, 2] == pytest.approx(2.0)
    assert time.monotonic() - t_sent < 1.0
    assert src.stats()["disconnects"] >= 1


def test_curve_sensor_link_admits_only_a_keyed_runtime(tmp_path):
    import zmq.auth
    from zmq.auth.thread import ThreadAuthenticator

    from edgefuse.cli import main

    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    allowed.mkdir()
    assert main(["keygen", "--out", str(keys), "--name", "sensor"]) == 0
    assert main(["keygen", "--out", str(keys), "--name", "runtime"]) == 0
    (allowed / "runtime.key").write_bytes((keys / "runtime.key").read_bytes())
    ctx = zmq.Context()
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(allowed))
    pub = ctx.socket(zmq.XPUB)  # the sensor: a CURVE server that admits the runtime's key only
    pub.setsockopt(zmq.LINGER, 0)
    pub.curve_publickey, pub.curve_secretkey = zmq.auth.load_certificate(keys / "sensor.key_secret")
    pub.curve_server = True
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    uri = f"tcp://127.0.0.1:{port}"
    keyed = make_sources(
        spec_for(uri, curve_server_key=str(keys / "sensor.key"), curve_secret_key=str(keys / "runtime.key_secret"))
    )["env"]
    stranger = make_sources(spec_for(uri, curve_server_key=str(keys / "sensor.key")))["env"]  # throwaway keys
    plain = make_sources(spec_for(uri))["env"]
    for s in (keyed, stranger, plain):
        s.open()
    try:
        deadline = time.monotonic() + 5
        while not pub.poll(10) and time.monotonic() < deadline:
            keyed.read(0.01)
        assert pub.recv()[:1] == b"\x01"  # only the keyed runtime's subscription arrives
        for i in range(3):
            pub.send_multipart([b"env", msgpack.packb(msg(i, [0, 0, 20.0 + i]))])
        got = collect(keyed, 3)
        assert [s.data[0, 2] for s in got] == [20.0, 21.0, 22.0]
        assert collect(stranger, 1, timeout_s=0.3) == [] and collect(plain, 1, timeout_s=0.3) == []
    finally:
        for s in (keyed, stranger, plain):
            s.close()
        pub.close()
        auth.stop()
        ctx.term()
    with pytest.raises(Exception, match=r"modalities.env.source server key .*nope.key"):
        make_sources(spec_for(uri, curve_server_key=str(tmp_path / "nope.key")))


def test_a_topic_that_matches_nothing_is_said_in_the_log_and_counted(monkeypatch, caplog):
    # the sensor publishes on "environment", the config subscribes to "env/kitchen": ZeroMQ filters on the
    # publisher's side, so nothing ever arrives to be refused; the source says so instead of staying silent
    import edgefuse.runtime.sources.zmq_sensor as zs

    monkeypatch.setattr(zs, "SILENT_S", 0.3)
    pub = Publisher()
    src = make_sources(spec_for(pub.uri, topic="env/kitchen"))["env"]
    src.open()
    try:
        pub.wait_subscribed(src)
        with caplog.at_level("WARNING", logger="edgefuse.runtime.sources.zmq_sensor"):
            deadline = time.monotonic() + 3
            while src.stats().get("silent", 0) == 0 and time.monotonic() < deadline:
                pub.send(msg(0, [0, 0, 21.0]), topic=b"environment")
                src.read(0.05)
        assert src.stats()["silent"] >= 1
        assert "connected, but no message on topic 'env/kitchen'" in caplog.text and pub.uri in caplog.text
        # the right topic is heard, and nothing more is said
        n = src.stats()["silent"]
        got = []
        for i in range(10):
            pub.send(msg(i + 1, [0, 0, 21.0]), topic=b"env/kitchen")
            got += src.read(0.05)
        assert got and src.stats()["silent"] == n
    finally:
        src.close()
        pub.close()
