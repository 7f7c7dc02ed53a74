"""Camera source on real video files written by OpenCV: pacing, virtual clock, looping, vanish-and-return."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgefuse.runtime.sources import make_sources
from edgefuse.runtime.sources.camera import CameraSource, capture_args, opencv_facts, uri_kind
from edgefuse.spec import SpecError, parse_spec

N_FRAMES = 8


def write_video(path: Path, fps: float = 50.0, n: int = N_FRAMES) -> Path:
    """Frame i is uniformly gray level 20 * (i + 1), so a test can tell frames apart after MJPG coding."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (32, 24))
    assert w.isOpened()
    for i in range(n):
        w.write(np.full((24, 32, 3), 20 * (i + 1), np.uint8))
    w.release()
    return path


def spec_for(uri: str, **source):
    return parse_spec(
        {
            "name": "t",
            "modalities": {
                "camera": {
                    "kind": "image",
                    "rate_hz": 10,
                    "shape": [24, 32],
                    "channels": 3,
                    "source": {"type": "camera", "uri": uri, "reconnect_s": 0.05, "reconnect_max_s": 0.2, **source},
                }
            },
            "labels": {"event": ["a", "b"]},
            "model": {"encoders": {"camera": {"type": "dwcnn"}}},
        }
    )


def levels(samples) -> list[int]:
    return [round(float(s.data.mean()) / 20) for s in samples]


def read_for(src: CameraSource, seconds: float) -> list:
    out: list = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out += src.read(0.02)
    return out


def test_file_is_paced_at_its_fps_in_realtime(tmp_path):
    src = make_sources(spec_for(str(write_video(tmp_path / "v.avi", fps=25))))["camera"]
    src.open()
    got: list = []
    while len(got) < N_FRAMES:
        got += src.read(0.05)
    src.close()
    assert levels(got) == list(range(1, N_FRAMES + 1))
    assert got[0].data.shape == (24, 32, 3) and got[0].data.dtype == np.uint8
    # 25 fps: frames sit on a 40 ms grid. Anchored at its earliest frame, no frame is more than 150 ms off it
    # (unpaced, the 8 frames would spread 280 ms off the grid); a late frame is followed by a catch-up
    t_ms = np.array([s.t_capture_ns for s in got]) / 1e6 - np.arange(N_FRAMES) * 40.0
    assert np.ptp(t_ms) < 150 and np.median(np.abs(t_ms - t_ms.min())) < 20
    assert all(s.t_arrival_ns >= s.t_capture_ns for s in got)
    assert [s.seq for s in got] == list(range(N_FRAMES)) and src.stats()["fps"] == pytest.approx(25.0)


def test_virtual_clock_and_loop(tmp_path):
    src = make_sources(spec_for(str(write_video(tmp_path / "v.avi", fps=25)), loop=True), realtime=False)["camera"]
    src.open()
    t0 = src.now_ns()
    got = src.read(1.0)  # one virtual second: 25 frames + the one at t = 1 s, across three passes of the file
    src.close()
    assert len(got) == 26 and src.stats()["loops"] == 3
    assert levels(got)[:10] == [1, 2, 3, 4, 5, 6, 7, 8, 1, 2]
    np.testing.assert_array_equal(np.diff([s.t_capture_ns for s in got]), 40_000_000)  # exactly 1/25 s apart
    assert got[0].t_capture_ns == t0 and src.now_ns() == t0 + 1_000_000_000


def test_camera_that_vanishes_and_returns_reconnects_and_resumes(tmp_path):
    path = write_video(tmp_path / "cam.avi", fps=100)
    src = make_sources(spec_for(str(path)))["camera"]
    src.open()
    first: list = []
    while len(first) < N_FRAMES:
        first += src.read(0.05)
    assert levels(first) == list(range(1, N_FRAMES + 1))
    path.rename(tmp_path / "away.avi")  # the camera vanishes: reopening fails and backs off
    gone = read_for(src, 0.5)
    st = src.stats()
    assert gone == [] and st["open_failures"] >= 2 and st["connected"] is False
    (tmp_path / "away.avi").rename(path)  # it comes back
    back = read_for(src, 0.6)
    src.close()
    st = src.stats()
    assert st["reconnects"] >= 1 and st["disconnects"] >= 2
    assert levels(back)[:N_FRAMES] == list(range(1, N_FRAMES + 1))  # reading resumed from the first frame
    seqs = [s.seq for s in first + back]
    assert seqs == list(range(len(seqs)))  # one sequence across reconnects


def test_missing_device_never_raises(tmp_path):
    src = make_sources(spec_for(str(tmp_path / "nothing.avi")))["camera"]
    src.open()
    assert read_for(src, 0.2) == [] and src.stats()["open_failures"] >= 2
    src.close()


def test_uri_kinds_and_config_error():
    assert capture_args("0") == (0, cv2.CAP_ANY)
    assert capture_args("/dev/video0") == ("/dev/video0", cv2.CAP_V4L2)
    assert uri_kind("/dev/video0") == "device" and uri_kind("clip.mp4") == "file"
    assert uri_kind("http://h/x.mjpg") == "stream" and uri_kind("a ! appsink") == "pipeline"
    assert capture_args("videotestsrc ! appsink") == ("videotestsrc ! appsink", cv2.CAP_GSTREAMER)
    assert capture_args("rtsp://cam/1") == ("rtsp://cam/1", cv2.CAP_ANY)
    with pytest.raises(SpecError, match=r"modalities.camera.source.uri"):
        make_sources(spec_for(""))


def test_v4l2_device_path_is_a_device_not_a_paced_file(tmp_path, caplog):
    src = make_sources(spec_for("/dev/video9", fourcc="MJPG", capture_size=[640, 480]))["camera"]
    assert not src.is_file and src.realtime  # before: /dev/video0 was taken for a file and paced at its fps
    with caplog.at_level("WARNING"):
        src.open()  # no camera here: masked, logged with its path, retried
        assert read_for(src, 0.15) == []
    assert src.stats()["connected"] is False and "cannot open" in src.problem
    assert "/dev/video9" in caplog.text


def test_missing_file_is_logged_once_with_its_path(tmp_path, caplog):
    src = make_sources(spec_for(str(tmp_path / "nothing.avi")))["camera"]
    with caplog.at_level("WARNING"):
        src.open()
        read_for(src, 0.4)
    assert src.counters["open_failures"] >= 3 and src.problem == "no such file"
    lines = [r.getMessage() for r in caplog.records if "nothing.avi" in r.getMessage()]
    assert len(lines) == 2  # the masking error once and one retry warning; the rest are held back (Throttle)


def test_gstreamer_pipeline_without_gstreamer_says_so():
    if opencv_facts(cv2)["gstreamer"]:
        pytest.skip("this OpenCV has GStreamer")
    src = make_sources(spec_for("videotestsrc ! videoconvert ! appsink"))["camera"]
    src.open()
    assert "built without GStreamer" in src.problem and src.stats()["connected"] is False
    assert src.backoff.next_try - time.monotonic() > 0.1  # retried rarely: reconnect_max_s, not reconnect_s
    src.spec.source.required = True
    with pytest.raises(Exception, match="required source camera.*GStreamer"):
        src._connect()


def serve_mjpeg(paced: bool) -> tuple[subprocess.Popen, str]:
    """ffmpeg serving a 10 fps test pattern as HTTP multipart JPEG on a free loopback port (one client)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (scripts/install-system-deps.sh installs it)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/cam.mjpg"
    args = ["ffmpeg", "-loglevel", "error", *(["-re"] if paced else []), "-f", "lavfi"]
    args += ["-i", "testsrc=size=64x48:rate=10", "-c:v", "mjpeg", "-f", "mpjpeg", "-listen", "1", url]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), url


def test_http_mjpeg_stream_served_by_ffmpeg():
    proc, url = serve_mjpeg(paced=True)
    try:
        src = make_sources(spec_for(url))["camera"]
        assert src.uri_kind == "stream" and src.realtime
        src.open()  # ffmpeg may not listen yet: the source retries
        got = read_for(src, 2.5)
        src.close()
    finally:
        proc.kill()
        proc.wait()
    assert got and got[-1].data.shape == (48, 64, 3) and got[-1].data.dtype == np.uint8
    t = np.array([s.t_capture_ns for s in got]) / 1e9
    span = t[-1] - t[0]
    assert span > 1.0 and (len(got) - 1) / span == pytest.approx(10, rel=0.3)  # the stream's own 10 fps
    assert src.stats()["unpaced"] == 0 and src.problem is None


def test_unpaced_stream_is_flagged_and_masked(caplog):
    proc, url = serve_mjpeg(paced=False)  # no -re: frames as fast as ffmpeg encodes them
    try:
        src = make_sources(spec_for(url))["camera"]
        with caplog.at_level("WARNING"):
            src.open()
            before: list = []
            deadline = time.monotonic() + 3.0
            while src.counters["unpaced"] == 0 and time.monotonic() < deadline:
                before += src.read(0.02)
            after = read_for(src, 0.4)  # flagged: nothing more, though ffmpeg keeps sending
        src.close()
    finally:
        proc.kill()
        proc.wait()
    st = src.stats()
    assert before and after == [] and st["unpaced"] == 1 and st["pace_ratio"] > 4.8
    assert "not paced" in src.problem and "masked" in caplog.text


def test_no_opencv_masks_the_camera_and_names_the_extra(monkeypatch):
    # the core install has no OpenCV (pip's is the `opencv` extra; JetPack's is a system package)
    import importlib.abc
    import sys

    class NoOpenCV(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "cv2":
                raise ModuleNotFoundError("No module named 'cv2'")
            return None

    monkeypatch.delitem(sys.modules, "cv2")
    monkeypatch.setattr(sys, "meta_path", [NoOpenCV(), *sys.meta_path])
    src = make_sources(spec_for("/dev/video0"))["camera"]
    src.open()
    assert src.read(0.01) == [] and src.stats()["connected"] is False
    assert "pip install 'edgefuse[opencv]'" in src.problem
