"""Record raw timestamped streams to a crash-safe session folder, and read it back (docs/recording.md).

    SESSION/session.json          spec, start time, sources (rewritten atomically; "end" is set on a clean close)
    SESSION/streams/<id>.efs      one append-only chunk file per source
    SESSION/labels.csv            optional labels: t0_s,t1_s,<head>... (seconds since the session start)

A chunk file is the 8-byte magic b"EFSESS01" followed by chunks. A chunk is

    b"EFCK" | u32 little-endian body length | u32 CRC-32 of the body | body (msgpack)
    body = {"source": id, "samples": [{"seq", "t_capture_ns", "t_arrival_ns", "rate_hz", "dtype", "shape",
                                       "data": raw bytes (C order; UTF-8 for text), "meta": {...}}, ...]}

The writer thread gathers each source's samples for `chunk_s`, then writes one chunk, flushes and fsyncs it. A
SIGKILL or power loss therefore loses at most the chunk being gathered (and a torn tail, which the reader detects
by length and CRC and skips); every file stays readable.

    edgefuse record --config configs/smart_home.yaml --out sessions/s1 --duration 60
"""

from __future__ import annotations

import argparse
import csv
import heapq
import json
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


def _decode(source: str, r: dict[str, Any]) -> Sample:
    if r["dtype"] == "str":
        data: np.ndarray | str = r["data"].decode("utf-8")
    else:
        # bytearray: a writable copy, so consumers may modify frames in place like live ones
        data = np.frombuffer(bytearray(r["data"]), dtype=np.dtype(r["dtype"])).reshape(r["shape"])
    return Sample(source, r["seq"], r["t_capture_ns"], r["t_arrival_ns"], data, r["rate_hz"], r.get("meta") or {})


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
    """What reading one chunk file found: chunks and samples read, and why it stopped early if it did."""

    def __init__(self) -> None:
        self.chunks = 0
        self.samples = 0
        self.torn_tail = False  # the file ends inside a chunk: a crash while writing; the rest is intact
        self.discarded_bytes = 0
        self.error: str | None = None  # corruption before the tail (bad magic, CRC, msgpack): reading stopped there

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def iter_chunk_file(path: Path, report: StreamReport | None = None) -> Iterator[dict[str, Any]]:
    """Chunk bodies of one stream file, in order; stops cleanly (noting it in `report`) at a torn or bad chunk."""
    report = report if report is not None else StreamReport()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if f.read(len(FILE_MAGIC)) != FILE_MAGIC:
            report.error = "not an edgefuse stream file (bad magic)"
            report.discarded_bytes = size
            return
        while (pos := f.tell()) < size:
            head = f.read(_HEAD.size)
            problem = _check_head(head, size - pos)
            body = b"" if problem else f.read(_HEAD.unpack(head)[1])
            if not problem and zlib.crc32(body) != _HEAD.unpack(head)[2]:
                problem = "torn" if pos + _HEAD.size + len(body) == size else f"CRC mismatch in chunk at byte {pos}"
            if not problem:
                try:
                    chunk = msgpack.unpackb(body, raw=False)
                    _check_body(chunk)
                except (ValueError, TypeError, KeyError, msgpack.UnpackException) as err:
                    problem = f"undecodable chunk at byte {pos}: {err}"
            if problem:
                report.torn_tail = problem == "torn"
                report.error = None if report.torn_tail else problem
                report.discarded_bytes = size - pos
                return
            report.chunks += 1
            report.samples += len(chunk["samples"])
            yield chunk


def _check_head(head: bytes, left: int) -> str | None:
    if len(head) < _HEAD.size:
        return "torn"
    magic, length, _ = _HEAD.unpack(head)
    if magic != CHUNK_MAGIC or length > MAX_CHUNK_BYTES:
        return "torn" if left <= _HEAD.size else f"bad chunk header ({magic!r}, {length} bytes)"
    if _HEAD.size + length > left:
        return "torn"
    return None


def _check_body(chunk: Any) -> None:
    if not isinstance(chunk, dict) or not isinstance(chunk.get("samples"), list):
        raise ValueError("chunk body is not {'source', 'samples': [...]}")


class SessionReader:
    """A recorded session: its spec, sources, samples (per source or merged in capture order) and labels."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_path = self.path / "session.json"
        try:
            self.meta = json.loads(meta_path.read_text())
        except OSError as err:
            raise DataError(meta_path, f"cannot read session metadata: {err.strerror or err}") from None
        except json.JSONDecodeError as err:
            raise DataError(meta_path, f"not valid JSON: {err}") from None
        if not isinstance(self.meta, dict) or self.meta.get("format") != FORMAT:
            raise DataError(meta_path, f"not an edgefuse session (format != {FORMAT!r})")
        if self.meta.get("version") != VERSION:
            raise DataError(meta_path, f"session version {self.meta.get('version')} is not supported ({VERSION})")
        if not isinstance(self.meta.get("sources"), dict):
            raise DataError(meta_path, "'sources' must be a mapping of source id -> stream info")
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
        """One source's samples in recorded order."""
        if source_id not in self.sources:
            raise DataError(self.path, f"no source {source_id!r} in session (has {sorted(self.sources)})")
        report = self.reports[source_id] = StreamReport()
        path = self.path / self.sources[source_id]["file"]
        if not path.exists():
            report.error = f"stream file {path.name} is missing"
            return
        for chunk in iter_chunk_file(path, report):
            for r in chunk["samples"]:
                yield _decode(source_id, r)

    def __iter__(self) -> Iterator[Sample]:
        """All samples, merged across sources in capture-time order."""
        its = [self.iter_source(sid) for sid in self.sources]
        return heapq.merge(*its, key=lambda s: s.t_capture_ns)

    def check(self) -> dict[str, dict[str, Any]]:
        """Read every stream file to its end; per-source report (chunks, samples, torn_tail, error)."""
        for sid in self.sources:
            for _ in self.iter_source(sid):
                pass
        return {sid: r.as_dict() for sid, r in self.reports.items()}

    def labels(self) -> list[tuple[float, float, dict[str, str]]] | None:
        """The session's labels.csv, or None when it has none."""
        p = self.path / "labels.csv"
        return read_labels(p) if p.exists() else None


# ---------------------------------------------------------------------------------------------------------------------
# Labels beside a session


def read_labels(
    path: str | Path, heads: dict[str, list[str]] | None = None
) -> list[tuple[float, float, dict[str, str]]]:
    """A label CSV (t0_s,t1_s,<head>...; seconds since the session start) -> [(t0_s, t1_s, {head: class})].

    With `heads` (the spec's labels), every head must be a column and every value one of its classes.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise DataError(path, f"cannot read label file: {err.strerror or err}") from None
    rows = list(csv.reader(text.splitlines()))
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
        if not t1 > t0 >= 0:
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
    threads = [threading.Thread(target=_pump, args=(s, writer, stop), name=f"rec-{sid}") for sid, s in sources.items()]
    for t in threads:
        t.start()
    stop.wait(duration_s)
    stop.set()
    for t in threads:
        t.join()
    end = writer.close()
    _write_synthetic_labels(sources, writer)
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


def _write_synthetic_labels(sources: dict[str, Any], writer: SessionWriter) -> None:
    """Synthetic sources know the truth: write it beside the session so it can be trained on."""
    world = next((s.world for s in sources.values() if getattr(s, "world", None) is not None), None)
    if world is None:
        return
    end_ns = writer._meta["end"]["end_ns"]
    rows = [
        ((t0 - writer.start_ns) / 1e9, (t1 - writer.start_ns) / 1e9, labels)
        for t0, t1, labels in world.timeline(writer.start_ns, end_ns)
    ]
    write_labels(writer.path / "labels.csv", rows, list(writer.spec.labels))


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
