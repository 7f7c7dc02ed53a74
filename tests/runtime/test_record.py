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
    # a flipped byte inside an earlier chunk: reading stops there and says where
    bad = bytearray(data)
    bad[40] ^= 0xFF
    f.write_bytes(bytes(bad))
    got = list(r.iter_source("camera"))
    assert got == [] or len(got) < 20
    assert r.reports["camera"].error and "byte" in r.reports["camera"].error
    f.write_bytes(b"JUNK" * 10)
    assert list(r.iter_source("camera")) == [] and "bad magic" in r.reports["camera"].error


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
