"""`edgefuse run`, `replay` and `listen` end to end: real synthetic sources, a real exported bundle, real sockets,
SIGTERM to a subprocess, and the listener's decoder fed garbage."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import yaml
import zmq

from edgefuse.cli import main
from edgefuse.runtime.listen import Listener
from edgefuse.wire import encode, result_payload

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")


def config_with(tmp_path, name: str, endpoint: str, **runtime) -> str:
    data = yaml.safe_load(Path(CONFIGS, name).read_text())
    data["runtime"].update(runtime)
    data["runtime"]["publish"] = {"endpoint": endpoint, "monitor_hz": 2.0}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def home_bundle(tmp_path_factory):
    """The smart_home model (untrained weights) exported by edgefuse.deploy.export: a real bundle."""
    torch = pytest.importorskip("torch")
    from edgefuse.deploy.export import export_bundle
    from edgefuse.spec import load_spec
    from edgefuse.trainer.checkpoint import save_run
    from edgefuse.trainer.models import build_model

    root = tmp_path_factory.mktemp("home")
    spec = load_spec(os.path.join(CONFIGS, "smart_home.yaml"))
    torch.manual_seed(0)
    save_run(root / "run", spec, build_model(spec).eval(), {}, {}, data_dir=root, n_samples=0, masked=[])
    export_bundle(root / "run", root / "bundle", parity_samples=2)
    return root / "bundle"


def test_run_until_sigterm_with_a_live_listener(tmp_path, home_bundle, free_endpoint):
    endpoint = free_endpoint()
    cfg = config_with(tmp_path, "smart_home.yaml", endpoint, tick_hz=5)
    summary_path = tmp_path / "run.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run = subprocess.Popen(
        [sys.executable, "-m", "edgefuse.cli", "run", "--config", cfg, "--bundle", str(home_bundle),
         "--summary", str(summary_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    listen = subprocess.run(
        [sys.executable, "-m", "edgefuse.cli", "listen", "--endpoint", endpoint, "--count", "4", "--json"],
        capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip
    time.sleep(0.5)
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=20)
    assert run.returncode == 0, err
    lines = [json.loads(x) for x in listen.stdout.splitlines()]
    assert listen.returncode == 0 and len(lines) == 4
    assert all(x["header"]["type"] == "result" and set(x["payload"]["mask"]) == {"camera", "mic", "env"} for x in lines)
    assert "4 message(s), 0 malformed" in listen.stderr
    summary = json.loads(summary_path.read_text())
    assert summary["ticks"] >= 4 and summary["published"] == summary["ticks"] and summary["errors"] == []
    assert set(summary["sources"]) == {"camera", "mic", "env"} and summary["sources"]["env"]["samples"] > 0
    assert summary["backend"]["name"] == "onnxruntime" and "end-to-end" in out
    # the start-up line says what runs: auto found no TensorRT engine here and took ONNX Runtime on the CPU
    assert out.splitlines()[0] == (
        "edgefuse: model: onnxruntime fp32 on CPUExecutionProvider: model.onnx "
        "(auto: no fp32 TensorRT engine fits this host)"
    )
    assert summary["backend"]["reason"] == "auto: no fp32 TensorRT engine fits this host"


def test_replaying_a_session_twice_gives_identical_results(tmp_path, home_bundle, free_endpoint):
    from edgefuse.runtime.record import record
    from edgefuse.spec import load_spec

    cfg = config_with(tmp_path, "smart_home.yaml", free_endpoint(), tick_hz=4)
    record(load_spec(cfg), tmp_path / "session", duration_s=3.5)
    results = []
    for i in range(2):
        path = tmp_path / f"results{i}.jsonl"
        rc = main(["replay", "--session", str(tmp_path / "session"), "--bundle", str(home_bundle), "--config", cfg,
                   "--fast", "--results", str(path), "--summary", str(tmp_path / f"replay{i}.json")])  # fmt: skip
        assert rc == 0
        results.append([{k: v for k, v in json.loads(x).items() if k != "latency_ms"} for x in path.open()])
    assert len(results[0]) >= 8 and results[0] == results[1]
    # env needs 60 % of its 4 s window: present once 2.4 s are recorded
    assert {"camera": True, "mic": True, "env": True} in [r["mask"] for r in results[0]]
    summary = json.loads((tmp_path / "replay0.json").read_text())
    assert summary["ticks"] == len(results[0]) and summary["session"]["complete"]


def test_a_config_that_does_not_fit_the_bundle_is_a_clear_error(tmp_path, home_bundle, capsys, free_endpoint):
    cfg = config_with(tmp_path, "driving.yaml", free_endpoint())
    assert main(["run", "--config", cfg, "--bundle", str(home_bundle), "--duration", "1"]) == 1
    err = capsys.readouterr().err
    assert "does not match the bundle" in err and "front_cam" in err


def test_listen_decoder_survives_fuzzed_garbage():
    out, err = io.StringIO(), io.StringIO()
    listener = Listener(out, err, json_lines=False)
    good = encode(
        "result",
        "result",
        0,
        1,
        "",
        result_payload(5, {"a": 1}, {"a": True}, {"h": {"x": 0.6, "y": 0.4}}, {"e2e": 2.0}),
    )
    rng = np.random.default_rng(7)
    n_bad = 0
    for i in range(500):
        frames = [bytes(f) for f in good]
        k = int(rng.integers(0, 3))
        if i % 3 == 0:
            frames[k] = rng.bytes(int(rng.integers(0, 64)))  # garbage
        elif i % 3 == 1:
            frames[k] = frames[k][: int(rng.integers(0, len(frames[k])))]  # truncated
        else:
            frames[2] = msgpack.packb({"pad": "x" * (2 << 20)})  # oversized
        n_bad += listener.handle(frames) is None
    assert listener.malformed == n_bad and n_bad >= 450
    assert err.getvalue().count("warning: malformed message") == n_bad
    assert listener.handle(good) is not None and "h=x (0.60)" in out.getvalue()


def test_listen_on_a_real_socket_prints_results_and_counts_malformed():
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt_string(zmq.SUBSCRIBE, "")
    sub.connect(f"tcp://127.0.0.1:{port}")
    time.sleep(0.3)
    out, err = io.StringIO(), io.StringIO()
    listener = Listener(out, err, json_lines=True)
    payload = result_payload(5, {"a": 1}, {"a": True}, {"h": {"x": 0.6, "y": 0.4}}, {"e2e": 2.0})
    pub.send_multipart([b"result", b"\x93garbage", b""])
    for seq in range(3):
        pub.send_multipart(encode("result", "result/g0", seq, 1, "g0", payload))
    listener.run(sub, count=3)
    sub.close()
    pub.close()
    ctx.term()
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [x["header"]["seq"] for x in lines] == [0, 1, 2] and lines[0]["payload"]["top"] == {"h": "x"}
    assert listener.malformed == 1 and "header: not a single valid msgpack object" in err.getvalue()


def test_command_line_overrides_are_validated_like_the_yaml():
    import argparse

    from edgefuse.runtime.app import _apply_overrides
    from edgefuse.spec import SpecError, load_spec

    spec = load_spec(Path(CONFIGS, "smart_home.yaml"))
    args = argparse.Namespace(backend="onnxruntime", endpoint="tcp://127.0.0.1:6000", groups=3)
    out = _apply_overrides(spec, args)
    assert (out.runtime.model.backend, out.runtime.publish.endpoint, out.runtime.groups) == (
        "onnxruntime",
        args.endpoint,
        3,
    )
    with pytest.raises(SpecError, match=r"runtime\.groups"):
        _apply_overrides(spec, argparse.Namespace(backend=None, endpoint=None, groups=0))


def test_the_runtime_runs_a_bundle_where_torch_cannot_be_imported(tmp_path, home_bundle, free_endpoint):
    # the edge install has no torch: `edgefuse run` on ONNX Runtime must not import it, directly or through
    # the synthetic sources, the backends or the bundle loader (sys.modules["torch"] = None makes imports fail)
    config = config_with(tmp_path, "smart_home.yaml", free_endpoint())
    summary = tmp_path / "summary.json"
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from edgefuse.cli import main\n"
        f"rc = main(['run', '--config', {config!r}, '--bundle', {str(home_bundle)!r}, '--duration', '2',"
        f" '--summary', {str(summary)!r}, '--backend', 'auto'])\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None], 'torch was imported'\n"
        "sys.exit(rc)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads(summary.read_text())
    assert s["ticks"] >= 3 and s["published"] == s["ticks"]
    assert s["backend"]["name"] == "onnxruntime"


def _run_with_camera(tmp_path, home_bundle, endpoint, camera_source: dict, duration: float):
    data = yaml.safe_load(Path(CONFIGS, "smart_home.yaml").read_text())
    data["runtime"]["publish"] = {"endpoint": endpoint}
    data["modalities"]["camera"]["source"] = camera_source
    cfg = tmp_path / "home.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    summary = tmp_path / "run.json"
    r = subprocess.run(
        [sys.executable, "-m", "edgefuse.cli", "run", "--config", str(cfg), "--bundle", str(home_bundle),
         "--duration", str(duration), "--summary", str(summary)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return json.loads(summary.read_text()), r.stderr, r.stdout


def test_a_missing_camera_is_logged_and_masked_while_the_run_keeps_publishing(tmp_path, home_bundle, free_endpoint):
    missing = str(tmp_path / "no-camera.mp4")
    summary, err, out = _run_with_camera(tmp_path, home_bundle, free_endpoint(), {"type": "camera", "uri": missing}, 3)
    assert summary["ticks"] >= 3 and summary["published"] == summary["ticks"] and summary["errors"] == []
    assert summary["missing"]["camera"] == summary["ticks"]  # masked on every tick, the other modalities not
    assert summary["missing"]["mic"] < summary["ticks"]
    cam = summary["sources"]["camera"]
    assert cam["connected"] is False and cam["problem"] == "no such file" and cam["open_failures"] >= 2
    # the start-up lines say what each source is; the failure names the file
    assert f"source camera: image from camera '{missing}' at 10 Hz (live)" in err
    assert "source mic: audio from synthetic 'default' at 16000 Hz (synthetic)" in err
    assert f"source camera ({missing}): no such file; its modality is masked" in err
    assert "masked      camera (no such file)" in out


def test_a_required_camera_that_cannot_open_stops_the_run_with_one_line(tmp_path, home_bundle, free_endpoint):
    data = yaml.safe_load(Path(CONFIGS, "smart_home.yaml").read_text())
    data["runtime"]["publish"] = {"endpoint": free_endpoint()}
    data["modalities"]["camera"]["source"] = {"type": "camera", "uri": "/nonexistent.mp4", "required": True}
    cfg = tmp_path / "home.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    r = subprocess.run(
        [sys.executable, "-m", "edgefuse.cli", "run", "--config", str(cfg), "--bundle", str(home_bundle),
         "--duration", "5"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "edgefuse run: error: required source camera ('/nonexistent.mp4'): no such file" in r.stderr


def test_summary_says_a_live_camera_was_connected(tmp_path, home_bundle, free_endpoint):
    import cv2

    video = tmp_path / "hall.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 64))
    for i in range(20):
        w.write(np.full((64, 64, 3), 10 * i, np.uint8))
    w.release()
    src = {"type": "camera", "uri": str(video), "loop": True}
    summary, _, out = _run_with_camera(tmp_path, home_bundle, free_endpoint(), src, 1.5)
    assert "masked" not in out
    cam = summary["sources"]["camera"]
    assert cam["connected"] is True and cam["samples"] >= 10 and cam["problem"] is None
    assert summary["missing"]["camera"] <= 1  # present once the first frames are in


def test_run_with_a_device_id_through_a_relay_labels_results_and_metrics(tmp_path, home_bundle, free_endpoint):
    import socket
    import urllib.request

    import zmq
    from prometheus_client.parser import text_string_to_metric_families

    from edgefuse.runtime.relay import Relay
    from edgefuse.wire import decode

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        metrics_port = s.getsockname()[1]
    cfg = config_with(tmp_path, "smart_home.yaml", free_endpoint(), tick_hz=5, metrics_port=metrics_port)
    relay = Relay("tcp://127.0.0.1:*", "tcp://127.0.0.1:*").start()
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.subscribe(b"result/hall-3/")  # this device's results only, by topic
    sub.connect(relay.out_endpoint)
    run = subprocess.Popen(
        [sys.executable, "-m", "edgefuse.cli", "run", "--config", cfg, "--bundle", str(home_bundle),
         "--device-id", "hall-3", "--connect", relay.in_endpoint, "--duration", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        msgs = []
        while len(msgs) < 3 and sub.poll(15_000):
            msgs.append(decode(sub.recv_multipart()))
        assert len(msgs) == 3 and all(m.device == "hall-3" and m.topic == "result/hall-3/" for m in msgs)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
            families = list(text_string_to_metric_families(resp.read().decode()))
        samples = [s for f in families if f.name.startswith("edgefuse_") for s in f.samples]
        assert any(s.name == "edgefuse_ticks_total" and s.value >= 3 for s in samples)
        assert samples and all(s.labels.get("device") == "hall-3" for s in samples)
    finally:
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=20)
        sub.close()
        relay.close()
    assert run.returncode == 0, err
