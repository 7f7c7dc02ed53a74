"""Runtime benchmark: per-tick overhead, end-to-end latency to a real subscriber, sync error, groups in real time.

    python benchmarks/bench_runtime.py --bundle bundles/home --config configs/smart_home.yaml \
        --seconds 10 --groups 1,2,4,8,12,16 --json runs/bench_runtime.json --markdown BENCHMARKS.md

Everything runs live: synthetic sources paced on the monotonic clock (each group its own simulated world), the
real pipeline threads, the bundle on ONNX Runtime, a PUB socket and a SUB socket in this process measuring receipt.
  overhead     the runtime's own time per tick, model excluded (summary overhead_ms: e2e - infer - batch wait)
  e2e receipt  from the runtime receiving the newest sample a tick needed to the subscriber's receipt of its result
The first second of each run is left out of the latency percentiles (sources opening, the first inference).
  sync error   |t_capture - t_true| of the samples fused, against the synthetic ground truth
  groups       sensor groups at tick_hz 10 until the run stops keeping up: any queue_full drop, skipped tick or
               lost result, or fewer ticks than groups x 10 Hz x seconds (-3 %)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import zmq
from _sections import write_section

from edgefuse.runtime.clock import monotonic_ns
from edgefuse.runtime.pipeline import BoundModel, Pipeline, check_compatible
from edgefuse.runtime.publisher import Publisher
from edgefuse.runtime.sources import group_names, make_sources
from edgefuse.spec import load_spec, parse_spec, spec_to_dict
from edgefuse.wire import decode

WARMUP_S = 1.0  # latency percentiles leave out the first second (sources opening, the first inference)


def _spec(config: str, groups: int, tick_hz: float, session: Path | None) -> Any:
    data = spec_to_dict(load_spec(config))
    data["runtime"].update(groups=groups, tick_hz=tick_hz)
    if session is not None:  # every group replays the pre-rendered session, looped, paced on the host clock
        for m in data["modalities"].values():
            m["source"].update(type="replay", uri=str(session), loop=True)
    data["runtime"]["publish"].update(endpoint="tcp://127.0.0.1:*", monitor_hz=2.0)
    return parse_spec(data, config)


def _receiver(endpoint: str, stop: threading.Event, out: list[float]) -> threading.Thread:
    """A real SUB socket: end-to-end receipt latency = (receipt - t_pub) + the e2e the result carries."""

    t_measure = monotonic_ns() + round((WARMUP_S + 0.3) * 1e9)

    def loop() -> None:
        ctx = zmq.Context.instance()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt_string(zmq.SUBSCRIBE, "result")
        sub.connect(endpoint)
        while not stop.is_set():
            if sub.poll(50):
                frames = sub.recv_multipart()
                t_recv = monotonic_ns()
                msg = decode(frames)
                if t_recv >= t_measure:
                    out.append((t_recv - msg.header["t_pub_ns"]) / 1e6 + msg.payload["latency_ms"]["e2e"])
        sub.close()

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


def prerender(config: str, out: Path, seconds: float) -> Path:
    """Record `seconds` of the synthetic world as a session, off the clock (realtime=False, as fast as it renders),
    so the timed runs replay it paced instead of rendering a simulation on the cores being measured."""
    from edgefuse.runtime.record import SessionWriter

    spec = load_spec(config)
    sources = make_sources(spec, seed=1, realtime=False)
    for src in sources.values():
        src.open()
    with SessionWriter(out, spec, sources, queue_size=1_000_000) as writer:
        for _ in range(round(seconds / 0.05)):
            for src in sources.values():
                for x in src.read(0.05):
                    writer.write(x)
    return out


def run_once(
    config: str, bundle: str, groups: int, seconds: float, session: Path | None = None, tick_hz: float = 10.0
) -> dict[str, Any]:
    spec = _spec(config, groups, tick_hz, session)
    model = BoundModel.load(bundle, backend="onnxruntime")
    check_compatible(spec, model.spec, bundle)
    sources: dict[str, Any] = {}
    for g in group_names(spec):
        sources.update(make_sources(spec, group=g, seed=1, realtime=True))
    pub = Publisher(spec.runtime.publish)
    received: list[float] = []
    stop = threading.Event()
    rx = _receiver(pub.endpoint, stop, received)
    stop.wait(0.3)  # the subscription reaches the publisher before ticking starts
    try:
        s = Pipeline(spec, model, sources, pub, warmup_s=WARMUP_S).run(duration_s=seconds + WARMUP_S)
    finally:
        stop.set()
        rx.join()
        pub.close()
        model.close()
    rec = np.asarray(received or [np.nan])
    expected = groups * tick_hz * (seconds + WARMUP_S)
    lost = s["drops"]["queue_full"] + s["ticks_skipped"] + sum(s["publish_failures"].values())
    return {
        "groups": groups,
        "seconds": seconds,
        "ticks": s["ticks"],
        "expected_ticks": expected,
        "received": len(received),
        "drops": s["drops"],
        "ticks_skipped": s["ticks_skipped"],
        "publish_failures": s["publish_failures"],
        "realtime": lost == 0 and s["ticks"] >= 0.97 * expected and not s["errors"],
        "overhead_ms": s["overhead_ms"],
        "e2e_ms": s["e2e_ms"],
        "e2e_receipt_ms": {
            "p50": round(float(np.nanpercentile(rec, 50)), 3),
            "p99": round(float(np.nanpercentile(rec, 99)), 3),
        },
        "infer_ms": s["latency_ms"].get("infer"),
        "sync_ms": s["latency_ms"].get("sync"),
        "wait_ms": s["latency_ms"].get("wait"),
        "stages_ms": {k: v for k, v in s["latency_ms"].items() if k not in ("e2e", "overhead")},
        "batch_size": s["batch_size"],
        "sync_error_ms": s["sync_error_ms"],
        "online_accuracy": s["online_accuracy"],
        "errors": s["errors"],
    }


def markdown(rows: list[dict[str, Any]], cmd: str, bundle_note: str) -> str:
    load = os.getloadavg()
    first = rows[0]
    lines = [
        f"Measured {dt.date.today().isoformat()} with `{cmd}`",
        f"on this 2-core CPU host shared with other work (load average {load[0]:.1f} at the end); {bundle_note}.",
        "Sources: the synthetic world pre-rendered to a session (off the clock), then replayed paced on the host",
        "clock by every group (replay sources, looped), so the timed runs measure the runtime, not the simulation.",
        "",
        "| groups | ticks (expected) | real time | overhead p50 / p99 ms | e2e to SUB p50 / p99 ms | infer p50 / p99 ms "
        "| batch p50 | queue_full / skipped / pub fail |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fails = sum(r["publish_failures"].values())
        lines.append(
            f"| {r['groups']} | {r['ticks']} ({r['expected_ticks']:.0f}) | {'yes' if r['realtime'] else 'no'} "
            f"| {_p(r['overhead_ms'])} | {_p(r['e2e_receipt_ms'])} | {_p(r['infer_ms'])} | {r['batch_size']['p50']} "
            f"| {r['drops']['queue_full']} / {r['ticks_skipped']} / {fails} |"
        )
    ok = [r["groups"] for r in rows if r["realtime"]]
    sync = ", ".join(f"{m} {v:.2f} ms" for m, v in first["sync_error_ms"].items())
    lines += [
        "",
        f"- Groups at 10 Hz in real time with no drops: **{max(ok) if ok else 0}** (largest passing row).",
        f"- Sync error p99 against the synthetic ground truth (1 group): {sync}.",
        f"- 1 group: overhead p99 {first['overhead_ms']['p99']} ms (target <= 1 ms); end-to-end to a SUB socket p99 "
        f"{first['e2e_receipt_ms']['p99']} ms vs model p99 {first['infer_ms']['p99']} ms + 5 ms "
        f"(target); the tick also waits for its data first (wait p50 {first['wait_ms']['p50']} ms: until the "
        f"latest reading of every modality has arrived, at most the latency budget), which is not in either number.",
        "- 1 group, per stage p50 / p99 ms (docs/wire.md): "
        + ", ".join(f"{k} {_p(v)}" for k, v in first.get("stages_ms", {}).items() if k != "wait")
        + ".",
    ]
    return "\n".join(lines)


def _p(d: dict[str, Any] | None) -> str:
    return "n/a" if not d or d.get("p50") is None else f"{d['p50']:.2f} / {d['p99']:.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True)
    p.add_argument("--config", default="configs/smart_home.yaml")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--groups", default="1,2,4,8,12,16", help="comma list; stops after the first that fails")
    p.add_argument("--json", default=None)
    p.add_argument("--markdown", default=None, help="BENCHMARKS.md to update (Runtime section only)")
    p.add_argument("--bundle-note", default="a bundle exported by `edgefuse export`")
    p.add_argument(
        "--live-synthetic", action="store_true", help="render the synthetic world during the run (default: pre-render)"
    )
    args = p.parse_args(argv)
    session = None
    if not args.live_synthetic:
        import tempfile

        session = prerender(args.config, Path(tempfile.mkdtemp(prefix="bench_rt_")) / "session", 2 * args.seconds)
    rows = []
    for g in [int(x) for x in args.groups.split(",")]:
        row = run_once(args.config, args.bundle, g, args.seconds, session)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if not row["realtime"] and g > 1:
            break
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    if args.markdown:
        cmd = "python benchmarks/bench_runtime.py " + shlex.join(argv if argv is not None else sys.argv[1:])
        write_section(Path(args.markdown), "runtime", "## Runtime\n\n" + markdown(rows, cmd, args.bundle_note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
