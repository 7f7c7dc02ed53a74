"""Multilabel and regression heads on synthetic data: mAP, per-label F1, MAE/RMSE, classification kept, latency.

    python benchmarks/bench_heads.py                 # 2 smart_home trainings + 2 regression ones
    python benchmarks/bench_heads.py --parts smart_home --scale full

smart_home      the shipped spec (--scale full), or at test scale (32x32 frames, 0.5 s of 8 kHz audio, narrower
                encoders, as the test suite's tiny spec; the default), plus the multilabel head `activities` (tv,
                kettle, washer: overlapping the event, any combination). Trained twice on the same data: with the
                head, and without it (the event head alone), so "classification kept" compares like with like.
                Targets: mAP >= 0.95; event accuracy with the extra head within 2 points of without (on ~150 test
                samples one sample is 0.7 points); ONNX Runtime batch-1 latency (1 thread, CPU) of the graph with
                the head within 1 ms of the graph without (p50 of interleaved calls).
driving         the shipped spec plus the regression head `speed` (km/h at the tick): MAE / RMSE.
customer_service the shipped spec plus the regression head `escalation_risk` (0-1): MAE / RMSE.

Writes OUT/heads.json (default runs/bench/heads) and the `heads` section of BENCHMARKS.md (between its markers).
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

import numpy as np
from _sections import write_section
from _specs import smart_home_test_scale

from edgefuse.spec import load_spec, parse_spec, spec_to_dict
from edgefuse.trainer.data import load_dataset
from edgefuse.trainer.evaluate import evaluate
from edgefuse.trainer.synth import write_dataset
from edgefuse.trainer.train import train

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"mAP": 0.95, "accuracy_drop": 0.02, "latency_ms": 1.0}
EXTRA = {
    "smart_home": {"multilabel": {"activities": ["tv", "kettle", "washer"]}},
    "driving": {"regression": {"speed": {"unit": "km/h", "min": 0, "max": 200}}},
    "customer_service": {"regression": {"escalation_risk": {"unit": "", "min": 0, "max": 1}}},
}


def spec_for(name: str, epochs: int, with_extra: bool = True, scale: str = "test", seed: int = 0):
    if name == "smart_home" and scale == "test":
        d = smart_home_test_scale()
    else:
        d = spec_to_dict(load_spec(ROOT / "configs" / f"{name}.yaml"))
    d["train"].update(epochs=epochs, patience=epochs, seed=seed)
    if with_extra:
        d.update(EXTRA[name])
    return parse_spec(d, f"{name} + {list(EXTRA[name].values())[0]}")


def ort_latency(paths: dict[str, Path], feeds: dict[str, np.ndarray], rounds: int = 30, calls: int = 20) -> dict:
    """Batch-1 ONNX Runtime p50 per graph (1 intra-op thread), the graphs interleaved round by round."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sessions = {k: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for k, p in paths.items()}
    times: dict[str, list[float]] = {k: [] for k in paths}
    for s in sessions.values():
        for _ in range(20):
            s.run(None, feeds)
    for _ in range(rounds):
        for k, s in sessions.items():
            for _ in range(calls):
                t = time.perf_counter_ns()
                s.run(None, feeds)
                times[k].append((time.perf_counter_ns() - t) / 1e6)
    return {k: float(np.percentile(v, 50)) for k, v in times.items()}


def bench_smart_home(out: Path, samples: int, epochs: int, scale: str = "test", seed: int = 0) -> dict:
    from edgefuse.trainer.checkpoint import load_run
    from edgefuse.trainer.models.onnx import to_onnx

    spec = spec_for("smart_home", epochs, scale=scale, seed=seed)
    plain = spec_for("smart_home", epochs, with_extra=False, scale=scale, seed=seed)
    data = out / "data" / ("smart_home" if seed == 0 else f"smart_home-seed{seed}")
    if not data.exists():
        write_dataset(spec, data, samples, seed=seed, progress=False)
    ds, ds_plain = load_dataset(spec, data, progress=False), load_dataset(plain, data, progress=False)
    row: dict = {"scenario": "smart_home", "samples": len(ds), "scale": scale, "epochs": epochs, "seed": seed}
    runs = out / ("smart_home" if seed == 0 else f"smart_home-seed{seed}")
    for tag, s, d in (("with", spec, ds), ("without", plain, ds_plain)):
        m = train(s, data, runs / tag, progress=False, dataset=d)
        r = evaluate(runs / tag, data, None, with_baselines=False, progress=False, dataset=d)
        row[f"event_accuracy_{tag}"] = r["heads"]["event"]["accuracy"]
        row[f"train_time_s_{tag}"] = m["train_time_s"]
        if tag == "with":
            ml = r["multilabel"]["activities"]
            row["mAP"] = ml["mAP"]
            row["per_label"] = {
                k: {"ap": v["ap"], "f1": v["f1"], "threshold": v["threshold"]} for k, v in ml["per_label"].items()
            }
            row["exact_match"] = ml["exact_match"]
            row["n_test"] = r["n_test"]
    paths = {}
    for tag in ("with", "without"):
        s, model, _ = load_run(runs / tag)
        paths[tag] = runs / f"{tag}.onnx"
        to_onnx(model, s, paths[tag])
    test = ds.subset("test")
    feeds = {k: np.ascontiguousarray(v[:1]) for k, v in test.inputs.items()}
    feeds["mask"] = np.ascontiguousarray(test.mask[:1], dtype=np.float32)
    lat = ort_latency(paths, feeds)
    row["ort_p50_ms"] = lat
    row["latency_delta_ms"] = lat["with"] - lat["without"]
    row["accuracy_drop"] = row["event_accuracy_without"] - row["event_accuracy_with"]
    return row


def bench_regression(name: str, out: Path, samples: int, epochs: int) -> dict:
    spec = spec_for(name, epochs)
    data = out / "data" / name
    if not data.exists():
        write_dataset(spec, data, samples, seed=0, progress=False)
    ds = load_dataset(spec, data, progress=False)
    m = train(spec, data, out / name, progress=False, dataset=ds)
    r = evaluate(out / name, data, None, with_baselines=False, progress=False, dataset=ds)
    ((head, reg),) = r["regression"].items()
    return {
        "scenario": name,
        "samples": len(ds),
        "n_test": r["n_test"],
        "head": head,
        "unit": reg["unit"],
        "mae": reg["mae"],
        "rmse": reg["rmse"],
        "mae_predicting_train_mean": reg["mae_predicting_train_mean"],
        "accuracy": r["accuracy"],
        "train_time_s": m["train_time_s"],
    }


def render(rows: list[dict], meta: dict) -> str:
    lines = [
        "## Multilabel and regression heads",
        "",
        f"Measured {meta['date']} on {meta['cpu']}, {meta['cores']} cores, {meta['wall_s']:.0f} s wall, 1-min load "
        f"average during the run {meta['load']}; command: `{meta['command']}`. Synthetic data (seed 0) split "
        "70/15/15; thresholds of the multilabel head tuned on the validation split, every number on the test split.",
        "",
    ]
    home = [r for r in rows if r["scenario"] == "smart_home"]
    if len(home) > 1:  # several seeds: one line each, then mean +- std
        drops, maps = [100 * r["accuracy_drop"] for r in home], [r["mAP"] for r in home]
        lines += [
            f"**smart_home + `activities` (tv, kettle, washer; multilabel)**, {home[0]['samples']} samples "
            f"({home[0]['n_test']} test) per seed, {home[0].get('scale', 'test')}-scale spec, "
            f"{home[0].get('epochs', '?')} epochs, data and training seed = the seed:",
            "",
            "| seed | mAP | exact match | event accuracy with / without the head | drop (pts) | ONNX b1 p50 with / without |",
            "|---|---|---|---|---|---|",
            *(
                f"| {r['seed']} | {r['mAP']:.3f} | {r['exact_match']:.3f} | {r['event_accuracy_with']:.3f} / "
                f"{r['event_accuracy_without']:.3f} | {100 * r['accuracy_drop']:+.1f} | {r['ort_p50_ms']['with']:.3f} / "
                f"{r['ort_p50_ms']['without']:.3f} ms |"
                for r in home
            ),
            "",
            f"Over {len(home)} seeds: mAP {np.mean(maps):.3f} +- {np.std(maps):.3f} (target >= {TARGETS['mAP']}), "
            f"event accuracy drop {np.mean(drops):+.1f} +- {np.std(drops):.1f} pts (target <= "
            f"{100 * TARGETS['accuracy_drop']:.0f} pts).",
            "",
        ]
    for r in rows if len(home) < 2 else [r for r in rows if r["scenario"] != "smart_home"]:
        if r["scenario"] == "smart_home":
            ok = lambda c: "met" if c else "NOT met"  # noqa: E731
            lines += [
                f"**smart_home + `activities` (tv, kettle, washer; multilabel)**, {r['samples']} samples "
                f"({r['n_test']} test), {r.get('scale', 'test')}-scale spec, {r.get('epochs', '?')} epochs:",
                "",
                "| | value | target |",
                "|---|---|---|",
                f"| mAP | {r['mAP']:.3f} | >= {TARGETS['mAP']} ({ok(r['mAP'] >= TARGETS['mAP'])}) |",
                f"| exact match (all 3 labels right) | {r['exact_match']:.3f} | |",
                f"| event accuracy with / without the head (same data) | {r['event_accuracy_with']:.3f} / "
                f"{r['event_accuracy_without']:.3f} | drop <= {100 * TARGETS['accuracy_drop']:.0f} pts "
                f"({ok(r['accuracy_drop'] <= TARGETS['accuracy_drop'] + 1e-9)}) |",
                f"| ONNX Runtime batch-1 p50 with / without (1 thread, interleaved) | {r['ort_p50_ms']['with']:.3f} / "
                f"{r['ort_p50_ms']['without']:.3f} ms | within {TARGETS['latency_ms']} ms "
                f"({ok(abs(r['latency_delta_ms']) <= TARGETS['latency_ms'])}) |",
                f"| training time with / without | {r['train_time_s_with']:.0f} / {r['train_time_s_without']:.0f} s | |",
                "",
                "| label | AP | F1 at the tuned threshold | threshold |",
                "|---|---|---|---|",
                *(f"| {k} | {v['ap']:.3f} | {v['f1']:.3f} | {v['threshold']:.3f} |" for k, v in r["per_label"].items()),
                "",
            ]
    reg = [r for r in rows if r["scenario"] != "smart_home"]
    if reg:
        lines += [
            "**Regression heads** (the shipped spec plus one regression head, value derived from the episode's latent "
            "parameters and rendered in its signals):",
            "",
            "| scenario | head | MAE | RMSE | MAE predicting the train mean | classification accuracy | samples | train time |",
            "|---|---|---|---|---|---|---|---|",
            *(
                f"| {r['scenario']} | {r['head']} ({r['unit'] or 'unitless'}) | {r['mae']:.3g} | {r['rmse']:.3g} | "
                f"{r['mae_predicting_train_mean']:.3g} | {r['accuracy']:.3f} | {r['samples']} | {r['train_time_s']:.0f} s |"
                for r in reg
            ),
            "",
        ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=1000, help="smart_home samples")
    ap.add_argument("--epochs", type=int, default=14)
    ap.add_argument("--scale", choices=("test", "full"), default="test", help="smart_home at test scale or as shipped")
    ap.add_argument("--reg-samples", type=int, default=600, help="samples of the regression scenarios")
    ap.add_argument("--reg-epochs", type=int, default=8)
    ap.add_argument("--parts", default="smart_home,driving,customer_service")
    ap.add_argument("--seeds", type=int, default=1, help="smart_home: data and training seeds 0..N-1")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "heads")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md as it is")
    ap.add_argument("--render", action="store_true", help="write the section from OUT/heads.json of an earlier run")
    args = ap.parse_args()
    if args.render:
        done = json.loads((args.out / "heads.json").read_text())
        write_section(ROOT / "BENCHMARKS.md", "heads", render(done["rows"], done["meta"]))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    t0, loads = time.time(), [os.getloadavg()[0]]
    rows = []
    for part in args.parts.split(","):
        if part == "smart_home":
            for seed in range(args.seeds):
                rows.append(bench_smart_home(args.out, args.samples, args.epochs, args.scale, seed))
                print(json.dumps(rows[-1], indent=1), flush=True)
            continue
        else:
            rows.append(bench_regression(part, args.out, args.reg_samples, args.reg_epochs))
        loads.append(os.getloadavg()[0])
        print(json.dumps(rows[-1], indent=1), flush=True)
    info = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), "?")
    meta = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "wall_s": time.time() - t0,
        "load": f"{min(loads):.1f}-{max(loads):.1f}",
        "command": "python benchmarks/bench_heads.py " + " ".join(sys.argv[1:]),
        "python": platform.python_version(),
    }
    (args.out / "heads.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    text = render(rows, meta)
    print(text)
    if not args.no_write:
        write_section(ROOT / "BENCHMARKS.md", "heads", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
