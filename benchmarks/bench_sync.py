"""Synchronizer benchmark on jittered, dropped and offset streams with known ground truth.

    python benchmarks/bench_sync.py --seconds 120 --baseline 106a2d7 --markdown BENCHMARKS.md \
        [--bundle runs/demo/bundle --run-seconds 31]

Streams are generated with their true capture times, then stamped as a host would see them: Gaussian stamp jitter,
dropped samples or blocks, a random transport delay (arrival = end of capture + delay). They are pushed in arrival
order and polled at each arrival, exactly as the pipeline's sync thread does (runtime.sync.drive).

  per tick    time inside poll() per emitted tick (assembly, early assembly and readiness checks): the mean over
              the run, and the median of each tick's share (the polls since the previous emission)
  per push    CPU time inside push() per sample, and per row for blocks
  presence    % of ticks with the modality present, after the longest window has filled, streams healthy
  sync error  |stored capture time - truth| of the samples fused, p50 / p99
  stale       a stream killed mid-run: the age of its newest data at the first tick that masks it, against its bound
  paths       window takes sliced from sample-contiguous runs vs resampled (runtime/sync.py)

`--baseline REV` runs the synchronizer of an older commit (git show REV:runtime/sync.py) on the same streams,
interleaved round by round, so its cost is a ratio measured in the same run. `--bundle` adds `edgefuse run`'s own
overhead (e2e minus inference and batch wait) over a live run of >= 300 ticks (benchmarks/bench_runtime.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _sections import write_section

from edgefuse.runtime.clock import Sample
from edgefuse.spec import load_spec, parse_spec, spec_to_dict

MS = 1_000_000
NS = 1_000_000_000
ROOT = Path(__file__).resolve().parents[1]


def rig_spec(config: str, rig: str) -> Any:
    """smart_home as shipped; "tight": its camera tolerance half a frame period; or the "rig": a 30 Hz camera and a
    100 Hz IMU added (the issue's realistic streams)."""
    data = spec_to_dict(load_spec(config))
    if rig.startswith("tight"):  # the tolerance a user sets for a 10 Hz camera: half its period
        data["modalities"]["camera"]["sync"]["tolerance_s"] = 0.05
    if rig == "tight-lock":
        data["runtime"]["phase_lock"] = "camera"
    if rig == "rig":
        data["modalities"]["camera"]["rate_hz"] = 30
        data["modalities"]["imu"] = {
            "kind": "series",
            "rate_hz": 100,
            "window_s": 2.0,
            "channels": ["ax", "ay", "az", "gx", "gy", "gz"],
            "sync": {"policy": "window", "min_coverage": 0.8},
        }
        data["model"]["encoders"]["imu"] = {"type": "cnn1d"}
    return parse_spec(data, config)


def streams(spec: Any, seconds: float, jitter_ms: float, drop: float, seed: int, kill: str | None = None) -> list:
    """Samples of every modality with ground truth; `kill` stops that modality at 60 % of the run."""
    rng = np.random.default_rng(seed)
    out: list[Sample] = []
    offsets_ms = {"camera": 50.0, "env": 25.0}  # the camera half a 10 Hz period off the tick grid; env +25 ms
    t0 = 10 * NS
    for name, m in spec.modalities.items():
        block = m.source.blocksize if m.kind == "audio" else 1
        if m.kind == "text":
            continue
        period = NS / m.rate_hz
        step = block * period
        n = int(seconds * NS / step)
        stop = t0 + 0.6 * seconds * NS if name == kill else None
        for k in range(n):
            t_true = t0 + round(offsets_ms.get(name, 0.0) * MS + k * step)
            if stop is not None and t_true > stop:
                break
            if rng.random() < drop:
                continue
            t_cap = t_true + round(rng.normal(0, jitter_ms * MS))
            arrival = t_true + round(step - period) + round(rng.uniform(2, 15) * MS)
            arrival = max(arrival, t_cap)
            meta = {"t_true_ns": t_true}
            if m.kind == "image":
                data: Any = np.full((*m.shape, 3), k % 256, np.uint8)
                out.append(Sample(name, k, t_cap, arrival, data, 0.0, meta))
            else:
                data = rng.standard_normal((block, m.n_channels)).astype(np.float32)
                out.append(Sample(name, k, t_cap, arrival, data, m.rate_hz if block > 1 else 0.0, meta))
    out.sort(key=lambda s: s.t_arrival_ns)
    return out


def _last_row_ns(s: Sample, m: Any) -> int:
    rows = len(s.data) if m.kind in ("audio", "series") else 1
    return s.t_capture_ns + round((rows - 1) * NS / m.rate_hz)


def load_sync_module(rev: str | None) -> Any:
    if rev is None:
        import edgefuse.runtime.sync as mod

        return mod
    src = subprocess.run(
        ["git", "show", f"{rev}:runtime/sync.py"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    path = Path(tempfile.mkdtemp(prefix="bench_sync_")) / f"sync_{rev}.py"
    path.write_text(src.stdout)
    spec = importlib.util.spec_from_file_location(f"sync_{rev}", path)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = mod  # type: ignore[union-attr]  # dataclasses look their module up
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def run(mod: Any, spec: Any, samples: list, kill: str | None = None) -> dict[str, Any]:
    sync = mod.Synchronizer(spec)
    names = spec.modality_names
    push_ns: dict[str, list[int]] = {m: [] for m in names}
    rows: dict[str, int] = dict.fromkeys(names, 0)
    poll_ns, since, per_tick, ticks = 0, 0, [], []
    clock = time.perf_counter_ns
    for s in samples:  # as Synchronizer.feed, with the push timed apart from the polls
        a = clock()
        out = sync.poll(s.t_arrival_ns - 1)
        b = clock()
        sync.push(s)
        c = clock()
        out += sync.poll(s.t_arrival_ns)
        d = clock()
        push_ns[s.source].append(c - b)
        rows[s.source] += 1 if isinstance(s.data, str) or s.data.ndim == 3 else len(s.data)
        poll_ns += (b - a) + (d - c)
        since += (b - a) + (d - c)
        if out:  # the poll work since the last emission, per tick emitted now
            per_tick.extend([since / len(out)] * len(out))
            since = 0
        for tk in out:  # keep what is measured, not the tensors: a live run frees them after publishing, and
            tk.inputs = {}  # holding every tick's 113 KB would make each new tick fault in fresh pages
        ticks.extend(out)
    longest = max(m.window_s for m in spec.modalities.values())
    t_start = samples[0].t_capture_ns + round((longest + 0.5) * NS)
    live = [tk for tk in ticks if tk.t_tick_ns >= t_start]
    last_real = {  # capture time of each modality's newest real row (a block's last row)
        m: max((_last_row_ns(s, spec.modalities[m]) for s in samples if s.source == m), default=0) for m in names
    }
    healthy = [tk for tk in live if kill is None or tk.t_tick_ns <= last_real[kill]]
    res: dict[str, Any] = {
        "ticks": len(ticks),
        "per_tick_ms": poll_ns / max(len(ticks), 1) / 1e6,  # mean: every poll, quiet or not, over the ticks
        "per_tick_p50_ms": float(np.median(per_tick)) / 1e6 if per_tick else None,
        "push_us": {m: float(np.mean(v)) / 1e3 for m, v in push_ns.items() if v},
        "push_us_per_row": {m: sum(v) / rows[m] / 1e3 for m, v in push_ns.items() if v},
        "presence_pct": {
            m: 100.0 * float(np.mean([tk.mask[i] for tk in healthy])) for i, m in enumerate(names) if m != "text"
        },
    }
    errs = {m: [tk.sync_err_ns[m] for tk in live if tk.sync_err_ns.get(m) is not None] for m in names}
    res["sync_err_ms"] = {
        m: (float(np.percentile(v, 50)) / MS, float(np.percentile(v, 99)) / MS) for m, v in errs.items() if v
    }
    if hasattr(sync, "stats"):
        res["paths"] = sync.stats()
    if kill is not None:
        i = names.index(kill)
        after = [tk for tk in ticks if tk.t_tick_ns > last_real[kill]]
        present = [(tk.t_tick_ns - last_real[kill]) / MS for tk in after if tk.mask[i] == 1]
        masked = [(tk.t_tick_ns - last_real[kill]) / MS for tk in after if tk.mask[i] == 0]
        track, m = sync.tracks[kill], spec.modalities[kill]
        bound = m.sync.tolerance_s * NS if m.sync.policy == "nearest" else getattr(track, "stale_ns", float("nan"))
        res["stale"] = {
            "oldest_present_ms": max(present, default=None),
            "youngest_masked_ms": min(masked, default=None),
            "masked_after": len(masked),
            "ticks_after": len(after),
            "bound_ms": bound / MS,
        }
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/smart_home.yaml")
    p.add_argument("--seconds", type=float, default=120.0, help="stream length per scenario")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (new vs baseline)")
    p.add_argument("--baseline", default=None, help="git revision whose runtime/sync.py to compare against")
    p.add_argument("--bundle", default=None, help="also measure edgefuse run's overhead with this bundle")
    p.add_argument("--run-seconds", type=float, default=31.0, help="live run length (10 Hz ticks)")
    p.add_argument("--json", default=None)
    p.add_argument("--markdown", default=None)
    args = p.parse_args(argv)

    mods = {"new": load_sync_module(None)}
    if args.baseline:
        mods["baseline"] = load_sync_module(args.baseline)
    scenarios = [  # (name, rig, jitter ms, drop fraction, tick_hz)
        ("smart_home ±5 ms jitter, 2 % drops", "smart_home", 5.0, 0.02, 2.0),
        ("smart_home, camera tolerance 50 ms (half a period)", "tight", 5.0, 0.02, 2.0),
        ("the same with runtime.phase_lock: camera", "tight-lock", 5.0, 0.02, 2.0),
        ("smart_home ±5 ms, 2 %, 10 Hz ticks", "smart_home", 5.0, 0.02, 10.0),
        ("rig: cam 30 Hz + IMU 100 Hz, ±2 ms, 1 %", "rig", 2.0, 0.01, 2.0),
        ("rig: cam 30 Hz + IMU 100 Hz, ±5 ms, 5 %", "rig", 5.0, 0.05, 2.0),
    ]
    results: dict[str, dict[str, list]] = {}
    for name, rig, jitter, drop, tick_hz in scenarios:
        spec = rig_spec(args.config, rig)
        spec.runtime.tick_hz = tick_hz
        results[name] = {k: [] for k in mods}
        for r in range(args.rounds):
            samples = streams(spec, args.seconds, jitter, drop, seed=r)
            for key, mod in mods.items():  # interleaved: both implementations on the same streams, each round
                results[name][key].append(run(mod, spec, samples))
                print(name, key, r, json.dumps(results[name][key][-1]), flush=True)
    spec = rig_spec(args.config, "smart_home")
    spec.runtime.tick_hz = 10.0
    stale = {}
    for kill in ("env", "mic", "camera"):
        stale[kill] = run(mods["new"], spec, streams(spec, 30.0, 5.0, 0.02, seed=7, kill=kill), kill=kill)["stale"]
        print("stale", kill, stale[kill], flush=True)
    live = None
    if args.bundle:
        sys.path.insert(0, str(Path(__file__).parent))
        import bench_runtime

        session = bench_runtime.prerender(
            args.config, Path(tempfile.mkdtemp(prefix="bench_sync_")) / "s", 2 * args.run_seconds
        )
        live = bench_runtime.run_once(args.config, args.bundle, 1, args.run_seconds, session)
        print("live", json.dumps(live), flush=True)
    report = {"scenarios": results, "stale": stale, "live": live}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float) + "\n")
    md = markdown(report, "python benchmarks/bench_sync.py " + shlex.join(argv if argv is not None else sys.argv[1:]))
    print(md)
    if args.markdown:
        write_section(Path(args.markdown), "sync", md)
    return 0


def _med(vals: list[float]) -> float:
    return float(np.median(vals))


def markdown(rep: dict[str, Any], cmd: str) -> str:
    lines = [
        "## Synchronizer",
        "",
        f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC with `{cmd}` on this 2-core CPU host",
        "(shared). Streams with known truth: camera frames 50 ms (half a 10 Hz period) off the tick grid, env +25 ms,",
        "mic 512-sample blocks at 16 kHz, Gaussian stamp jitter, dropped samples/blocks, 2-15 ms transport delay.",
        "Medians over the rounds; `baseline` is the older synchronizer on the same streams, interleaved.",
        "",
        "| scenario | impl | ticks | per tick ms mean (p50) | push µs/row mic | push µs env (1 row) | presence % cam / mic / env"
        " | sync err p99 ms cam / mic / env | window takes run / resample |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, by_impl in rep["scenarios"].items():
        for impl, rounds in by_impl.items():
            pres = [_med([r["presence_pct"].get(m, np.nan) for r in rounds]) for m in ("camera", "mic", "env")]
            err = [
                _med([r["sync_err_ms"].get(m, (np.nan, np.nan))[1] for r in rounds]) for m in ("camera", "mic", "env")
            ]
            paths = rounds[0].get("paths")
            took = "-"
            if paths:
                took = f"{sum(v['run'] for v in paths.values())} / {sum(v['resample'] for v in paths.values())}"
            lines.append(
                f"| {name} | {impl} | {rounds[0]['ticks']} | {_med([r['per_tick_ms'] for r in rounds]):.3f} "
                f"({_med([r['per_tick_p50_ms'] for r in rounds]):.3f}) "
                f"| {_med([r['push_us_per_row']['mic'] for r in rounds]):.3f} "
                f"| {_med([r['push_us']['env'] for r in rounds]):.1f} "
                f"| {pres[0]:.1f} / {pres[1]:.1f} / {pres[2]:.1f} | {err[0]:.2f} / {err[1]:.2f} / {err[2]:.2f} | {took} |"
            )
        if "baseline" in by_impl:
            ratio = _med([r["per_tick_ms"] for r in by_impl["new"]]) / _med(
                [r["per_tick_ms"] for r in by_impl["baseline"]]
            )
            lines.append(f"| {name} | new / baseline per tick | | **{ratio:.2f}x** | | | | | |")
    lines += [
        "",
        "Reading the tolerance rows: frames 50 ms off the grid with ±5 ms jitter lie within a 50 ms tolerance of a",
        "tick, before or after it, on about 75 % of ticks (neither does on the rest), which is what the new",
        "synchronizer takes; the old one lost the frames after the tick to the budget. runtime.phase_lock moves the",
        "ticks onto the frames. `per tick` counts every poll; `push` is per sample (env: one reading).",
    ]
    lines += [
        "",
        "Staleness (smart_home, 10 Hz ticks, one stream killed at 60 % of a 30 s run): ages of its newest data at the",
        "ticks after it stopped; every tick older than the bound must be masked (nearest: the tolerance is the bound).",
        "",
        "| killed | bound ms | oldest present ms | youngest masked ms | masked / ticks after |",
        "|---|---|---|---|---|",
    ]
    for kill, st in rep["stale"].items():
        lines.append(
            f"| {kill} | {st['bound_ms']:.0f} | {st['oldest_present_ms']} | {st['youngest_masked_ms']} "
            f"| {st['masked_after']} / {st['ticks_after']} |"
        )
    live = rep.get("live")
    if live:
        lines += [
            "",
            f"`edgefuse run` live (bench_runtime.run_once, smart_home at 10 Hz ticks, 1 group, {live['ticks']} ticks): "
            f"overhead p50 {live['overhead_ms']['p50']} / p99 **{live['overhead_ms']['p99']} ms** (target <= 1 ms); "
            f"e2e to SUB p50 {live['e2e_receipt_ms']['p50']} / p99 {live['e2e_receipt_ms']['p99']} ms; "
            f"infer p99 {live['infer_ms']['p99']} ms; wait p50 {live['wait_ms']['p50']} ms; "
            f"sync stage p50 / p99 {live['sync_ms']['p50']} / {live['sync_ms']['p99']} ms.",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
