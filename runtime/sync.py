"""The synchronizer: timestamped samples from several sources in, one fused tick of model-ready tensors out.

Ticks come at `runtime.tick_hz` on the sample clock (multiples of the period), snapped onto the capture phase of
`runtime.phase_lock`'s frames when set, or on every sample of the `runtime.trigger` modality. For each tick every
modality is resolved by its sync policy (docs/sync.md has the timing diagrams):

  nearest  image/text: the sample closest to the tick within `tolerance_s`, before or after it
  window   audio/series: the rows in [t - window_s, t] on exactly n_steps grid points at the spec's rate_hz. At the
           spec's rate the window is counted out of sample-contiguous runs (one slice per run, see _Track._push_rows:
           block stamps that jitter are put back on the sample lattice); at another rate rows are resampled (audio
           linearly, series nearest-row: sensor values are never invented). A grid point no real row lands on stays
           zero (nothing is carried across a gap); coverage below min_coverage marks the modality missing.
           text: the utterances in the window, joined.
  hold     the latest sample at or before the tick; audio/series: the window ending at the latest row; text: the
           utterances in [t - window_s, t] joined, else the latest one.
  window and hold: missing when the newest real row or sample is older than max_staleness_s at the tick (default
  three sample periods or three blocks, whichever is longer), whatever the coverage.

A tick waits until every modality has data up to the tick, then it is emitted with a presence mask; hold policies
never wait. "Up to the tick" is within half a sample period: a window's rows need to reach t - period/2, and for
nearest a frame at or after t - period/2 is already the nearest one (the next can come no earlier than a period
later). The wait ends at the latest at the deadline: `runtime.latency_budget_ms` after the newest capture time the
tick may still need, i.e. after t, or after t + min(tolerance, period/2) while a nearest frame after the tick may
still win (unless that source has been silent for three periods). The budget is transport time; it never cuts the
tolerance. While a tick waits, the modalities already final are assembled, so its last arrival's tensor is all that
is left. A sample whose capture time falls at or before a tick already emitted without it is counted as a "late"
drop (kept for later windows when it is still in time order).

The API is pure and clock-injected, so tests and training drive it with synthetic timestamps:
  sync.push(sample) -> bool          sync.poll(now_ns) -> list[Tick]          sync.flush() -> list[Tick]
  sync.feed(sample) -> list[Tick]    (poll just before its arrival, push, poll: how every caller feeds samples)
`drive()` replays a sample stream through it and `windows_from_session()` cuts training windows with the same code.

History lives in preallocated NumPy rings per modality (written twice so the newest rows are one contiguous slice):
no per-row Python loops and no growth however long the run.
"""

from __future__ import annotations

import heapq
import math
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefuse.errors import DataError
from edgefuse.preprocess import prepare_image, prepare_text
from edgefuse.runtime.clock import Sample
from edgefuse.runtime.queues import Drops
from edgefuse.spec import HashedTextEncoder, ModalitySpec, ScenarioSpec, SpecError

NS = 1_000_000_000
HISTORY_SLACK_S = 2.0  # history kept beyond the longest window: room for the latency budget and block sizes
NEVER = -(1 << 62)
STALE_PERIODS = 3  # default staleness bound, in sample periods or blocks (SyncSpec.max_staleness_s)
PLL_GAIN = 1 / 16  # share of a contiguous block's stamp offset the sample lattice follows (jitter filter)
PHASE_GAIN = 1 / 8  # share of a frame's phase offset the phase estimate follows (runtime.phase_lock)


@dataclass
class Tick:
    """One fused instant: model-ready tensors for every modality (zeros where missing) and what they came from."""

    group: str
    t_tick_ns: int
    inputs: dict[str, np.ndarray]  # modality -> tensor in the spec's input_shape (no batch dimension)
    mask: np.ndarray  # (M,) float32, 1 = present, spec order
    capture_ns: dict[str, int | None]  # capture time of the newest sample used, None when missing
    sync_err_ns: dict[str, int | None]  # |t_capture - t_true| of the samples used, when ground truth is known
    complete: bool  # every modality had its data before the budget ran out
    stamps: dict[str, int] = field(default_factory=dict)  # stage -> monotonic ns (tick, data, ready, synced, ...)
    labels: dict[str, str] | None = None  # ground truth at the tick, when known


# ---------------------------------------------------------------------------------------------------------------------
# Rings


class _Ring:
    """The last `capacity` timed entries; rows are (C,) float32 vectors, or any object when `width` is None."""

    def __init__(self, capacity: int, width: int | None):
        self.cap = capacity
        self.t = np.zeros(2 * capacity, dtype=np.int64)
        self.err = np.full(2 * capacity, -1, dtype=np.int64)  # |capture - truth| ns, -1 = unknown
        self.x: Any = np.zeros((2 * capacity, width), dtype=np.float32) if width else [None] * (2 * capacity)
        self.n = 0

    def write(self, ts: np.ndarray, rows: Any, err: int) -> None:
        k = len(ts)
        if k == 1:  # one reading (a sensor row, a frame): two scalar stores, no slicing
            p = self.n % self.cap
            for i in (p, p + self.cap):
                self.t[i], self.err[i], self.x[i] = ts[0], err, rows[0]
            self.n += 1
            return
        if k > self.cap:  # a block longer than the history: only its newest rows matter
            ts, rows, k = ts[-self.cap :], rows[-self.cap :], self.cap
        p, cap = self.n % self.cap, self.cap
        for lo, hi, shift in ((p, p + k, 0), (p, min(p + k, cap), cap), (max(p, cap), p + k, -cap)):
            # the slot itself, then its mirror in the other half, so the newest `cap` entries stay contiguous
            if hi > lo:
                a, b = lo - p, hi - p
                self.t[lo + shift : hi + shift] = ts[a:b]
                self.err[lo + shift : hi + shift] = err
                self.x[lo + shift : hi + shift] = rows[a:b]
        self.n += k

    def view(self) -> tuple[np.ndarray, np.ndarray, Any]:
        """(t, err, x) of the stored entries, oldest first, as views."""
        size, end = min(self.n, self.cap), self.n % self.cap + self.cap
        return self.t[end - size : end], self.err[end - size : end], self.x[end - size : end]

    @property
    def last_t(self) -> int:
        return int(self.t[(self.n - 1) % self.cap]) if self.n else NEVER


# ---------------------------------------------------------------------------------------------------------------------
# One modality


class _Track:
    """History, readiness and tensor assembly for one modality."""

    def __init__(self, name: str, m: ModalitySpec, text_settings: tuple[int, int] | None, trigger: bool):
        self.name, self.m, self.trigger = name, m, trigger
        self.policy = m.sync.policy
        if m.kind == "image" and self.policy == "window":
            raise SpecError("<spec>", [(f"modalities.{name}.sync.policy", "an image takes one frame: nearest or hold")])
        if m.kind in ("audio", "series") and self.policy == "nearest":
            raise SpecError("<spec>", [(f"modalities.{name}.sync.policy", f"{m.kind} needs a window: window or hold")])
        self.text_settings = text_settings or (4096, 2)
        self.rows = m.kind in ("audio", "series")
        self.grid_period_ns = NS / m.rate_hz
        self.src_period_ns = self.grid_period_ns
        if self.rows or m.kind == "text":
            stale_s = m.sync.max_staleness_s or 0.0
            span_s = max(m.window_s, stale_s if self.policy == "hold" else 0.0) + HISTORY_SLACK_S
        else:  # frames are large: keep only what nearest can reach (a tolerance either side) plus a second
            span_s = (2 * m.sync.tolerance_s if self.policy == "nearest" else 0.0) + 1.0
        self._alloc(m.rate_hz, span_s)
        n = m.n_steps
        self.grid_off = np.round(np.arange(n - 1, -1, -1) * self.grid_period_ns).astype(np.int64)  # (n,) newest last
        self._grid = np.empty(n, dtype=np.int64)  # (n,) per-tick scratch of the general path
        self.latest_end = NEVER  # capture time of the newest row/sample
        self.frame_gap_ns = self.src_period_ns  # frames (image/text): smoothed interval between captures
        self.block_ns = self.src_period_ns  # rows: duration of the newest block (one period for single readings)
        self.last_seq = -(1 << 62)  # rows: the newest block's sequence number
        self.missed_t = NEVER  # newest emitted tick this modality missed: older samples are late
        self.runs: deque[int] = deque([0])  # rows: absolute ring index where each sample-contiguous run starts
        self.phase_ns: float | None = None  # frames: smoothed capture phase, for runtime.phase_lock
        self._off, self._off_p = np.zeros(0), 0.0  # rows: cached row offsets of the block size and period in use
        self.takes = {"run": 0, "resample": 0, "stale": 0}  # which window path ran; ticks masked for staleness

    def _alloc(self, rate_hz: float, span_s: float) -> None:
        self.rate_planned = rate_hz
        if self.rows:
            self.ring = _Ring(max(64, math.ceil(rate_hz * span_s)), self.m.n_channels)
        else:
            self.ring = _Ring(max(8, math.ceil(rate_hz * span_s)), None)
        self.runs = deque([0])

    @property
    def stale_ns(self) -> float:
        """How old the newest real data may be at the tick (window and hold): the spec's max_staleness_s, else three
        sample periods or three blocks, whichever is longer (one lost block or reading is not yet "stale")."""
        if self.m.sync.max_staleness_s is not None:
            return self.m.sync.max_staleness_s * NS
        gap = self.frame_gap_ns if not self.rows else self.block_ns
        return STALE_PERIODS * max(self.src_period_ns, gap)

    def reach_ns(self, t: int) -> float:
        """How far after tick t the frame that wins `nearest` can lie: a tick waits for it up to this plus the
        latency budget, so the budget is transport time and never cuts the tolerance. A source silent for three
        periods before the tick is not waited for beyond the budget."""
        if self.policy != "nearest" or self.trigger:
            return 0.0
        period = min(self.src_period_ns, self.frame_gap_ns)
        if self.latest_end < t - STALE_PERIODS * period:
            return 0.0
        return min(self.m.sync.tolerance_s * NS, period / 2)

    # -- push ---------------------------------------------------------------------------------------------------------
    def push(self, s: Sample) -> tuple[str, bool]:
        """Store a sample; returns (status "ok" | "late" | "invalid", whether it was stored)."""
        status = self._push_rows(s) if self.rows else self._push_item(s)
        if status == "ok" and s.t_capture_ns <= self.missed_t:
            return "late", True  # kept for later windows, but a tick already went out without it
        return status, status == "ok"

    @staticmethod
    def _truth_err(s: Sample, t_stored: int) -> int:
        """|stored capture time - ground truth| in ns, -1 when unknown. A replayed sample is re-stamped on today's
        clock; its truth belongs to the capture time as recorded, shifted like the stored time."""
        t_true = s.meta.get("t_true_ns") if s.meta else None
        if not isinstance(t_true, int):
            return -1
        return abs(int(s.meta.get("t_recorded_ns", s.t_capture_ns)) + (t_stored - s.t_capture_ns) - t_true)

    def _push_rows(self, s: Sample) -> str:
        x = s.data
        if not isinstance(x, np.ndarray) or x.dtype.kind not in "fiu" or x.size == 0:
            return "invalid"
        c = self.m.n_channels
        if x.ndim == 1:
            x = x.reshape(1, c) if (c > 1 and len(x) == c) else x.reshape(-1, 1)
        if x.ndim != 2 or x.shape[1] != c or not np.isfinite(x).all():
            return "invalid"
        rate = s.rate_hz if s.rate_hz > 0 else self.m.rate_hz
        if rate > self.rate_planned * 1.01:  # a source faster than the spec: size the history for it, once
            self._alloc(rate, self.ring.cap / self.rate_planned)
        p, k, last = NS / rate, len(x), self.ring.last_t
        start, contiguous = float(s.t_capture_ns), False
        if last != NEVER and abs(p - self.src_period_ns) <= 1e-6 * p:
            # Stamps jitter (a host stamps blocks when they arrive) but the samples themselves are contiguous: a
            # block close to where the previous one ends continues it on the sample lattice, nudged by a fraction of
            # the offset (at most 1/16 block) so the lattice follows a clock that runs fast or slow and recovers from
            # a run that started at a jittered stamp. Windows count rows within a run, so a nudge never duplicates or
            # skips a sample. A whole number of blocks later (lost blocks) it stays on the lattice but starts a new
            # run; anything else (an overlap, a clock step) starts a new run at its own stamp. The source's sequence
            # numbers say how many blocks were lost on the way (a queue drop), so a late stamp is not mistaken for a
            # lost block; without them (a gap below 0 or over 1000) the offset is rounded to whole blocks.
            block = max(p, self.block_ns, k * p)
            dev = start - (last + p)
            gap = s.seq - self.last_seq - 1
            lost = gap if 0 <= gap <= 1000 else (round(dev / block) if dev > 0 else 0)
            dev -= lost * block
            if abs(dev) < (0.75 if 0 <= gap <= 1000 else 0.5) * block:
                start = last + p + lost * block + min(max(dev * PLL_GAIN, -block / 16), block / 16)
                contiguous = lost == 0
        self.src_period_ns, self.block_ns, self.last_seq = p, k * p, s.seq
        ts = (start + self._offsets(k, p)).astype(np.int64) if k > 1 else np.array([round(start)], np.int64)  # (k,)
        if not contiguous:
            keep = ts > last  # rows overlapping what is stored (stamp jitter) are dropped, order kept
            if not keep[-1]:
                return "late"  # entirely older than what is stored: out of order
            if not keep[0]:
                ts, x = ts[keep], x[keep]
            self.runs.append(self.ring.n)
            while len(self.runs) > 1 and self.runs[1] <= self.ring.n - self.ring.cap:
                self.runs.popleft()
        self.ring.write(ts, x.astype(np.float32, copy=False), self._truth_err(s, int(ts[0])))
        self.latest_end = int(ts[-1])
        return "ok"

    def _offsets(self, k: int, p: float) -> np.ndarray:
        """(k,) float64 row offsets i * p rounded half up, cached for the block size and period in use."""
        if len(self._off) != k or self._off_p != p:
            self._off, self._off_p = np.floor(np.arange(k) * p + 0.5), p
        return self._off

    def _push_item(self, s: Sample) -> str:
        x = s.data
        if self.m.kind == "text":
            if not isinstance(x, str):
                return "invalid"
        elif not (
            isinstance(x, np.ndarray) and x.dtype == np.uint8 and (x.ndim == 2 or (x.ndim == 3 and x.shape[2] == 3))
        ):
            return "invalid"
        last, t = self.ring.last_t, s.t_capture_ns
        if t <= last:
            return "late"  # out of order
        if last != NEVER:
            self.frame_gap_ns += 0.2 * (min(t - last, 4 * self.src_period_ns) - self.frame_gap_ns)
        fp = min(self.src_period_ns, self.frame_gap_ns)
        if self.phase_ns is None:
            self.phase_ns = float(t)
        else:  # capture phase modulo the frame period, smoothed: a tick grid locked to it lands on the frames
            r = (t - self.phase_ns + fp / 2) % fp - fp / 2
            self.phase_ns = t - r + r * PHASE_GAIN
        self.ring.write(np.array([t], dtype=np.int64), [x], self._truth_err(s, t))
        self.latest_end = int(t)
        return "ok"

    def snap(self, t: int) -> int:
        """The capture-phase point nearest grid time t (runtime.phase_lock), or t before any frame."""
        if self.phase_ns is None:
            return t
        fp = min(self.src_period_ns, self.frame_gap_ns)
        return t + round((self.phase_ns - t + fp / 2) % fp - fp / 2)

    # -- readiness ----------------------------------------------------------------------------------------------------
    @property
    def final_when_ready(self) -> bool:
        """Whether ready(t) also means take(t) can no longer change: true for nearest frames and windows (later samples
        are past the tick, and out-of-order ones are refused as late); hold and trigger tracks are always "ready", so
        what they take still depends on when the tick goes out."""
        return not (self.trigger or self.policy == "hold" or self.m.kind == "text")

    def ready(self, t: int) -> bool:
        """True when no sample still to come can change this modality's tensor for tick `t`."""
        if self.trigger or self.policy == "hold" or (self.m.kind == "text" and self.policy == "window"):
            return True
        if self.rows:
            return self.latest_end >= t - min(self.src_period_ns, self.grid_period_ns) / 2
        if self.m.kind == "image":  # nearest: a frame within half a period of t cannot be beaten by the next one
            return self.latest_end >= t - min(self.src_period_ns, self.frame_gap_ns) / 2
        return self.latest_end >= t  # text arrives when someone speaks: no period to reason with

    # -- assembly -----------------------------------------------------------------------------------------------------
    def take(self, t: int) -> tuple[np.ndarray | None, int | None, int | None]:
        """(tensor or None when missing, capture ns of the newest sample used, sync error ns or None)."""
        if self.ring.n == 0:
            return None, None, None
        if self.rows:
            return self._take_rows(t)
        if self.m.kind == "text":
            return self._take_text(t)
        return self._take_image(t)

    def _take_image(self, t: int) -> tuple[np.ndarray | None, int | None, int | None]:
        ts, errs, items = self.ring.view()
        if self.policy == "nearest":
            tol = round(self.m.sync.tolerance_s * NS)
            lo, hi = np.searchsorted(ts, t - tol), np.searchsorted(ts, t + tol, side="right")
            if hi <= lo:
                return None, None, None
            j = lo + int(np.argmin(np.abs(ts[lo:hi] - t)))
        else:
            j = int(np.searchsorted(ts, t, side="right")) - 1
            if j < 0 or t - ts[j] > self.stale_ns:
                return None, None, None
        return prepare_image(items[j], self.m), int(ts[j]), _err(errs[j : j + 1])

    def _take_text(self, t: int) -> tuple[np.ndarray | None, int | None, int | None]:
        ts, errs, items = self.ring.view()
        if self.policy == "nearest":
            tol = round(self.m.sync.tolerance_s * NS)
            lo, hi = np.searchsorted(ts, t - tol), np.searchsorted(ts, t + tol, side="right")
            if hi > lo:
                lo = lo + int(np.argmin(np.abs(ts[lo:hi] - t)))
                hi = lo + 1
        else:
            hi = int(np.searchsorted(ts, t, side="right"))
            lo = int(np.searchsorted(ts, t - round(self.m.window_s * NS)))
            if hi <= lo and self.policy == "hold" and hi > 0 and t - ts[hi - 1] <= self.stale_ns:
                lo = hi - 1
        if hi <= lo:
            return None, None, None
        text = " ".join(items[lo:hi])
        tensor = prepare_text(text, self.m, *self.text_settings)
        return tensor, int(ts[hi - 1]), _err(errs[lo:hi])

    def _take_rows(self, t: int) -> tuple[np.ndarray | None, int | None, int | None]:
        ts, errs, xs = self.ring.view()
        if self.policy == "hold":
            j = int(np.searchsorted(ts, t, side="right")) - 1
            if j < 0 or t - ts[j] > self.stale_ns:
                return None, None, None
            t = int(ts[j])  # the window ends at the newest row
        p = self.grid_period_ns
        if abs(self.src_period_ns - p) <= 1e-3 * p:
            self.takes["run"] += 1
            base = self.ring.n - len(ts)  # absolute ring index of ts[0]
            out, covered, newest, lo = _window_from_runs(ts, xs, self.runs, base, t, p, len(self.grid_off))
        else:  # the source runs at another rate: resample onto the grid
            self.takes["resample"] += 1
            grid = np.subtract(t, self.grid_off, out=self._grid)  # (n,)
            cover = 0.75 * max(self.src_period_ns, p)
            out, covered, newest, lo = _resample(ts, xs, grid, self.src_period_ns, self.m.kind == "audio", cover)
        if newest < 0 or covered < self.m.sync.min_coverage * len(self.grid_off):
            return None, None, None
        if t - ts[newest] > self.stale_ns:
            self.takes["stale"] += 1
            return None, None, None
        return out, int(ts[newest]), _err(errs[lo : newest + 1])  # (C, n_steps)


def _window_from_runs(
    ts: np.ndarray, xs: np.ndarray, run_starts: Iterable[int], base: int, t: int, p: float, n: int
) -> tuple[np.ndarray, int, int, int]:
    """The window of n grid points ending at t (spacing p) from rows at the grid's rate, one slice per contiguous run.

    Within a run the samples are contiguous (see _Track._push_rows), so the row nearest a grid point is found by
    counting rows, not by searching times: the run's newest row in the window lands on the grid point nearest its
    time and the rows before it on the points before that. Grid points no row lands on (a lost block, the start of a
    stream) stay zero: nothing is carried across a gap. Work is a copy of the rows in the window plus a few steps per
    run; on rows that sit on the grid's lattice it picks exactly the rows nearest-row resampling picks.

    Returns ((C, n) float32 owned, grid points covered, index of the newest row used or -1, index of the oldest).
    """
    out = np.zeros((xs.shape[1], n), dtype=np.float32)  # (C, n)
    end = int(np.searchsorted(ts, t + math.ceil(p / 2)))  # rows [0, end) lie before t + p/2 (an int: a float
    # key would make NumPy convert the whole time array to float64 first, ~250 µs for a second of audio)
    starts = [max(r - base, 0) for r in run_starts]
    filled, covered, newest, oldest = n, 0, -1, end
    for r in range(len(starts) - 1, -1, -1):  # newest run first
        a, b = starts[r], min(starts[r + 1] if r + 1 < len(starts) else end, end)
        if b <= a:
            continue
        e = b - 1
        i = n - 1 - round((t - int(ts[e])) / p)  # grid point of the run's newest row
        if i >= filled:  # runs overlapping on the grid (an overlap in time): the newer run keeps the point
            e, i = e - (i - filled + 1), filled - 1
        if i < 0:
            break
        cnt = min(e - a + 1, i + 1)
        if cnt <= 0:
            continue
        out[:, i - cnt + 1 : i + 1] = xs[e - cnt + 1 : e + 1].T
        covered, filled, oldest = covered + cnt, i - cnt + 1, e - cnt + 1
        newest = e if newest < 0 else newest
        if filled <= 0:
            break
    return out, covered, newest, oldest


def _err(errs: np.ndarray) -> int | None:
    worst = int(errs.max()) if len(errs) else -1  # unknown is -1, so the max is the worst known error
    return worst if worst >= 0 else None


def _resample(
    ts: np.ndarray, xs: np.ndarray, grid: np.ndarray, src_period_ns: float, linear: bool, cover_ns: float
) -> tuple[np.ndarray, int, int, int]:
    """Rows (ts (k,), xs (k, C)) at another rate onto `grid` (n,) -> ((C, n) float32, grid points covered, index of the
    newest row used or -1, index of the oldest).

    A grid point is covered when a row lies within cover_ns of it (the synchronizer gives 0.75 of the longer period,
    source or grid); uncovered points stay zero. Audio is interpolated linearly between neighbouring rows, series take
    the nearest row (sensor values are never invented), and nothing is interpolated across a gap.
    """
    n = len(grid)
    half = (grid[1] - grid[0]) / 2 if n > 1 else src_period_ns / 2
    lo = int(np.searchsorted(ts, int(grid[0]) - math.ceil(2 * src_period_ns)))  # int keys (see _window_from_runs)
    hi = int(np.searchsorted(ts, int(grid[-1]) + math.ceil(max(half, src_period_ns)), side="right"))
    out = np.zeros((xs.shape[1], n), dtype=np.float32)  # (C, n)
    if hi <= lo:
        return out, 0, -1, lo
    t_src, x_src, k = ts[lo:hi], xs[lo:hi], hi - lo
    idx = np.searchsorted(t_src, grid, side="right")  # (n,) first source row after each grid point
    left, right = np.clip(idx - 1, 0, k - 1), np.clip(idx, 0, k - 1)
    d_left = np.where(idx > 0, grid - t_src[left], np.inf)  # (n,)
    d_right = np.where(idx < k, t_src[right] - grid, np.inf)  # (n,)
    cov = np.minimum(d_left, d_right) <= cover_ns  # (n,)
    if linear:
        span = (t_src[right] - t_src[left]).astype(np.float64)
        inside = (span > 0) & (span <= 1.5 * src_period_ns)  # neighbours, not the two sides of a gap
        w = np.where(inside, (grid - t_src[left]) / np.where(inside, span, 1.0), 0.0).astype(np.float32)
        w = np.where(inside | (d_left <= d_right), w, 1.0)  # no neighbour pair: the nearest row
        vals = x_src[left] * (1 - w)[:, None] + x_src[right] * w[:, None]  # (n, C)
    else:
        vals = x_src[np.where(d_left <= d_right, left, right)]  # (n, C)
    out[:, cov] = vals[cov].T
    covered = int(cov.sum())
    newest = lo + int(np.searchsorted(t_src, int(grid[-1]) + math.ceil(half))) - 1
    return out, covered, (newest if covered else -1), lo


# ---------------------------------------------------------------------------------------------------------------------
# The synchronizer


def text_settings_from_spec(spec: ScenarioSpec) -> dict[str, tuple[int, int]]:
    """modality -> (buckets, ngrams) of its hashed-text encoder: the tokenizer settings the bundle records."""
    return {m: (e.buckets, e.ngrams) for m, e in spec.model.encoders.items() if isinstance(e, HashedTextEncoder)}


class Synchronizer:
    """Fuses one sensor group's samples into ticks; see the module docstring for the policies.

    Not thread-safe: one thread pushes and polls (the pipeline's sync thread, or a replay loop).
    """

    def __init__(
        self,
        spec: ScenarioSpec,
        group: str = "g0",
        drops: Drops | None = None,
        text_settings: dict[str, tuple[int, int]] | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
        max_pending: int = 64,
    ):
        rt = spec.runtime
        self.spec, self.group, self.clock, self.max_pending = spec, group, clock, max_pending
        self.drops = drops if drops is not None else Drops()
        self.names = spec.modality_names
        settings = text_settings if text_settings is not None else text_settings_from_spec(spec)
        self.tracks = {
            name: _Track(name, m, settings.get(name), trigger=name == rt.trigger) for name, m in spec.modalities.items()
        }
        self.trigger = rt.trigger
        self.lock = self.tracks[rt.phase_lock] if rt.phase_lock else None
        self.period_ns = round(NS / rt.tick_hz)
        self.budget_ns = round(rt.latency_budget_ms * 1e6)
        self._next_tick: int | None = None  # the next grid point (before phase_lock snaps it onto the frames)
        self._last_enqueued = NEVER
        self._quiet_until = NEVER  # poll() has nothing to do before this, unless a sample is pushed
        self._pending: deque[int] = deque()
        # tensors of the oldest pending tick already final (see poll): modality -> take() result, for tick _early_t
        self._early: dict[str, tuple[np.ndarray | None, int | None, int | None]] = {}
        self._early_t: int | None = None
        self._last_arrival = 0
        self.ticks = 0
        self.skipped = 0  # ticks never emitted because the pending list overflowed (a stalled consumer)
        self.pushed = 0

    def push(self, s: Sample) -> bool:
        """Add a sample; False when it was dropped ("invalid", or "late" out of order) or stored but late."""
        track = self.tracks.get(s.source.rsplit("/", 1)[-1])
        status, stored = ("invalid", False) if track is None else track.push(s)
        if self._pending or self._next_tick is None or self.trigger is not None:
            self._quiet_until = NEVER  # a waiting tick may be ready now (or a tick was queued): poll looks again
        if status != "ok":
            self.drops.add(s.source, status)
        if not stored:
            return False
        self.pushed += 1
        self._last_arrival = max(self._last_arrival, s.t_arrival_ns)
        if self._next_tick is None and self.trigger is None:
            self._next_tick = -(-track.latest_end // self.period_ns) * self.period_ns  # first grid point after data
        if status == "ok" and track.trigger:
            self._enqueue(track.latest_end)
        return status == "ok"

    def feed(self, s: Sample) -> list[Tick]:
        """Push one sample as a live run receives it, in arrival order: the ticks whose deadline passed before it
        arrived go out first, without it, then the ones it completes. The live pipeline, replay and drive() (so
        training windows) all feed through here, so they fuse the same samples into the same ticks."""
        out = self.poll(s.t_arrival_ns - 1)
        self.push(s)
        out += self.poll(s.t_arrival_ns)
        return out

    def note_arrival(self, t_ns: int) -> None:
        """The runtime itself received data at t_ns (a queue hand-off): e2e latency counts from the later of this
        and the samples' own t_arrival_ns, so a source that stamps arrival early cannot hide runtime time."""
        self._last_arrival = max(self._last_arrival, t_ns)

    def _enqueue(self, t: int) -> None:
        if t <= self._last_enqueued:
            return  # a phase-locked tick snapped onto the frame the previous tick already took
        if len(self._pending) >= self.max_pending:
            self._pending.popleft()
            self.skipped += 1
        self._pending.append(t)
        self._last_enqueued = t

    def _tick_at(self, grid_t: int) -> int:
        return grid_t if self.lock is None else self.lock.snap(grid_t)

    def _schedule(self, now_ns: int) -> None:
        if self._next_tick is None or self._next_tick > now_ns + self.period_ns:
            return
        n = (now_ns - self._next_tick) // self.period_ns + 1
        if n > self.max_pending:  # the clock jumped (a stall): keep only the newest ticks
            self.skipped += n - self.max_pending
            self._next_tick += (n - self.max_pending) * self.period_ns
        while (t := self._tick_at(self._next_tick)) <= now_ns:
            self._enqueue(t)
            self._next_tick += self.period_ns

    def deadline_ns(self, t: int, ready: list[bool]) -> int:
        """When tick t goes out at the latest: the latency budget after the newest capture time it may still need,
        i.e. after t, or after t + reach for a nearest frame not yet `ready` that may still win (tolerance is never
        cut)."""
        reach = max((tr.reach_ns(t) for tr, r in zip(self.tracks.values(), ready, strict=True) if not r), default=0.0)
        return t + self.budget_ns + round(reach)

    def poll(self, now_ns: int) -> list[Tick]:
        """Ticks due by `now_ns` whose data is complete or whose budget has run out, in time order."""
        if now_ns < self._quiet_until:
            return []  # nothing pushed since the last poll, and no tick due or deadline passed yet
        if self.trigger is None:
            self._schedule(now_ns)
        out = []
        self._quiet_until = NEVER
        while self._pending:
            t = self._pending[0]
            ready = [track.ready(t) for track in self.tracks.values()]
            deadline = self.deadline_ns(t, ready)
            if now_ns < deadline and not all(ready):
                self._take_early(t, ready)
                self._quiet_until = deadline
                break
            self._pending.popleft()
            out.append(self._assemble(t, now_ns, ready))
        if self.trigger is None and self._next_tick is not None:
            due = self._tick_at(self._next_tick)
            self._quiet_until = due if self._quiet_until == NEVER else min(self._quiet_until, due)
        return out

    def _take_early(self, t: int, ready: list[bool]) -> None:
        """While tick t waits for its last modality, assemble the ones already final, so only the last arrival's
        tensor is built once everything is in (the camera frame and sensor window come off the latency path)."""
        if self._early_t != t:
            self._early, self._early_t = {}, t
        for (name, track), r in zip(self.tracks.items(), ready, strict=True):
            if r and name not in self._early and track.final_when_ready:
                self._early[name] = track.take(t)

    def flush(self) -> list[Tick]:
        """At end of stream: schedule ticks up to the newest data and emit every pending one with what there is."""
        newest = max(track.latest_end for track in self.tracks.values())
        if self.trigger is None and newest != NEVER:
            self._schedule(newest)
        out = []
        while self._pending:
            t = self._pending.popleft()
            ready = [tr.ready(t) for tr in self.tracks.values()]
            out.append(self._assemble(t, self.deadline_ns(t, ready), ready))
        return out

    def next_wakeup_ns(self) -> int | None:
        """When poll() may next have something to emit without a new sample (a tick due or a budget running out)."""
        if self._quiet_until != NEVER:
            return self._quiet_until  # the last poll worked it out, and nothing was pushed since
        times = []
        if self._pending:
            t = self._pending[0]
            times.append(self.deadline_ns(t, [tr.ready(t) for tr in self.tracks.values()]))
        if self.trigger is None and self._next_tick is not None:
            times.append(self._tick_at(self._next_tick))
        return min(times) if times else None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def stats(self) -> dict[str, dict[str, int]]:
        """Per modality: window takes by path ("run": counted from sample-contiguous runs, "resample": another
        rate) and ticks masked because the newest data was stale."""
        return {name: dict(tr.takes) for name, tr in self.tracks.items() if tr.rows or tr.takes["stale"]}

    def _assemble(self, t: int, now_ns: int, ready: list[bool]) -> Tick:
        t_start = self.clock()
        inputs, capture, errs = {}, {}, {}
        mask = np.zeros(len(self.names), dtype=np.float32)  # (M,)
        early = self._early if self._early_t == t else {}
        for i, (name, track) in enumerate(self.tracks.items()):
            taken = early.get(name)
            tensor, capture[name], errs[name] = taken if taken is not None else track.take(t)
            if tensor is None:
                tensor = np.zeros(track.m.input_shape, dtype=track.m.input_dtype)
            else:
                mask[i] = 1.0
            if not ready[i]:
                track.missed_t = t
            inputs[name] = tensor
        complete = all(ready)
        if self._early_t == t:
            self._early, self._early_t = {}, None
        stamps = {
            "tick": t,
            # when the data was all in: the newest arrival, or the budget running out
            # (never before the tick itself: data that came early waited for the tick, not for the runtime)
            "data": max(t, min(self._last_arrival, now_ns)) if complete else self.deadline_ns(t, ready),
            "ready": now_ns,
            "sync_start": t_start,
            "synced": self.clock(),
        }
        self.ticks += 1
        return Tick(self.group, t, inputs, mask, capture, errs, complete, stamps)


# ---------------------------------------------------------------------------------------------------------------------
# Offline: replay a stream through a synchronizer, and cut training windows


def in_arrival_order(samples: Iterable[Sample]) -> Iterator[Sample]:
    """Samples given in capture order (a recorded session), re-ordered by arrival: the order a live run saw them.

    A sample cannot arrive before it is captured, so once the input reaches capture time t every sample that
    arrived by t is known: a heap holds only the samples still in flight (bounded by the latency times the rates).
    """
    heap: list[tuple[int, int, Sample]] = []
    for i, s in enumerate(samples):
        heapq.heappush(heap, (int(s.t_arrival_ns), i, s))
        while heap and heap[0][0] <= s.t_capture_ns:
            yield heapq.heappop(heap)[2]
    while heap:
        yield heapq.heappop(heap)[2]


def drive(sync: Synchronizer, samples: Iterable[Sample]) -> Iterator[Tick]:
    """Replay samples (in capture order) through `sync` on their own recorded clock: fed in arrival order
    (Synchronizer.feed), exactly as a live run fed them.

    Deterministic: the same samples give the same ticks, whatever the machine's speed.
    """
    for s in in_arrival_order(samples):
        yield from sync.feed(s)
    yield from sync.flush()


def label_segments(
    labels: list[tuple[float, float, dict[str, str]]], start_ns: int, heads: dict[str, list[str]], where: str
) -> list[tuple[int, int, dict[str, str]]]:
    """Label rows (t0_s, t1_s, {head: class}), seconds since `start_ns` (runtime.record's labels.csv) -> sorted
    segments in monotonic ns. Every head of the spec must be labelled with one of its classes (DataError if not)."""
    out = []
    for i, (t0, t1, row) in enumerate(labels, 1):
        for head, classes in heads.items():
            if row.get(head) not in classes:
                raise DataError(where, f"label row {i}: {head} must be one of {classes}, got {row.get(head)!r}")
        out.append((start_ns + round(t0 * NS), start_ns + round(t1 * NS), dict(row)))
    return sorted(out, key=lambda seg: seg[0])


def label_at(segments: list[tuple[int, int, dict[str, str]]], starts: list[int], t: int) -> dict[str, str] | None:
    """The labels of the segment covering time t (segments sorted by start, `starts` their start times), or None."""
    i = bisect_right(starts, t) - 1
    return segments[i][2] if i >= 0 and t <= segments[i][1] else None


@dataclass
class Windows:
    """Training windows shaped like the trainer's dataset (inputs, mask, targets), plus each window's tick time."""

    inputs: dict[str, np.ndarray]  # modality -> (N, *input_shape)
    mask: np.ndarray  # (N, M) float32
    targets: dict[str, np.ndarray]  # head -> (N,) int64 class index
    t_ns: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.t_ns)


def windows_from_session(
    spec: ScenarioSpec,
    session: Any,
    labels: str | Path | list[tuple[float, float, dict[str, str]]] | None = None,
    start_ns: int = 0,
    text_settings: dict[str, tuple[int, int]] | None = None,
) -> Windows:
    """Training windows cut from a recorded session by the runtime's own synchronizer.

    `session`: a session folder or runtime.record.SessionReader (samples merged in capture order), or any iterable
    of Samples in capture order. `labels`: a labels.csv (runtime.record format: t0_s,t1_s,<head>...), rows
    (t0_s, t1_s, {head: class}), or None for the session's own labels.csv. Label times are seconds since the
    session's start_ns (`start_ns` for a plain iterable). The windows are exactly the ticks a replay of the session
    would fuse (same code, same clock); ticks outside every label segment are skipped.
    """
    from edgefuse.runtime.record import SessionReader, read_labels

    reader = SessionReader(session) if isinstance(session, (str, Path)) else session
    where = str(getattr(reader, "path", "<session>"))
    if isinstance(reader, SessionReader):
        start_ns = reader.start_ns
        if labels is None:
            labels = reader.labels()
    if labels is None:
        raise DataError(where, "no labels: pass a labels.csv or record the session with labels")
    if isinstance(labels, (str, Path)):
        where, labels = str(labels), read_labels(labels, spec.labels)
    segments = label_segments(labels, start_ns, spec.labels, where)
    starts = [seg[0] for seg in segments]
    sync = Synchronizer(spec, drops=Drops(), text_settings=text_settings)
    inputs: dict[str, list[np.ndarray]] = {m: [] for m in spec.modality_names}
    masks, targets, t_ns = [], {h: [] for h in spec.heads}, []
    for tick in drive(sync, reader):
        truth = label_at(segments, starts, tick.t_tick_ns)
        if truth is None:
            continue
        for m, x in tick.inputs.items():
            inputs[m].append(x)
        masks.append(tick.mask)
        for h, classes in spec.labels.items():
            targets[h].append(classes.index(truth[h]))
        t_ns.append(tick.t_tick_ns)
    mods = spec.modalities
    return Windows(
        inputs={
            m: np.stack(v) if v else np.zeros((0, *mods[m].input_shape), mods[m].input_dtype) for m, v in inputs.items()
        },
        mask=np.stack(masks) if masks else np.zeros((0, len(mods)), np.float32),
        targets={h: np.asarray(v, dtype=np.int64) for h, v in targets.items()},
        t_ns=np.asarray(t_ns, dtype=np.int64),
    )
