"""`edgefuse bench`: every backend and precision of a bundle in one table (accuracy, latency, throughput, size).

    edgefuse bench --bundle bundles/home --data data/home --json runs/home/bench.json

Rows: onnxruntime fp32/fp16/int8, torch fp32, tensorrt per precision (an engine's size is the engine file's). A row whose backend cannot load here
(no TensorRT, no engine for this GPU, a variant not exported) is "skipped: <reason>"; one that loads but fails is
"error: <reason>". Latency is batch 1 (p50/p99 over --iters runs after a warm-up); throughput is batch 32.
preprocess_ms is the host-side work per sample the runtime does before inference (image resize/colour/scale from a
640x480 camera frame, text hashing), measured apart from inference, so it is the same on every row.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgefuse._optional import MissingDependency
from edgefuse.deploy.backends import Backend, load_backend
from edgefuse.deploy.bundle import Bundle, load_bundle
from edgefuse.deploy.export import EVAL_BATCH, accuracy, batches, dataset_feeds, take
from edgefuse.errors import BundleError, EdgefuseError
from edgefuse.manifest import PRECISIONS
from edgefuse.preprocess import prepare_image, prepare_text
from edgefuse.spec import ScenarioSpec

Feeds = dict[str, np.ndarray]
COLUMNS = [
    "backend",
    "precision",
    "status",
    "size_mb",
    "accuracy",
    "p50_ms_b1",
    "p99_ms_b1",
    "throughput_b32",
    "preprocess_ms",
    "device",
]
THROUGHPUT_BATCHES = 20


def latency_ms(backend: Backend, feeds: Feeds, iters: int, warmup: int = 10) -> tuple[float, float]:
    """(p50, p99) wall time of backend.run on batch-1 samples, cycling through `feeds`."""
    n = len(feeds["mask"])
    singles = [take(feeds, slice(i % n, i % n + 1)) for i in range(min(n, 64))]
    for i in range(warmup):
        backend.run(singles[i % len(singles)])
    times = np.empty(iters)
    for i in range(iters):
        t0 = time.perf_counter()
        backend.run(singles[i % len(singles)])
        times[i] = time.perf_counter() - t0
    p50, p99 = np.percentile(times * 1e3, [50, 99])
    return float(p50), float(p99)


def throughput(backend: Backend, feeds: Feeds, batch: int = 32, n_batches: int = THROUGHPUT_BATCHES) -> float:
    """Samples per second running batches of `batch` back to back (the test samples tiled up to `batch`)."""
    n = len(feeds["mask"])
    b = take(feeds, np.arange(batch) % n)
    for _ in range(3):
        backend.run(b)
    t0 = time.perf_counter()
    for _ in range(n_batches):
        backend.run(b)
    return batch * n_batches / (time.perf_counter() - t0)


def held_out_accuracy(backend: Backend, feeds: Feeds, targets: dict[str, np.ndarray]) -> dict[str, float]:
    """Accuracy per head over the whole test split, in batches of 32."""
    parts = [backend.run(b) for b in batches(feeds, EVAL_BATCH)]
    probs = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return accuracy(probs, targets)


def preprocess_ms(spec: ScenarioSpec, iters: int = 50) -> float:
    """Host-side preprocessing per sample: every image modality from a 640x480 BGR frame, every text modality."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)  # a typical camera frame, BGR
    sentence = "hello i was charged twice on my bill this month and i want a refund please"
    work = []
    for name, m in spec.modalities.items():
        if m.kind == "image":
            work.append(lambda m=m: prepare_image(frame, m))
        elif m.kind == "text":
            cfg = spec.model.encoders[name]
            work.append(lambda m=m, cfg=cfg: prepare_text(sentence, m, cfg.buckets, cfg.ngrams))
    if not work:
        return 0.0  # audio and series reach the model in raw units: nothing to do per sample
    t0 = time.perf_counter()
    for _ in range(iters):
        for w in work:
            w()
    return (time.perf_counter() - t0) * 1e3 / iters


def _size_mb(bundle: Bundle, backend: str, precision: str) -> float | None:
    if backend == "onnxruntime":
        v = bundle.manifest.variants.get(precision)
        return (bundle.dir / v.file).stat().st_size / 1e6 if v else None
    if backend == "torch" and bundle.manifest.torch_file:
        return (bundle.dir / bundle.manifest.torch_file).stat().st_size / 1e6
    return None  # tensorrt: the engine's size, reported by its backend when it loads


def bench_row(
    bundle: Bundle, backend: str, precision: str, test: Feeds, targets: dict, iters: int, **kw: Any
) -> dict[str, Any]:
    """One table row; loading problems become "skipped: ...", failures while running "error: ..."."""
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(backend=backend, precision=precision, size_mb=_size_mb(bundle, backend, precision))
    try:
        be = load_backend(bundle.dir, backend=backend, precision=precision, **kw)
    except (EdgefuseError, MissingDependency, ImportError) as err:
        row["status"] = f"skipped: {err}"
        return row
    info = be.describe()
    row["device"] = info.get("device")
    if info.get("engine_mb") is not None:
        row["size_mb"] = info["engine_mb"]  # the TensorRT engine file this row ran
    try:
        with be:
            row["accuracy_heads"] = held_out_accuracy(be, test, targets)
            row["accuracy"] = float(np.mean(list(row["accuracy_heads"].values())))
            row["p50_ms_b1"], row["p99_ms_b1"] = latency_ms(be, test, iters)
            row["throughput_b32"] = throughput(be, test)
            row["status"] = "ok"
    except Exception as err:  # noqa: BLE001 - one failing backend must not hide the others' rows
        row["status"] = f"error: {type(err).__name__}: {err}"
    return row


def _plan(bundle: Bundle, backends: list[str]) -> list[tuple[str, str]]:
    plan = []
    for b in backends:
        if b == "torch":
            plan.append((b, "fp32"))  # eager torch runs the fp32 weights
        else:
            # every precision, so a missing variant shows as a skipped row rather than vanishing from the table
            plan += [(b, p) for p in PRECISIONS]
    return plan


def backend_kwargs(backend: str, threads: int | None, device: str | None, cuda_graphs: bool | None) -> dict:
    """Keyword arguments of `backend` for the runtime.model-style flags given (None: the backend's default)."""
    from edgefuse.deploy.backends import parse_device

    kw: dict[str, Any] = {}
    kind, index = parse_device(device or "auto")
    if backend == "tensorrt":
        return {"device": 0 if kind == "dla" else index or 0, "dla_core": (index or 0) if kind == "dla" else None}
    if threads:
        kw["threads"] = threads  # CPU thread pools only
    if device and backend == "onnxruntime":
        kw["device"] = kind if kind in ("cpu", "cuda") else "auto"
    if device and backend == "torch":
        kw["device"] = device
    if cuda_graphs and backend == "torch":
        kw["cuda_graphs"] = True
    return kw


def bench(
    bundle_dir: str | Path,
    data_dir: str | Path,
    backends: list[str],
    iters: int = 200,
    threads: int | None = None,
    device: str | None = None,
    cuda_graphs: bool | None = None,
) -> list[dict[str, Any]]:
    """Benchmark each backend x precision of a bundle on the test split of `data_dir`; returns the rows."""
    from edgefuse.trainer.data import load_data

    bundle = load_bundle(bundle_dir)
    test_ds = load_data(bundle.spec, data_dir, progress=False).subset("test")
    test, targets = dataset_feeds(test_ds), {h: np.asarray(y) for h, y in test_ds.targets.items()}
    if len(test["mask"]) == 0:
        raise BundleError(f"{data_dir}: the test split is empty; bench needs held-out samples")
    pre = preprocess_ms(bundle.spec)
    rows = []
    for backend, precision in _plan(bundle, backends):
        kw = backend_kwargs(backend, threads, device, cuda_graphs)
        row = bench_row(bundle, backend, precision, test, targets, iters, **kw)
        row["preprocess_ms"] = pre
        rows.append(row)
    return rows


def _cell(v: Any, col: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{100 * v:.2f}" if col == "accuracy" else f"{v:.3f}" if col.endswith("_ms") else f"{v:.2f}"
    return str(v) if col != "status" or len(str(v)) <= 60 else str(v)[:57] + "..."


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a fixed-width text table (accuracy in percent, mean over heads)."""
    header = [c if c != "accuracy" else "accuracy_%" for c in COLUMNS]
    cells = [[_cell(r.get(c), c) for c in COLUMNS] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def cli_bench(args: argparse.Namespace) -> int:
    """Handler of `edgefuse bench`."""
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    rows = bench(
        args.bundle,
        args.data,
        backends,
        iters=args.iters,
        threads=getattr(args, "threads", None),
        device=getattr(args, "device", None),
        cuda_graphs=getattr(args, "cuda_graphs", None),
    )
    print(format_table(rows))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
        print(f"rows written to {args.json}")
    return 0
