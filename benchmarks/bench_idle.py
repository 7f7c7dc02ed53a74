"""How much slower this host runs a short piece of work after it sat idle: the same ONNX Runtime call (the bundle's
model, batch 1) and the same NumPy work, back to back and spaced by the runtime's tick period.

    python benchmarks/bench_idle.py --bundle runs/demo/bundle --gap-ms 100

A live runtime ticks at 2-10 Hz and sleeps in between; on a VM whose vCPU is descheduled or clocked down while idle,
every tick starts cold. This separates that from what the runtime's code costs (bench_sync.py, bench_runtime.py).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import onnxruntime as ort


def feeds_for(sess: ort.InferenceSession) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for i in sess.get_inputs():
        shape = [1 if not isinstance(d, int) else d for d in i.shape]
        out[i.name] = np.zeros(shape, np.int64) if "int64" in i.type else rng.random(shape).astype(np.float32)
    return out


def timed(fn, n: int, gap_s: float) -> float:
    ts = []
    for _ in range(n):
        if gap_s:
            time.sleep(gap_s)
        a = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - a)
    return float(np.median(ts)) * 1e3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True)
    p.add_argument("--gap-ms", type=float, default=100.0)
    p.add_argument("--n", type=int, default=40)
    args = p.parse_args(argv)
    sess = ort.InferenceSession(f"{args.bundle}/model.onnx", providers=["CPUExecutionProvider"])
    feeds = feeds_for(sess)
    x = np.random.default_rng(0).standard_normal((1, 16000)).astype(np.float32)
    work = {
        "onnxruntime batch-1 call": lambda: sess.run(None, feeds),
        "numpy: copy + sum of 16000 floats, 200 times": lambda: [float((x.copy() * 2).sum()) for _ in range(200)],
    }
    for name, fn in work.items():
        for _ in range(10):
            fn()
        rows = []
        for _ in range(2):  # interleaved: back to back, then spaced, twice
            rows.append((timed(fn, args.n, 0.0), timed(fn, args.n, args.gap_ms / 1e3)))
        hot, cold = np.median([r[0] for r in rows]), np.median([r[1] for r in rows])
        print(
            f"{name}: back to back p50 {hot:.3f} ms, every {args.gap_ms:.0f} ms p50 {cold:.3f} ms ({cold / hot:.1f}x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
