"""Online estimate of a sensor clock's offset and drift against the host monotonic clock.

A networked sensor stamps each reading with its own clock (t_sensor). The host stamps arrival (t_arrival). Then

    t_arrival - t_sensor = offset + skew * t_sensor + delay,    delay >= 0 (network, queues, scheduling)

so the points (t_sensor, t_arrival - t_sensor) lie on or above a line, and the line is their lower envelope.
ClockFit keeps the minimum of each short bucket (minimum-delay filtering) over a sliding window and takes the
line through the lower convex hull that lies closest to the points on average (the linear-programming estimate of
Moon, Skelly & Towsley, "Estimation and removal of clock skew from network delay measurements", 1999): it is
exactly the hull edge above the mean sensor time. Queuing spikes only raise points, so they never move the line.

One-way stamps cannot tell the sensor's clock offset from the network's minimum delay: the mapped time is the
earliest moment the reading could have reached the host, i.e. the true capture time plus the path's minimum
delay (sub-millisecond on a LAN).

A clock jump (NTP step, sensor reboot) shows as points below the line (sensor clock stepped forward: impossible
with delay >= 0) or a run of points far above it (stepped back): the fit re-anchors on the new points, keeps the
skew it learned, and counts the jump.
"""

from __future__ import annotations

from collections import deque


class ClockFit:
    """Sensor clock -> host clock mapping, updated per reading; `to_host(t_sensor_ns)` maps a sensor time."""

    def __init__(
        self,
        window_s: float = 60.0,
        bucket_s: float = 0.5,
        jump_ms: float = 100.0,
        jump_confirm: int = 5,
        min_span_s: float = 2.0,
        max_drift_ppm: float = 2000.0,
    ):
        self.bucket_ns = int(bucket_s * 1e9)
        self.n_buckets = max(2, int(window_s / bucket_s))
        self.jump_ns = jump_ms * 1e6
        self.jump_confirm = jump_confirm
        self.min_span_ns = min_span_s * 1e9
        self.max_skew = max_drift_ppm * 1e-6
        self.jumps = 0
        self.updates = 0
        self._skew = 0.0  # d(host - sensor)/d(sensor); survives re-anchoring (a jump does not change the rate)
        self._reset()

    def _reset(self) -> None:
        self._x0: int | None = None  # sensor-time anchor, ns
        self._y0 = 0  # (host - sensor) anchor, ns
        self._buckets: deque[list[float]] = deque()  # [bucket index, x, y] minima, x/y relative to the anchors
        self._intercept = 0.0
        self._above: list[tuple[int, int]] = []  # recent points far above the line: a backward jump if they persist

    # public ---------------------------------------------------------------------------------------------------------
    def update(self, t_sensor_ns: int, t_arrival_ns: int) -> int:
        """Add one reading; returns its sensor time mapped onto the host clock (ns)."""
        self.updates += 1
        if self._x0 is None:
            self._anchor(t_sensor_ns, t_arrival_ns)
        else:
            r = (t_arrival_ns - t_sensor_ns - self._y0) - self._line(t_sensor_ns - self._x0)
            if r < -self.jump_ns:
                self._jump([(t_sensor_ns, t_arrival_ns)])
            elif r > self.jump_ns:
                self._above.append((t_sensor_ns, t_arrival_ns))
                if len(self._above) >= self.jump_confirm:
                    self._jump(self._above)
            else:
                self._above.clear()
                self._add(t_sensor_ns, t_arrival_ns)
        return self.to_host(t_sensor_ns)

    def reset(self) -> None:
        """Forget the points but keep the learned drift (e.g. after an audio overflow lost an unknown count)."""
        self._reset()

    def to_host(self, t_sensor_ns: int) -> int:
        """A sensor time (ns) on the host monotonic clock (ns)."""
        if self._x0 is None:
            return int(t_sensor_ns)
        dx = t_sensor_ns - self._x0
        return int(t_sensor_ns + self._y0 + round(self._line(dx)))

    @property
    def offset_ms(self) -> float:
        """host - sensor at the newest reading, ms (includes the path's minimum delay)."""
        if self._x0 is None or not self._buckets:
            return 0.0
        return (self._y0 + self._line(self._buckets[-1][1])) / 1e6

    @property
    def drift_ppm(self) -> float:
        """How much faster the sensor clock runs than the host clock, in parts per million."""
        return (1.0 / (1.0 + self._skew) - 1.0) * 1e6

    def stats(self) -> dict[str, float | int]:
        return {
            "clock_offset_ms": round(self.offset_ms, 3),
            "clock_drift_ppm": round(self.drift_ppm, 2),
            "clock_jumps": self.jumps,
        }

    # internals ------------------------------------------------------------------------------------------------------
    def _line(self, dx: float) -> float:
        return self._intercept + self._skew * dx

    def _anchor(self, t_sensor_ns: int, t_arrival_ns: int) -> None:
        self._x0, self._y0 = int(t_sensor_ns), int(t_arrival_ns - t_sensor_ns)
        self._a0 = int(t_arrival_ns)  # arrival anchor for bucketing
        self._add(t_sensor_ns, t_arrival_ns)

    def _jump(self, points: list[tuple[int, int]]) -> None:
        self.jumps += 1
        self._reset()
        self._anchor(*points[0])
        for p in points[1:]:
            self._add(*p)

    def _add(self, t_sensor_ns: int, t_arrival_ns: int) -> None:
        x = float(t_sensor_ns - self._x0)  # type: ignore[operator]
        y = float(t_arrival_ns - t_sensor_ns - self._y0)
        b = (t_arrival_ns - self._a0) // self.bucket_ns
        if self._buckets and self._buckets[-1][0] == b:
            if y >= self._buckets[-1][2]:
                return  # not a new minimum: the envelope is unchanged
            self._buckets[-1][1:] = [x, y]
        else:
            self._buckets.append([b, x, y])
            while self._buckets[0][0] <= b - self.n_buckets:
                self._buckets.popleft()
        self._fit()

    def _fit(self) -> None:
        pts = sorted((p[1], p[2]) for p in self._buckets)
        span = pts[-1][0] - pts[0][0]
        if span >= self.min_span_ns and len(pts) >= 3:
            skew = _lp_slope(pts)
            self._skew = max(-self.max_skew, min(self.max_skew, skew))
        # intercept: the line with this skew that touches the lowest point (every point on or above it)
        self._intercept = min(y - self._skew * x for x, y in pts)


def _lp_slope(pts: list[tuple[float, float]]) -> float:
    """Slope of the lower-hull edge above the mean x: the line below all points with the least total distance."""
    hull: list[tuple[float, float]] = []
    for p in pts:  # Andrew's monotone chain, lower half
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], p) <= 0:
            hull.pop()
        hull.append(p)
    if len(hull) < 2:
        return 0.0
    x_mean = sum(x for x, _ in pts) / len(pts)
    for (x1, y1), (x2, y2) in zip(hull, hull[1:], strict=False):
        if x2 >= x_mean and x2 > x1:
            return (y2 - y1) / (x2 - x1)
    (x1, y1), (x2, y2) = hull[-2], hull[-1]
    return (y2 - y1) / (x2 - x1) if x2 > x1 else 0.0


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
