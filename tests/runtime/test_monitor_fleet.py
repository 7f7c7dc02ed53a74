"""FleetState: per-device folding, and the alerts a fleet operator sees (silent, stale, missing, missed)."""

from __future__ import annotations

from edgefuse import wire
from edgefuse.runtime.monitor.fleet import FleetState
from edgefuse.runtime.monitor.state import SILENT_S, STALE_S


def msg(device: str, mtype: str, seq: int, payload: dict, rest: str = "") -> wire.Message:
    topic = wire.topic(mtype, device, rest)
    return wire.decode(wire.encode(mtype, topic, seq, 0, "", payload, device=device))


def result(top: str) -> dict:
    scores = {"event": {"a": 0.9 if top == "a" else 0.1, "b": 0.1 if top == "a" else 0.9}}
    return wire.result_payload(0, {"cam": 0, "env": None}, {"cam": True, "env": False}, scores, {"e2e": 4.0})


def stats(samples: dict, t_s: float) -> dict:
    return {"t_ns": int(t_s * 1e9), "sources": {k: {"samples": n} for k, n in samples.items()}, "drops": {},
            "latency_ms": {}, "ticks": 0, "published": 0}  # fmt: skip


def test_devices_are_kept_apart_and_alerts_name_what_is_wrong():
    fleet = FleetState(["tcp://hub:5557"])
    for seq, t in enumerate((1.0, 2.0)):  # cam-1: healthy, then its camera stops growing
        fleet.apply(msg("cam-1", "stats", seq, stats({"cam": 10 * seq + 10, "env": 10 * seq + 10}, t)), now=t)
    fleet.apply(msg("cam-1", "stats", 2, stats({"cam": 20, "env": 30}, 3.0)), now=3.0)
    fleet.apply(msg("cam-1", "result", 0, result("a")), now=3.0)
    fleet.apply(msg("cam-2", "result", 0, result("b")), now=1.0)
    fleet.apply(msg("cam-2", "result", 5, result("b")), now=1.1)  # 4 results of cam-2 lost on the way

    now = 2.0 + STALE_S + 0.5
    rows = {r["device"]: r for r in fleet.snapshot(now=now)["devices"]}
    assert rows["cam-1"]["top"] == {"event": "a"} and rows["cam-2"]["top"] == {"event": "b"}
    assert rows["cam-1"]["results"] == 1 and rows["cam-2"]["results"] == 2
    assert rows["cam-1"]["live"] and "stale: cam" in rows["cam-1"]["alerts"]
    assert "missing: env" in rows["cam-1"]["alerts"]  # not in the last fused tick
    assert rows["cam-2"]["missed"] == 4 and "missed 4 messages" in rows["cam-2"]["alerts"]
    assert not rows["cam-2"]["live"] and rows["cam-2"]["alerts"][0].startswith("silent")
    assert rows["cam-2"]["tick_hz"] is None  # a silent device shows no rate
    assert fleet.snapshot(now=3.0 + SILENT_S + 1)["alerts"] == 2
