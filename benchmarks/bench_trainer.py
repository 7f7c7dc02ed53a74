"""Trainer benchmark: the fused model of every scenario against its targets, and the fusion methods on smart_home.

    python benchmarks/bench_trainer.py                       # everything (~20-30 min on 2 cores)
    python benchmarks/bench_trainer.py --scenarios smart_home --no-fusion-table

Per scenario, on the held-out test split of synthetic data (the spec's default sample count, seed 0):
  fused accuracy >= best single modality + 10 points;  with any one modality masked, accuracy within 5 points of
  the model trained without it;  <= 500k parameters;  training <= 5 min;  batch-1 CPU torch latency p50 <= 2 ms.
Writes runs/bench/trainer.json and the "Trainer" section of BENCHMARKS.md (between its markers).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from _sections import write_section

from edgefuse.spec import FUSION_METHODS, load_spec
from edgefuse.trainer.data import load_dataset
from edgefuse.trainer.evaluate import evaluate
from edgefuse.trainer.synth import write_dataset
from edgefuse.trainer.train import train

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ("smart_home", "driving", "customer_service")
TARGETS = {"fusion_gain": 0.10, "ablation_gap": 0.05, "params": 500_000, "train_time_s": 300.0, "latency_ms": 2.0}


def dataset_for(spec, out: Path):
    """The scenario's synthetic dataset (written once, then reused: generation is deterministic in the seed)."""
    if not out.exists():
        write_dataset(spec, out, spec.synth.samples, seed=0, progress=False)
    return load_dataset(spec, out, progress=False)


def bench_scenario(name: str, out: Path) -> dict:
    spec = load_spec(ROOT / "configs" / f"{name}.yaml")
    data = out / "data" / name
    ds = dataset_for(spec, data)
    run = out / name / "fused"
    metrics = train(spec, data, run, progress=False, dataset=ds)
    r = evaluate(run, data, out / name / "report.json", progress=False, dataset=ds)
    best_m = max(r["unimodal"], key=r["unimodal"].get)
    gaps = {m: r["ablation"][m] - r["without"][m] for m in r["without"]}
    row = {
        "scenario": name,
        "samples": len(ds),
        "n_test": r["n_test"],
        "accuracy": r["accuracy"],
        "best_single": best_m,
        "best_single_accuracy": r["unimodal"][best_m],
        "fusion_gain": r["accuracy"] - r["unimodal"][best_m],
        "unimodal": r["unimodal"],
        "without": r["without"],
        "ablation": r["ablation"],
        "ablation_minus_without": gaps,
        "params": r["params"],
        "train_time_s": metrics["train_time_s"],
        "epochs_run": metrics["epochs_run"],
        "latency_ms": r["latency_ms"],
    }
    row["pass"] = {
        "fusion_gain": row["fusion_gain"] >= TARGETS["fusion_gain"],
        "ablation_gap": all(g >= -TARGETS["ablation_gap"] for g in gaps.values()),
        "params": row["params"] <= TARGETS["params"],
        "train_time_s": row["train_time_s"] <= TARGETS["train_time_s"],
        "latency_ms": row["latency_ms"]["p50"] <= TARGETS["latency_ms"],
    }
    return row


def bench_fusion(out: Path, methods: list[str]) -> list[dict]:
    spec = load_spec(ROOT / "configs" / "smart_home.yaml")
    data = out / "data" / "smart_home"
    ds = dataset_for(spec, data)
    rows = []
    for method in methods:
        run = out / "fusion" / method
        metrics = train(spec, data, run, fusion=method, progress=False, dataset=ds)
        r = evaluate(run, data, None, with_baselines=False, progress=False, dataset=ds)
        rows.append(
            {
                "method": method,
                "accuracy": r["accuracy"],
                "params": r["params"],
                "latency_p50_ms": r["latency_ms"]["p50"],
                "train_time_s": metrics["train_time_s"],
                "epochs_run": metrics["epochs_run"],
            }
        )
        print(f"  fusion {method}: {rows[-1]}", flush=True)
    return rows


def fmt_pct(x: float) -> str:
    return f"{100 * x:.1f}"


def scenario_table(rows: list[dict]) -> list[str]:
    ok = lambda row, k: "yes" if row["pass"][k] else "**no**"
    lines = [
        "| scenario (measured) | fused acc % | best single (acc %) | gain pts | worst ablation - without (pts) | params "
        "| train s (epochs) | latency p50 / p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        worst = min(r["ablation_minus_without"], key=r["ablation_minus_without"].get)
        lines.append(
            f"| {r['scenario']} ({r.get('date', '')[:16]}) | {fmt_pct(r['accuracy'])} | {r['best_single']} ({fmt_pct(r['best_single_accuracy'])}) "
            f"| {100 * r['fusion_gain']:+.1f} ({ok(r, 'fusion_gain')}) "
            f"| {worst} {100 * r['ablation_minus_without'][worst]:+.1f} ({ok(r, 'ablation_gap')}) "
            f"| {r['params']:,} ({ok(r, 'params')}) | {r['train_time_s']:.0f} ({r['epochs_run']}) ({ok(r, 'train_time_s')}) "
            f"| {r['latency_ms']['p50']:.2f} / {r['latency_ms']['p99']:.2f} ({ok(r, 'latency_ms')}) |"
        )
    lines += ["", "Per modality (accuracy %: trained on it alone / trained without it / fused with it masked):", ""]
    for r in rows:
        cells = [
            f"{m} {fmt_pct(r['unimodal'][m])} / {fmt_pct(r['without'][m])} / {fmt_pct(r['ablation'][m])}"
            for m in r["unimodal"]
        ]
        lines.append(f"- {r['scenario']}: " + "; ".join(cells))
    return lines


def fusion_table(rows: list[dict]) -> list[str]:
    lines = ["| method | accuracy % | params | latency p50 ms | train s (epochs) |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['method']} | {fmt_pct(r['accuracy'])} | {r['params']:,} | {r['latency_p50_ms']:.2f} "
            f"| {r['train_time_s']:.0f} ({r['epochs_run']}) |"
        )
    return lines


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()}"


def update_benchmarks_md(body: list[str]) -> None:
    write_section(ROOT / "BENCHMARKS.md", "trainer", "\n".join(["## Trainer", "", *body]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma list of scenarios")
    p.add_argument("--fusion-methods", default=",".join(FUSION_METHODS), help="comma list for the smart_home table")
    p.add_argument("--no-fusion-table", action="store_true", help="skip the fusion-method comparison")
    p.add_argument("--out", default=str(ROOT / "runs" / "bench"), help="where data, runs and trainer.json go")
    p.add_argument("--no-md", action="store_true", help="do not touch BENCHMARKS.md")
    p.add_argument("--fresh", action="store_true", help="drop the rows of the previous trainer.json")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": "python " + " ".join(sys.argv),
        "targets": TARGETS,
        "scenarios": [],
        "fusion_methods": [],
        "load_average": [],  # 1-min load average after each step: the machine is shared, timings depend on it
    }
    rows, fusion = result["scenarios"], result["fusion_methods"]
    names = args.scenarios.split(",")
    previous = out / "trainer.json"
    kept = json.loads(previous.read_text()) if previous.exists() and not args.fresh else {}
    # a partial re-run keeps the other rows of the last run; each row carries the date it was measured
    for r in kept.get("scenarios", []) + (kept.get("fusion_methods", []) if args.no_fusion_table else []):
        r.setdefault("date", kept["date"])
    rows += [r for r in kept.get("scenarios", []) if r["scenario"] not in names]
    if args.no_fusion_table:
        fusion += kept.get("fusion_methods", [])
    if kept:
        result["earlier"] = [*kept.get("earlier", []), {k: kept.get(k) for k in ("date", "command", "load_average")}]

    def save() -> None:  # after every step, so a long run that dies still leaves its numbers
        result["load_average"].append(round(os.getloadavg()[0], 2))
        result["wall_s"] = time.perf_counter() - t0
        (out / "trainer.json").write_text(json.dumps(result, indent=2) + "\n")

    for name in names:
        print(f"scenario {name} ...", flush=True)
        rows.append(bench_scenario(name, out) | {"date": result["date"]})
        rows.sort(key=lambda r: SCENARIOS.index(r["scenario"]) if r["scenario"] in SCENARIOS else len(SCENARIOS))
        save()
        print(json.dumps(rows[-1], indent=1), flush=True)
    if not args.no_fusion_table:
        for method in args.fusion_methods.split(","):
            fusion.extend(r | {"date": result["date"]} for r in bench_fusion(out, [method]))
            save()
    body = [
        f"Measured {result['date']} on {result['machine']} (training: torch threads = spec train.threads; "
        f"latency: 1 thread), {result['wall_s'] / 60:.0f} min wall, 1-min load average during the run "
        f"{min(result['load_average']):.1f}-{max(result['load_average']):.1f} (a shared machine); "
        f"command: `{result['command']}`"
        + "".join(f"; earlier rows: `{e['command']}` on {e['date']}" for e in result.get("earlier", []))
        + ".",
        "Accuracy is the mean over heads of per-head accuracy on the held-out test split (synthetic data, the "
        "spec's default sample count, seed 0). Targets: gain over the best single modality >= 10 pts; with any "
        "one modality masked, within 5 pts of the model trained without it; <= 500k params; training <= 5 min; "
        "batch-1 CPU torch latency p50 <= 2 ms.",
        "",
        *scenario_table(rows),
    ]
    if fusion:
        body += ["", "Fusion methods on smart_home (same encoders and training settings):", "", *fusion_table(fusion)]
    print("\n".join(body))
    if not args.no_md:
        update_benchmarks_md(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
