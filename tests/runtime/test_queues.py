"""Bounded queues: drop-oldest with counted drops, sequence gaps, a consumer waiting on many queues."""

from __future__ import annotations

import threading
import time

import pytest

from edgefuse.runtime.clock import Sample
from edgefuse.runtime.queues import BoundedQueue, Drops, SampleQueue


def test_full_queue_drops_oldest_and_counts():
    drops = Drops()
    q = BoundedQueue(3, "cam", drops)
    for i in range(10):
        assert q.put(i)
    assert q.drain() == [7, 8, 9]
    assert drops.by_reason() == {"queue_full": 7, "late": 0, "seq_gap": 0, "invalid": 0}
    assert drops.by_source() == {"cam": {"queue_full": 7}} and q.high_water == 3


def test_drop_newest_refuses_the_new_item():
    drops = Drops()
    q = BoundedQueue(2, "x", drops, policy="drop_newest")
    assert q.put(1) and q.put(2) and not q.put(3)
    assert q.drain() == [1, 2] and drops.total() == 1


def test_sequence_gaps_count_as_drops_and_a_restart_does_not():
    drops = Drops()
    q = SampleQueue(100, "env", drops)
    for seq in (0, 1, 2, 5, 6, 10, 0, 1):  # lost 3, 4 and 7..9; then the source restarted at 0
        q.put(Sample("env", seq, seq, seq, "x"))
    assert drops.by_source() == {"env": {"seq_gap": 5}}


def test_get_waits_for_a_producer_and_times_out():
    q = BoundedQueue(4, "x", Drops())
    threading.Timer(0.05, q.put, args=("late",)).start()
    t0 = time.monotonic()
    assert q.get(timeout=2.0) == "late" and time.monotonic() - t0 < 1.0
    assert q.get(timeout=0.05) is None


def test_one_wake_event_for_many_queues():
    wake = threading.Event()
    drops = Drops()
    qs = [BoundedQueue(4, f"s{i}", drops, wake=wake) for i in range(3)]
    threading.Timer(0.05, qs[2].put, args=(42,)).start()
    assert wake.wait(2.0)
    assert [q.drain() for q in qs] == [[], [], [42]]


def test_concurrent_producer_never_exceeds_capacity():
    drops = Drops()
    q = BoundedQueue(16, "flood", drops)
    n = 20000
    t = threading.Thread(target=lambda: [q.put(i) for i in range(n)])
    t.start()
    got = []
    while t.is_alive() or len(q):
        got += q.drain()
        assert len(q) <= 16
    t.join()
    got += q.drain()
    assert len(got) + drops.by_reason()["queue_full"] == n and got == sorted(got)


def test_bad_arguments():
    with pytest.raises(ValueError, match="maxsize"):
        BoundedQueue(0, "x", Drops())
    with pytest.raises(ValueError, match="policy"):
        BoundedQueue(1, "x", Drops(), policy="block")
