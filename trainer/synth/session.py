"""Continuous synthetic streams with ground truth, for the runtime's paced synthetic sources.

A session is episodes rendered back to back on one timeline. A tick's label is known when its longest window
lies inside one episode; a window that straddles two episodes mixes them and has no label (a transition).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np

from edgefuse.spec import ScenarioSpec
from edgefuse.trainer.synth.base import episode_duration_s, get_generator

_SESSION = 0x5E5510  # seed-sequence word that separates session episodes from dataset samples


@dataclass
class SynthSession:
    """Rendered streams of a whole session and the episode timeline that labels them.

    streams: modality -> (t_s (n,) float64 of each row/frame/utterance, data): image (n, H, W, 3) uint8 BGR,
    audio/series (n, C) float32, text list[str]. A modality missing in an episode (the optional camera) simply
    has no rows there.
    timeline: (t0_s, t1_s, labels) per episode, back to back from 0.
    """

    spec: ScenarioSpec
    duration_s: float
    streams: dict[str, tuple[np.ndarray, object]]
    timeline: list[tuple[float, float, dict[str, str]]]
    _starts: list[float] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._starts = [t0 for t0, _, _ in self.timeline]

    def labels_at(self, t_s: float) -> dict[str, str] | None:
        """Labels of the episode holding the whole window [t_s - window_span, t_s]; None at a transition.

        Episodes are half-open [t0, t1): a tick exactly at a boundary sees the next episode's first frame, so it is
        a transition (except at the very end of the session).
        """
        i = bisect.bisect_right(self._starts, t_s + 1e-9) - 1
        if i < 0:
            return None
        t0, t1, labels = self.timeline[i]
        last = i == len(self.timeline) - 1
        inside = t_s < t1 - 1e-9 or (last and t_s <= t1 + 1e-9)
        if not inside or t_s - self.spec.window_span_s() < t0 - 1e-9:
            return None
        return labels


def synth_session(spec: ScenarioSpec, duration_s: float, seed: int, episode_s: float | None = None) -> SynthSession:
    """Render ceil(duration_s / episode_s) episodes back to back, cut to duration_s.

    episode_s defaults to episode_duration_s(spec); longer episodes give more labelled ticks per episode.
    Episode k draws its labels and signals from the Generator seeded with (seed, k, "session"), a stream apart from
    the dataset writer's (seed, i): a session never replays a training sample.
    """
    gen = get_generator(spec, seed)
    ep = episode_s if episode_s is not None else episode_duration_s(spec)
    n_ep = max(1, math.ceil(duration_s / ep - 1e-9))
    times: dict[str, list[np.ndarray]] = {m: [] for m in spec.modalities}
    data: dict[str, list] = {m: [] for m in spec.modalities}
    timeline = []
    for k in range(n_ep):
        rng = np.random.default_rng([seed, k, _SESSION])
        labels = gen.sample_labels(rng)
        t0 = k * ep
        timeline.append((t0, min(t0 + ep, duration_s), labels))
        last, end = k == n_ep - 1, duration_s - t0
        for name, stream in gen.render(labels, rng, ep).items():
            t, x = _rows(spec, name, stream)
            # a frame exactly at an episode's end is also the next episode's first frame: keep the next one; the
            # session's own end keeps its frame (and utterance), while audio/series rows stay half-open [0, end)
            closed = spec.modalities[name].kind in ("image", "text")
            keep = (t <= end + 1e-9 if closed else t < end - 1e-9) if last else (t < ep - 1e-9)
            times[name].append(t0 + t[keep])
            data[name].append([u for u, ok in zip(x, keep, strict=True) if ok] if isinstance(x, list) else x[keep])
    streams = {}
    for name in spec.modalities:
        if not times[name]:
            continue
        t = np.concatenate(times[name])
        if spec.modalities[name].kind == "text":
            streams[name] = (t, [u for part in data[name] for u in part])
        else:
            streams[name] = (t, np.concatenate(data[name], axis=0))
    return SynthSession(spec=spec, duration_s=duration_s, streams=streams, timeline=timeline)


def _rows(spec: ScenarioSpec, name: str, stream: object) -> tuple[np.ndarray, object]:
    """Times of a rendered stream's rows (relative to its episode) and the rows themselves."""
    m = spec.modalities[name]
    if m.kind == "text":
        utts = list(stream)  # type: ignore[call-overload]
        return np.array([t for t, _ in utts], dtype=np.float64), [u for _, u in utts]
    x = np.asarray(stream)
    return np.arange(x.shape[0], dtype=np.float64) / m.rate_hz, x
