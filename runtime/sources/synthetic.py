"""Synthetic sources: the scenario generator's world streamed like real devices, with the ground truth attached.

One World per make_sources() call renders labelled episodes back to back, lazily, on one time line starting at
`t0_ns`; every synthetic modality of that call reads the same episodes, so all streams show the same events.
The sources behave like the devices they stand for:
  image   frames stamped at capture, arriving 3-10 ms later (driver and decode latency)
  audio   blocks of `source.blocksize` samples, arriving 2 ms after their last sample
  series  one reading per row, stamped by a sensor clock with its own offset (up to +-2 s) and drift (up to
          +-80 ppm), arriving after 0.3 ms + exponential(1 ms) network delay; the source maps sensor time onto
          the host clock with ClockFit, exactly as the ZeroMQ source does
  text    utterances arriving 150 ms after they end (a speech recognizer's latency)
Sample.meta holds {"labels": the episode's labels (or None), "t_true_ns": the true host capture time}.

realtime=True paces emission on the monotonic clock, and renders the next episode on a background thread while the
current one plays (rendering one takes ~100 ms, which would otherwise make every source that late at each episode
boundary); realtime=False emits on a virtual clock as fast as possible, rendering on demand.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from edgefuse.runtime.clock import Sample, monotonic_ns
from edgefuse.runtime.clockfit import ClockFit
from edgefuse.runtime.sources import Source
from edgefuse.spec import ModalitySpec, ScenarioSpec

CACHE_EPISODES = 4  # rendered episodes kept: sources of one world read within a few seconds of each other
_WORLD = 0x30D1D  # seed-sequence word: live episodes are a stream apart from datasets and offline sessions


def live_episode_s(spec: ScenarioSpec) -> float:
    """How long a live episode lasts: twice the longest window (at least 2 s more than it).

    A tick is labelled only when its longest window lies inside one episode, so a dataset-length episode (window + 1 s)
    would label few ticks; the generators keep the event observable in every window of a longer episode.
    """
    span = spec.window_span_s()
    return span + max(2.0, span)


class World:
    """An endless sequence of rendered episodes; episode k covers [t0_ns + k * episode_ns, + episode_ns)."""

    def __init__(
        self,
        spec: ScenarioSpec,
        seed: int = 0,
        t0_ns: int | None = None,
        episode_s: float | None = None,
        prefetch: bool = False,
    ):
        from edgefuse.trainer.synth import get_generator

        self.spec, self.seed = spec, seed
        self.gen = get_generator(spec, seed)
        self.episode_s = live_episode_s(spec) if episode_s is None else episode_s
        self.episode_ns = round(self.episode_s * 1e9)
        self.t0_ns = monotonic_ns() if t0_ns is None else t0_ns
        self._cache: OrderedDict[int, Future] = OrderedDict()  # episode -> its rendering, done or under way
        self._lock = threading.Lock()  # guards _cache only: rendering runs outside it
        # prefetch: render episode k + 1 in the background once episode k is asked for (one worker, daemon-like:
        # a render is ~100 ms, so interpreter exit never waits long for it)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="world-render") if prefetch else None
        if prefetch and t0_ns is None:  # the first episode is ready before the clock starts: no late start
            self.episode(0)
            self.t0_ns = monotonic_ns()

    def labels(self, k: int) -> dict[str, str]:
        """Episode k's labels (cheap: drawn first from the episode's own random stream)."""
        return self.gen.sample_labels(np.random.default_rng([self.seed, k, _WORLD]))

    def episode(self, k: int) -> dict[str, Any]:
        """Episode k's raw streams (modality -> frames/rows/utterances), rendered once and cached.

        Rendered by the first caller (or taken from the background render already under way); with prefetch on,
        asking for episode k also starts episode k + 1 in the background.
        """
        fut, mine = self._claim(k)
        if mine:
            self._render_into(fut, k)
        pool = self._pool
        if pool is not None:
            nxt, mine_next = self._claim(k + 1)
            if mine_next:
                try:
                    pool.submit(self._render_into, nxt, k + 1)
                except RuntimeError:  # closed meanwhile: render it here, so nobody waits on it forever
                    self._render_into(nxt, k + 1)
        return fut.result()

    def _claim(self, k: int) -> tuple[Future, bool]:
        """The Future of episode k, and whether the caller must render it (nobody has started it)."""
        with self._lock:
            fut = self._cache.get(k)
            if fut is not None:
                self._cache.move_to_end(k)
                return fut, False
            fut = self._cache[k] = Future()
            while len(self._cache) > CACHE_EPISODES:
                self._cache.popitem(last=False)  # anyone waiting on an evicted render still holds its Future
            return fut, True

    def _render_into(self, fut: Future, k: int) -> None:
        """Render episode k from its own random stream (the same result on any thread, in any order)."""
        try:
            rng = np.random.default_rng([self.seed, k, _WORLD])
            fut.set_result(self.gen.render(self.gen.sample_labels(rng), rng, self.episode_s))
        except BaseException as err:  # noqa: BLE001 - handed to whoever waits on the episode, raised there
            fut.set_exception(err)

    def close(self) -> None:
        """Stop prefetching; renders already started or queued finish, later episodes render on demand."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)

    def index(self, t_ns: int) -> int:
        return (t_ns - self.t0_ns) // self.episode_ns

    def episode_labels(self, t_ns: int) -> dict[str, str] | None:
        """Labels of the episode playing at host time t_ns (None before the world starts): Sample.meta["labels"]."""
        return self.labels(self.index(t_ns)) if t_ns >= self.t0_ns else None

    def labels_at(self, t_ns: int) -> dict[str, str] | None:
        """Ground truth of a fusion tick at t_ns: the episode's labels when the spec's longest window
        [t_ns - window_span, t_ns] lies inside one episode, None at a transition (as SynthSession.labels_at)."""
        span_ns = round(self.spec.window_span_s() * 1e9)
        k = self.index(t_ns)
        if t_ns < self.t0_ns or self.index(t_ns - span_ns) != k or t_ns - span_ns < self.t0_ns:
            return None
        return self.labels(k)

    def timeline(self, t0_ns: int, t1_ns: int) -> list[tuple[int, int, dict[str, str]]]:
        """[(start_ns, end_ns, labels)] of the episodes overlapping [t0_ns, t1_ns], clipped to it."""
        out = []
        for k in range(max(0, self.index(t0_ns)), self.index(t1_ns) + 1):
            a = self.t0_ns + k * self.episode_ns
            out.append((max(a, t0_ns), min(a + self.episode_ns, t1_ns), self.labels(k)))
        return [r for r in out if r[1] > r[0]]


class SyntheticSource(Source):
    """One modality of a World, emitted with device-like timing (see the module docstring)."""

    def __init__(
        self,
        source_id: str,
        modality: str,
        spec: ModalitySpec,
        realtime: bool = True,
        seed: int = 0,
        context: World | None = None,
    ):
        super().__init__(source_id, modality, spec, realtime)
        if context is None:
            raise ValueError("SyntheticSource needs a World: build it with make_sources()")
        self.world = context
        self.rng = np.random.default_rng(seed)
        self.block = spec.source.blocksize if spec.kind == "audio" else 1
        self._n = 0  # next row (frame, audio sample, reading) on the grid t0 + n / rate_hz
        self._text_k, self._text_i = 0, 0  # text: episode and utterance index
        self._vclock_ns = self.world.t0_ns
        self._pending: Sample | None = None
        if spec.kind == "series":  # a sensor with its own clock
            self.sensor_offset_ns = int(self.rng.uniform(-2e9, 2e9))
            self.sensor_drift = self.rng.uniform(-80e-6, 80e-6)
            self.clock = ClockFit(window_s=spec.source.clock_window_s, jump_ms=spec.source.clock_jump_ms)

    @classmethod
    def shared_context(
        cls, spec: ScenarioSpec, modality: str, group: str | None, seed: int, realtime: bool, shared: dict[str, Any]
    ) -> World:
        """One World per make_sources() call, shared by its synthetic modalities."""
        if "world" not in shared:
            shared["world"] = World(spec, seed, prefetch=realtime)
        return shared["world"]

    def now_ns(self) -> int:
        return monotonic_ns() if self.realtime else self._vclock_ns

    def close(self) -> None:
        self.world.close()  # the world's sources stop together; any still reading render on demand

    def stats(self) -> dict[str, Any]:
        st: dict[str, Any] = dict(self.counters)
        st["samples"] -= self._pending is not None  # the one drawn ahead has not been delivered
        if self.kind == "series":
            st.update(self.clock.stats())
        return st

    def read(self, timeout_s: float) -> list[Sample]:
        if self.realtime:
            deadline = monotonic_ns() + round(timeout_s * 1e9)
            due = self._peek().t_arrival_ns
            if due > monotonic_ns():
                time.sleep(max(0.0, (min(due, deadline) - monotonic_ns()) / 1e9))
            now = monotonic_ns()
        else:
            now = self._vclock_ns = self._vclock_ns + round(timeout_s * 1e9)
        out = []
        while self._peek().t_arrival_ns <= now:
            out.append(self._pending)
            self._pending = None
        return out  # type: ignore[return-value]

    # internals ------------------------------------------------------------------------------------------------------
    def _peek(self) -> Sample:
        if self._pending is None:
            self._pending = self._next()
        return self._pending

    def _next(self) -> Sample:
        if self.kind == "text":
            return self._next_text()
        while True:  # skip episodes where this modality is absent (an optional camera switched off)
            t_true = self._row_time(self._n)
            data = self._rows(self._n, self._n + self.block)
            self._n += self.block
            if data is not None:
                break
        labels = self.world.episode_labels(t_true)
        if self.kind == "image":
            arrival = t_true + int(self.rng.uniform(3e6, 10e6))
            return self._sample(t_true, arrival, data[0], labels=labels, t_true_ns=t_true)
        if self.kind == "audio":
            arrival = self._row_time(self._n) + 2_000_000
            return self._sample(t_true, arrival, data, self.spec.rate_hz, labels=labels, t_true_ns=t_true)
        arrival = t_true + 300_000 + int(self.rng.exponential(1e6))
        t_sensor = t_true + self.sensor_offset_ns + round((t_true - self.world.t0_ns) * self.sensor_drift)
        t_capture = self.clock.update(t_sensor, arrival)
        return self._sample(t_capture, arrival, data, labels=labels, t_true_ns=t_true)

    def _row_time(self, n: int) -> int:
        return self.world.t0_ns + round(n * 1e9 / self.spec.rate_hz)

    def _rows(self, n0: int, n1: int) -> np.ndarray | None:
        """Rows n0..n1-1 of the endless stream, gathered across episode boundaries; None if the episode lacks it."""
        parts = []
        n = n0
        while n < n1:
            t_s = n / self.spec.rate_hz
            k = int(t_s // self.world.episode_s)
            stream = self.world.episode(k).get(self.modality)
            if stream is None:
                return None
            # rows of episode k sit at (j / rate) after its start; the last one may be cut by rounding
            j = min(round((t_s - k * self.world.episode_s) * self.spec.rate_hz), len(stream) - 1)
            end_k = math.ceil((k + 1) * self.world.episode_s * self.spec.rate_hz - 1e-6)  # first row of episode k + 1
            take = min(n1 - n, len(stream) - j, max(1, end_k - n))
            parts.append(stream[j : j + take])
            n += take
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _next_text(self) -> Sample:
        while True:
            utts = self.world.episode(self._text_k).get(self.modality) or []
            if self._text_i < len(utts):
                t_s, text = utts[self._text_i]
                self._text_i += 1
                if 0 <= t_s < self.world.episode_s:
                    break
            else:
                self._text_k, self._text_i = self._text_k + 1, 0
        t_true = self.world.t0_ns + self._text_k * self.world.episode_ns + round(t_s * 1e9)
        labels = self.world.episode_labels(t_true)
        return self._sample(t_true, t_true + 150_000_000, text, labels=labels, t_true_ns=t_true)
