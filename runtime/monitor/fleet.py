"""What the monitor knows about a fleet: one MonitorState per device, folded from messages read through a relay
(or from several runtimes' endpoints), and one row per device for the fleet page.

A row says whether the device is live or silent, its tick rate, end-to-end latency, latest result, how many of its
streams are ok, how many messages were missed on the way (`seq` gaps), and its alerts: silent (nothing for
SILENT_S), stale or missing streams, missed messages, malformed messages.
"""

from __future__ import annotations

import time
from typing import Any

from edgefuse.runtime.monitor.state import SILENT_S, MonitorState, _finite
from edgefuse.runtime.relay import SeqGaps
from edgefuse.wire import Message


class FleetState:
    """Devices by id, each a MonitorState; messages from a publisher without a device id count as device ""."""

    def __init__(self, endpoints: list[str]):
        self.endpoints = endpoints
        self.devices: dict[str, MonitorState] = {}
        self.gaps = SeqGaps()
        self.malformed = 0
        self.last_error = ""

    def device(self, name: str) -> MonitorState:
        state = self.devices.get(name)
        if state is None:
            state = self.devices[name] = MonitorState(f"{' '.join(self.endpoints)} · {name or '(no device id)'}")
        return state

    def apply(self, msg: Message, now: float | None = None) -> tuple[str, dict[str, Any]]:
        """Fold one message into its device's state: (device, the device page's update)."""
        self.gaps.see(msg.device, msg.topic, msg.header["seq"])
        return msg.device, self.device(msg.device).apply(msg, now)

    def count_malformed(self, error: str) -> dict[str, Any]:
        self.malformed += 1
        self.last_error = error[:300]
        return {"kind": "malformed", "malformed": self.malformed, "last_error": self.last_error}

    def row(self, name: str, now: float) -> dict[str, Any]:
        """One device's line on the fleet page."""
        st = self.devices[name]
        silent_s = now - st.t_last_msg if st.t_last_msg else None
        live = silent_s is not None and silent_s < SILENT_S
        streams = st.stream_rows(now)
        health = {h: [s["id"] for s in streams if s["health"] == h] for h in ("ok", "stale", "missing")}
        e2e = st.latency().get("e2e", {})
        last = st.results[-1] if st.results else None
        missed = self.gaps.missed.get(name, 0)
        alerts = []
        if not live:
            alerts.append(f"silent {silent_s:.0f} s" if silent_s is not None else "silent")
        if live and health["stale"]:
            alerts.append("stale: " + ", ".join(health["stale"]))
        if live and health["missing"]:
            alerts.append("missing: " + ", ".join(health["missing"]))
        if missed:
            alerts.append(f"missed {missed} messages")
        if st.malformed:
            alerts.append(f"{st.malformed} malformed")
        return {
            "device": name,
            "live": live,
            "silent_s": silent_s,
            "tick_hz": st.tick_hz() if live else None,  # a silent device has no rate, whatever its last burst was
            "e2e_p50": e2e.get("p50"),
            "e2e_p99": e2e.get("p99"),
            "results": st.counts.get("result", 0),
            "messages": sum(st.counts.values()),
            "missed": missed,
            "top": last["top"] if last else None,
            "t_tick_ns": last["t_tick_ns"] if last else None,
            "streams": {h: len(ids) for h, ids in health.items()},
            "alerts": alerts,
        }

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """The fleet page's state (also GET /api/fleet)."""
        now = time.monotonic() if now is None else now
        rows = [self.row(name, now) for name in sorted(self.devices)]
        return _finite({"kind": "fleet", "endpoints": self.endpoints, "devices": rows, "malformed": self.malformed,
                        "last_error": self.last_error, "alerts": sum(1 for r in rows if r["alerts"])})  # fmt: skip
