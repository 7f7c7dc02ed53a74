"""The wire schema: round trips, every validation error, and a seeded fuzz of garbage and truncated messages."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from edgefuse import wire
from edgefuse.wire import WireError, decode, encode, result_payload


def a_result() -> list[bytes]:
    payload = result_payload(
        t_tick_ns=1_500_000_000,
        capture_ns={"cam": 1_490_000_000, "mic": None},
        mask={"cam": True, "mic": False},
        scores={"event": {"quiet": 0.25, "loud": 0.75}},
        latency_ms={"sync": 0.2, "infer": 1.5, "e2e": 2.0},
    )
    return encode("result", "result/g1", 7, 123, "g1", payload)


def test_result_round_trip_and_top_from_scores():
    msg = decode(a_result())
    assert msg.topic == "result/g1" and msg.type == "result"
    assert msg.header == {"v": 1, "type": "result", "seq": 7, "t_pub_ns": 123, "group": "g1"}
    p = msg.payload
    assert p["top"] == {"event": "loud"} and p["scores"]["event"]["loud"] == 0.75
    assert p["capture_ns"] == {"cam": 1_490_000_000, "mic": None} and p["mask"] == {"cam": True, "mic": False}


def test_header_and_payload_are_plain_msgpack_maps():
    frames = a_result()
    assert msgpack.unpackb(frames[1]) == {"v": 1, "type": "result", "seq": 7, "t_pub_ns": 123, "group": "g1"}
    assert msgpack.unpackb(frames[2])["t_tick_ns"] == 1_500_000_000


def _replace(frames: list[bytes], index: int, obj) -> list[bytes]:
    out = list(frames)
    out[index] = msgpack.packb(obj, use_bin_type=True)
    return out


def _header(**kw):
    h = {"v": 1, "type": "result", "seq": 0, "t_pub_ns": 1, "group": ""}
    h.update(kw)
    return h


def _payload(**kw):
    p = msgpack.unpackb(a_result()[2])
    p.update(kw)
    return p


@pytest.mark.parametrize(
    "frames, match",
    [
        ([b"result"], "at least 3 frames"),
        ([b"result", b"", b"", b"", b""], "at most 4 frames"),
        ([b"\xff\xfe", msgpack.packb(_header()), msgpack.packb(_payload())], "topic: not UTF-8"),
        ([b"x" * 300, msgpack.packb(_header()), msgpack.packb(_payload())], "topic: 300 bytes"),
        ([b"result", b"\xc1", msgpack.packb(_payload())], "header: not a single valid msgpack"),
        ([b"result", msgpack.packb(_header()) + b"\x00", msgpack.packb(_payload())], "header: not a single valid"),
        ([b"result", msgpack.packb([1, 2]), msgpack.packb(_payload())], "header: expected a map"),
        ([b"result", msgpack.packb(_header(v=2)), msgpack.packb(_payload())], "schema version 2"),
        ([b"result", msgpack.packb(_header(type="pickle")), msgpack.packb(_payload())], "unknown message type"),
        ([b"stats", msgpack.packb(_header()), msgpack.packb(_payload())], "does not match header.type"),
        ([b"result", msgpack.packb(_header(seq=True)), msgpack.packb(_payload())], r"header\.seq: expected int"),
        ([b"result", msgpack.packb({"v": 1}), msgpack.packb(_payload())], r"header\.type: missing"),
        ([b"result", msgpack.packb(_header()), msgpack.packb(msgpack.ExtType(1, b"x"))], "extension type 1"),
        ([b"result", msgpack.packb(_header()), msgpack.packb({"x": b"bin"}, use_bin_type=True)], "payload: not a"),
        ([b"result", msgpack.packb(_header()), b"\x00" * (wire.MAX_PAYLOAD_BYTES + 1)], "exceeds the 1048576"),
        ([b"result", msgpack.packb(_header()), msgpack.packb(_payload(t_tick_ns=1.5))], r"t_tick_ns: expected int"),
        ([b"result", msgpack.packb(_header()), msgpack.packb(_payload(mask={"cam": 1}))], r"mask\.cam: expected bool"),
        (
            [b"result", msgpack.packb(_header()), msgpack.packb(_payload(scores={"event": {"quiet": 1.5}}))],
            r"scores\.event\.quiet: expected a probability",
        ),
        (
            [b"result", msgpack.packb(_header()), msgpack.packb(_payload(top={"event": "nope"}))],
            r"top\.event: 'nope' is not a label of scores\.event",
        ),
        (
            [b"result", msgpack.packb(_header()), msgpack.packb(_payload(latency_ms={"e2e": float("nan")}))],
            r"latency_ms\.e2e: expected a finite number",
        ),
        (
            [b"result", msgpack.packb(_header()), msgpack.packb(_payload(capture_ns={"cam": "now"}))],
            r"capture_ns\.cam: expected int or nil",
        ),
        ([b"thumb/cam", msgpack.packb(_header(type="thumb")), msgpack.packb({})], r"payload\.t_capture_ns: missing"),
    ],
)
def test_malformed_messages_are_refused_with_the_field(frames, match):
    with pytest.raises(WireError, match=match):
        decode(frames)


def test_thumb_needs_its_jpeg_blob_and_blobs_are_capped():
    payload = {"t_capture_ns": 1, "width": 2, "height": 2, "format": "jpeg"}
    with pytest.raises(WireError, match="exactly one JPEG"):
        decode(encode("thumb", "thumb/cam", 0, 1, "", payload))
    with pytest.raises(WireError, match="blob 0"):
        decode(encode("thumb", "thumb/cam", 0, 1, "", payload, (b"\0" * (wire.MAX_BLOB_BYTES + 1),)))
    assert decode(encode("thumb", "thumb/cam", 0, 1, "", payload, (b"jpeg",))).blobs == [b"jpeg"]


def test_fuzzed_garbage_and_truncations_only_ever_raise_wire_error():
    rng = np.random.default_rng(1234)
    valid = a_result()
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(3000):
        frames = [bytes(f) for f in valid]
        action = rng.integers(0, 4)
        i = int(rng.integers(0, 3))
        if action == 0:  # random bytes in one frame
            frames[i] = rng.bytes(int(rng.integers(0, 200)))
        elif action == 1:  # truncation
            frames[i] = frames[i][: int(rng.integers(0, len(frames[i]) + 1))]
        elif action == 2:  # bit flips
            b = bytearray(frames[i])
            for _ in range(int(rng.integers(1, 4))):
                if b:
                    b[int(rng.integers(0, len(b)))] ^= 1 << int(rng.integers(0, 8))
            frames[i] = bytes(b)
        else:  # frames dropped or added
            frames = frames[: int(rng.integers(0, 6))] + [rng.bytes(8)] * int(rng.integers(0, 3))
        try:
            decode(frames)
            outcomes["ok"] += 1
        except WireError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 2000 and sum(outcomes.values()) == 3000


def test_encode_refuses_unknown_types():
    with pytest.raises(ValueError, match="unknown message type"):
        encode("pickle", "x", 0, 0, "", {})


def test_device_id_rides_in_topic_and_header_and_must_agree():
    frames = a_result()
    payload = msgpack.unpackb(frames[2])
    msg = decode(encode("result", wire.topic("result", "cam-07", "g1"), 7, 123, "g1", payload, device="cam-07"))
    assert msg.topic == "result/cam-07/g1" and msg.device == "cam-07" and msg.tail == "g1"
    assert decode(a_result()).device == ""  # a publisher from before device ids
    with pytest.raises(WireError, match="header.device"):
        decode(encode("result", "result/cam-08/g1", 7, 123, "g1", payload, device="cam-07"))
    bad = _replace(frames, 1, {"v": 1, "type": "result", "seq": 7, "t_pub_ns": 123, "group": "g1", "device": 5})
    with pytest.raises(WireError, match="header.device: expected str"):
        decode(bad)
    assert wire.topic("stats", "cam-07") == "stats/cam-07/" and wire.topic("thumb", "d", "g0/cam") == "thumb/d/g0/cam"
