"""Would the validation split have chosen the options the real-data specs set? Information, not the benchmark.

    python benchmarks/realdata/val_choice.py [--seeds 3] [--jobs 2]

utdmhad.yaml sets `model.rotate_deg: 60` and dsads.yaml also `model.heading_deg: 180`; both were picked with the
test figures in view (BENCHMARKS.md "Real data"). Here each spec trains with its options removed one by one (none,
rotation only, both), seeds 0..N-1, and every run prints its validation accuracy (the split a user would choose
on: utdmhad subject 7, dsads person p6) beside its test accuracy. If validation ranks the variants as test does,
the choice did not need the test split. One torch thread per training, --jobs trainings at once; the runs are
removed at the end.

    python benchmarks/realdata/val_choice.py --cv [--datasets utdmhad] [--seeds 3] [--jobs 2]

One validation subject is few samples (utdmhad: 108). --cv validates on each person of the train and val splits in
turn (utdmhad subjects 1, 3, 5, 7; dsads people p1-p6), the others training; the test split is neither trained nor
scored. Each fold is a labels.csv in a temporary folder whose samples/ links to the converted samples. Prints each
variant's validation accuracy per held-out person (mean over seeds) and over all of them.
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
sys.path.insert(0, str(HERE))
from _folder import person, resplit  # noqa: E402

VARIANTS = {  # dataset -> variant name -> model options
    "utdmhad": {"none": {"rotate_deg": 0.0}, "rotation (the yaml)": {}},
    "dsads": {
        "none": {"rotate_deg": 0.0, "heading_deg": 0.0},
        "rotation": {"heading_deg": 0.0},
        "rotation + heading (the yaml)": {},
    },
}


def run(name: str, variant: str, seed: int, data: str | None = None) -> tuple[float, float]:
    """(validation accuracy of the kept epoch, test accuracy) of one training; `data` another split of the same
    samples (a --cv fold)."""
    from edgefuse.spec import load_spec, parse_spec, spec_to_dict
    from edgefuse.trainer.data import load_dataset
    from edgefuse.trainer.evaluate import baseline_accuracy
    from edgefuse.trainer.train import train

    d = spec_to_dict(load_spec(HERE / f"{name}.yaml"))
    d["model"].update(VARIANTS[name][variant])
    spec = parse_spec(d, name)
    data = Path(data) if data else ROOT / "data" / "realdata" / name
    ds = load_dataset(spec, data, progress=False)
    with tempfile.TemporaryDirectory(prefix="val-choice-") as out:
        metrics = train(spec, data, Path(out), seed=seed, progress=False, dataset=ds)
        return metrics["val_accuracy"], baseline_accuracy(Path(out), ds.subset("test"))


def people(name: str) -> list[int]:
    """The people of a dataset's train and val splits, in order."""
    import csv

    with open(ROOT / "data" / "realdata" / name / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] != "test"]
    return sorted({int(person(name, r["sample"])[1:]) for r in rows})


def cross_validate(names: list[str], seeds: int, jobs: int) -> None:
    """Each variant's validation accuracy with each train/val person held out in turn (mean over seeds)."""
    with tempfile.TemporaryDirectory(prefix="val-choice-cv-") as tmp, ProcessPoolExecutor(jobs) as pool:
        folds = {}
        for n in names:
            for who in people(n):

                def split(sample: str, split: str, n: str = n, who: int = who) -> str:
                    if split == "test":
                        return "test"
                    return "val" if int(person(n, sample)[1:]) == who else "train"

                folds[n, who] = resplit(ROOT / "data" / "realdata" / n, Path(tmp) / f"{n}-{who}", split)
        todo = {
            (n, v, who, s): pool.submit(run, n, v, s, str(d))
            for (n, who), d in folds.items()
            for v in VARIANTS[n]
            for s in range(seeds)
        }
        val = {k: 100 * j.result()[0] for k, j in todo.items()}
    for n in names:
        who_all = people(n)
        print(f"\n{n}: validation accuracy with each person held out (mean of seeds 0-{seeds - 1})\n")
        print("| variant | " + " | ".join(f"held out {w}" for w in who_all) + " | mean |")
        print("|---|" + "---|" * (len(who_all) + 1))
        for v in VARIANTS[n]:
            per = [np.mean([val[n, v, w, s] for s in range(seeds)]) for w in who_all]
            print(f"| {v} | " + " | ".join(f"{x:.1f}" for x in per) + f" | {np.mean(per):.1f} % |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=1, help="trainings at once (each one torch thread)")
    p.add_argument("--cv", action="store_true", help="validate on each train/val person in turn")
    p.add_argument("--datasets", default=",".join(VARIANTS), help="comma-separated, of: " + ", ".join(VARIANTS))
    args = p.parse_args()
    names = [n for n in args.datasets.split(",") if n]
    for name in names:
        if name not in VARIANTS:
            p.error(f"--datasets: unknown dataset {name!r}; choose from {', '.join(VARIANTS)}")
        if not (ROOT / "data" / "realdata" / name / "labels.csv").is_file():
            p.error(f"{name} is not converted yet: run benchmarks/realdata/{name}.py convert first")
    if args.cv:
        cross_validate(names, args.seeds, args.jobs)
        return 0
    jobs = [(n, v, s) for n in names for v in VARIANTS[n] for s in range(args.seeds)]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(run, *zip(*jobs, strict=True)))
    print("| dataset | variant | validation accuracy per seed | mean | test accuracy per seed | mean |")
    print("|---|---|---|---|---|---|")
    for n in names:
        for v in VARIANTS[n]:
            got = [r for (dn, vn, _), r in zip(jobs, results, strict=True) if (dn, vn) == (n, v)]
            val, test = (" / ".join(f"{100 * x:.1f}" for x in xs) for xs in zip(*got, strict=True))
            mv, mt = (100 * np.mean(xs) for xs in zip(*got, strict=True))
            print(f"| {n} | {v} | {val} | {mv:.1f} % | {test} | {mt:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
