"""A `group` column on real data: validation held out by person instead of by sample. Information, not the benchmark.

    python benchmarks/realdata/groups.py [--datasets utdmhad,dsads] [--seed 0] [--jobs 2]

A user with recordings of several people and no `val` rows: the loader holds out 15 % of the train samples for
validation. Here the converted datasets' val rows are turned into train rows (utdmhad: subject 7 joins 1, 3, 5;
dsads: p6 joins p1-p5) and each dataset is loaded twice: without a group column (15 % of each class's samples held
out: the same people in train and val) and with `group` = the person (whole people held out). Each trains once with
its spec (benchmarks/realdata/<name>.yaml) and is scored on the same test people by `edgefuse eval` (no baselines).
Prints, per variant: who validates, the kept epoch's validation accuracy, test accuracy with its bootstrap 95 %
interval (over samples without groups, over people with them) and the worst test person. Each variant is a labels.csv
in a temporary folder whose samples/ links to the converted samples; removed at the end, with the runs. One torch
thread per training, --jobs trainings at once.
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
from _folder import PERSON, person, resplit  # noqa: E402


def write_variant(name: str, root: Path, grouped: bool) -> Path:
    """root/labels.csv: the dataset's rows with val turned into train, and a group column (the person) if `grouped`."""
    return resplit(
        ROOT / "data" / "realdata" / name,
        root,
        lambda _, split: "train" if split == "val" else split,
        (lambda sample: person(name, sample)) if grouped else None,
    )


def run(name: str, data: str, seed: int) -> dict:
    """Train and evaluate one variant; what it validated on and how it scored."""
    import numpy as np

    from edgefuse.spec import load_spec
    from edgefuse.trainer.data import load_dataset
    from edgefuse.trainer.evaluate import evaluate
    from edgefuse.trainer.train import train

    spec = load_spec(HERE / f"{name}.yaml")
    ds = load_dataset(spec, Path(data), progress=False)
    val_people = sorted({person(name, i) for i in np.array(ds.ids)[ds.split == "val"]})
    with tempfile.TemporaryDirectory(prefix="groups-run-") as out:
        metrics = train(spec, Path(data), Path(out), seed=seed, progress=False, dataset=ds)
        r = evaluate(out, data, with_baselines=False, progress=False, dataset=ds)
    return {
        "n_val": int((ds.split == "val").sum()),
        "val_people": val_people,
        "val_accuracy": metrics["val_accuracy"],
        "test_accuracy": r["accuracy"],
        "ci95": r["ci95"],
        "groups": r.get("groups"),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default=",".join(PERSON), help="comma-separated, of: " + ", ".join(PERSON))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1, help="trainings at once (each one torch thread)")
    args = p.parse_args()
    names = [n for n in args.datasets.split(",") if n]
    for n in names:
        if n not in PERSON:
            p.error(f"--datasets: unknown dataset {n!r}; choose from {', '.join(PERSON)}")
        if not (ROOT / "data" / "realdata" / n / "labels.csv").is_file():
            p.error(f"{n} is not converted yet: run benchmarks/realdata/{n}.py convert first")
    with tempfile.TemporaryDirectory(prefix="groups-") as tmp, ProcessPoolExecutor(args.jobs) as pool:
        todo = {
            (n, g): pool.submit(run, n, str(write_variant(n, Path(tmp) / f"{n}-{g}", g)), args.seed)
            for n in names
            for g in (False, True)
        }
        got = {k: j.result() for k, j in todo.items()}
    print(
        f"seed {args.seed}\n\n| dataset | validation held out | validated on (samples) | val accuracy | test accuracy "
        "[95 % CI, resampled] | worst test person |\n|---|---|---|---|---|---|"
    )
    for (n, g), r in got.items():
        ci = r["ci95"]
        worst = r["groups"]
        worst = f"{worst['worst']}: {100 * worst['per_group'][worst['worst']]['accuracy']:.1f} %" if worst else ""
        print(
            f"| {n} | {'whole people (group column)' if g else '15 % of each class (no group column)'} | "
            f"{', '.join(r['val_people'])} ({r['n_val']}) | {100 * r['val_accuracy']:.1f} % | "
            f"{100 * r['test_accuracy']:.1f} % [{100 * ci['accuracy'][0]:.1f}-{100 * ci['accuracy'][1]:.1f}, "
            f"{ci['unit']}s] | {worst} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
