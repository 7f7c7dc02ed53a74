"""Bounded hand-off queues between threads, with every dropped item counted by source and reason.

Nothing between a source and the model grows without bound: a queue that is full drops its oldest item (the newest
data is what a live system wants) and counts it, so the run summary says exactly what was lost and why.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from edgefuse.runtime.clock import monotonic_ns

DROP_REASONS = ("queue_full", "late", "seq_gap", "invalid")


class Drops:
    """Thread-safe drop counts keyed by (source, reason)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def add(self, source: str, reason: str, n: int = 1) -> None:
        if n <= 0:
            return
        with self._lock:
            key = (source, reason)
            self._counts[key] = self._counts.get(key, 0) + n

    def by_reason(self) -> dict[str, int]:
        """reason -> count over all sources (every known reason present, zeros included)."""
        out = dict.fromkeys(DROP_REASONS, 0)
        with self._lock:
            for (_, reason), n in self._counts.items():
                out[reason] = out.get(reason, 0) + n
        return out

    def by_source(self) -> dict[str, dict[str, int]]:
        """source -> {reason: count}, only the sources that dropped something."""
        out: dict[str, dict[str, int]] = {}
        with self._lock:
            for (source, reason), n in self._counts.items():
                out.setdefault(source, {})[reason] = n
        return out

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())


class BoundedQueue:
    """A fixed-capacity FIFO for one producer thread and one consumer thread.

    `put` never blocks: when the queue is full the oldest item is dropped (policy "drop_oldest") or the new one is
    refused ("drop_newest"), and the drop is counted under `name` with reason "queue_full". `wake`, when given, is
    set on every put so one consumer can wait on many queues at once.
    """

    def __init__(
        self, maxsize: int, name: str, drops: Drops, policy: str = "drop_oldest", wake: threading.Event | None = None
    ):
        if maxsize <= 0:
            raise ValueError("maxsize must be positive")
        if policy not in ("drop_oldest", "drop_newest"):
            raise ValueError(f"unknown drop policy {policy!r}")
        self.maxsize, self.name, self.drops, self.policy, self.wake = maxsize, name, drops, policy, wake
        self._items: deque[Any] = deque()
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self.high_water = 0  # the deepest the queue has been: shows how close it came to dropping

    def put(self, item: Any) -> bool:
        """Enqueue; returns False when the item itself was refused (drop_newest on a full queue)."""
        accepted = True
        with self._lock:
            if len(self._items) >= self.maxsize:
                if self.policy == "drop_newest":
                    accepted = False
                else:
                    self._items.popleft()
                self.drops.add(self.name, "queue_full")
            if accepted:
                self._items.append(item)
                self.high_water = max(self.high_water, len(self._items))
                self._ready.notify()
        if self.wake is not None:
            self.wake.set()
        return accepted

    def get(self, timeout: float | None = None) -> Any | None:
        """The oldest item, waiting at most `timeout` seconds; None when nothing came."""
        with self._ready:
            if not self._items and not self._ready.wait_for(lambda: bool(self._items), timeout):
                return None
            return self._items.popleft()

    def drain(self) -> list[Any]:
        """Everything queued now, oldest first, without waiting."""
        with self._lock:
            items = list(self._items)
            self._items.clear()
        return items

    def __len__(self) -> int:
        return len(self._items)


class SampleQueue(BoundedQueue):
    """A source's queue: also counts sequence-number gaps (samples the source itself lost) as "seq_gap" drops."""

    def __init__(self, maxsize: int, name: str, drops: Drops, wake: threading.Event | None = None):
        super().__init__(maxsize, name, drops, "drop_oldest", wake)
        self._last_seq: int | None = None
        self.t_last_put = 0  # monotonic ns of the newest put: when the runtime took the sample from its source

    def put(self, item: Any) -> bool:
        seq = getattr(item, "seq", None)
        if isinstance(seq, int):
            if self._last_seq is not None and seq > self._last_seq + 1:
                self.drops.add(self.name, "seq_gap", seq - self._last_seq - 1)
            # a smaller seq means the source restarted (reconnect): start counting again from there
            self._last_seq = seq
        self.t_last_put = monotonic_ns()
        return super().put(item)
