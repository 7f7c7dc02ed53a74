"""One clock: every sample is stamped once, in host monotonic nanoseconds, as close to capture as possible."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

monotonic_ns = time.monotonic_ns


@dataclass(slots=True)
class Sample:
    """One reading from a source.

    `data` is what the source captured, unprocessed:
      image  (H, W, 3) uint8 BGR frame (OpenCV order) or (H, W) gray
      audio  (n, channels) float32 block; row i was captured at t_capture_ns + i * 1e9 / rate_hz
      series (n, channels) float32 rows (n = 1 for one reading), spaced like audio
      text   str (an utterance)
    """

    source: str  # source id: the modality name, prefixed "group/" when several sensor groups share a process
    seq: int  # per-source sequence number; a gap counts as drops
    t_capture_ns: int  # host monotonic ns of the (first row's) capture
    t_arrival_ns: int  # host monotonic ns when edgefuse received it
    data: np.ndarray | str
    rate_hz: float = 0.0  # rows per second within a block (audio/series); 0 for single readings
    meta: dict = field(default_factory=dict)  # e.g. ground-truth labels from synthetic sources
