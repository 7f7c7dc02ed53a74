"""Record/replay: the chunk format round trip, torn and corrupt files, labels, SIGKILL/SIGTERM while recording."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgefuse.errors import DataError
from edgefuse.runtime.clock import Sample, monotonic_ns
from edgefuse.runtime.record import SessionReader, SessionWriter, read_labels, write_labels
from edgefuse.runtime.sources.replay import make_replay_sources
from edgefuse.spec import load_spec

CONFIG = "configs/smart_home.yaml"


def fake_samples(t0: int) -> list[Sample]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(20):
        t = t0 + i * 50_000_000
        out.append(Sample("camera", i, t, t + 4_000_000, rng.integers(0, 255, (8, 6, 3), dtype=np.uint8)))
        out.append(Sample("mic", i, t + 1, t + 70_000_000, rng.standard_normal((64, 1)).astype(np.float32), 16000.0))
        out.append(Sample("env", i, t + 2, t + 3_000_000, rng.standard_normal((1, 6)).astype(np.float32), 0.0,
                          {"labels": {"event": "idle"}, "t_true_ns": np.int64(t)}))  # fmt: skip
    return out


def write_session(path: Path, samples: list[Sample], chunk_s: float = 0.5) -> SessionWriter:
    w = SessionWriter(path, load_spec(CONFIG), chunk_s=chunk_s).open()
    for s in samples:
        w.write(s)
    w.close()
    return w


def test_round_trip_all_kinds_in_capture_order(tmp_path):
    samples = fake_samples(monotonic_ns())
    samples.append(Sample("transcript", 0, samples[5].t_capture_ns + 3, 0, "hello there"))
    end = write_session(tmp_path / "s", samples).close()
    r = SessionReader(tmp_path / "s")
    back = list(r)
    assert r.complete and end["clean"] and end["samples"]["camera"] == 20 and end["samples"]["transcript"] == 1
    assert [s.t_capture_ns for s in back] == sorted(s.t_capture_ns for s in samples)
    by_key = {(s.source, s.seq): s for s in samples}
    for s in back:
        o = by_key[(s.source, s.seq)]
        assert (s.t_capture_ns, s.t_arrival_ns, s.rate_hz) == (o.t_capture_ns, o.t_arrival_ns, o.rate_hz)
        if isinstance(o.data, str):
            assert s.data == o.data
        else:
            assert s.data.dtype == o.data.dtype and s.data.flags.writeable
            np.testing.assert_array_equal(s.data, o.data)
    env = next(s for s in back if s.source == "env")
    assert env.meta == {"labels": {"event": "idle"}, "t_true_ns": int(samples[2].meta["t_true_ns"])}
    assert r.spec.name == "smart_home"
    assert all(rep["torn_tail"] is False and rep["error"] is None for rep in r.check().values())


def test_torn_tail_and_corruption_stop_cleanly(tmp_path):
    write_session(tmp_path / "s", fake_samples(0), chunk_s=0.0)  # one chunk per sample: many chunks
    f = tmp_path / "s" / "streams" / "camera.efs"
    data = f.read_bytes()
    f.write_bytes(data[:-10])  # a crash in the middle of the last chunk
    r = SessionReader(tmp_path / "s")
    got = list(r.iter_source("camera"))
    rep = r.reports["camera"]
    assert rep.torn_tail and rep.error is None and rep.samples == len(got) >= 1
    assert [s.seq for s in got] == list(range(len(got)))
    # a flipped byte inside an earlier chunk: that chunk is skipped and reported, reading goes on after it
    bad = bytearray(data)
    bad[40] ^= 0xFF
    f.write_bytes(bytes(bad))
    got = list(r.iter_source("camera"))
    rep = r.reports["camera"]
    assert [s.seq for s in got] == list(range(1, 20))  # one sample per chunk here: only the first is lost
    assert rep.error is None and len(rep.corrupt) == 1 and rep.corrupt[0]["byte"] == 8
    assert rep.corrupt[0]["after_ns"] is None and rep.corrupt[0]["before_ns"] == got[0].t_capture_ns
    assert "camera.efs: corrupt chunk at byte 8 (CRC mismatch)" in r.problems()[0]
    f.write_bytes(b"JUNK" * 10)
    assert list(r.iter_source("camera")) == [] and "bad magic" in r.reports["camera"].error


def test_one_flipped_bit_anywhere_costs_at_most_its_chunk(tmp_path):
    samples = fake_samples(10**12)
    write_session(tmp_path / "s", [s for s in samples if s.source == "camera"], chunk_s=0.0)
    f = tmp_path / "s" / "streams" / "camera.efs"
    data = f.read_bytes()
    rng = np.random.default_rng(0)
    for bit in rng.integers(8 * 8, 8 * len(data), 40):  # anywhere after the file magic: headers, lengths, bodies
        bad = bytearray(data)
        bad[bit // 8] ^= 1 << int(bit % 8)
        f.write_bytes(bytes(bad))
        r = SessionReader(tmp_path / "s")
        got = list(r.iter_source("camera"))
        rep = r.reports["camera"]
        assert len(got) >= 19 and rep.error is None, (bit, len(got), rep.as_dict())
        if len(got) == 19:
            assert len(rep.corrupt) == 1 or rep.torn_tail


def crafted_chunk(records) -> bytes:
    from edgefuse.runtime.record import pack_chunk

    return pack_chunk("camera", records)


def test_chunks_with_a_valid_crc_but_bad_records_are_skipped_and_reported(tmp_path):
    from edgefuse.runtime.record import FILE_MAGIC, _encode

    good = _encode(Sample("camera", 0, 10, 11, np.zeros((2, 2), np.uint8)))
    bad_records = [
        {**good, "dtype": "|O"},  # would need pickle: "cannot create an OBJECT array"
        {**good, "shape": [7, 7]},  # 4 bytes into 49
        {k: v for k, v in good.items() if k != "seq"},
        7,  # not a map
        {**good, "t_capture_ns": "-9223372036854775808"},  # a str where an int belongs
        {**good, "dtype": "<U4"},
        {**good, "shape": [-1, -4]},
        {**good, "rate_hz": float("nan")},
        {**good, "data": "text"},
        {**good, "dtype": "str", "data": b"\xff\xfe"},
    ]
    write_session(tmp_path / "s", [])
    f = tmp_path / "s" / "streams" / "camera.efs"
    meta = json.loads((tmp_path / "s" / "session.json").read_text())
    meta["sources"] = {"camera": {"file": "streams/camera.efs", "modality": "camera"}}
    (tmp_path / "s" / "session.json").write_text(json.dumps(meta))
    body = FILE_MAGIC + b"".join(crafted_chunk([r]) for r in bad_records)
    f.write_bytes(body + crafted_chunk([{**good, "seq": 1, "t_capture_ns": 20}]))
    r = SessionReader(tmp_path / "s")
    got = list(r)
    assert [s.seq for s in got] == [1]
    rep = r.reports["camera"]
    assert len(rep.corrupt) == len(bad_records) and all("bad record" in c["reason"] for c in rep.corrupt)
    assert len(r.problems()) == len(bad_records) and all("camera.efs" in p for p in r.problems())


def test_crafted_session_json_is_a_data_error_naming_the_file(tmp_path):
    base = {"format": "edgefuse.session", "version": 1, "start_ns": 0, "spec": {}}
    for sources, match in [
        ({"camera": {"file": 5}}, "sources.camera.file"),
        ({"camera": {"file": "../../etc/passwd"}}, "sources.camera.file"),
        ({"camera": {"file": "/etc/passwd"}}, "sources.camera.file"),
        ({"camera": "x"}, "sources.camera.file"),
        ([1], "'sources' must be a mapping"),
    ]:
        (tmp_path / "session.json").write_text(json.dumps({**base, "sources": sources}))
        with pytest.raises(DataError, match=match) as e:
            SessionReader(tmp_path)
        assert "session.json" in str(e.value)
    (tmp_path / "session.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(DataError, match="not valid JSON"):
        SessionReader(tmp_path)
    (tmp_path / "session.json").write_text("[" * 100_000)
    with pytest.raises(DataError, match="session.json"):
        SessionReader(tmp_path)


def test_bad_sessions_and_label_files_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="session.json"):
        SessionReader(tmp_path)
    (tmp_path / "session.json").write_text("{oops")
    with pytest.raises(DataError, match="not valid JSON"):
        SessionReader(tmp_path)
    (tmp_path / "session.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(DataError, match="not an edgefuse session"):
        SessionReader(tmp_path)
    heads = {"event": ["idle", "fall"]}
    p = tmp_path / "labels.csv"
    write_labels(p, [(0.0, 1.5, {"event": "idle"}), (1.5, 3.0, {"event": "fall"})], ["event"])
    assert read_labels(p, heads) == [(0.0, 1.5, {"event": "idle"}), (1.5, 3.0, {"event": "fall"})]
    for text, match in [
        ("start,end,event\n", "line 1: header"),
        ("t0_s,t1_s,event\n0,x,idle\n", "line 2: t0_s and t1_s must be numbers"),
        ("t0_s,t1_s,event\n2,1,idle\n", "line 2: need 0 <= t0_s < t1_s"),
        ("t0_s,t1_s,event\n0,1,dance\n", "line 2: event='dance' is not one of"),
        ("t0_s,t1_s,event\n0,1\n", "line 2: 2 fields"),
        ("t0_s,t1_s,mood\n0,1,ok\n", "no column for label head 'event'"),
    ]:
        p.write_text(text)
        with pytest.raises(DataError, match=match):
            read_labels(p, heads)
    with pytest.raises(DataError, match="already holds a session"):
        write_session(tmp_path / "s", [])
        write_session(tmp_path / "s", [])


def start_recording(out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "edgefuse.cli", "record", "--config", CONFIG, "--out", str(out), "--duration", "30"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    streams = out / "streams"
    # wait until every stream has chunks on disk, then let it record a little longer
    while time.monotonic() < deadline:
        files = list(streams.glob("*.efs")) if streams.exists() else []
        if len(files) == 3 and all(f.stat().st_size > 1024 for f in files):
            time.sleep(1.0)
            return p
        assert p.poll() is None, p.communicate()
        time.sleep(0.05)
    p.kill()
    raise AssertionError("recording never started")


def check_contiguous(r: SessionReader) -> dict[str, list[Sample]]:
    out = {sid: list(r.iter_source(sid)) for sid in r.sources}
    for sid, samples in out.items():
        assert r.reports[sid].error is None, r.reports[sid].error  # at most a torn tail, never corruption
        assert len(samples) > 3 and [s.seq for s in samples] == list(range(len(samples))), sid
    return out


def test_sigkill_while_recording_loses_at_most_the_last_chunk(tmp_path):
    p = start_recording(tmp_path / "s")
    t_kill = monotonic_ns()
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    r = SessionReader(tmp_path / "s")
    assert not r.complete  # no clean end was written
    got = check_contiguous(r)
    for sid, samples in got.items():
        # everything that arrived up to one chunk (0.5 s) + the writer's poll + a read step before the kill is there
        lost_s = (t_kill - samples[-1].t_arrival_ns) / 1e9
        assert lost_s < 1.0, (sid, lost_s)
    # the ground truth was written as it happened: it covers the session up to one chunk period before the kill
    labels = r.labels()
    assert labels and labels[0][0] == 0
    assert (t_kill - r.start_ns) / 1e9 - labels[-1][1] < 1.0
    assert all(b[0] == pytest.approx(a[1], abs=1e-6) for a, b in zip(labels, labels[1:], strict=False))
    s = got["camera"][len(got["camera"]) // 2]
    t_s = (s.meta["t_true_ns"] - r.start_ns) / 1e9
    assert next(lab for a, b, lab in labels if a <= t_s < b) == s.meta["labels"]


def test_sigterm_closes_cleanly_with_labels_and_replays_deterministically(tmp_path):
    p = start_recording(tmp_path / "s")
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    assert "recorded" in out
    r = SessionReader(tmp_path / "s")
    got = check_contiguous(r)
    assert r.complete and r.meta["end"]["clean"]
    assert {sid: len(s) for sid, s in got.items()} == r.meta["end"]["samples"]
    assert not any(rep.torn_tail for rep in r.reports.values())
    labels = read_labels(tmp_path / "s" / "labels.csv", r.spec.labels)
    span_s = (r.meta["end"]["end_ns"] - r.start_ns) / 1e9
    assert labels[0][0] == 0 and labels[-1][1] == pytest.approx(span_s, abs=1e-3)
    # the synthetic ground truth recorded per sample agrees with the label file
    s = got["camera"][len(got["camera"]) // 2]
    t_s = (s.meta["t_true_ns"] - r.start_ns) / 1e9
    assert next(lab for a, b, lab in labels if a <= t_s < b) == s.meta["labels"]

    # replay, fast: exactly the recorded samples and timestamps, twice the same
    def replay_all():
        srcs = make_replay_sources(tmp_path / "s", realtime=False)
        res = {sid: [] for sid in srcs}
        for src in srcs.values():
            src.open()
        for _ in range(200):
            for sid, src in srcs.items():
                res[sid] += src.read(0.05)
        assert all(src.stats()["exhausted"] for src in srcs.values())
        return res

    a, b = replay_all(), replay_all()
    for sid in got:
        assert (
            [x.t_capture_ns for x in a[sid]] == [x.t_capture_ns for x in got[sid]] == [x.t_capture_ns for x in b[sid]]
        )
        np.testing.assert_array_equal(a[sid][-1].data, got[sid][-1].data)

    # replay, realtime: paced, timestamps shifted onto today's clock with the recorded spacing
    cam = make_replay_sources(tmp_path / "s", realtime=True)["camera"]
    cam.open()
    live = []
    t_end = time.monotonic() + 0.35
    while time.monotonic() < t_end:
        for x in cam.read(0.05):
            assert x.t_arrival_ns <= monotonic_ns() < x.t_arrival_ns + 250_000_000  # never early; late on a busy host
            live.append(x)
    rec = got["camera"][: len(live)]
    assert 2 <= len(live) <= 5  # 10 fps for 0.35 s
    assert np.diff([x.t_capture_ns for x in live]).tolist() == np.diff([x.t_capture_ns for x in rec]).tolist()
    assert [x.meta["t_recorded_ns"] for x in live] == [x.t_capture_ns for x in rec]


@pytest.mark.skipif(os.name != "posix", reason="signals")
def test_cli_record_refuses_an_existing_session(tmp_path):
    (tmp_path / "session.json").write_text("{}")
    r = subprocess.run(
        [sys.executable, "-m", "edgefuse.cli", "record", "--config", CONFIG, "--out", str(tmp_path), "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and "already holds a session" in r.stderr
