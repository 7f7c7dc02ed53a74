"""GPU benchmark: backends x precisions x batch sizes on one bundle, then the live runtime on a GPU backend.

    python benchmarks/bench_gpu.py --bundle bundles/home --data data/home
    python benchmarks/bench_gpu.py --bundle bundles/home --data data/home --build-engines --markdown BENCHMARKS.md

Rows: ONNX Runtime on the CPU and on its GPU provider (TensorRT EP, else CUDA EP) at fp32/fp16/int8; torch on the
CPU (fp32) and on CUDA (fp32/fp16, eager and CUDA graphs); TensorRT engines at fp32/fp16/int8 (--build-engines
builds the missing ones for this GPU first). Every row that loads is timed at every batch size, interleaved in
rounds (this kind of host is shared and noisy: compare rows by ratios from one run); a row that cannot load here
says why ("needs a GPU: ..."). Then `edgefuse run` on the scenario's synthetic streams, once with ONNX Runtime on the
CPU and once with the best GPU backend (TensorRT if an engine fits, else torch CUDA graphs), comparing the runtime's
own overhead per tick.

Targets on a GPU host: torch CUDA graphs >= 3x eager at batch 1; runtime overhead with a GPU backend no worse than
with ONNX Runtime on the CPU. On a host without a GPU the CPU rows run and the GPU rows are listed as not run.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from _sections import write_section

from edgefuse._optional import MissingDependency, available
from edgefuse.deploy.backends import load_backend
from edgefuse.deploy.bundle import load_bundle
from edgefuse.deploy.export import dataset_feeds, take
from edgefuse.errors import EdgefuseError

ROOT = Path(__file__).resolve().parents[1]
# (label, backend, precision, keyword arguments)
ROWS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("onnxruntime cpu", "onnxruntime", "fp32", {"device": "cpu", "threads": 1}),
    ("onnxruntime cpu", "onnxruntime", "fp16", {"device": "cpu", "threads": 1}),
    ("onnxruntime cpu", "onnxruntime", "int8", {"device": "cpu", "threads": 1}),
    ("onnxruntime gpu", "onnxruntime", "fp32", {"device": "cuda"}),
    ("onnxruntime gpu", "onnxruntime", "fp16", {"device": "cuda"}),
    ("onnxruntime gpu", "onnxruntime", "int8", {"device": "cuda"}),
    ("torch cpu", "torch", "fp32", {"device": "cpu", "threads": 1}),
    ("torch cuda eager", "torch", "fp32", {"device": "cuda"}),
    ("torch cuda eager", "torch", "fp16", {"device": "cuda"}),
    ("torch cuda graphs", "torch", "fp32", {"device": "cuda", "cuda_graphs": True}),
    ("torch cuda graphs", "torch", "fp16", {"device": "cuda", "cuda_graphs": True}),
    ("tensorrt", "tensorrt", "fp32", {}),
    ("tensorrt", "tensorrt", "fp16", {}),
    ("tensorrt", "tensorrt", "int8", {}),
]


def gpu_name() -> str | None:
    """The CUDA device torch sees, or None (also without torch)."""
    if not available("torch"):
        return None
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def load_rows(bundle: Path) -> list[dict[str, Any]]:
    """Every row with its loaded backend, or the reason it cannot run here."""
    out = []
    for label, backend, precision, kw in ROWS:
        row: dict[str, Any] = {"row": label, "backend": backend, "precision": precision, "be": None}
        try:
            row["be"] = load_backend(bundle, backend=backend, precision=precision, **kw)
            row["device"] = row["be"].describe().get("device")
            row["engine_mb"] = row["be"].describe().get("engine_mb")
            row["status"] = "ok"
        except (EdgefuseError, MissingDependency, ImportError) as err:
            gpu_row = backend == "tensorrt" or kw.get("device") == "cuda"
            text = str(err).split("; install")[0][:150]  # the reason, without the install hint
            row["status"] = f"{'needs a GPU: ' if gpu_row else 'skipped: '}{text}"
        out.append(row)
    return out


def time_rows(rows: list[dict], test: dict[str, np.ndarray], batches: list[int], rounds: int, iters: int) -> None:
    """p50/p99 ms per batch and samples/s for each loaded row and batch size, interleaved in `rounds`."""
    n = len(test["mask"])
    feeds = {b: take(test, np.arange(b) % n) for b in batches}
    live = [r for r in rows if r["be"] is not None]
    for r in live:
        r["times"] = {b: [] for b in batches}
        for b in batches:  # warm-up: lazy init, CUDA graph capture per batch size, engine buffers
            for _ in range(5):
                r["be"].run(feeds[b])
    for _ in range(rounds):
        for r in live:
            for b in batches:
                for _ in range(iters):
                    t0 = time.perf_counter_ns()
                    r["be"].run(feeds[b])
                    r["times"][b].append((time.perf_counter_ns() - t0) / 1e6)
    for r in live:
        r["stats"] = {}
        for b, ts in r["times"].items():
            p50, p99 = np.percentile(ts, [50, 99])
            r["stats"][b] = (float(p50), float(p99), b * 1e3 / float(np.median(ts)))
        r["be"].close()


def live_runtime(config: Path, bundle: Path, duration_s: float) -> list[dict[str, Any]]:
    """`edgefuse run` on synthetic streams with ONNX Runtime on the CPU, then with the best GPU backend."""
    from edgefuse.runtime.app import _apply_overrides, run
    from edgefuse.spec import load_spec

    out = []
    gpu = gpu_name() is not None
    for label, flags in (
        ("onnxruntime cpu", {"backend": "onnxruntime", "device": "cpu", "threads": 1}),
        ("gpu (auto: tensorrt engine, else onnxruntime gpu provider)", {"backend": "auto", "device": "cuda"}),
        ("torch cuda graphs", {"backend": "torch", "device": "cuda", "cuda_graphs": True}),
    ):
        row: dict[str, Any] = {"row": label}
        if flags["device"] == "cuda" and not gpu:
            row["status"] = "needs a GPU: torch sees no CUDA device here"
            out.append(row)
            continue
        with socket.socket() as s:  # a free loopback port for the publisher
            s.bind(("127.0.0.1", 0))
            endpoint = f"tcp://127.0.0.1:{s.getsockname()[1]}"
        spec = _apply_overrides(load_spec(config), argparse.Namespace(endpoint=endpoint, **flags))
        try:
            s = run(spec, bundle, duration_s)
        except (EdgefuseError, MissingDependency) as err:
            row["status"] = f"error: {err}"
            out.append(row)
            continue
        be = s["backend"]
        row.update(
            status="ok" if not s["errors"] else f"errors: {s['errors']}",
            model=f"{be['name']} {be['precision']} on {be.get('device')}",
            ticks=s["ticks"],
            overhead=(s["overhead_ms"]["p50"], s["overhead_ms"]["p99"]),
            infer=(s["latency_ms"].get("infer", {}).get("p50"), s["latency_ms"].get("infer", {}).get("p99")),
            e2e=(s["e2e_ms"]["p50"], s["e2e_ms"]["p99"]),
        )
        out.append(row)
    return out


def _f(x: float | None, d: int = 3) -> str:
    return "-" if x is None else f"{x:.{d}f}"


def variants_table(bundle: Path) -> list[str]:
    """The bundle's variants as exported: held-out accuracy measured in ONNX Runtime, and the TensorRT check."""
    m = load_bundle(bundle).manifest
    check = m.trt_check.variants if m.trt_check is not None else {}
    lines = [
        "| variant | file | accuracy % (ONNX Runtime, test split) | TensorRT check | notes |",
        "|---|---|---|---|---|",
    ]
    for name, v in m.variants.items():
        acc = ", ".join(f"{h} {100 * a:.2f}" for h, a in (v.accuracy or {}).items()) or "-"
        c = check.get(name)
        verdict = "-" if c is None else "ok" if c.ok else "ONNX Runtime only" if not c.engine_precision else "fails"
        notes = v.notes.replace("|", "\\|")  # "max |p - p_fp32|" inside a table cell
        lines.append(f"| {name} | {v.file} | {acc} | {verdict} | {notes} |")
    return lines


def report(rows: list[dict], live: list[dict], batches: list[int], header: str, bundle: Path) -> str:
    lines = [header, "", "Bundle variants (accuracy recorded by `edgefuse export`):", "", *variants_table(bundle)]
    lines += ["", "| row | precision | device | engine MB | " + " | ".join(
        f"b{b} p50 / p99 ms, samples/s" for b in batches) + " |"]  # fmt: skip
    lines.append("|" + "---|" * (4 + len(batches)))
    for r in rows:
        if "stats" not in r:
            cells = [r["status"]] + [""] * (len(batches) - 1)
        else:
            cells = [f"{_f(p50)} / {_f(p99)}, {tp:.0f}" for p50, p99, tp in (r["stats"][b] for b in batches)]
        mb = _f(r.get("engine_mb"), 2) if r.get("engine_mb") is not None else "-"
        lines.append(f"| {r['row']} | {r['precision']} | {r.get('device') or '-'} | {mb} | " + " | ".join(cells) + " |")
    ratio = _graphs_ratio(rows)
    if ratio is not None:
        lines += ["", f"torch CUDA graphs vs eager, fp32 batch 1 p50: **{ratio:.2f}x** (target >= 3x)."]
    lines += ["", "Live runtime (`edgefuse run`, synthetic streams):", ""]
    lines += ["| backend | model | ticks | overhead p50 / p99 ms | infer p50 / p99 ms | e2e p50 / p99 ms |"]
    lines += ["|---|---|---|---|---|---|"]
    for r in live:
        if r.get("status") != "ok":
            lines.append(f"| {r['row']} | {r['status']} | | | | |")
            continue
        o, i, e = r["overhead"], r["infer"], r["e2e"]
        lines.append(
            f"| {r['row']} | {r['model']} | {r['ticks']} | {_f(o[0])} / {_f(o[1])} | {_f(i[0])} / {_f(i[1])} | "
            f"{_f(e[0])} / {_f(e[1])} |"
        )
    return "\n".join(lines)


def _graphs_ratio(rows: list[dict]) -> float | None:
    by = {(r["row"], r["precision"]): r for r in rows if "stats" in r}
    eager, graphs = by.get(("torch cuda eager", "fp32")), by.get(("torch cuda graphs", "fp32"))
    if eager is None or graphs is None:
        return None
    return eager["stats"][1][0] / graphs["stats"][1][0] if 1 in eager["stats"] else None


def build_missing_engines(bundle: Path) -> list[str]:
    """Build this GPU's engine for each precision the bundle has a source for, where none fits yet."""
    from edgefuse.deploy.engine import build_engine, find_engine

    notes = []
    for p in ("fp32", "fp16", "int8"):
        if find_engine(bundle, p, dla_core=None) is None:
            try:
                build_engine(bundle, p)
            except (EdgefuseError, MissingDependency) as err:
                notes.append(f"{p}: {err}")
    return notes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True, help="bundle folder (export with --precision fp16,int8)")
    ap.add_argument("--data", required=True, help="dataset folder; batches are cut from its test split")
    ap.add_argument("--config", default=str(ROOT / "configs" / "smart_home.yaml"), help="scenario for the live run")
    ap.add_argument("--batches", default="1,8,32", help="comma list of batch sizes")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    ap.add_argument("--iters", type=int, default=40, help="timed runs per row, batch size and round")
    ap.add_argument("--live-duration", type=float, default=10.0, help="seconds of each live run (0: skip)")
    ap.add_argument("--build-engines", action="store_true", help="build missing TensorRT engines first (GPU)")
    ap.add_argument("--markdown", default=None, help="write the results into this BENCHMARKS.md section")
    ap.add_argument("--note", default="", help="text put under the heading (how the bundle was made, host load)")
    args = ap.parse_args()
    from edgefuse.trainer.data import load_data

    bundle, batches = Path(args.bundle), [int(b) for b in args.batches.split(",")]
    notes = build_missing_engines(bundle) if args.build_engines else []
    test = dataset_feeds(load_data(load_bundle(bundle).spec, args.data, progress=False).subset("test"))
    rows = load_rows(bundle)
    time_rows(rows, test, batches, args.rounds, args.iters)
    live = live_runtime(Path(args.config), bundle, args.live_duration) if args.live_duration > 0 else []
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    device = gpu_name() or f"no GPU ({platform.processor() or platform.machine()} CPU only)"
    header = (
        f"## GPU path (backends x precisions x batch sizes)\n\nMeasured {when} on {device}, with:\n\n```\n"
        f"python {' '.join(shlex.quote(a) for a in sys.argv)}\n```"
    )
    if args.note:
        header += "\n\n" + args.note
    if notes:
        header += "\n\nEngine builds that failed: " + "; ".join(notes)
    text = report(rows, live, batches, header, bundle)
    print(text)
    if args.markdown:
        write_section(Path(args.markdown), "gpu", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
