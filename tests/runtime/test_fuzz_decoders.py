"""Property-based fuzzing (hypothesis) of the two decoders that read untrusted bytes from the network: the sensor
message decoder (runtime/sources/zmq_sensor.py) and the wire decoder (edgefuse/wire.py).

The properties: no input raises anything but the decoder's own error type (the sensor decoder raises nothing at
all), every refused message is counted, and every accepted one holds values the rest of the runtime can use
(finite float32 rows of the spec's width, a capture time near its arrival, int64 sequence numbers)."""

from __future__ import annotations

import json
import math

import msgpack
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgefuse import wire
from edgefuse.runtime.clock import monotonic_ns
from edgefuse.runtime.sources import make_sources
from edgefuse.spec import parse_spec

# drawn examples; each is checked as one to three cases (a sensor message as msgpack, as JSON and damaged; a wire
# message whole and cut short): together over 10,000 cases, checked by the last test below
N_SENSOR = 3300
N_WIRE = 2200
CASES: dict[str, int] = {}
# derandomized: the same cases for the same hypothesis and the same loaded modules (hypothesis also draws constants
# it finds in the project's modules imported so far, so running a subset of the suite changes some draws); the bars
# below sit well clear of that spread
FAST = settings(
    max_examples=N_SENSOR, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True
)
CHANNELS = ["motion", "door", "temperature"]

# numbers at the edges: int64/uint64 limits, beyond them, float32/float64 limits, NaN, infinities, subnormals
edge_ints = st.sampled_from([0, 1, -1, 2**31, 2**63 - 1, -(2**63), 2**63, 2**64 - 1, -(2**64), 10**30])
edge_floats = st.sampled_from([0.0, -0.0, 1e-300, 5e-324, 3.4e38, 3.5e38, 1e308, math.inf, -math.inf, math.nan])
numbers = st.one_of(st.integers(), edge_ints, st.floats(), edge_floats, st.booleans())
scalars = st.one_of(st.none(), numbers, st.text(max_size=8))
anything = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=5,
)


def sensor_spec():
    return parse_spec(
        {
            "name": "t",
            "modalities": {
                "env": {
                    "kind": "series",
                    "rate_hz": 100,
                    "window_s": 0.5,
                    "channels": CHANNELS,
                    "source": {"type": "zmq", "uri": "tcp://127.0.0.1:1", "max_message_bytes": 65536},
                }
            },
            "labels": {"event": ["a", "b"]},
            "model": {"encoders": {"env": {"type": "cnn1d"}}},
        }
    )


class Now(int):
    """An offset from the host clock, resolved when the message is encoded (strategies must not read clocks)."""


good_row = st.lists(st.floats(-1e3, 1e3), min_size=3, max_size=3)
row = st.lists(st.one_of(st.floats(-1e3, 1e3), numbers, scalars), max_size=4)
# per field: (a valid value, a hostile one); built once, drawn from many times
FIELDS = {
    "v": (st.just(1), anything),
    "source": (st.sampled_from(["a", "b", "c"]), st.one_of(st.text(max_size=130), anything)),
    "seq": (st.integers(0, 50), st.one_of(edge_ints, anything)),
    "t_sensor_ns": (st.integers(-(10**9), 10**9).map(Now), st.one_of(edge_ints, anything)),
    "channels": (st.just(CHANNELS), st.one_of(st.lists(st.sampled_from([*CHANNELS, "x"]), max_size=4), anything)),
    "values": (
        st.one_of(good_row, st.lists(good_row, min_size=1, max_size=6)),
        st.one_of(row, st.lists(row, max_size=6), st.lists(st.lists(row, max_size=2), max_size=2), anything),
    ),
    "rate_hz": (st.floats(20, 400), st.one_of(edge_floats, edge_ints, st.floats(), anything)),
}
PICK = st.integers(0, 9)


@st.composite
def sensor_messages(draw):
    """Messages near the schema: each field valid, hostile or missing, so the fuzzer reaches deep checks; three in ten
    wholly valid, with a sequence number from a wide range (so rarely a duplicate): the accept path is exercised
    often, not only by the ~8 % of mixed draws whose seven fields all come out valid."""
    if draw(PICK) < 3:
        msg = {name: draw(good) for name, (good, _) in FIELDS.items()}
        return {**msg, "seq": draw(st.integers(0, 2**40))}
    msg = {}
    for name, (good, hostile) in FIELDS.items():
        pick = draw(PICK)  # each field: valid 70 %, hostile 20 %, missing 10 %
        if pick:
            msg[name] = draw(good if pick <= 7 else hostile)
    return msg


def variants(msg: dict, now: int) -> list[list[bytes]]:
    """One drawn message as three cases: msgpack, JSON (or msgpack again where JSON cannot hold it), and the
    msgpack bytes with one byte flipped in the middle."""
    msg = {k: now + v if isinstance(v, Now) else v for k, v in msg.items()}
    packed = msgpack.packb(msg, default=str)
    try:
        as_json = json.dumps(msg, default=str).encode()
    except ValueError:
        as_json = packed
    flipped = bytearray(packed)
    flipped[len(flipped) // 2] ^= 0x5A
    return [[b"env", packed], [b"env", as_json], [b"env", bytes(flipped)]]


def raw_frames():
    payload = st.one_of(st.binary(max_size=200), st.builds(lambda b: b"{" + b, st.binary(max_size=60)))
    return st.one_of(
        st.tuples(st.just(b"env"), payload).map(list),
        st.lists(st.binary(max_size=20), max_size=4),
    )


def test_sensor_decoder_never_raises_and_accepts_only_usable_samples():
    src = make_sources(sensor_spec())["env"]
    seen = {"n": 0, "accepted": 0}

    @FAST
    @given(st.one_of(sensor_messages(), raw_frames()))
    def check(drawn):
        now = monotonic_ns()
        for frames in variants(drawn, now) if isinstance(drawn, dict) else [drawn]:
            check_one(frames, now)

    def check_one(frames, arrival):
        seen["n"] += 1
        before = sum(src.rejected.values()) + src.counters["duplicates"]
        s = src._handle(frames, arrival)  # must not raise, whatever the bytes
        if s is None:
            assert sum(src.rejected.values()) + src.counters["duplicates"] == before + 1  # counted once
            return
        seen["accepted"] += 1
        assert s.data.dtype == np.float32 and s.data.ndim == 2 and s.data.shape[1] == 3
        assert 1 <= s.data.shape[0] <= 4 * 50 + 64
        assert not np.isinf(s.data).any()  # NaN only for channels never sent yet
        assert -300e9 <= s.t_capture_ns - arrival <= 1e9 and -(2**63) < s.t_capture_ns < 2**63
        assert 0 <= s.seq < 2**63 and math.isfinite(s.rate_hz)

    check()
    CASES["sensor"] = seen["n"]
    assert seen["n"] >= N_SENSOR * 1.8 and seen["accepted"] > 150  # the fuzzer reached valid messages too
    assert "internal" not in src.rejected, src.rejected
    assert len(src.stats()["publishers"]) <= 64


# -- wire ------------------------------------------------------------------------------------------------------------


def valid_result():
    return wire.result_payload(1, {"cam": 5}, {"cam": True}, {"event": {"a": 0.75, "b": 0.25}}, {"e2e": 1.5})


@st.composite
def wire_frames(draw):
    """Mutations of valid messages (a field replaced by anything, one removed) and raw garbage frames."""
    kind = draw(st.sampled_from(["result", "stats", "level", "garbage"]))
    if kind == "garbage":
        return draw(st.lists(st.binary(max_size=64), max_size=5))
    header = {"v": 1, "type": kind, "seq": 3, "t_pub_ns": 5, "group": ""}
    payload = {
        "result": valid_result(),
        "stats": {"t_ns": 1, "sources": {}, "drops": {}, "latency_ms": {}, "ticks": 0, "published": 0},
        "level": {"t_capture_ns": 1, "rms_db": [-20.0]},
    }[kind]
    target = draw(st.sampled_from(["header", "payload", "nested", "none"]))
    if target == "header":
        header[draw(st.sampled_from(sorted(header)))] = draw(st.one_of(anything, edge_ints))
    elif target == "payload":
        key = draw(st.sampled_from(sorted(payload)))
        if draw(st.booleans()):
            payload[key] = draw(anything)
        else:
            del payload[key]
    elif target == "nested" and kind == "result":
        part = draw(st.sampled_from(["capture_ns", "mask", "scores", "top", "latency_ms"]))
        payload[part] = {draw(st.text(max_size=4)): draw(anything)}
    topic = draw(st.one_of(st.just(kind.encode()), st.binary(max_size=10)))
    frames = [topic, msgpack.packb(header, default=str), msgpack.packb(payload, default=str)]
    if draw(st.integers(0, 9)) == 0:
        frames.append(draw(st.binary(max_size=16)))
    return frames


def test_wire_decoder_raises_only_wire_errors_and_accepts_only_schema_values():
    seen = {"n": 0}

    @settings(
        max_examples=N_WIRE, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True
    )
    @given(wire_frames())
    def check(frames):
        check_wire(frames)
        seen["n"] += 1
        if len(frames) >= 3:  # the same message with its payload cut short
            check_wire([*frames[:2], frames[2][: len(frames[2]) // 2], *frames[3:]])
            seen["n"] += 1

    check()
    CASES["wire"] = seen["n"]
    assert seen["n"] >= N_WIRE * 1.5


def check_wire(frames: list[bytes]) -> None:
    try:
        m = wire.decode(frames)
    except wire.WireError as err:
        assert str(err) and "\n" not in str(err)
        return
    assert m.type in wire.TYPES and 0 <= m.header["seq"] < 2**63 and -(2**63) <= m.header["t_pub_ns"] < 2**63
    if m.type == "result":
        for head, label in m.payload["top"].items():
            assert 0.0 <= m.payload["scores"][head][label] <= 1.0


def test_the_two_decoders_saw_over_ten_thousand_cases():
    if len(CASES) < 2:
        import pytest

        pytest.skip("run with the two fuzz tests above")
    assert sum(CASES.values()) >= 10_000, CASES
