"""End-to-end fuzz: a live `edgefuse run` (a subprocess, real sockets, a real bundle) whose ZeroMQ sensor receives
hostile traffic between its valid readings. The run must not exit early, every bad message must be counted, and the
sensor's valid data must keep reaching the fused results."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import yaml
import zmq

CONFIGS = Path(__file__).parents[2] / "configs"
CHANNELS = ["motion", "door", "temperature", "humidity", "light", "smoke"]


def hostile_catalogue(rng: np.random.Generator) -> list[bytes]:
    """One of each kind of message that once stopped the runtime (issue 11), plus garbage and near-misses."""
    ok = {"v": 1, "source": "evil", "seq": 0, "t_sensor_ns": time.time_ns(), "channels": CHANNELS}
    row = [0.0] * 6
    return [
        b'{"v":1,"source":"evil","seq":0,"t_sensor_ns":1,"values":[' + b"9" * 400 + b",0,0,0,0,0]}",
        msgpack.packb({**ok, "values": [row, row], "rate_hz": 1e-300}),
        b"{" + b"[" * 5000,
        b'{"a":' + b"[" * 3000 + b"]" * 3000 + b"}",
        b"\x91" * 5000 + b"\x01",
        msgpack.packb({**ok, "values": row, "t_sensor_ns": -(2**63)}),
        msgpack.packb({**ok, "values": row, "rate_hz": 9.9e6}),
        json.dumps({**ok, "seq": 10**30, "values": row}).encode(),
        msgpack.packb({**ok, "values": [1e300] * 6}),
        msgpack.packb({**ok, "values": [[0] * 6] * 50_000}),  # 300 KB of rows: over the row cap
        msgpack.packb({**ok, "source": f"junk-{rng.integers(1 << 30)}", "values": row}),  # a new name each time
        rng.bytes(int(rng.integers(1, 300))),
        b"\x00" * (5 << 20),  # above ZMQ_MAXMSGSIZE: libzmq drops the connection
    ]


@pytest.fixture(scope="module")
def home_bundle(tmp_path_factory):
    """The smart_home model (untrained weights) exported to a real bundle."""
    torch = pytest.importorskip("torch")
    from edgefuse.deploy.export import export_bundle
    from edgefuse.spec import load_spec
    from edgefuse.trainer.checkpoint import save_run
    from edgefuse.trainer.models import build_model

    root = tmp_path_factory.mktemp("home")
    spec = load_spec(CONFIGS / "smart_home.yaml")
    torch.manual_seed(0)
    save_run(root / "run", spec, build_model(spec).eval(), {}, {}, data_dir=root, n_samples=0, masked=[])
    export_bundle(root / "run", root / "bundle", parity_samples=2)
    return root / "bundle"


def test_a_live_run_keeps_valid_data_flowing_through_hostile_sensor_traffic(tmp_path, home_bundle, free_endpoint):
    ctx = zmq.Context.instance()
    sensor = ctx.socket(zmq.PUB)
    sensor.setsockopt(zmq.LINGER, 0)
    sensor.setsockopt(zmq.SNDHWM, 100_000)
    port = sensor.bind_to_random_port("tcp://127.0.0.1")
    endpoint = free_endpoint()
    data = yaml.safe_load((CONFIGS / "smart_home.yaml").read_text())
    data["modalities"]["env"]["source"] = {"type": "zmq", "uri": f"tcp://127.0.0.1:{port}", "topic": "env"}
    data["runtime"].update(tick_hz=5, publish={"endpoint": endpoint, "monitor_hz": 0})
    cfg = tmp_path / "home.yaml"
    cfg.write_text(yaml.safe_dump(data))
    results = ctx.socket(zmq.SUB)
    results.setsockopt(zmq.LINGER, 0)
    results.setsockopt_string(zmq.SUBSCRIBE, "result")
    results.connect(endpoint)
    duration = 9.0
    run = subprocess.Popen(
        [sys.executable, "-m", "edgefuse.cli", "run", "--config", str(cfg), "--bundle", str(home_bundle),
         "--duration", str(duration), "--summary", str(tmp_path / "run.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    masks, sent_bad, seq = [], 0, 0
    t_end = time.monotonic() + duration + 30  # the run's own startup (bundle load) comes first
    try:
        while run.poll() is None and time.monotonic() < t_end:
            valid = {"v": 1, "source": "hall-env", "seq": seq, "t_sensor_ns": time.time_ns(), "channels": CHANNELS}
            sensor.send_multipart([b"env", msgpack.packb({**valid, "values": [0, 0, 21.0, 40.0, 300.0, 0]})])
            seq += 1
            for payload in hostile_catalogue(rng):
                sensor.send_multipart([b"env", payload])
                sent_bad += 1
            sensor.send_multipart([b"env"])  # one frame
            sent_bad += 1
            while results.poll(0):
                frames = results.recv_multipart()
                masks.append(msgpack.unpackb(frames[2])["mask"]["env"])
            time.sleep(0.1)
        out, err = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
        sensor.close()
        results.close()
    assert run.returncode == 0, err[-2000:]
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["errors"] == []
    env = summary["sources"]["env"]
    assert env["samples"] >= 40 and sum(env["rejected"].values()) >= 100, env
    assert env["disconnects"] >= 1  # the 5 MiB frames cost connections, each reconnected at once
    # env needs 60 % of its 4 s window: count ticks from 3 s in; valid data must be present on nearly all
    steady = masks[15:]
    assert len(steady) >= 20 and sum(steady) >= 0.9 * len(steady), (sum(steady), len(steady), env)


def test_replay_of_a_damaged_session_beside_a_live_port_warns_and_finishes(
    tmp_path, home_bundle, free_endpoint, capsys
):
    from edgefuse.cli import main
    from edgefuse.runtime.record import record
    from edgefuse.spec import load_spec

    taken = free_endpoint()
    data = yaml.safe_load((CONFIGS / "smart_home.yaml").read_text())
    data["runtime"]["publish"] = {"endpoint": taken, "monitor_hz": 0}
    cfg = tmp_path / "home.yaml"
    cfg.write_text(yaml.safe_dump(data))
    record(load_spec(cfg), tmp_path / "s", duration_s=3.0)
    cam = tmp_path / "s" / "streams" / "camera.efs"
    raw = bytearray(cam.read_bytes())
    raw[len(raw) // 2] ^= 0x10  # one flipped bit in the middle of the camera stream
    cam.write_bytes(bytes(raw))
    holder = zmq.Context.instance().socket(zmq.PUB)  # another process holds the spec's endpoint
    holder.bind(taken)
    try:
        rc = main(["replay", "--session", str(tmp_path / "s"), "--bundle", str(home_bundle), "--fast",
                   "--endpoint", free_endpoint(), "--summary", str(tmp_path / "r.json")])  # fmt: skip
    finally:
        holder.close(0)
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "edgefuse replay: warning:" in err and "camera.efs: corrupt chunk at byte" in err and "lost samples" in err
    summary = json.loads((tmp_path / "r.json").read_text())
    cam_report = summary["session"]["streams"]["camera"]
    assert len(cam_report["corrupt"]) == 1 and cam_report["samples"] >= 20  # ~30 frames recorded, one chunk lost
    assert summary["ticks"] >= 4
