"""Replay source: re-emits a recorded session's samples (runtime/record.py), deterministically.

realtime=True   paced: each sample is emitted when its recorded arrival time, shifted by one constant for the
                whole session, comes round on the host clock; timestamps are shifted by the same constant (so
                they sit on today's clock, spacing exact) and the recorded capture time is kept in
                meta["t_recorded_ns"].
realtime=False  as fast as possible on a virtual clock that starts at the session's start: timestamps are
                exactly the recorded ones; read(timeout_s) returns what arrived in the next timeout_s.

    sources = make_replay_sources("sessions/s1", realtime=False)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgefuse.errors import DataError
from edgefuse.runtime.clock import Sample, monotonic_ns
from edgefuse.runtime.record import SessionReader
from edgefuse.runtime.sources import Source, make_sources
from edgefuse.spec import ModalitySpec, ScenarioSpec, SpecError


class _Shared:
    """One session and one time shift for all replay sources of a make_sources() call."""

    def __init__(self, path: str):
        self.reader = SessionReader(path)
        self.shift_ns = monotonic_ns() - self.reader.start_ns  # realtime: recorded time -> host time now


class ReplaySource(Source):
    """One stream of a recorded session."""

    def __init__(
        self,
        source_id: str,
        modality: str,
        spec: ModalitySpec,
        realtime: bool = True,
        seed: int = 0,
        context: _Shared | None = None,
    ):
        super().__init__(source_id, modality, spec, realtime)
        if context is None:
            raise SpecError("<spec>", [(f"modalities.{modality}.source.uri", "replay needs a session folder")])
        self.shared = context
        self.reader = context.reader
        self.stream = self._stream_id(source_id, modality)
        self.counters.update(loops=0)
        self._vclock_ns = self.reader.start_ns
        self._loop_shift_ns = 0
        self._it: Iterator[Sample] | None = None
        self._pending: Sample | None = None
        self._first_ns: int | None = None
        self._last_ns = 0
        self._last_seq = -1
        self._seq_shift = 0  # each loop continues the sequence numbers
        self.exhausted = False

    @classmethod
    def shared_context(
        cls, spec: ScenarioSpec, modality: str, group: str | None, seed: int, realtime: bool, shared: dict[str, Any]
    ) -> _Shared | None:
        """One reader and time shift per session folder, shared by the modalities replaying it."""
        uri = spec.modalities[modality].source.uri
        if not uri:
            return None
        key = f"replay:{uri}"
        if key not in shared:
            shared[key] = _Shared(uri)
        return shared[key]

    def open(self) -> None:
        self._it = self.reader.iter_source(self.stream)

    def now_ns(self) -> int:
        return monotonic_ns() if self.realtime else self._vclock_ns

    def stats(self) -> dict[str, Any]:
        rep = self.reader.reports.get(self.stream)
        extra = {"torn_tail": rep.torn_tail, "corrupt_chunks": len(rep.corrupt)} if rep else {}
        return {**self.counters, "exhausted": self.exhausted, **extra}

    def read(self, timeout_s: float) -> list[Sample]:
        if self.realtime:
            deadline = monotonic_ns() + round(timeout_s * 1e9)
            nxt = self._peek()
            due = deadline if nxt is None else min(deadline, nxt.t_arrival_ns)
            time.sleep(max(0.0, (due - monotonic_ns()) / 1e9))
            now = monotonic_ns()
        else:
            now = self._vclock_ns = self._vclock_ns + round(timeout_s * 1e9)
        out = []
        while (s := self._peek()) is not None and s.t_arrival_ns <= now:
            out.append(s)
            self._pending = None
            self.counters["samples"] += 1
        return out

    # internals ------------------------------------------------------------------------------------------------------
    def _stream_id(self, source_id: str, modality: str) -> str:
        if source_id in self.reader.sources:
            return source_id
        for sid, info in self.reader.sources.items():
            if info.get("modality") == modality:
                return sid
        raise DataError(
            self.reader.path, f"no recorded stream for source {source_id!r} (has {list(self.reader.sources)})"
        )

    def _peek(self) -> Sample | None:
        """The next sample on this source's clock (shifted), or None at the end of the session."""
        if self._pending is None and self._it is not None and not self.exhausted:
            s = next(self._it, None)
            if s is None and self.spec.source.loop and self._first_ns is not None:
                self.counters["loops"] += 1
                self._loop_shift_ns += self._last_ns - self._first_ns + round(1e9 / self.spec.rate_hz)
                self._seq_shift += self._last_seq + 1
                self._it = self.reader.iter_source(self.stream)
                s = next(self._it, None)
            if s is None:
                self.exhausted = True
                return None
            self._first_ns = s.t_capture_ns if self._first_ns is None else self._first_ns
            self._last_ns, self._last_seq = s.t_capture_ns, s.seq
            self._pending = self._shift(s)
        return self._pending

    def _shift(self, s: Sample) -> Sample:
        d = self._loop_shift_ns + (self.shared.shift_ns if self.realtime else 0)
        if d:
            s.meta = {**s.meta, "t_recorded_ns": s.t_capture_ns}
            s.t_capture_ns += d
            s.t_arrival_ns += d
        s.source = self.id
        s.seq += self._seq_shift
        return s


def make_replay_sources(
    session: str | Path, realtime: bool = True, group: str | None = None, loop: bool = False
) -> dict[str, Source]:
    """Replay sources for every modality of the spec stored in `session` (one shared clock shift)."""
    reader = SessionReader(session)
    spec = reader.spec.model_copy(deep=True)
    for m in spec.modalities.values():
        m.source.type, m.source.uri, m.source.loop = "replay", str(session), loop
    return make_sources(spec, group=group, realtime=realtime)
