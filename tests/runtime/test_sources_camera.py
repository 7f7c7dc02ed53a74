"""Camera source on real video files written by OpenCV: pacing, virtual clock, looping, vanish-and-return."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgefuse.runtime.sources import make_sources
from edgefuse.runtime.sources.camera import CameraSource, capture_args
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
    assert capture_args("videotestsrc ! appsink") == ("videotestsrc ! appsink", cv2.CAP_GSTREAMER)
    assert capture_args("rtsp://cam/1") == ("rtsp://cam/1", cv2.CAP_ANY)
    with pytest.raises(SpecError, match=r"modalities.camera.source.uri"):
        make_sources(spec_for(""))
