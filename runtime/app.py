"""`edgefuse run` and `edgefuse replay`: wire config, bundle, sources and publisher into a Pipeline.

    edgefuse run --config configs/smart_home.yaml --bundle bundles/home --duration 30 --summary run.json
    edgefuse run --config configs/smart_home.yaml --bundle bundles/home --groups 4 --endpoint tcp://0.0.0.0:5555
    edgefuse replay --session sessions/s1 --bundle bundles/home --fast --results results.jsonl

Both stop cleanly on SIGINT and SIGTERM: threads joined, sources and sockets closed, the summary printed (and
written with --summary). The exit code is 0 unless a stage failed (the summary's "errors" say which).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from edgefuse.runtime.pipeline import BoundModel, Pipeline, check_compatible
from edgefuse.spec import ScenarioSpec, load_spec


def _apply_overrides(spec: ScenarioSpec, args: argparse.Namespace) -> ScenarioSpec:
    """Command-line overrides of runtime.*, validated like the YAML (a bad value is a SpecError)."""
    from edgefuse.spec import parse_spec, spec_to_dict

    data = spec_to_dict(spec)
    rt = data["runtime"]
    apply_model_overrides(rt["model"], args)
    if getattr(args, "endpoint", None):
        rt["publish"]["endpoint"] = args.endpoint
    if getattr(args, "groups", None) is not None:
        rt["groups"] = args.groups
    if getattr(args, "device_id", None):
        rt["device_id"] = args.device_id
    if getattr(args, "connect", None):
        rt["publish"]["connect"] = list(args.connect)
    return parse_spec(data, "command line")


MODEL_FLAGS = ("backend", "precision", "device", "cuda_graphs", "threads")


def apply_model_overrides(model: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """--backend/--precision/--device/--cuda-graphs/--threads onto a runtime.model mapping (None: not given)."""
    for key in MODEL_FLAGS:
        value = getattr(args, key, None)
        if value is not None:
            model[key] = value
    return model


def describe_model(info: dict[str, Any]) -> str:
    """The start-up line: exactly what runs ("tensorrt int8 on dla:0 (GPU fallback): int8-...engine ...")."""
    extra = f", {info['detail']}" if info.get("detail") else ""
    size = f", {info['engine_mb']} MB" if info.get("engine_mb") is not None else ""
    return (
        f"edgefuse: model: {info['name']} {info['precision']} on {info.get('device', '?')}: "
        f"{info.get('file', '?')}{size}{extra} ({info.get('reason', 'asked')})"
    )


def _load_model(bundle: str | Path, spec: ScenarioSpec) -> BoundModel:
    model = BoundModel.load(bundle, model=spec.runtime.model)
    print(describe_model(model.backend.describe()), flush=True)
    return model


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _metrics(spec: ScenarioSpec) -> Any:
    if spec.runtime.metrics_port is None:
        return None
    from edgefuse.runtime.metrics import RuntimeMetrics

    metrics = RuntimeMetrics(device=spec.runtime.device)
    metrics.start_http(spec.runtime.metrics_port)
    return metrics


def _finish(summary: dict[str, Any], path: str | None) -> int:
    print(format_summary(summary))
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(summary, indent=1) + "\n")
    for err in summary["errors"]:
        print(f"edgefuse: error: {err}", file=sys.stderr)
    return 1 if summary["errors"] else 0


def run(
    spec: ScenarioSpec,
    bundle: str | Path,
    duration_s: float | None = None,
    stop: threading.Event | None = None,
    record: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Run live: every sensor group's sources through the bundle, publishing results; returns the summary."""
    from edgefuse.runtime.publisher import Publisher
    from edgefuse.runtime.sources import group_names, make_sources

    model = _load_model(bundle, spec)
    closers: list[Any] = [model]
    try:
        check_compatible(spec, model.spec, str(bundle))
        sources: dict[str, Any] = {}
        for g in group_names(spec):
            sources.update(make_sources(spec, group=g, seed=seed, realtime=True))
        writer = None
        if record:
            from edgefuse.runtime.record import SessionWriter

            writer = SessionWriter(record, spec, sources).open()
            closers.append(writer)
        publisher = Publisher(spec.runtime.publish, device=spec.runtime.device)
        closers.append(publisher)
        metrics = _metrics(spec)
        if metrics is not None:
            closers.append(metrics)
        tap = writer.write if writer is not None else None
        pipeline = Pipeline(spec, model, sources, publisher, metrics=metrics, tap=tap)
        return pipeline.run(duration_s, stop)
    finally:
        for c in reversed(closers):
            c.close()


def replay(
    spec: ScenarioSpec | None,
    session: str | Path,
    bundle: str | Path,
    fast: bool = True,
    results: str | None = None,
    stop: threading.Event | None = None,
    publish: bool = True,
) -> dict[str, Any]:
    """Play a recorded session through the bundle (deterministic: see Pipeline.replay); returns the summary."""
    from edgefuse.runtime.publisher import Publisher
    from edgefuse.runtime.record import SessionReader
    from edgefuse.runtime.sync import label_segments

    reader = SessionReader(session)
    spec = spec or reader.spec
    model = _load_model(bundle, spec)
    closers: list[Any] = [model]
    out = None
    try:
        check_compatible(spec, model.spec, str(bundle))
        rows = reader.labels()
        labels = label_segments(rows, reader.start_ns, spec.labels, str(session)) if rows else None
        publisher = Publisher(spec.runtime.publish, device=spec.runtime.device) if publish else None
        if publisher is not None:
            closers.append(publisher)
        on_result = None
        if results:
            out = open(results, "w")  # noqa: SIM115 - closed in finally, written from the result callback
            on_result = lambda group, payload: out.write(json.dumps({"group": group, **payload}) + "\n")  # noqa: E731
        pipeline = Pipeline(spec, model, {}, publisher, on_result=on_result, labels=labels)
        pipeline.replay(reader, realtime=not fast, stop=stop)
        summary = pipeline.summary()
        streams = reader.check()
        summary["session"] = {
            "path": str(session),
            "complete": reader.complete,
            "streams": streams,
            "problems": reader.problems(),
        }
        return summary
    finally:
        if out is not None:
            out.close()
        for c in reversed(closers):
            c.close()


def cli_run(args: argparse.Namespace) -> int:
    """`edgefuse run --config --bundle [--duration] [--summary] [--backend] [--endpoint] [--groups] [--record]`."""
    logging.basicConfig(level=logging.INFO, format="edgefuse: %(message)s", stream=sys.stderr)
    spec = _apply_overrides(load_spec(args.config), args)
    summary = run(spec, args.bundle, args.duration, _stop_on_signals(), args.record)
    return _finish(summary, args.summary)


def cli_replay(args: argparse.Namespace) -> int:
    """`edgefuse replay --session --bundle [--config] [--fast] [--summary] [--results] [--endpoint] [model overrides]`."""
    from edgefuse.runtime.record import SessionReader

    spec = load_spec(args.config) if args.config else SessionReader(args.session).spec
    spec = _apply_overrides(spec, args)  # --endpoint, model overrides: replay beside a live runtime on the spec's port
    summary = replay(spec, args.session, args.bundle, args.fast, args.results, _stop_on_signals())
    for line in summary["session"].get("problems", []):  # corrupt chunks were skipped: say where and when
        print(f"edgefuse replay: warning: {line}", file=sys.stderr)
    return _finish(summary, args.summary)


def format_summary(s: dict[str, Any]) -> str:
    """The summary as a few human lines."""

    def pct(d: dict[str, Any]) -> str:
        return "n/a" if d.get("p50") is None else f"p50 {d['p50']:.2f} ms, p99 {d['p99']:.2f} ms"

    drops = ", ".join(f"{k} {v}" for k, v in s["drops"].items() if v) or "none"
    fails = ", ".join(f"{k} {v}" for k, v in s["publish_failures"].items()) or "none"
    acc = ", ".join(f"{h} {a['accuracy']:.3f} (n={a['n']})" for h, a in s["online_accuracy"].items()) or "n/a"
    sync = ", ".join(f"{m} {v:.2f} ms" for m, v in s["sync_error_ms"].items() if v is not None) or "n/a"
    be = s["backend"]
    lines = [
        f"edgefuse: {s['ticks']} ticks in {s['duration_s']:.1f} s over {s['groups']} group(s), "
        f"{s['published']} published ({be['name']} {be['precision']} on {be.get('device', '?')}: {be.get('file')})",
        f"  end-to-end  {pct(s['e2e_ms'])}",
        f"  overhead    {pct(s['overhead_ms'])}  (runtime per tick, model excluded)",
        f"  inference   {pct(s['latency_ms'].get('infer', {}))}",
        f"  drops       {drops}",
        f"  publish failures {fails}",
        f"  sync error p99  {sync}",
        f"  online accuracy {acc}",
    ]
    masked = [f"{sid} ({st['problem']})" for sid, st in s.get("sources", {}).items() if st.get("problem")]
    if masked:  # a device missing or off pace at the end of the run
        lines.append(f"  masked      {', '.join(masked)}")
    return "\n".join(lines)
