"""DSADS with other people held out: is the bench's test pair (p7, p8) typical? Information, not the benchmark.

    python benchmarks/realdata/dsads_folds.py [--seed 0] [--jobs 2]

The bench (bench_realdata.py) trains on p1-p5, validates on p6 and tests on p7-p8, as dsads.py converts it. Here the
same spec (benchmarks/realdata/dsads.yaml, its options included) and recipe train once per fold, with the fused model
and each modality alone, for four person folds: test (p1, p2) val p3, test (p3, p4) val p5, test (p5, p6) val p7,
and the bench's own test (p7, p8) val p6; the other people train. Each fold is a labels.csv in a temporary folder
whose samples/ links to data/realdata/dsads/samples (removed at the end, with the runs). Prints one markdown row per
fold: test accuracy of the fused model and of each modality alone, and fused minus the better of the two. One seed
per fold; one torch thread per training, --jobs trainings at once.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from _folder import person, resplit  # noqa: E402

DATA = ROOT / "data" / "realdata" / "dsads"
FOLDS = {"p1-p2": ((1, 2), 3), "p3-p4": ((3, 4), 5), "p5-p6": ((5, 6), 7), "p7-p8 (the bench's)": ((7, 8), 6)}


def write_fold(root: Path, test: tuple[int, int], val: int) -> Path:
    """root/labels.csv with this fold's splits; root/samples -> the converted samples."""

    def split(sample: str, _: str) -> str:
        who = int(person("dsads", sample)[1:])  # a01_p7_s01 -> 7
        return "test" if who in test else "val" if who == val else "train"

    return resplit(DATA, root, split)


def run(data: str, only: str | None, seed: int) -> float:
    """Train one model (fused, or `only` one modality) on this fold; its test accuracy."""
    from edgefuse.spec import load_spec
    from edgefuse.trainer.data import load_dataset
    from edgefuse.trainer.evaluate import baseline_accuracy
    from edgefuse.trainer.train import train

    spec = load_spec(HERE / "dsads.yaml")
    ds = load_dataset(spec, Path(data), progress=False)
    with tempfile.TemporaryDirectory(prefix="dsads-fold-run-") as out:
        train(spec, Path(data), Path(out), seed=seed, progress=False, only=only, dataset=ds)
        return baseline_accuracy(Path(out), ds.subset("test"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1, help="trainings at once (each one torch thread)")
    args = p.parse_args()
    if not (DATA / "labels.csv").is_file():
        raise SystemExit(f"{DATA}: not found; convert it first (benchmarks/realdata/dsads.py)")
    with tempfile.TemporaryDirectory(prefix="dsads-folds-") as tmp, ProcessPoolExecutor(args.jobs) as pool:
        folds = {name: write_fold(Path(tmp) / f"f{i}", *fold) for i, (name, fold) in enumerate(FOLDS.items())}
        jobs = {
            (f, m): pool.submit(run, str(d), m, args.seed) for f, d in folds.items() for m in (None, "upper", "lower")
        }
        acc = {k: 100 * j.result() for k, j in jobs.items()}
    print("| test people | fused | upper alone | lower alone | fused - better alone |\n|---|---|---|---|---|")
    gains = []
    for f in folds:
        fused, up, low = acc[(f, None)], acc[(f, "upper")], acc[(f, "lower")]
        gains.append(fused - max(up, low))
        print(f"| {f} | {fused:.1f} % | {up:.1f} % | {low:.1f} % | {gains[-1]:+.1f} |")
    print(
        f"\nmean fused - better alone over the {len(gains)} folds: {sum(gains) / len(gains):+.1f} points (seed {args.seed})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
