"""Run statistics with bounded memory: latency percentiles over a fixed window, accuracy counters, rates."""

from __future__ import annotations

import threading

import numpy as np


class Recorder:
    """The last `capacity` values of one quantity in a preallocated ring; percentiles over them.

    A long run keeps constant memory: percentiles describe the most recent `capacity` values, `count` all of them.
    """

    def __init__(self, capacity: int = 8192):
        self._buf = np.zeros(capacity, dtype=np.float64)
        self.count = 0

    def add(self, value: float) -> None:
        self._buf[self.count % len(self._buf)] = value
        self.count += 1

    def values(self) -> np.ndarray:
        return self._buf[: min(self.count, len(self._buf))]

    def percentiles(self, qs: tuple[float, ...] = (50, 99)) -> dict[str, float | None]:
        """{"p50": ..., "p99": ...}; None when nothing was recorded."""
        v = self.values()
        if len(v) == 0:
            return {f"p{q:g}": None for q in qs}
        return {f"p{q:g}": round(float(x), 4) for q, x in zip(qs, np.percentile(v, qs), strict=True)}


class Recorders:
    """Named Recorders created on first use; safe to add from one thread while another reads a summary."""

    def __init__(self, capacity: int = 8192):
        self.capacity = capacity
        self._recs: dict[str, Recorder] = {}
        self._lock = threading.Lock()

    def add(self, name: str, value: float) -> None:
        rec = self._recs.get(name)
        if rec is None:
            with self._lock:
                rec = self._recs.setdefault(name, Recorder(self.capacity))
        rec.add(value)

    def percentiles(self, qs: tuple[float, ...] = (50, 99)) -> dict[str, dict[str, float | None]]:
        with self._lock:
            items = list(self._recs.items())
        return {name: rec.percentiles(qs) for name, rec in sorted(items)}

    def get(self, name: str) -> Recorder | None:
        return self._recs.get(name)


class Accuracy:
    """Online accuracy per head over the ticks whose ground truth is known."""

    def __init__(self) -> None:
        self.correct: dict[str, int] = {}
        self.total: dict[str, int] = {}

    def add(self, head: str, predicted: str, truth: str | None) -> None:
        if truth is None:
            return
        self.total[head] = self.total.get(head, 0) + 1
        self.correct[head] = self.correct.get(head, 0) + int(predicted == truth)

    def summary(self) -> dict[str, dict[str, float | int]]:
        """head -> {accuracy, n}."""
        return {h: {"accuracy": round(self.correct[h] / n, 4), "n": n} for h, n in self.total.items() if n}


def ns_to_ms(ns: float) -> float:
    return ns / 1e6
