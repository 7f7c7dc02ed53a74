"""A sensor logged at a lower rate among faster rows: what `train.hold_missing` gives on DSADS. Information.

    python benchmarks/realdata/held_cells.py [--every 5] [--seed 0] [--jobs 2]

Real logs often write a slow sensor into a fast one's rows and leave its cells empty in between (a heart rate among
an IMU's rows). Here DSADS (converted first by benchmarks/realdata/dsads.py) gets that pattern: in a temporary copy,
every magnetometer channel ('mag') keeps one row in --every (5 Hz among the 25 Hz rows) and is NaN in the others; the
accelerometers and gyroscopes are untouched. The copy loads only with `train.hold_missing: true` (each NaN takes the
channel's last value: the magnetometer held for --every rows), and trains with the dsads spec and recipe; the
unchanged data trains beside it with the same seed. Prints both test accuracies and the loader's note. The copy and
the runs are removed at the end; one torch thread per training.
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
DATA = ROOT / "data" / "realdata" / "dsads"


def thin_magnetometers(root: Path, every: int) -> int:
    """root: DSADS with every 'mag' channel NaN except one row in `every`; returns the cells blanked."""
    from edgefuse.spec import load_spec

    spec = load_spec(HERE / "dsads.yaml")
    (root / "labels.csv").write_bytes((DATA / "labels.csv").read_bytes())
    blanked = 0
    for folder in sorted((DATA / "samples").iterdir()):
        out = root / "samples" / folder.name
        out.mkdir(parents=True)
        for name, m in spec.modalities.items():
            x = np.load(folder / f"{name}.npy")
            mag = [i for i, c in enumerate(m.channels) if "mag" in c]
            keep = np.arange(len(x)) % every == every - 1  # the last row of each block: the window ends on a reading
            x[np.ix_(~keep, mag)] = np.nan
            blanked += int((~keep).sum()) * len(mag)
            np.save(out / f"{name}.npy", x)
    return blanked


def run(data: str, hold: bool, seed: int) -> float:
    """Train the dsads spec (with train.hold_missing when `hold`); its test accuracy."""
    from edgefuse.spec import load_spec, parse_spec, spec_to_dict
    from edgefuse.trainer.data import load_dataset
    from edgefuse.trainer.evaluate import baseline_accuracy
    from edgefuse.trainer.train import train

    d = spec_to_dict(load_spec(HERE / "dsads.yaml"))
    d["train"]["hold_missing"] = hold
    spec = parse_spec(d, "dsads")
    ds = load_dataset(spec, Path(data), progress=False)
    with tempfile.TemporaryDirectory(prefix="held-cells-run-") as out:
        train(spec, Path(data), Path(out), seed=seed, progress=False, dataset=ds)
        return baseline_accuracy(Path(out), ds.subset("test"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--every", type=int, default=5, help="keep one magnetometer row in this many")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1, help="trainings at once (each one torch thread)")
    args = p.parse_args()
    if not (DATA / "labels.csv").is_file():
        p.error(f"{DATA} is not converted yet: run benchmarks/realdata/dsads.py convert first")
    if args.every < 2:
        p.error("--every must be at least 2")
    with tempfile.TemporaryDirectory(prefix="held-cells-") as tmp:
        n = thin_magnetometers(Path(tmp), args.every)
        print(f"magnetometer cells blanked: {n:,} (one row in {args.every} kept)")
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            full = pool.submit(run, str(DATA), False, args.seed)
            held = pool.submit(run, tmp, True, args.seed)
            acc_full, acc_held = full.result(), held.result()
    print(f"\n| data (seed {args.seed}) | test accuracy |\n|---|---|")
    print(f"| as converted (25 Hz magnetometers) | {100 * acc_full:.1f} % |")
    print(f"| magnetometers at 25/{args.every} Hz, the rest empty, train.hold_missing | {100 * acc_held:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
