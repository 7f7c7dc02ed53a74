"""What the monitor knows about a running runtime, folded from its published messages (edgefuse.wire).

`MonitorState.apply(msg)` takes one decoded message and returns the update to push to browsers (a small JSON-able
dict); `snapshot()` is the whole state (the first thing a page receives, and /api/state). Nothing here touches a
socket, so the folding is tested with plain messages.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any

import numpy as np

from edgefuse.wire import Message

RESULTS_KEPT = 30  # results shown in the page's history
LATENCY_WINDOW = 200  # results the latency percentiles are computed over
ANOMALY_KEPT = 120  # anomaly scores the page's plot shows (a minute at 2 ticks/s)
SERIES_POINTS = 240  # points kept per series channel for the sparklines
RATE_WINDOW_S = 5.0  # sample rates are measured over about this long
STALE_S = 2.0  # a stream whose sample count has not grown for this long is stale
SILENT_S = 3.0  # no message at all for this long: the runtime is silent


class MonitorState:
    """Latest view of one runtime: streams and their health, results, latency, thumbnails, levels, series."""

    def __init__(self, endpoint: str = ""):
        self.endpoint = endpoint
        self.counts: dict[str, int] = {}
        self.malformed = 0
        self.last_error = ""
        self.t_last_msg = 0.0
        self.streams: dict[str, dict[str, Any]] = {}
        self.results: deque[dict[str, Any]] = deque(maxlen=RESULTS_KEPT)
        self._latency: dict[str, deque[float]] = {}
        self._result_times: deque[float] = deque(maxlen=50)
        self.stats: dict[str, Any] = {}
        self.thumbs: dict[str, dict[str, Any]] = {}
        self.thumb_jpeg: dict[str, bytes] = {}
        self.levels: dict[str, dict[str, Any]] = {}
        self.series: dict[str, dict[str, Any]] = {}
        self.anomaly: deque[dict[str, Any]] = deque(maxlen=ANOMALY_KEPT)  # {t_tick_ns, score, threshold, alert}
        self.anomaly_alerts = 0  # results whose anomaly alert was set, since the monitor started

    # folding --------------------------------------------------------------------------------------------------------
    def count_malformed(self, error: str) -> dict[str, Any]:
        """A message that failed to decode: counted and kept (the last one) for the page."""
        self.malformed += 1
        self.last_error = error[:300]
        return {"kind": "malformed", "malformed": self.malformed, "last_error": self.last_error}

    def apply(self, msg: Message, now: float | None = None) -> dict[str, Any]:
        """Fold one decoded message in; returns the browser update for it."""
        now = time.monotonic() if now is None else now
        self.t_last_msg = now
        self.counts[msg.type] = self.counts.get(msg.type, 0) + 1
        return getattr(self, f"_on_{msg.type}")(msg, now)

    def _stream(self, sid: str) -> dict[str, Any]:
        return self.streams.setdefault(sid, {"id": sid, "samples": None, "t_grew": None, "present": None})

    def _on_result(self, msg: Message, now: float) -> dict[str, Any]:
        p = msg.payload
        self._result_times.append(now)
        for stage, ms in p["latency_ms"].items():
            self._latency.setdefault(stage, deque(maxlen=LATENCY_WINDOW)).append(float(ms))
        for m, present in p["mask"].items():
            s = self._stream(_sid(msg.header["group"], m))
            s["present"] = present
            t = p["capture_ns"].get(m)
            # where the fused sample sits relative to the tick: negative = captured before the tick
            s["sync_offset_ms"] = None if t is None else (t - p["t_tick_ns"]) / 1e6
        result = {
            "seq": msg.header["seq"],
            "group": msg.header["group"],
            "t_tick_ns": p["t_tick_ns"],
            "top": p["top"],
            "scores": p["scores"],
            "mask": p["mask"],
            "latency_ms": p["latency_ms"],
        }
        for key in ("multilabel", "values"):  # multilabel and regression heads (docs/wire.md), when the bundle has them
            if isinstance(p.get(key), dict):
                result[key] = p[key]
        for key in ("truth", "labels"):  # synthetic sources may attach the ground truth
            if isinstance(p.get(key), dict):
                result["truth"] = p[key]
        a = p.get("anomaly")
        if isinstance(a, dict):  # the decoder checked its fields (edgefuse.wire); docs/wire.md
            result["anomaly"] = a
            self.anomaly.append(
                {"t_tick_ns": p["t_tick_ns"], "score": a["score"], "threshold": a["threshold"], "alert": a["alert"]}
            )
            self.anomaly_alerts += int(a["alert"])
        self.results.append(result)
        return {
            "kind": "result",
            "result": result,
            "latency": self.latency(),
            "tick_hz": self.tick_hz(),
            "anomaly_alerts": self.anomaly_alerts,
        }

    def _on_stats(self, msg: Message, now: float) -> dict[str, Any]:
        p = msg.payload
        for sid, st in p["sources"].items():
            if isinstance(st, dict):
                self._fold_source(str(sid), st, p["t_ns"], now)
        drops = p["drops"]
        self.stats = {
            "ticks": p["ticks"],
            "published": p["published"],
            "drops": {str(k): v for k, v in drops.items() if _is_num(v) or isinstance(v, dict)},
            "latency_ms": p["latency_ms"],
        }
        return {"kind": "stats", "stats": self.stats, "streams": self.stream_rows(now)}

    def _fold_source(self, sid: str, st: dict[str, Any], t_ns: int, now: float) -> None:
        s = self._stream(sid)
        samples = st.get("samples")
        if _is_num(samples):
            if s["samples"] is None or samples > s["samples"]:
                s["t_grew"] = now
            pts = s.setdefault("_points", deque())  # (runtime t_ns, samples): the rate over the last RATE_WINDOW_S
            if pts and samples < pts[-1][1]:
                pts.clear()  # the source restarted its count
            pts.append((t_ns, samples))
            while len(pts) > 2 and t_ns - pts[1][0] >= RATE_WINDOW_S * 1e9:
                pts.popleft()
            (t0, n0), (t1, n1) = pts[0], pts[-1]
            s["rate_calc_hz"] = (n1 - n0) / ((t1 - t0) / 1e9) if t1 > t0 else None
            s["samples"] = samples
        for key, value in st.items():
            if key != "samples" and (_is_num(value) or isinstance(value, (str, dict))):
                s[key] = value
        s["drops_total"] = sum(_drop_reasons(s).values())
        s["drops_by_reason"] = _drop_reasons(s)

    def _on_thumb(self, msg: Message, now: float) -> dict[str, Any]:
        sid = msg.tail or msg.topic
        p = msg.payload
        version = self.thumbs.get(sid, {}).get("version", 0) + 1
        self.thumb_jpeg[sid] = msg.blobs[0]
        self.thumbs[sid] = {"version": version, "width": p["width"], "height": p["height"], "format": p["format"]}
        return {"kind": "thumb", "source": sid, "thumb": self.thumbs[sid]}

    def _on_level(self, msg: Message, now: float) -> dict[str, Any]:
        sid = msg.tail or msg.topic
        db = [float(v) for v in msg.payload["rms_db"] if _is_num(v)]
        self.levels[sid] = {"rms_db": db, "t_capture_ns": msg.payload["t_capture_ns"]}
        return {"kind": "level", "source": sid, "level": self.levels[sid]}

    def _on_series(self, msg: Message, now: float) -> dict[str, Any]:
        sid = msg.tail or msg.topic
        p = msg.payload
        channels = [str(c) for c in p["channels"]]
        rows = _rows(p["values"], len(channels))  # (n, C)
        s = self.series.setdefault(
            sid, {"channels": channels, "values": [deque(maxlen=SERIES_POINTS) for _ in channels]}
        )
        if s["channels"] != channels:  # the runtime restarted with another config: start over
            s.update(channels=channels, values=[deque(maxlen=SERIES_POINTS) for _ in channels])
        for c, col in enumerate(rows.T):
            s["values"][c].extend(float(v) for v in col)
        return {"kind": "series", "source": sid, "channels": channels, "values": rows.T.tolist()}

    # views ----------------------------------------------------------------------------------------------------------
    def latency(self) -> dict[str, dict[str, float]]:
        """p50 / p99 (ms) per stage: the runtime's own (over every tick) when its stats carry them, else over the
        last LATENCY_WINDOW results received here."""
        theirs = self.stats.get("latency_ms") or {}
        if theirs and all(isinstance(v, dict) and _is_num(v.get("p50")) for v in theirs.values()):
            order = list(self._latency) + [k for k in theirs if k not in self._latency]  # the result's stage order
            return {k: {"p50": theirs[k]["p50"], "p99": theirs[k]["p99"]} for k in order if k in theirs}
        out = {}
        for stage, values in self._latency.items():
            a = np.fromiter(values, dtype=np.float64)
            out[stage] = {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99))}
        return out

    def tick_hz(self) -> float:
        """Results per second over the recent ones (all groups)."""
        t = self._result_times
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) >= 2 and t[-1] > t[0] else 0.0

    def stream_rows(self, now: float | None = None) -> list[dict[str, Any]]:
        """One row per stream for the streams table, with its health: ok, stale or missing."""
        now = time.monotonic() if now is None else now
        rows = []
        for sid, s in sorted(self.streams.items()):
            row = {k: v for k, v in s.items() if k not in ("t_grew", "_points")}
            row["fused"] = [r["mask"].get(_modality(sid)) for r in self.results if r["group"] == _group(sid)]
            row["rate_hz"] = s.get("rate_hz", s.get("rate_calc_hz"))
            row["health"] = _health(s, now)
            row["has_thumb"] = sid in self.thumbs
            rows.append(_finite(row))
        return rows

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """Everything, JSON-able: the page's first message and GET /api/state."""
        now = time.monotonic() if now is None else now
        return _finite(
            {
                "kind": "snapshot",
                "endpoint": self.endpoint,
                "live": self.t_last_msg > 0 and now - self.t_last_msg < SILENT_S,
                "silent_s": None if not self.t_last_msg else now - self.t_last_msg,
                "counts": self.counts,
                "malformed": self.malformed,
                "last_error": self.last_error,
                "streams": self.stream_rows(now),
                "stats": self.stats,
                "latency": self.latency(),
                "tick_hz": self.tick_hz(),
                "results": list(self.results),
                "anomaly": list(self.anomaly),
                "anomaly_alerts": self.anomaly_alerts,
                "thumbs": self.thumbs,
                "levels": self.levels,
                "series": {
                    k: {"channels": v["channels"], "values": [list(d) for d in v["values"]]}
                    for k, v in self.series.items()
                },
            }
        )

    def heartbeat(self, now: float | None = None) -> dict[str, Any]:
        """Sent every second even when nothing arrives, so a page sees streams go stale and the runtime go silent."""
        now = time.monotonic() if now is None else now
        silent = None if not self.t_last_msg else now - self.t_last_msg
        live = silent is not None and silent < SILENT_S
        return {"kind": "heartbeat", "live": live, "silent_s": silent, "counts": self.counts,
                "malformed": self.malformed, "streams": self.stream_rows(now)}  # fmt: skip


def _sid(group: str, modality: str) -> str:
    # group "" (or the runtime's single-group default) means source ids are bare modality names
    return modality if group in ("", "main", "default") else f"{group}/{modality}"


def _group(sid: str) -> str:
    return sid.rsplit("/", 1)[0] if "/" in sid else ""


def _modality(sid: str) -> str:
    return sid.rsplit("/", 1)[-1]


def _drop_reasons(s: dict[str, Any]) -> dict[str, int]:
    """A source's losses by reason: its own counters (sensor sequence gaps, overflows) and the pipeline's."""
    out = {r: s[k] for k, r in (("drops", "sensor_gap"), ("overflows", "overflow")) if _is_num(s.get(k)) and s[k]}
    for key, prefix in (("dropped", ""), ("rejected", "rejected_")):
        if isinstance(s.get(key), dict):
            out.update({f"{prefix}{r}": n for r, n in s[key].items() if _is_num(n) and n})
    return out


def _health(s: dict[str, Any], now: float) -> str:
    """missing: not in the last fused tick (or never a sample); stale: samples stopped growing; else ok."""
    if s.get("present") is False:
        return "missing"
    if s["t_grew"] is None:  # no sample count seen growing yet: trust the last tick's mask
        return "ok" if s.get("present") else "missing"
    rate = s.get("rate_hz", s.get("rate_calc_hz")) or 0.0
    # a slow stream (text at 1 Hz) may legitimately not grow between two stats messages
    patience = max(STALE_S, 3.0 / rate) if rate > 0 else STALE_S
    return "stale" if now - s["t_grew"] > patience else "ok"


def _rows(values: list[Any], n_channels: int) -> np.ndarray:
    """Series values as (n, C) floats, whether sent as rows (n, C), channel-major (C, n) or flat."""
    a = np.asarray(values, dtype=np.float64)
    if a.ndim == 1:
        a = a.reshape(-1, n_channels) if n_channels and a.size % n_channels == 0 else a.reshape(-1, 1)
    elif a.ndim == 2 and a.shape[1] != n_channels and a.shape[0] == n_channels:
        a = a.T
    if a.ndim != 2 or a.shape[1] != n_channels:
        raise ValueError(f"series values of shape {a.shape} do not fit {n_channels} channels")
    return a


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(obj: Any) -> Any:
    """JSON has no NaN/inf: they become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
