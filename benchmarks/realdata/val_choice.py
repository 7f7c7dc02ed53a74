"""Would the validation split have chosen the options the real-data specs set? Information, not the benchmark.

    python benchmarks/realdata/val_choice.py [--seeds 3] [--jobs 2]

utdmhad.yaml sets `model.rotate_deg: 60` and dsads.yaml also `model.heading_deg: 180`; both were picked with the
test figures in view (BENCHMARKS.md "Real data"). Here each spec trains with its options removed one by one (none,
rotation only, both), seeds 0..N-1, and every run prints its validation accuracy (the split a user would choose
on: utdmhad subject 7, dsads person p6) beside its test accuracy. If validation ranks the variants as test does,
the choice did not need the test split. One torch thread per training, --jobs trainings at once; the runs are
removed at the end.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VARIANTS = {  # dataset -> variant name -> model options
    "utdmhad": {"none": {"rotate_deg": 0.0}, "rotation (the yaml)": {}},
    "dsads": {
        "none": {"rotate_deg": 0.0, "heading_deg": 0.0},
        "rotation": {"heading_deg": 0.0},
        "rotation + heading (the yaml)": {},
    },
}


def run(name: str, variant: str, seed: int) -> tuple[float, float]:
    """(validation accuracy of the kept epoch, test accuracy) of one training."""
    from edgefuse.spec import load_spec, parse_spec, spec_to_dict
    from edgefuse.trainer.data import load_dataset
    from edgefuse.trainer.evaluate import baseline_accuracy
    from edgefuse.trainer.train import train

    d = spec_to_dict(load_spec(HERE / f"{name}.yaml"))
    d["model"].update(VARIANTS[name][variant])
    spec = parse_spec(d, name)
    data = ROOT / "data" / "realdata" / name
    ds = load_dataset(spec, data, progress=False)
    with tempfile.TemporaryDirectory(prefix="val-choice-") as out:
        metrics = train(spec, data, Path(out), seed=seed, progress=False, dataset=ds)
        return metrics["val_accuracy"], baseline_accuracy(Path(out), ds.subset("test"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=1, help="trainings at once (each one torch thread)")
    args = p.parse_args()
    for name in VARIANTS:
        if not (ROOT / "data" / "realdata" / name / "labels.csv").is_file():
            p.error(f"{name} is not converted yet: run benchmarks/realdata/{name}.py convert first")
    jobs = [(n, v, s) for n in VARIANTS for v in VARIANTS[n] for s in range(args.seeds)]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(run, *zip(*jobs, strict=True)))
    print("| dataset | variant | validation accuracy per seed | mean | test accuracy per seed | mean |")
    print("|---|---|---|---|---|---|")
    for n in VARIANTS:
        for v in VARIANTS[n]:
            got = [r for (dn, vn, _), r in zip(jobs, results, strict=True) if (dn, vn) == (n, v)]
            val, test = (" / ".join(f"{100 * x:.1f}" for x in xs) for xs in zip(*got, strict=True))
            mv, mt = (100 * np.mean(xs) for xs in zip(*got, strict=True))
            print(f"| {n} | {v} | {val} | {mv:.1f} % | {test} | {mt:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
