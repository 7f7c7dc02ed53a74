"""`edgefuse demo`: the main job end to end on a scenario's synthetic data, on CPU.

synthesize -> train -> evaluate -> export (ONNX bundle, INT8 variant) -> run on synthetic paced streams with the
results published on ZeroMQ and read back by a subscriber -> a printed summary (and OUT/demo.json).
Each stage is the same verb a user types, so the demo exercises exactly the documented command line.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

from edgefuse.errors import EdgefuseError
from edgefuse.spec import load_spec


def default_config() -> Path:
    """configs/smart_home.yaml from the checkout, else the copy packaged with edgefuse."""
    local = Path("configs/smart_home.yaml")
    if local.exists():
        return local
    return Path(str(resources.files("edgefuse.configs") / "smart_home.yaml"))


class _Subscriber(threading.Thread):
    """A real ZeroMQ SUB socket that prints each result as `edgefuse listen` does, while the runtime runs."""

    def __init__(self, endpoint: str):
        from edgefuse.runtime.listen import Listener

        super().__init__(daemon=True)
        self.endpoint, self.listener, self.stop = endpoint, Listener(out=sys.stdout), threading.Event()

    def run(self) -> None:
        import zmq

        from edgefuse import wire
        from edgefuse.runtime.listen import RECONNECT_MS

        sock = zmq.Context.instance().socket(zmq.SUB)
        sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)  # started before the runtime binds: join before result #0
        sock.setsockopt(zmq.SUBSCRIBE, wire.TOPIC_PREFIX["result"].encode())
        sock.connect(self.endpoint)
        self.listener.run(sock, stop=self.stop)
        sock.close(linger=0)


def _stage(name: str, argv: list[str]) -> float:
    from edgefuse.cli import main

    print(f"\n=== {name}: edgefuse {' '.join(argv)}", flush=True)
    t0 = time.perf_counter()
    rc = main(argv)
    if rc != 0:
        raise EdgefuseError(f"demo stage '{name}' failed with exit code {rc}")
    return time.perf_counter() - t0


def model_flags(args: Any) -> list[str]:
    """The run stage's runtime.model flags: ONNX Runtime unless --backend says otherwise, plus any other override."""
    out = ["--backend", getattr(args, "backend", None) or "onnxruntime"]
    for key in ("precision", "device", "threads"):
        value = getattr(args, key, None)
        if value is not None:
            out += [f"--{key}", str(value)]
    graphs = getattr(args, "cuda_graphs", None)
    if graphs is not None:
        out.append("--cuda-graphs" if graphs else "--no-cuda-graphs")
    return out


def cli_demo(args) -> int:
    config = Path(args.config) if args.config else default_config()
    spec = load_spec(config)
    out = Path(args.out)
    data, run, bundle = out / "data", out / "run", out / "bundle"
    samples = ["--samples", str(args.samples)] if args.samples else []
    times: dict[str, float] = {}
    times["synth"] = _stage("synthesize", ["synth", "--config", str(config), "--out", str(data), *samples])
    times["train"] = _stage("train", ["train", "--config", str(config), "--data", str(data), "--out", str(run)])
    report = run / "report.json"
    times["eval"] = _stage("evaluate", ["eval", "--run", str(run), "--data", str(data), "--report", str(report),
                                        "--no-baselines"])  # fmt: skip
    times["export"] = _stage("export", ["export", "--run", str(run), "--data", str(data), "--out", str(bundle),
                                        "--precision", "fp32,int8"])  # fmt: skip

    endpoint = spec.runtime.publish.endpoint
    sub = _Subscriber(endpoint)
    sub.start()
    summary_path = out / "run_summary.json"
    times["run"] = _stage("run on synthetic paced streams", [
        "run", "--config", str(config), "--bundle", str(bundle), "--duration", str(args.duration),
        "--summary", str(summary_path), *model_flags(args)])  # fmt: skip
    sub.stop.set()
    sub.join(timeout=2)

    ev = json.loads(report.read_text())
    rs = json.loads(summary_path.read_text())
    demo = {
        "config": str(config),
        "stage_seconds": {k: round(v, 1) for k, v in times.items()},
        "test_accuracy": ev["accuracy"],
        "macro_f1": ev["macro_f1"],
        "params": ev["params"],
        "torch_latency_ms_p50": ev["latency_ms"]["p50"],
        "runtime": {k: rs[k] for k in ("ticks", "published", "drops", "e2e_ms", "overhead_ms", "online_accuracy")},
        "subscriber_received": sub.listener.received,
    }
    (out / "demo.json").write_text(json.dumps(demo, indent=2))
    print("\n=== edgefuse demo summary")
    print(f"  scenario            {spec.name} ({config})")
    print(f"  test accuracy       {ev['accuracy']:.3f}   macro F1 {ev['macro_f1']:.3f}   params {ev['params']:,}")
    be = rs["backend"]
    print(f"  model               {be['name']} {be['precision']} on {be.get('device')}: {be.get('file')}")
    print(f"  stream ticks        {rs['ticks']}   published {rs['published']}   received {sub.listener.received}")
    print(f"  online accuracy     {rs['online_accuracy']}")
    print(f"  end-to-end ms       p50 {rs['e2e_ms']['p50']:.2f}   p99 {rs['e2e_ms']['p99']:.2f}")
    print(f"  stage seconds       {demo['stage_seconds']}")
    print(f"  reports             {report}  {summary_path}  {out / 'demo.json'}")
    if not sub.listener.received:
        raise EdgefuseError(f"no result reached the subscriber on {endpoint}")
    return 0
