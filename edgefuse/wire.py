"""The wire schema of what the runtime publishes on ZeroMQ: versioned, msgpack-encoded, validated on decode.

A message is a multipart ZeroMQ message [topic, header, payload, *blobs] (docs/wire.md is the full reference, written
so that a subscriber in any language can decode it without this file):
  topic    UTF-8 bytes "<type>/<device>/<rest>": "result/<device>/<group>", "stats/<device>/",
           "thumb/<device>/<source>", "level/<device>/<source>", "series/<device>/<source>"
  header   msgpack map {v, type, seq, t_pub_ns, group, device}; seq counts per topic, so each topic shows its
           own losses
  payload  msgpack map, fields per type (RESULT_FIELDS, ...)
  blobs    raw binary frames (only `thumb`: one JPEG)

msgpack only (never pickle): a subscriber decodes untrusted bytes, so decode() caps every size, refuses extension
types and checks each field's type, raising WireError naming the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import msgpack

from edgefuse.errors import EdgefuseError

VERSION = 1
TYPES = ("result", "stats", "thumb", "level", "series")
# topic prefix per message type; then the device id, then the group (result) or the source id (monitoring), so a
# subscriber filters by type ("result"), or by type and device ("result/cam-07/") with ZeroMQ's prefix match
TOPIC_PREFIX = {"result": "result", "stats": "stats", "thumb": "thumb", "level": "level", "series": "series"}

MAX_TOPIC_BYTES = 256
MAX_HEADER_BYTES = 1024
MAX_PAYLOAD_BYTES = 1 << 20  # 1 MiB: a result is ~1 KB, a stats message a few KB
MAX_BLOB_BYTES = 4 << 20  # a thumbnail JPEG
MAX_BLOBS = 1
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1

HEADER_FIELDS = {"v": int, "type": str, "seq": int, "t_pub_ns": int, "group": str}
_NUM = (int, float)
RESULT_FIELDS = {
    "t_tick_ns": int,
    "capture_ns": dict,  # modality -> int ns, or nil when the modality was missing
    "mask": dict,  # modality -> bool
    "scores": dict,  # head -> {label: float probability}
    "top": dict,  # head -> label
    "latency_ms": dict,  # stage -> float ms
}
STATS_FIELDS = {"t_ns": int, "sources": dict, "drops": dict, "latency_ms": dict, "ticks": int, "published": int}
THUMB_FIELDS = {"t_capture_ns": int, "width": int, "height": int, "format": str}
LEVEL_FIELDS = {"t_capture_ns": int, "rms_db": list}
SERIES_FIELDS = {"t_capture_ns": int, "rate_hz": _NUM, "channels": list, "values": list}
PAYLOAD_FIELDS = {
    "result": RESULT_FIELDS,
    "stats": STATS_FIELDS,
    "thumb": THUMB_FIELDS,
    "level": LEVEL_FIELDS,
    "series": SERIES_FIELDS,
}


class WireError(EdgefuseError):
    """A message that does not follow the wire schema; the text names the frame or field."""


@dataclass
class Message:
    """One decoded message."""

    topic: str
    header: dict[str, Any]
    payload: dict[str, Any]
    blobs: list[bytes] = field(default_factory=list)

    @property
    def type(self) -> str:
        return self.header["type"]

    @property
    def device(self) -> str:
        """The publishing runtime's device id ("" from a publisher that predates device ids)."""
        return self.header.get("device", "")

    @property
    def tail(self) -> str:
        """The topic after "<type>/<device>/": the group of a result, the source id of a monitoring message."""
        return topic_tail(self.topic, self.type, self.device)


def topic(mtype: str, device: str, rest: str = "") -> str:
    """The topic of a message: "<type>/<device>/<rest>" (rest: the group, or a monitoring message's source)."""
    return (
        f"{TOPIC_PREFIX[mtype]}/{device}/{rest}" if device else f"{TOPIC_PREFIX[mtype]}" + (f"/{rest}" if rest else "")
    )


def topic_tail(topic: str, mtype: str, device: str = "") -> str:
    head = f"{TOPIC_PREFIX[mtype]}/{device}/" if device else f"{TOPIC_PREFIX[mtype]}/"
    return topic[len(head) :] if topic.startswith(head) else ""


# -- encode -----------------------------------------------------------------------------------------------------------


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def encode(
    mtype: str,
    topic: str,
    seq: int,
    t_pub_ns: int,
    group: str,
    payload: dict,
    blobs: tuple[bytes, ...] = (),
    device: str = "",
) -> list[bytes]:
    """A message as ZeroMQ frames. `payload` must hold plain Python values (no NumPy scalars)."""
    if mtype not in TYPES:
        raise ValueError(f"unknown message type {mtype!r}; one of {TYPES}")
    header = {"v": VERSION, "type": mtype, "seq": int(seq), "t_pub_ns": int(t_pub_ns), "group": group}
    if device:
        header["device"] = device
    return [topic.encode(), _pack(header), _pack(payload), *blobs]


def result_payload(
    t_tick_ns: int,
    capture_ns: dict[str, int | None],
    mask: dict[str, bool],
    scores: dict[str, dict[str, float]],
    latency_ms: dict[str, float],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A result payload; `top` is derived from `scores` so the two never disagree (class heads only: a multilabel
    head, named in extra["multilabel"], publishes its labels above threshold there instead)."""
    multilabel = (extra or {}).get("multilabel", {})
    top = {head: max(s, key=s.get) for head, s in scores.items() if head not in multilabel}
    out = {
        "t_tick_ns": int(t_tick_ns),
        "capture_ns": {m: None if t is None else int(t) for m, t in capture_ns.items()},
        "mask": {m: bool(v) for m, v in mask.items()},
        "scores": {h: {k: float(p) for k, p in s.items()} for h, s in scores.items()},
        "top": top,
        "latency_ms": {k: float(v) for k, v in latency_ms.items()},
    }
    if extra:
        out.update(extra)
    return out


# -- decode -----------------------------------------------------------------------------------------------------------


def _refuse_ext(code: int, data: bytes) -> Any:
    raise WireError(f"msgpack extension type {code} is not part of the schema")


def _unpack(raw: bytes, what: str, limit: int) -> Any:
    if len(raw) > limit:
        raise WireError(f"{what}: {len(raw)} bytes exceeds the {limit}-byte limit")
    try:
        return msgpack.unpackb(
            raw,
            raw=False,
            strict_map_key=True,
            ext_hook=_refuse_ext,
            max_str_len=limit,
            max_bin_len=0,  # no binary inside header/payload: binary data travels as blob frames
            max_array_len=100_000,
            max_map_len=10_000,
        )
    except WireError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as err:
        # ExtraData, FormatError, StackError, UnicodeDecodeError and limit errors all land here
        raise WireError(f"{what}: not a single valid msgpack object ({type(err).__name__}: {err})") from None


def _check_fields(obj: Any, spec: dict[str, Any], what: str) -> None:
    if not isinstance(obj, dict):
        raise WireError(f"{what}: expected a map, got {type(obj).__name__}")
    for name, typ in spec.items():
        if name not in obj:
            raise WireError(f"{what}.{name}: missing")
        value = obj[name]
        # bool is an int in Python; the schema never means a bool where it says int
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise WireError(f"{what}.{name}: expected {_type_name(typ)}, got {type(value).__name__}")
        if typ is int and not INT64_MIN <= value <= INT64_MAX:  # msgpack carries uint64; every int here is int64
            raise WireError(f"{what}.{name}: {value} is outside int64")
        if typ == _NUM and isinstance(value, float) and not math.isfinite(value):
            raise WireError(f"{what}.{name}: expected a finite number")


def _key(k: Any) -> str:
    """A map key from the wire, safe in a one-line error: a plain printable name as it is, anything else repr'd."""
    return k if isinstance(k, str) and k.isprintable() and len(k) <= 64 else repr(k)[:64]


def _type_name(typ: Any) -> str:
    return "number" if typ == _NUM else typ.__name__


def _check_result(p: dict[str, Any]) -> None:
    for m, t in p["capture_ns"].items():
        if t is not None and (not isinstance(t, int) or isinstance(t, bool) or not INT64_MIN <= t <= INT64_MAX):
            raise WireError(f"payload.capture_ns.{_key(m)}: expected int or nil (int64)")
    for m, v in p["mask"].items():
        if not isinstance(v, bool):
            raise WireError(f"payload.mask.{_key(m)}: expected bool")
    for head, s in p["scores"].items():
        if not isinstance(s, dict) or not s:
            raise WireError(f"payload.scores.{_key(head)}: expected a non-empty map label -> probability")
        for label, prob in s.items():
            if not isinstance(prob, _NUM) or isinstance(prob, bool) or not 0.0 <= prob <= 1.0:
                raise WireError(
                    f"payload.scores.{_key(head)}.{_key(label)}: expected a probability in [0, 1], got {prob!r}"
                )
    for head, label in p["top"].items():
        if not isinstance(label, str) or head not in p["scores"] or label not in p["scores"][head]:
            raise WireError(f"payload.top.{_key(head)}: {label!r} is not a label of scores.{_key(head)}")
    for stage, ms in p["latency_ms"].items():
        if not isinstance(ms, _NUM) or isinstance(ms, bool) or not math.isfinite(ms):
            raise WireError(f"payload.latency_ms.{_key(stage)}: expected a finite number")
    _check_head_results(p)
    if "anomaly" in p:
        _check_anomaly(p["anomaly"])


def _check_head_results(p: dict[str, Any]) -> None:
    """The optional keys of multilabel heads (labels above threshold) and regression heads ({value, unit})."""
    multilabel, values = p.get("multilabel", {}), p.get("values", {})
    if not isinstance(multilabel, dict) or not isinstance(values, dict):
        raise WireError(f"payload.{'multilabel' if not isinstance(multilabel, dict) else 'values'}: expected a map")
    for head, on in multilabel.items():
        scores = p["scores"].get(head)
        if not isinstance(on, list) or scores is None or any(not isinstance(x, str) or x not in scores for x in on):
            raise WireError(f"payload.multilabel.{_key(head)}: expected a list of labels of scores.{_key(head)}")
    for head, v in values.items():
        ok = isinstance(v, dict) and isinstance(v.get("unit"), str) and isinstance(v.get("value"), _NUM)
        if not ok or isinstance(v["value"], bool) or not math.isfinite(v["value"]):
            raise WireError(f"payload.values.{_key(head)}: expected {{value: finite number, unit: str}}")


ANOMALY_FIELDS = {"score": _NUM, "threshold": _NUM, "alert": bool, "modalities": dict}


def _check_anomaly(a: Any) -> None:
    """The optional `anomaly` key of a result (issue 14; docs/wire.md)."""
    _check_fields(a, ANOMALY_FIELDS, "payload.anomaly")
    if isinstance(a["score"], bool) or isinstance(a["threshold"], bool):
        raise WireError("payload.anomaly.score/threshold: expected numbers, got bool")
    for m, v in a["modalities"].items():
        if not isinstance(v, _NUM) or isinstance(v, bool) or not math.isfinite(v):
            raise WireError(f"payload.anomaly.modalities.{_key(m)}: expected a finite number")


def decode(frames: list[bytes]) -> Message:
    """Validate and decode ZeroMQ frames; raises WireError naming the first problem."""
    if not isinstance(frames, (list, tuple)) or len(frames) < 3:
        raise WireError(f"expected at least 3 frames [topic, header, payload], got {len(frames)}")
    if len(frames) > 3 + MAX_BLOBS:
        raise WireError(f"expected at most {3 + MAX_BLOBS} frames, got {len(frames)}")
    raw_topic = bytes(frames[0])
    if len(raw_topic) > MAX_TOPIC_BYTES:
        raise WireError(f"topic: {len(raw_topic)} bytes exceeds the {MAX_TOPIC_BYTES}-byte limit")
    try:
        topic = raw_topic.decode()
    except UnicodeDecodeError:
        raise WireError("topic: not UTF-8") from None
    header = _unpack(bytes(frames[1]), "header", MAX_HEADER_BYTES)
    _check_fields(header, HEADER_FIELDS, "header")
    if header["seq"] < 0:
        raise WireError(f"header.seq: {header['seq']} is negative")
    if header["v"] != VERSION:
        raise WireError(f"header.v: schema version {header['v']} is not supported (this decoder reads v{VERSION})")
    mtype = header["type"]
    if mtype not in TYPES:
        raise WireError(f"header.type: unknown message type {mtype!r}")
    if topic.split("/", 1)[0] != TOPIC_PREFIX[mtype]:
        raise WireError(f"topic: {topic!r} does not match header.type {mtype!r}")
    device = header.get("device", "")
    if not isinstance(device, str):
        raise WireError(f"header.device: expected str, got {type(device).__name__}")
    if device and not topic.startswith(f"{TOPIC_PREFIX[mtype]}/{device}/"):
        raise WireError(f"topic: {topic!r} does not carry header.device {device!r}")
    payload = _unpack(bytes(frames[2]), "payload", MAX_PAYLOAD_BYTES)
    _check_fields(payload, PAYLOAD_FIELDS[mtype], "payload")
    if mtype == "result":
        _check_result(payload)
    blobs = [bytes(b) for b in frames[3:]]
    for i, b in enumerate(blobs):
        if len(b) > MAX_BLOB_BYTES:
            raise WireError(f"blob {i}: {len(b)} bytes exceeds the {MAX_BLOB_BYTES}-byte limit")
    if mtype == "thumb" and len(blobs) != 1:
        raise WireError("thumb: expected exactly one JPEG blob frame")
    return Message(topic, header, payload, blobs)
