"""The live pipeline with real threads, a real exported ONNX bundle and real ZeroMQ sockets.

Sources here are small paced generators (real Source subclasses) so each fault can be staged: a silent modality,
a flood, a subscriber that never reads, several sensor groups, a failing model.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import zmq

from edgefuse.runtime.clock import Sample, monotonic_ns
from edgefuse.runtime.pipeline import BoundModel, Pipeline
from edgefuse.runtime.publisher import Publisher
from edgefuse.runtime.sources import Source
from edgefuse.spec import ModalitySpec, parse_spec, spec_to_dict
from edgefuse.wire import decode

NS = 1_000_000_000
TINY = {
    "name": "tiny",
    "modalities": {
        "cam": {"kind": "image", "rate_hz": 10, "shape": [8, 8], "channels": 3,
                "sync": {"policy": "nearest", "tolerance_s": 0.06}},
        "mic": {"kind": "audio", "rate_hz": 1000, "window_s": 0.5, "channels": 1},
        "env": {"kind": "series", "rate_hz": 10, "window_s": 2.0, "channels": ["a", "b"],
                "sync": {"policy": "window", "min_coverage": 0.1}},
        "txt": {"kind": "text", "rate_hz": 1, "window_s": 3.0, "shape": [8], "sync": {"policy": "hold"}},
    },
    "labels": {"event": ["quiet", "loud"]},
    "model": {"dim": 8, "encoders": {
        "cam": {"type": "dwcnn", "width": 4, "stages": 1},
        "mic": {"type": "logmel_cnn", "n_fft": 64, "hop": 32, "n_mels": 8, "width": 4},
        "env": {"type": "cnn1d", "width": 4, "layers": 1}, "txt": {"type": "hashed_embedding", "buckets": 64, "width": 4}},
        "fusion": {"method": "concat"}},
    "runtime": {"tick_hz": 10, "latency_budget_ms": 40, "publish": {"endpoint": "tcp://127.0.0.1:*", "monitor_hz": 0}},
}  # fmt: skip


def tiny_spec(**runtime):
    data = spec_to_dict(parse_spec(TINY))
    for key, value in runtime.items():
        if key == "publish":
            data["runtime"]["publish"].update(value)
        else:
            data["runtime"][key] = value
    return parse_spec(data)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A real bundle: the tiny model (untrained weights) exported by edgefuse.deploy.export."""
    torch = pytest.importorskip("torch")
    from edgefuse.deploy.export import export_bundle
    from edgefuse.trainer.checkpoint import save_run
    from edgefuse.trainer.models import build_model

    root = tmp_path_factory.mktemp("bundle")
    torch.manual_seed(0)
    spec = tiny_spec()
    save_run(root / "run", spec, build_model(spec).eval(), {}, {}, data_dir=root, n_samples=0, masked=[])
    export_bundle(root / "run", root / "bundle", parity_samples=4)
    return root / "bundle"


class GenSource(Source):
    """Paced samples of one modality on the host clock: `block` rows (or one frame/utterance) every block/rate s."""

    def __init__(
        self,
        sid: str,
        m: ModalitySpec,
        block: int = 1,
        speedup: float = 1.0,
        silent: bool = False,
        noise: bool = False,
        lag_ms: float = 0.0,
    ):
        super().__init__(sid, sid.rsplit("/", 1)[-1], m, realtime=True)
        self.block, self.silent, self.noise = block, silent, noise
        self.lag_ns = round(lag_ms * 1e6)  # capture stamps this far before the sample is delivered (transport)
        self.rng = np.random.default_rng(0)
        self.period_ns = round(block * NS / (m.rate_hz * speedup))
        self.row_ns = NS / (m.rate_hz * speedup)

    def open(self) -> None:
        self.t0, self.k = monotonic_ns(), 0

    def _data(self, k: int):
        m = self.spec
        if m.kind == "image" and self.noise:  # large incompressible frames: big thumbnails
            return self.rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
        if m.kind == "image":
            return np.full((8, 8, 3), k % 256, np.uint8)
        if m.kind == "text":
            return f"hello {k}"
        return np.full((self.block, m.n_channels), k % 7, np.float32)

    def read(self, timeout_s: float) -> list[Sample]:
        if self.silent:
            time.sleep(timeout_s)
            return []
        due = self.t0 + self.k * self.period_ns
        wait = (due - monotonic_ns()) / NS
        if wait > 0:
            time.sleep(min(wait, timeout_s))
        out, now = [], monotonic_ns()
        while self.t0 + self.k * self.period_ns <= now and len(out) < 5000:
            t = self.t0 + self.k * self.period_ns
            rate = 1e9 / self.row_ns if self.spec.kind == "audio" else 0.0
            out.append(self._sample(t - self.lag_ns, now, self._data(self.k), rate, t_true_ns=t - 1_000_000))
            self.k += 1
        return out


def gen_sources(spec, group: str | None = None, **overrides) -> dict[str, GenSource]:
    out = {}
    for name, m in spec.modalities.items():
        sid = name if group is None else f"{group}/{name}"
        kw = {"block": 50} if m.kind == "audio" else {}
        kw.update(overrides.get(name, {}))
        out[sid] = GenSource(sid, m, **kw)
    return out


def results_listener(endpoint: str, stop: threading.Event, got: list, ctx: zmq.Context) -> threading.Thread:
    def loop():
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt_string(zmq.SUBSCRIBE, "result")
        sub.connect(endpoint)
        while not stop.is_set():
            if sub.poll(50):
                got.append((decode(sub.recv_multipart()), monotonic_ns()))
        sub.close()

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


def run_live(spec, model: BoundModel, duration_s: float) -> tuple[dict, list]:
    """Run the pipeline on generated streams for `duration_s`, publishing over ZeroMQ on loopback to a subscriber;
    closes `model`; returns (the run summary, the received (message, arrival ns) pairs)."""
    ctx = zmq.Context()
    pub = Publisher(spec.runtime.publish, context=ctx)
    got, stop = [], threading.Event()
    listener = results_listener(pub.endpoint, stop, got, ctx)
    time.sleep(0.3)  # let the subscription reach the publisher
    try:
        summary = Pipeline(spec, model, gen_sources(spec), pub).run(duration_s=duration_s)
    finally:
        stop.set()
        listener.join()
        pub.close()
        model.close()
        ctx.term()
    return summary, got


def test_live_ticks_reach_a_subscriber_with_per_stage_latency(bundle):
    spec = tiny_spec()
    summary, got = run_live(spec, BoundModel.load(bundle, backend="onnxruntime"), 3.0)
    assert summary["errors"] == []
    assert 25 <= summary["ticks"] <= 31 and summary["published"] == summary["ticks"]
    assert summary["drops"] == {"queue_full": 0, "late": 0, "seq_gap": 0, "invalid": 0}
    assert len(got) >= summary["ticks"] - 3
    msg = got[-1][0]
    assert msg.payload["mask"] == {"cam": True, "mic": True, "env": True, "txt": True}
    assert set(msg.payload["scores"]["event"]) == {"quiet", "loud"}
    assert abs(sum(msg.payload["scores"]["event"].values()) - 1) < 1e-4
    assert set(msg.payload["latency_ms"]) >= {"wait", "sync", "batch", "infer", "publish", "e2e", "overhead"}
    ticks = [m.payload["t_tick_ns"] for m, _ in got]
    assert all(b - a == NS // 10 for a, b in zip(ticks, ticks[1:], strict=False))  # every tick, in order
    assert summary["e2e_ms"]["p99"] < 100 and summary["overhead_ms"]["p50"] < 20
    assert summary["sync_error_ms"] == {"cam": 1.0, "mic": 1.0, "env": 1.0, "txt": 1.0}
    assert summary["backend"] == {  # exactly what ran (Backend.describe)
        "name": "onnxruntime",
        "precision": "fp32",
        "reason": "asked",
        "device": "CPUExecutionProvider",
        "file": "model.onnx",
        "providers": ["CPUExecutionProvider"],
    }
    assert summary["sources"]["cam"]["samples"] >= 25 and summary["sources"]["cam"]["queue_depth"] <= 2


def test_a_silent_modality_still_ticks_after_the_budget_masked_and_counted(bundle):
    spec = tiny_spec()
    model = BoundModel.load(bundle, backend="onnxruntime")
    results = []
    sources = gen_sources(spec, cam={"silent": True})
    summary = Pipeline(spec, model, sources, None, on_result=lambda g, p: results.append(p)).run(duration_s=2.0)
    model.close()
    assert summary["ticks"] >= 15 and summary["missing"]["cam"] == summary["ticks"]
    assert summary["ticks_incomplete"] == summary["ticks"]
    assert all(p["mask"]["cam"] is False and p["capture_ns"]["cam"] is None for p in results)
    waits = [p["latency_ms"]["wait"] for p in results]
    assert min(waits) >= 40.0 and np.median(waits) < 60.0  # waited the 40 ms budget, not more


def test_a_flooding_source_is_bounded_and_its_drops_counted(bundle):
    spec = tiny_spec(queue_size=32)
    model = BoundModel.load(bundle, backend="onnxruntime")
    sources = gen_sources(spec, env={"speedup": 5000.0})  # 50 000 readings/s into a 32-deep queue
    pipe = Pipeline(spec, model, sources, None)
    ring = None
    pipe.start()
    try:
        time.sleep(0.5)
        ring = pipe.syncs[""].tracks["env"].ring
        size0 = ring.t.nbytes + ring.x.nbytes
        depth = []
        for _ in range(20):
            time.sleep(0.1)
            depth.append(len(pipe.queues["env"]))
    finally:
        pipe.stop()
        model.close()
    s = pipe.summary()
    assert s["errors"] == [] and s["ticks"] >= 15  # ticking went on through the flood
    assert max(depth) <= 32 and pipe.queues["env"].high_water <= 32
    assert ring.t.nbytes + ring.x.nbytes == size0
    assert s["sources"]["env"]["samples"] > 20_000
    flood = s["sources"]["env"]["samples"] - ring.n
    assert s["drops"]["queue_full"] > 0 and s["drops"]["queue_full"] >= 0.5 * flood


def test_a_subscriber_that_never_reads_never_stalls_the_pipeline(bundle):
    spec = tiny_spec(tick_hz=40, publish={"hwm": 1, "monitor_hz": 40})
    model = BoundModel.load(bundle, backend="onnxruntime")
    ctx = zmq.Context()
    pub = Publisher(spec.runtime.publish, context=ctx)
    pub.sock.setsockopt(zmq.SNDBUF, 2048)  # kernel buffers small, so the HWM is reached within the test
    dead = ctx.socket(zmq.SUB)
    dead.setsockopt(zmq.RCVHWM, 1)
    dead.setsockopt(zmq.RCVBUF, 2048)
    dead.setsockopt(zmq.LINGER, 0)
    dead.setsockopt_string(zmq.SUBSCRIBE, "")
    dead.connect(pub.endpoint)
    time.sleep(0.3)
    try:
        # noisy camera frames make ~12 KB thumbnails: the subscriber's buffers fill within a second
        summary = Pipeline(spec, model, gen_sources(spec, cam={"noise": True}), pub).run(duration_s=3.0)
    finally:
        dead.close()
        pub.close()
        model.close()
        ctx.term()
    assert summary["ticks"] >= 100  # 40 Hz for 3 s: ticking never waited on the subscriber
    assert summary["publish_failures"].get("slow_subscriber", 0) >= 1  # counted, not waited for
    # which messages meet the full pipe (results or the large thumbnails) is timing: results sent never exceed ticks
    assert 0 < summary["published"] <= summary["ticks"]
    # a blocked send would hang here for good; what remains is GIL and CPU contention on a shared machine
    assert summary["latency_ms"]["publish_send"]["p99"] < 50.0


def test_groups_are_batched_together_and_published_per_group(bundle):
    spec = tiny_spec(groups=3, batch_deadline_ms=10)
    model = BoundModel.load(bundle, backend="onnxruntime")
    sources = {}
    for g in ("g0", "g1", "g2"):
        sources.update(gen_sources(spec, g))
    results = []
    summary = Pipeline(spec, model, sources, None, on_result=lambda g, p: results.append(g)).run(duration_s=2.0)
    model.close()
    assert summary["groups"] == 3 and summary["errors"] == []
    assert {g: results.count(g) for g in set(results)}.keys() == {"g0", "g1", "g2"}
    assert max(results.count(g) for g in ("g0", "g1", "g2")) - min(results.count(g) for g in ("g0", "g1", "g2")) <= 1
    assert summary["batch_size"]["p50"] == 3.0  # one tick of every group per backend call


def _recorded(spec, seconds: float) -> list[Sample]:
    """A deterministic sample stream (as a session would hold it), in capture order."""
    out = []
    for k in range(int(seconds * 10)):
        t = NS + k * NS // 10
        out.append(Sample("cam", k, t, t + 3_000_000, np.full((8, 8, 3), (k * 37) % 256, np.uint8)))
        out.append(Sample("env", k, t, t + 500_000, np.array([[k % 5, k % 3]], np.float32)))
        out.append(
            Sample("mic", k, t, t + 100_000_000, np.sin(np.arange(100) * k / 10)[:, None].astype(np.float32), 1000.0)
        )
        if k % 10 == 0:
            out.append(Sample("txt", k, t, t + 150_000_000, f"utterance {k}"))
    return sorted(out, key=lambda s: s.t_capture_ns)


def test_replay_is_deterministic(bundle):
    spec = tiny_spec()
    runs = []
    for _ in range(2):
        model = BoundModel.load(bundle, backend="onnxruntime")
        results = []
        pipe = Pipeline(spec, model, {}, None, on_result=lambda g, p, out=results: out.append(p))
        pipe.replay(_recorded(spec, 4.0))
        model.close()
        runs.append([{k: v for k, v in p.items() if k != "latency_ms"} for p in results])
    assert len(runs[0]) == 41 and runs[0] == runs[1]  # ticks 1.0 s .. 5.0 s
    assert runs[0][20]["mask"] == {"cam": True, "mic": True, "env": True, "txt": True}
    assert runs[0][-1]["mask"]["cam"] is False  # the 5.0 s tick: the last frame is at 4.9 s, beyond tolerance


def test_a_failing_model_stops_the_run_with_its_message(bundle):
    spec = tiny_spec()
    model = BoundModel.load(bundle, backend="onnxruntime")
    model.input_dtypes["txt"] = np.dtype("float32")  # the backend refuses float text ids: InputError
    summary = Pipeline(spec, model, gen_sources(spec), None).run(duration_s=5.0)
    model.close()
    assert summary["duration_s"] < 3.0
    assert any("output: InputError" in e and "'txt'" in e for e in summary["errors"])


def test_training_windows_equal_what_the_live_run_fused(bundle, tmp_path, monkeypatch):
    """A live run records its raw stream while fusing it; windows_from_session cuts training windows from the
    recording with the same synchronizer. Every tick the live run assembled comes out bit-identical (inputs, mask),
    including ticks that went out on the budget without a late modality."""
    from edgefuse.runtime.record import SessionReader, SessionWriter, write_labels
    from edgefuse.runtime.sync import Synchronizer, windows_from_session

    spec = tiny_spec()
    live: dict[int, tuple] = {}
    assemble = Synchronizer._assemble

    def spy(self, t, now_ns, ready):
        tick = assemble(self, t, now_ns, ready)
        live[t] = ({m: x.copy() for m, x in tick.inputs.items()}, tick.mask.copy(), tick.complete)
        return tick

    monkeypatch.setattr(Synchronizer, "_assemble", spy)
    model = BoundModel.load(bundle, backend="onnxruntime")
    # camera frames arrive 200 ms after capture: past every tick's deadline (40 ms budget + 50 ms for a frame after
    # the tick), so every tick goes out on its deadline without its frame, and a frame arriving later is late
    sources = gen_sources(spec, cam={"lag_ms": 200.0})
    writer = SessionWriter(tmp_path / "s", spec, sources).open()
    Pipeline(spec, model, sources, None, tap=writer.write).run(duration_s=3.0)
    writer.close()
    model.close()
    monkeypatch.setattr(Synchronizer, "_assemble", assemble)
    write_labels(tmp_path / "s" / "labels.csv", [(0.0, 100.0, {"event": "loud"})], ["event"])
    w = windows_from_session(spec, tmp_path / "s")
    offline = {int(t): i for i, t in enumerate(w.t_ns)}
    common = sorted(set(live) & set(offline))
    labelled = [t for t in live if t >= SessionReader(tmp_path / "s").start_ns]  # label times start at the session's
    assert len(labelled) >= 20 and len(common) >= len(labelled) - 1  # the last tick may be cut by the stop
    assert sum(not c for _, _, c in live.values()) >= len(live) - 2
    for t in common:
        inputs, mask, _ = live[t]
        i = offline[t]
        assert np.array_equal(w.mask[i], mask), t
        for m in spec.modality_names:
            assert np.array_equal(w.inputs[m][i], inputs[m]), (t, m)
