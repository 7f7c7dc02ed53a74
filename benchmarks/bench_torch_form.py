"""Torch batch-1 CPU latency: each scenario's model as trained (eager) against its inference form, interleaved.

    python benchmarks/bench_torch_form.py                          # the checkpoints bench_trainer.py wrote
    python benchmarks/bench_torch_form.py --runs runs/bench --rounds 12 --markdown BENCHMARKS.md

The inference form (trainer/models/inference.py) folds BatchNorm into the convolution before it and stores 4-D weights
channels-last; it is what the torch backend runs and what `edgefuse eval` times. This host is shared and swings
between speed states, so the two forms alternate in short rounds and the ratio of their medians is the result.
Batch 1, 1 torch thread, inference_mode; inputs are random tensors in the spec's shapes (latency does not depend
on the values). A scenario without a checkpoint under --runs is measured on a freshly built (untrained) model.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _sections import write_section

from edgefuse.deploy.export import random_feeds
from edgefuse.spec import load_spec
from edgefuse.trainer.checkpoint import load_run
from edgefuse.trainer.models import build_model
from edgefuse.trainer.models.inference import for_inference

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ("smart_home", "driving", "customer_service")
TARGET_MS = 2.0


def _model(name: str, runs: Path) -> tuple[Any, Any, str]:
    run = runs / name / "fused"
    if (run / "checkpoint.pt").is_file():
        spec, model, _ = load_run(run)
        return spec, model.eval(), f"trained ({run.relative_to(ROOT) if run.is_relative_to(ROOT) else run})"
    spec = load_spec(ROOT / "configs" / f"{name}.yaml")
    return spec, build_model(spec).eval(), "untrained (no checkpoint)"


def _times(model: Any, inputs: dict, mask: torch.Tensor, iters: int) -> np.ndarray:
    out = np.empty(iters)
    for i in range(iters):
        t = time.perf_counter_ns()
        model(inputs, mask)
        out[i] = (time.perf_counter_ns() - t) / 1e6
    return out


def bench(name: str, runs: Path, rounds: int, iters: int) -> dict[str, Any]:
    spec, eager, source = _model(name, runs)
    fast = for_inference(eager)
    feeds = random_feeds(spec, 1)  # the export parity check's inputs: right shapes, dtypes and ranges
    inputs = {m: torch.from_numpy(feeds[m]) for m in spec.modalities}
    mask = torch.ones(1, len(spec.modalities))  # every modality present: the full cost
    medians: dict[str, list[float]] = {"eager": [], "inference": []}
    with torch.inference_mode():
        for model in (eager, fast):
            _times(model, inputs, mask, 20)  # warm-up: lazy init, oneDNN primitive caches
        for _ in range(rounds):
            for key, model in (("eager", eager), ("inference", fast)):
                medians[key].append(float(np.median(_times(model, inputs, mask, iters))))
    e, f = np.array(medians["eager"]), np.array(medians["inference"])
    return {
        "scenario": name,
        "model": source,
        "eager_p50_ms": round(float(np.median(e)), 3),
        "inference_p50_ms": round(float(np.median(f)), 3),
        "eager_fastest_round_ms": round(float(e.min()), 3),
        "inference_fastest_round_ms": round(float(f.min()), 3),
        "ratio": round(float(np.median(f / e)), 3),  # per round: both forms saw the same host state
        "rounds": {k: [round(x, 3) for x in v] for k, v in medians.items()},
    }


def markdown(rows: list[dict[str, Any]], cmd: str, load: tuple[float, float]) -> str:
    lines = [
        "## Torch inference form (batch-1 CPU latency)",
        "",
        f"Measured {datetime.now(timezone.utc).isoformat(timespec='minutes')} with `{cmd}` on {os.cpu_count()} "
        f"cores, 1 torch thread (1-min load average {load[0]:.1f} at the start, {load[1]:.1f} at the end; a shared "
        "host). Each round times both forms back to back; p50 is the median over rounds of the per-round "
        "medians, the fastest round shows the host's quiet state, and the ratio is the median of per-round ratios.",
        "",
        "| scenario | model | eager p50 (fastest round) ms | inference form p50 (fastest round) ms | ratio "
        "| p50 <= 2 ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ok = "yes" if r["inference_p50_ms"] <= TARGET_MS else "**no**"
        lines.append(
            f"| {r['scenario']} | {r['model']} | {r['eager_p50_ms']:.2f} ({r['eager_fastest_round_ms']:.2f}) "
            f"| {r['inference_p50_ms']:.2f} ({r['inference_fastest_round_ms']:.2f}) | {r['ratio']:.2f} | {ok} |"
        )
    lines += [
        "",
        "The inference form is what the torch backend runs and what `edgefuse eval` reports as latency_ms; the Trainer",
        "section's latency column was measured before it existed (eager).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--runs", default=str(ROOT / "runs" / "bench"), help="where bench_trainer.py left its runs")
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--iters", type=int, default=100, help="forward passes per form per round")
    p.add_argument("--json", default=None)
    p.add_argument("--markdown", default=None, help="BENCHMARKS.md to update (its torch-form section only)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    load0 = os.getloadavg()[0]
    rows = []
    for name in args.scenarios.split(","):
        row = bench(name.strip(), Path(args.runs), args.rounds, args.iters)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    if args.markdown:
        cmd = "python benchmarks/bench_torch_form.py " + shlex.join(argv if argv is not None else sys.argv[1:])
        write_section(Path(args.markdown), "torch-form", markdown(rows, cmd, (load0, os.getloadavg()[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
