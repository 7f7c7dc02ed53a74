"""`edgefuse doctor` as a user runs it (a subprocess), on this host's real PortAudio, OpenCV and ONNX Runtime, with a
private PulseAudio microphone and a ZeroMQ sensor publishing on the wrong topic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import yaml

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgefuse.cli", "doctor", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_json_report_of_this_host():
    r = doctor("--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["opencv"]["version"] == cv2.__version__ and rep["opencv"]["path"] == cv2.__file__
    assert rep["opencv"]["ffmpeg"] is True  # pip's wheel has FFmpeg...
    assert "CPUExecutionProvider" in rep["packages"]["onnxruntime"]["providers"]
    assert isinstance(rep["cameras"], list) and isinstance(rep["gpu"]["gpus"], list)
    assert "config" not in rep


def test_audio_inputs_with_their_rates(tmp_path):
    from _virtual_mic import VirtualMic

    with VirtualMic(tmp_path) as mic:
        r = doctor("--json", env=mic.env)
    assert r.returncode == 0, r.stderr
    audio = json.loads(r.stdout)["audio"]
    assert audio["portaudio"].startswith("PortAudio V19")
    mic48 = next(d for d in audio["inputs"] if d["name"] == "mic48")
    assert mic48["hostapi"] == "ALSA" and mic48["channels"] >= 2 and {16000, 48000} <= set(mic48["rates"])


def test_config_check_names_what_is_missing_and_the_fix(tmp_path, free_endpoint):
    endpoint = free_endpoint()
    data = yaml.safe_load((CONFIGS / "jetson_usb.yaml").read_text())
    data["modalities"]["camera"]["source"] = {"type": "camera", "uri": "videotestsrc ! videoconvert ! appsink"}
    data["modalities"]["mic"]["source"]["uri"] = "no-such-mic"
    data["modalities"]["env"]["source"]["uri"] = endpoint
    cfg = tmp_path / "box.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    (tmp_path / ".asoundrc").write_text("pcm.!default { type null }\n")
    pub = subprocess.Popen(
        [sys.executable, "examples/sensor_publisher.py", "--endpoint", endpoint, "--topic", "home/env",
         "--rate", "50"],
    )  # fmt: skip
    try:
        time.sleep(0.3)
        r = doctor("--json", "--config", str(cfg), env={"HOME": str(tmp_path)})
        text = doctor("--config", str(cfg), env={"HOME": str(tmp_path)})
    finally:
        pub.kill()
        pub.wait()
    assert r.returncode == 1 and text.returncode == 1
    mods = json.loads(r.stdout)["config"]["modalities"]
    cam, mic, env = (mods[m]["problems"] for m in ("camera", "mic", "env"))
    assert not mods["camera"]["ok"] and "no GStreamer" in cam[0]["problem"] and "JetPack" in cam[0]["fix"]
    assert "no-such-mic" in mic[0]["problem"] and "source.uri" in mic[0]["fix"]
    # a wrong topic used to be silent: the doctor says which topics do arrive
    assert "['home/env']" in env[0]["problem"] and "none starting with 'env'" in env[0]["problem"]
    assert "camera     camera     MISSING" in text.stdout and "fix: set source.topic" in text.stdout
