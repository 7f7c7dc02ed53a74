"""Record raw timestamped streams to a crash-safe session folder, and read it back (docs/recording.md).

    SESSION/session.json          spec, start time, sources (rewritten atomically; "end" is set on a clean close)
    SESSION/streams/<id>.efs      one append-only chunk file per source
    SESSION/labels.csv            optional labels: t0_s,t1_s,<head>... (seconds since the session start);
                                  `edgefuse record` of synthetic sources appends each finished episode as it ends
    SESSION/labels.partial.csv    the episode in progress (rewritten atomically; removed on a clean close)

A chunk file is the 8-byte magic b"EFSESS01" followed by chunks. A chunk is

    b"EFCK" | u32 little-endian body length | u32 CRC-32 of the body | body (msgpack)
    body = {"source": id, "samples": [{"seq", "t_capture_ns", "t_arrival_ns", "rate_hz", "dtype", "shape",
                                       "data": raw bytes (C order; UTF-8 for text), "meta": {...}}, ...]}

The writer thread gathers each source's samples for `chunk_s`, then writes one chunk, flushes and fsyncs it. A
SIGKILL or power loss therefore loses at most the chunk being gathered (and a torn tail, which the reader detects
by length and CRC and skips); every file stays readable, and ground truth is kept up to the last `chunk_s`.

The reader trusts nothing: a chunk with a bad header, CRC or record is skipped and reported (stream, byte offset,
the time range it fell in), and reading goes on from the next chunk that checks out; a session.json that does not
describe a session is a DataError naming it.

    edgefuse record --config configs/smart_home.yaml --out sessions/s1 --duration 60
"""

from __future__ import annotations

import argparse
import csv
import heapq
import json
import math
import mmap
import os
import queue
import signal
import struct
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from edgefuse.errors import DataError
from edgefuse.runtime.clock import Sample, monotonic_ns
from edgefuse.spec import ScenarioSpec, parse_spec, spec_to_dict

FORMAT = "edgefuse.session"
VERSION = 1
FILE_MAGIC = b"EFSESS01"
CHUNK_MAGIC = b"EFCK"
_HEAD = struct.Struct("<4sII")  # magic, body length, crc32
MAX_CHUNK_BYTES = 256 << 20  # a length beyond this is corruption, not data


# ---------------------------------------------------------------------------------------------------------------------
# Sample <-> record


def _encode(s: Sample) -> dict[str, Any]:
    if isinstance(s.data, str):
        dtype, shape, data = "str", [], s.data.encode("utf-8")
    else:
        arr = np.ascontiguousarray(s.data)
        dtype, shape, data = arr.dtype.str, list(arr.shape), arr.tobytes()
    return {
        "seq": s.seq,
        "t_capture_ns": s.t_capture_ns,
        "t_arrival_ns": s.t_arrival_ns,
        "rate_hz": float(s.rate_hz),
        "dtype": dtype,
        "shape": shape,
        "data": data,
        "meta": s.meta,
    }


_INT64 = (-(1 << 63), (1 << 63) - 1)
_ARRAY_KINDS = "biufc"  # bool, ints, floats, complex: never objects, strings or structured types from a file


def _int64(r: dict[str, Any], key: str) -> int:
    v = r.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not _INT64[0] <= v <= _INT64[1]:
        raise ValueError(f"'{key}' is not an int64")
    return v


def _decode(source: str, r: Any) -> Sample:
    """One stored record -> Sample; ValueError naming the field when the record is not one this writer makes."""
    if not isinstance(r, dict):
        raise ValueError(f"record is a {type(r).__name__}, not a map")
    seq, t_capture, t_arrival = _int64(r, "seq"), _int64(r, "t_capture_ns"), _int64(r, "t_arrival_ns")
    rate, dtype, shape, raw, meta = (r.get(k) for k in ("rate_hz", "dtype", "shape", "data", "meta"))
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate) or rate < 0:
        raise ValueError("'rate_hz' is not a finite number >= 0")
    if not isinstance(raw, bytes):
        raise ValueError("'data' is not bytes")
    if meta is not None and not isinstance(meta, dict):
        raise ValueError("'meta' is not a map")
    if dtype == "str":
        data: np.ndarray | str = raw.decode("utf-8")
    else:
        dt = np.dtype(dtype) if isinstance(dtype, str) else None
        if dt is None or dt.kind not in _ARRAY_KINDS:
            raise ValueError(f"'dtype' {str(dtype)[:20]!r} is not a numeric array type")
        if not isinstance(shape, list) or len(shape) > 8 or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise ValueError("'shape' is not a list of sizes")
        if math.prod(shape) * dt.itemsize != len(raw):
            raise ValueError(f"'shape' {shape} of {dt} does not match {len(raw)} data bytes")
        # bytearray: a writable copy, so consumers may modify frames in place like live ones
        data = np.frombuffer(bytearray(raw), dtype=dt).reshape(shape)
    return Sample(source, seq, t_capture, t_arrival, data, float(rate), meta or {})


def _builtin(obj: Any) -> Any:
    """msgpack fallback for meta values: NumPy scalars and arrays become Python values."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def pack_chunk(source: str, records: list[dict[str, Any]]) -> bytes:
    """One framed chunk: header (magic, length, CRC-32) + msgpack body."""
    body = msgpack.packb({"source": source, "samples": records}, default=_builtin, use_bin_type=True)
    return _HEAD.pack(CHUNK_MAGIC, len(body), zlib.crc32(body)) + body


def _file_name(source_id: str) -> str:
    return "streams/" + source_id.replace("/", "__") + ".efs"


def _write_json_atomic(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------------------------------
# Writer


class _Stream:
    """One source's open chunk file and the samples gathered for its next chunk."""

    def __init__(self, path: Path):
        self.f = open(path, "ab")  # noqa: SIM115 - lives as long as the writer
        if self.f.tell() == 0:
            self.f.write(FILE_MAGIC)
        self.records: list[dict[str, Any]] = []
        self.bytes = 0
        self.t_first = 0.0
        self.samples = 0
        self.chunks = 0


class SessionWriter:
    """Writes Samples to a session folder from any thread; a background thread frames, writes and fsyncs chunks.

    `write()` never blocks: when the queue is full (the disk cannot keep up) the sample is dropped and counted.
    """

    def __init__(
        self,
        path: str | Path,
        spec: ScenarioSpec,
        sources: dict[str, Any] | None = None,
        chunk_s: float = 0.5,
        chunk_bytes: int = 4 << 20,
        queue_size: int = 20000,
    ):
        self.path = Path(path)
        self.spec = spec
        self.chunk_s, self.chunk_bytes = chunk_s, chunk_bytes
        self._queue: queue.Queue[Sample | None] = queue.Queue(queue_size)
        self._streams: dict[str, _Stream] = {}
        self._info: dict[str, dict[str, Any]] = {}
        self.dropped = 0
        self._thread: threading.Thread | None = None
        self._declared = sources or {}
        self.start_ns = 0
        self.error: BaseException | None = None

    def open(self) -> SessionWriter:
        if (self.path / "session.json").exists():
            raise DataError(self.path, "already holds a session (session.json exists); choose a new --out folder")
        (self.path / "streams").mkdir(parents=True, exist_ok=True)
        self.start_ns = monotonic_ns()
        self._meta = {
            "format": FORMAT,
            "version": VERSION,
            "created_unix_s": time.time(),
            "start_ns": self.start_ns,
            "chunk_s": self.chunk_s,
            "spec": spec_to_dict(self.spec),
            "sources": {},
            "end": None,
        }
        for sid, src in self._declared.items():
            self._add_source(sid, getattr(src, "modality", sid.split("/")[-1]))
        _write_json_atomic(self.path / "session.json", self._meta)
        self._thread = threading.Thread(target=self._run, name="session-writer", daemon=True)
        self._thread.start()
        return self

    def write(self, sample: Sample) -> None:
        """Queue one sample for writing (non-blocking)."""
        try:
            self._queue.put_nowait(sample)
        except queue.Full:
            self.dropped += 1

    def close(self) -> dict[str, Any]:
        """Write everything queued, fsync, and mark the session complete; returns the "end" summary."""
        if self._thread is None:
            return self._meta.get("end") or {}
        self._queue.put(None)
        self._thread.join()
        self._thread = None
        for sid, st in self._streams.items():
            self._flush(sid, st)
            st.f.close()
        self._meta["end"] = {
            "end_ns": monotonic_ns(),
            "samples": {sid: st.samples for sid, st in self._streams.items()},
            "chunks": {sid: st.chunks for sid, st in self._streams.items()},
            "dropped": self.dropped,
            "clean": self.error is None,
        }
        _write_json_atomic(self.path / "session.json", self._meta)
        return self._meta["end"]

    def __enter__(self) -> SessionWriter:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # writer thread --------------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                s = self._queue.get(timeout=self.chunk_s / 4)
            except queue.Empty:
                s = False  # type: ignore[assignment]
            if s is None:
                break
            try:
                if s:
                    self._append(s)
                now = time.monotonic()
                for sid, st in self._streams.items():
                    if st.records and (now - st.t_first >= self.chunk_s or st.bytes >= self.chunk_bytes):
                        self._flush(sid, st)
            except OSError as err:  # disk full, folder removed: stop recording, keep what is on disk
                self.error = err
                break
        while self.error is not None and self._queue.qsize():
            self._queue.get_nowait()

    def _append(self, s: Sample) -> None:
        st = self._streams.get(s.source)
        if st is None:
            self._add_source(s.source, s.source.split("/")[-1])
            _write_json_atomic(self.path / "session.json", self._meta)
            st = self._streams[s.source]
        rec = _encode(s)
        if not st.records:
            st.t_first = time.monotonic()
        st.records.append(rec)
        st.bytes += len(rec["data"])

    def _add_source(self, sid: str, modality: str) -> None:
        m = self.spec.modalities.get(modality)
        self._info[sid] = {
            "file": _file_name(sid),
            "modality": modality,
            "kind": m.kind if m else None,
            "rate_hz": m.rate_hz if m else None,
        }
        self._meta["sources"] = self._info
        self._streams[sid] = _Stream(self.path / _file_name(sid))
        _fsync_dir(self.path / "streams")

    def _flush(self, sid: str, st: _Stream) -> None:
        if not st.records:
            return
        st.f.write(pack_chunk(sid, st.records))
        st.f.flush()
        os.fsync(st.f.fileno())
        st.samples += len(st.records)
        st.chunks += 1
        st.records, st.bytes = [], 0


# ---------------------------------------------------------------------------------------------------------------------
# Reader


class StreamReport:
    """What reading one chunk file found: chunks and samples read, corrupt chunks skipped, and a torn tail."""

    def __init__(self) -> None:
        self.chunks = 0
        self.samples = 0
        self.torn_tail = False  # the file ends inside a chunk: a crash while writing; the rest is intact
        self.discarded_bytes = 0
        self.error: str | None = None  # the file cannot be read at all (missing, bad magic)
        # chunks skipped: {"byte", "bytes", "reason", "after_ns", "before_ns"}; the samples lost lie between the
        # last good sample before (after_ns, capture time) and the first good one after (before_ns); None at an end
        self.corrupt: list[dict[str, Any]] = []

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def iter_chunk_file(path: Path, report: StreamReport | None = None) -> Iterator[dict[str, Any]]:
    """Chunk bodies of one stream file, in order. A corrupt chunk is skipped (noted in `report.corrupt`) and
    reading resumes at the next chunk whose header and CRC check out; a torn tail ends the file cleanly."""
    report = report if report is not None else StreamReport()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if f.read(len(FILE_MAGIC)) != FILE_MAGIC:
            report.error = "not an edgefuse stream file (bad magic)"
            report.discarded_bytes = size
            return
        if size == len(FILE_MAGIC):
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            pos = len(FILE_MAGIC)
            while pos < size:
                chunk, problem, end = _read_chunk(mm, pos, size)
                if chunk is None:
                    nxt = _resync(mm, pos + 1, size)
                    if nxt is None and problem == "torn":
                        report.torn_tail, report.discarded_bytes = True, report.discarded_bytes + size - pos
                        return
                    skip = (size if nxt is None else nxt) - pos
                    report.corrupt.append({"byte": pos, "bytes": skip, "reason": problem})
                    report.discarded_bytes += skip
                    if nxt is None:
                        return
                    pos = nxt
                    continue
                report.chunks += 1
                report.samples += len(chunk["samples"])
                pos = end
                yield chunk


def _read_chunk(mm: mmap.mmap, pos: int, size: int) -> tuple[dict[str, Any] | None, str, int]:
    """(chunk body, "", end) for a whole valid chunk at `pos`, else (None, problem, 0)."""
    if size - pos < _HEAD.size:
        return None, "torn", 0
    magic, length, crc = _HEAD.unpack_from(mm, pos)
    if magic != CHUNK_MAGIC or length > MAX_CHUNK_BYTES:
        return None, f"bad chunk header ({magic!r}, {length} bytes)", 0
    end = pos + _HEAD.size + length
    if end > size:
        return None, "torn", 0
    body = mm[pos + _HEAD.size : end]
    if zlib.crc32(body) != crc:
        return None, "CRC mismatch", 0
    try:
        chunk = msgpack.unpackb(body, raw=False)
        _check_body(chunk)
    except (ValueError, TypeError, KeyError, msgpack.UnpackException) as err:
        return None, f"undecodable chunk: {str(err)[:80]}", 0
    return chunk, "", end


def _resync(mm: mmap.mmap, start: int, size: int) -> int | None:
    """Offset of the next whole valid chunk at or after `start`, or None."""
    while (i := mm.find(CHUNK_MAGIC, start)) >= 0:
        if _read_chunk(mm, i, size)[0] is not None:
            return i
        start = i + 1
    return None


def _check_body(chunk: Any) -> None:
    if not isinstance(chunk, dict) or not isinstance(chunk.get("samples"), list):
        raise ValueError("chunk body is not {'source', 'samples': [...]}")


def _session_problem(meta: Any) -> str | None:
    """What makes a parsed session.json unusable, or None."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        return f"not an edgefuse session (format != {FORMAT!r})"
    if meta.get("version") != VERSION:
        return f"session version {str(meta.get('version'))[:20]} is not supported ({VERSION})"
    if not isinstance(meta.get("start_ns", 0), int) or isinstance(meta.get("start_ns"), bool):
        return "'start_ns' must be an integer"
    sources = meta.get("sources")
    if not isinstance(sources, dict):
        return "'sources' must be a mapping of source id -> stream info"
    for sid, info in sources.items():
        file = info.get("file") if isinstance(info, dict) else None
        if not isinstance(file, str) or not file.startswith("streams/") or ".." in Path(file).parts:
            return f"sources.{sid}.file must be a path under streams/, got {str(file)[:60]!r}"
        if not isinstance(info.get("modality", ""), str):
            return f"sources.{sid}.modality must be a string"
    return None


class SessionReader:
    """A recorded session: its spec, sources, samples (per source or merged in capture order) and labels."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_path = self.path / "session.json"
        try:
            self.meta = json.loads(meta_path.read_text())
        except OSError as err:
            raise DataError(meta_path, f"cannot read session metadata: {err.strerror or err}") from None
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
            raise DataError(meta_path, f"not valid JSON: {str(err)[:120]}") from None
        problem = _session_problem(self.meta)
        if problem:
            raise DataError(meta_path, problem)
        self.sources: dict[str, dict[str, Any]] = self.meta["sources"]
        self.start_ns: int = int(self.meta.get("start_ns", 0))
        self.reports: dict[str, StreamReport] = {}

    @property
    def spec(self) -> ScenarioSpec:
        return parse_spec(self.meta.get("spec"), f"{self.path / 'session.json'}:spec")

    @property
    def complete(self) -> bool:
        """True when the recorder closed the session cleanly (no crash)."""
        return bool(self.meta.get("end"))

    def iter_source(self, source_id: str) -> Iterator[Sample]:
        """One source's samples in recorded order; corrupt chunks are skipped and noted in reports[source_id]."""
        if source_id not in self.sources:
            raise DataError(self.path, f"no source {source_id!r} in session (has {sorted(self.sources)})")
        report = self.reports[source_id] = StreamReport()
        path = self.path / self.sources[source_id]["file"]
        if not path.is_file():
            report.error = f"stream file {path.name} is missing"
            return
        last_ns: int | None = None
        try:
            for chunk in iter_chunk_file(path, report):
                try:
                    samples = [_decode(source_id, r) for r in chunk["samples"]]
                except (ValueError, TypeError, OverflowError) as err:
                    report.corrupt.append({"byte": None, "bytes": 0, "reason": f"bad record: {str(err)[:80]}"})
                    report.chunks -= 1
                    report.samples -= len(chunk["samples"])
                    continue
                _place(report.corrupt, last_ns, samples[0].t_capture_ns if samples else None)
                if samples:
                    last_ns = samples[-1].t_capture_ns
                yield from samples
        except OSError as err:
            report.error = f"cannot read {path.name}: {err.strerror or err}"
        _place(report.corrupt, last_ns, None)

    def __iter__(self) -> Iterator[Sample]:
        """All samples, merged across sources in capture-time order."""
        its = [self.iter_source(sid) for sid in self.sources]
        return heapq.merge(*its, key=lambda s: s.t_capture_ns)

    def check(self) -> dict[str, dict[str, Any]]:
        """Read every stream file to its end; per-source report (chunks, samples, torn_tail, corrupt, error)."""
        for sid in self.sources:
            for _ in self.iter_source(sid):
                pass
        return {sid: r.as_dict() for sid, r in self.reports.items()}

    def problems(self) -> list[str]:
        """One line per stream problem found by the reads so far: file path, byte offset, time range lost."""
        out = []
        for sid, rep in self.reports.items():
            where = self.path / self.sources[sid]["file"]
            if rep.error:
                out.append(f"{where}: {rep.error}")
            for c in rep.corrupt:
                at = "" if c["byte"] is None else f" at byte {c['byte']}"
                out.append(
                    f"{where}: corrupt chunk{at} ({c['reason']}) skipped; stream {sid!r} lost samples between "
                    f"{self._rel(c['after_ns'])} and {self._rel(c['before_ns'])}"
                )
        return out

    def _rel(self, t_ns: int | None) -> str:
        return "its start" if t_ns is None else f"{(t_ns - self.start_ns) / 1e9:.3f} s"

    def labels(self) -> list[tuple[float, float, dict[str, str]]] | None:
        """The session's labels.csv (plus the episode in progress at a crash, from labels.partial.csv), or None."""
        p, partial = self.path / "labels.csv", self.path / "labels.partial.csv"
        if not p.exists():
            return None
        rows = read_labels(p, torn_ok=True)
        if partial.exists():
            last = rows[-1][1] if rows else 0.0
            rows += [r for r in read_labels(partial, torn_ok=True) if r[0] >= last - 1e-6]
        return rows


def _place(corrupt: list[dict[str, Any]], after_ns: int | None, before_ns: int | None) -> None:
    """Give the corrupt chunks found since the last good one their time range."""
    for c in corrupt:
        if "after_ns" not in c:
            c["after_ns"], c["before_ns"] = after_ns, before_ns


# ---------------------------------------------------------------------------------------------------------------------
# Labels beside a session


def read_labels(
    path: str | Path, heads: dict[str, list[str]] | None = None, torn_ok: bool = False
) -> list[tuple[float, float, dict[str, str]]]:
    """A label CSV (t0_s,t1_s,<head>...; seconds since the session start) -> [(t0_s, t1_s, {head: class})].

    With `heads` (the spec's labels), every head must be a column and every value one of its classes. torn_ok: a
    last line without its newline (a crash while appending) is dropped rather than refused.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(path, f"cannot read label file: {getattr(err, 'strerror', None) or err}") from None
    lines = text.splitlines()
    if torn_ok and text and not text.endswith("\n") and len(lines) > 1:
        lines = lines[:-1]
    rows = list(csv.reader(lines))
    if not rows or rows[0][:2] != ["t0_s", "t1_s"] or len(rows[0]) < 3:
        raise DataError(path, "line 1: header must be t0_s,t1_s,<head>[,<head>...]")
    cols = rows[0][2:]
    for h in heads or {}:
        if h not in cols:
            raise DataError(path, f"line 1: no column for label head {h!r}")
    out = []
    for i, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(rows[0]):
            raise DataError(path, f"line {i}: {len(row)} fields, header has {len(rows[0])}")
        try:
            t0, t1 = float(row[0]), float(row[1])
        except ValueError:
            raise DataError(path, f"line {i}: t0_s and t1_s must be numbers, got {row[:2]}") from None
        if not (math.isfinite(t0) and math.isfinite(t1) and t1 > t0 >= 0):
            raise DataError(path, f"line {i}: need 0 <= t0_s < t1_s, got {t0}, {t1}")
        labels = dict(zip(cols, row[2:], strict=True))
        for h, v in labels.items():
            if heads and h in heads and v not in heads[h]:
                raise DataError(path, f"line {i}: {h}={v!r} is not one of {heads[h]}")
        out.append((t0, t1, labels))
    return out


def write_labels(path: str | Path, rows: Iterable[tuple[float, float, dict[str, str]]], heads: list[str]) -> None:
    """Write a label CSV that read_labels() reads back."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t0_s", "t1_s", *heads])
        for t0, t1, labels in rows:
            w.writerow([f"{t0:.6f}", f"{t1:.6f}", *(labels[h] for h in heads)])


# ---------------------------------------------------------------------------------------------------------------------
# `edgefuse record`


def record(
    spec: ScenarioSpec,
    out: str | Path,
    duration_s: float | None = None,
    stop: threading.Event | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Record every source of `spec` (all sensor groups) until duration_s passes or `stop` is set."""
    from edgefuse.runtime.sources import group_names, make_sources

    stop = stop or threading.Event()
    sources = {}
    for g in group_names(spec):
        sources.update(make_sources(spec, group=g, seed=seed, realtime=True))
    writer = SessionWriter(out, spec, sources).open()
    world = next((s.world for s in sources.values() if getattr(s, "world", None) is not None), None)
    truth = _LabelLog(writer.path, world, writer.start_ns, list(spec.labels)) if world is not None else None
    threads = [threading.Thread(target=_pump, args=(s, writer, stop), name=f"rec-{sid}") for sid, s in sources.items()]
    for t in threads:
        t.start()
    deadline = None if duration_s is None else time.monotonic() + duration_s
    while not stop.is_set():  # synthetic ground truth goes to disk as it happens, one chunk period at a time
        left = writer.chunk_s if deadline is None else min(writer.chunk_s, deadline - time.monotonic())
        if left <= 0 or stop.wait(left):
            break
        if truth is not None:
            truth.update(monotonic_ns())
    stop.set()
    for t in threads:
        t.join()
    end = writer.close()
    if truth is not None:
        truth.close(end["end_ns"])
    end["sources"] = {sid: s.stats() for sid, s in sources.items()}
    return end


def _pump(src: Any, writer: SessionWriter, stop: threading.Event) -> None:
    src.open()
    try:
        while not stop.is_set():
            for s in src.read(0.05):
                writer.write(s)
    finally:
        src.close()


class _LabelLog:
    """Synthetic sources know the truth: write it beside the session as it happens, so it can be trained on.

    Each finished episode is appended to labels.csv and fsynced; the episode in progress is rewritten atomically to
    labels.partial.csv. A SIGKILL therefore loses at most the last update period (one chunk_s) of ground truth.
    """

    def __init__(self, path: Path, world: Any, start_ns: int, heads: list[str]):
        self.path, self.world, self.start_ns, self.heads = path, world, start_ns, heads
        self.done_ns = start_ns  # labels.csv covers [start_ns, done_ns)
        self.f = open(path / "labels.csv", "w", newline="")  # noqa: SIM115 - appended to for the whole recording
        self._append([])

    def update(self, now_ns: int) -> None:
        rows = self.world.timeline(self.done_ns, now_ns)
        self._append(rows[:-1])  # every episode but the last has ended
        if rows:
            self._write_partial(rows[-1])

    def close(self, end_ns: int) -> None:
        self._append(self.world.timeline(self.done_ns, end_ns))
        self.f.close()
        (self.path / "labels.partial.csv").unlink(missing_ok=True)

    def _rows(self, rows: list[tuple[int, int, dict[str, str]]]) -> str:
        s = lambda t: f"{(t - self.start_ns) / 1e9:.6f}"  # noqa: E731
        return "".join(",".join([s(t0), s(t1), *(lab[h] for h in self.heads)]) + "\n" for t0, t1, lab in rows)

    def _append(self, rows: list[tuple[int, int, dict[str, str]]]) -> None:
        header = "t0_s,t1_s," + ",".join(self.heads) + "\n" if self.f.tell() == 0 else ""
        if not rows and not header:
            return
        self.f.write(header + self._rows(rows))
        self.f.flush()
        os.fsync(self.f.fileno())
        if rows:
            self.done_ns = rows[-1][1]

    def _write_partial(self, row: tuple[int, int, dict[str, str]]) -> None:
        tmp = self.path / "labels.partial.tmp"
        with open(tmp, "w") as f:
            f.write("t0_s,t1_s," + ",".join(self.heads) + "\n" + self._rows([row]))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path / "labels.partial.csv")


def cli_record(args: argparse.Namespace) -> int:
    """`edgefuse record --config SPEC --out SESSION [--duration S]`: record until the duration or SIGINT/SIGTERM."""
    from edgefuse.spec import load_spec

    spec = load_spec(args.config)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())  # flush and close instead of dying mid-chunk
    end = record(spec, args.out, args.duration, stop)
    total = sum(end["samples"].values())
    print(f"recorded {total} samples from {len(end['samples'])} sources to {args.out} (dropped {end['dropped']})")
    for sid, st in end["sources"].items():
        print(f"  {sid}: {end['samples'].get(sid, 0)} samples, {st}")
    return 0
