"""ClockFit on simulated sensor clocks: offset, drift, heavy-tailed delays, forward and backward clock jumps."""

from __future__ import annotations

import numpy as np
import pytest

from edgefuse.runtime.clockfit import ClockFit, _lp_slope

HOST0 = 5_000_000_000_000  # host monotonic ns at the first reading
MIN_DELAY_NS = 400_000  # the network's minimum delay: one-way stamps cannot separate it from the offset


def simulate(fit: ClockFit, n: int, drift_ppm: float, offset_ns: int, seed: int = 0, jump_at=None, jump_ns=0):
    """Feed n readings at 100 Hz; returns the mapping error (mapped - true host capture time), in ms."""
    rng = np.random.default_rng(seed)
    errs = []
    for i in range(n):
        t_true = HOST0 + i * 10_000_000
        t_sensor = round(offset_ns + (t_true - HOST0) * (1 + drift_ppm * 1e-6)) + HOST0
        if jump_at is not None and i >= jump_at:
            t_sensor += jump_ns
        # exponential queuing, and every 50th reading stuck 300 ms in a queue
        delay = MIN_DELAY_NS + int(rng.exponential(3e6)) + (300_000_000 if i % 50 == 25 else 0)
        errs.append((fit.update(t_sensor, t_true + delay) - t_true) / 1e6)
    return np.array(errs)


def test_offset_and_drift_recovered_despite_queuing_spikes():
    fit = ClockFit(window_s=30)
    err = simulate(fit, 4000, drift_ppm=80.0, offset_ns=-7_200_000_000_000)  # sensor 2 h behind, 80 ppm fast
    assert fit.drift_ppm == pytest.approx(80.0, abs=3.0)
    assert fit.offset_ms == pytest.approx(
        7_200_000 - 39.99e3 * 80e-6 + MIN_DELAY_NS / 1e6, abs=0.5
    )  # host - sensor, ms
    # after the first seconds the mapped time is the true capture time plus the path's minimum delay
    assert np.abs(err[500:] - MIN_DELAY_NS / 1e6).max() < 0.5
    assert fit.jumps == 0


def test_forward_jump_reanchors_at_once_and_keeps_drift():
    fit = ClockFit()
    err = simulate(fit, 2000, drift_ppm=-40.0, offset_ns=0, jump_at=1000, jump_ns=5_000_000_000)
    assert fit.jumps == 1
    assert fit.drift_ppm == pytest.approx(-40.0, abs=3.0)  # the rate learned before the jump survives it
    assert np.abs(err[1000:]).max() < 20  # never off by the 5 s step
    assert np.abs(err[1200:] - MIN_DELAY_NS / 1e6).max() < 0.5


def test_backward_jump_needs_confirmation_then_reanchors():
    fit = ClockFit(jump_confirm=5)
    err = simulate(fit, 2000, drift_ppm=10.0, offset_ns=0, jump_at=1000, jump_ns=-3_000_000_000)
    assert fit.jumps == 1
    assert np.abs(err[1000:1004]).max() > 2000  # the first points after a backward step look like huge delays
    assert np.abs(err[1200:] - MIN_DELAY_NS / 1e6).max() < 0.5


def test_single_spike_is_not_a_jump():
    fit = ClockFit()
    for i in range(300):
        t = HOST0 + i * 10_000_000
        spike = 2_000_000_000 if i == 150 else 0  # one reading 2 s late
        fit.update(t, t + MIN_DELAY_NS + spike)
    assert fit.jumps == 0 and fit.offset_ms == pytest.approx(MIN_DELAY_NS / 1e6, abs=1e-3)


def test_lp_slope_is_the_hull_edge_under_the_mean():
    # points above the line y = 2x + 1 with two on it at x = 0 and x = 10
    pts = [(0.0, 1.0), (2.0, 9.0), (5.0, 12.0), (7.0, 20.0), (10.0, 21.0)]
    assert _lp_slope(pts) == pytest.approx(2.0)
    assert _lp_slope([(0.0, 1.0)]) == 0.0


def test_unanchored_fit_maps_identity_and_reports_zero():
    fit = ClockFit()
    assert fit.to_host(123) == 123 and fit.stats() == {"clock_offset_ms": 0.0, "clock_drift_ppm": 0.0, "clock_jumps": 0}
