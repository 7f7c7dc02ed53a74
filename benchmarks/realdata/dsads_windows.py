"""DSADS as whole recordings cut by `train.window_hop_s`: the loader's windows on real data. Information, not the bench.

    python benchmarks/realdata/dsads_windows.py [--seeds 2] [--jobs 2]

DSADS's 60 segments of one person doing one activity are the consecutive 5-s pieces of one 5-minute recording
(Altun et al. 2010). Here they are joined back: one sample per (activity, person), upper.npy and lower.npy of 7,500
rows each, split by person as benchmarks/realdata/dsads.py splits them (p1-p5 train, p6 val, p7-p8 test). Then:
  1. loaded with window_hop_s 5.0 (the window), the 152 recordings must give exactly the 9,120 converted segments,
     window k of a recording being its segment 60 - k (checked value for value);
  2. per seed, the dsads spec (benchmarks/realdata/dsads.yaml) trains the fused model on windows every 5 s (the
     segments: the bench's data) and every 2.5 s (twice the windows, each overlapping its neighbours by half);
     both are scored on the same test windows, the bench's 2,280 test segments, and on the 38 test recordings
     (each decided by its 60 windows' log-probabilities summed, as `edgefuse eval` scores recordings).
Before the trainings (and alone with --checks-only), the same segments are joined into one 95-minute recording per
person, the 19 activities back to back, labelled by time range (samples/p<P>/segments.csv: 19 rows of 300 s); loaded
with window_hop_s 5.0, they too must give exactly the 9,120 segments, each window with its segment's activity.
The joined folders are temporary ones is a temporary one (removed at the end, with the runs); one torch thread per training, --jobs
trainings at once.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from _folder import write_labels  # noqa: E402

DATA = ROOT / "data" / "realdata" / "dsads"
SEGMENTS = 60


def join(root: Path) -> None:
    """root/labels.csv + root/samples/a<AA>_p<P>/{upper,lower}.npy: each recording's 60 segments in order."""
    with open(DATA / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    recordings: dict[str, tuple[str, str]] = {}
    for r in rows:
        recordings.setdefault(r["sample"].rsplit("_s", 1)[0], (r["split"], r["activity"]))  # a01_p7_s01 -> a01_p7
    for name in recordings:
        folder = root / "samples" / name
        folder.mkdir(parents=True)
        for part in ("upper", "lower"):
            segs = [np.load(DATA / "samples" / f"{name}_s{s:02d}" / f"{part}.npy") for s in range(1, SEGMENTS + 1)]
            np.save(folder / f"{part}.npy", np.concatenate(segs))
    write_labels(root, "activity", [(name, split, activity) for name, (split, activity) in recordings.items()])


def join_people(root: Path) -> list[str]:
    """root/labels.csv + root/samples/p<P>/{upper,lower}.npy + segments.csv: each person's activities back to back,
    in the converted order, one labelled time range of 300 s each. Returns the activities in that order."""
    with open(DATA / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    order = list(dict.fromkeys(r["sample"].split("_")[0] for r in rows))  # a01 ... a19
    activity = {r["sample"].split("_")[0]: r["activity"] for r in rows}
    split = {r["sample"].split("_")[1]: r["split"] for r in rows}  # p7 -> test
    for person in split:
        folder = root / "samples" / person
        folder.mkdir(parents=True)
        for part in ("upper", "lower"):
            np.save(
                folder / f"{part}.npy",
                np.concatenate(
                    [
                        np.load(DATA / "samples" / f"{a}_{person}_s{s:02d}" / f"{part}.npy")
                        for a in order
                        for s in range(1, SEGMENTS + 1)
                    ]
                ),
            )
        ranges = [f"{300 * j},{300 * (j + 1)},{activity[a]}" for j, a in enumerate(order)]
        (folder / "segments.csv").write_text("t0_s,t1_s,activity\n" + "\n".join(ranges) + "\n")
    write_labels(root, "activity", [(person, sp, "") for person, sp in split.items()])
    return order


def spec_with(hop_s: float):
    from edgefuse.spec import load_spec, parse_spec, spec_to_dict

    d = spec_to_dict(load_spec(HERE / "dsads.yaml"))
    d["train"]["window_hop_s"] = hop_s
    return parse_spec(d, "dsads")


def compare(folder: Path, segment_of: Callable[[str], str]) -> int:
    """The hop-5 windows of the joined recordings in `folder` equal the converted segments value for value, with
    their split and label; `segment_of` names the segment of a window id. Returns how many were compared."""
    from edgefuse.spec import load_spec
    from edgefuse.trainer.data import load_dataset

    windows = load_dataset(spec_with(5.0), folder, progress=False)
    segments = load_dataset(load_spec(HERE / "dsads.yaml"), DATA, progress=False)
    at = {sid: i for i, sid in enumerate(segments.ids)}
    for w, wid in enumerate(windows.ids):
        i = at[segment_of(wid)]
        for m in ("upper", "lower"):
            if not np.array_equal(windows.inputs[m][w], segments.inputs[m][i]):
                raise SystemExit(f"window {wid} differs from segment {segments.ids[i]} in {m}")
        if windows.split[w] != segments.split[i] or windows.targets["activity"][w] != segments.targets["activity"][i]:
            raise SystemExit(f"window {wid}: split or label differs from segment {segments.ids[i]}")
    if len(windows) != len(segments):
        raise SystemExit(f"{len(windows)} windows for {len(segments)} segments")
    return len(windows)


def check_windows(joined: Path) -> int:
    """Step 1: window k of a recording a<AA>_p<P> is its segment 60 - k."""

    def segment_of(wid: str) -> str:
        name, k = wid.split("#")
        return f"{name}_s{SEGMENTS - int(k):02d}"

    return compare(joined, segment_of)


def check_ranges(people: Path, order: list[str]) -> int:
    """The per-person recordings labelled by time range: window p7@600#1019 (the range starting at 600 s, window
    1019, ending 605 s after the start) is activity order[2]'s segment 1 of p7."""
    total = 300 * len(order)  # s: every recording ends there

    def segment_of(wid: str) -> str:
        person, rest = wid.split("@")
        t0, k = rest.split("#")
        j, end = int(float(t0)) // 300, total - 5 * int(k)
        return f"{order[j]}_{person}_s{(end - 300 * j) // 5:02d}"

    return compare(people, segment_of)


def run(joined: str, hop_s: float, seed: int) -> tuple[float, int, float]:
    """Train on windows every hop_s; (accuracy on the hop-5 test windows, training windows, accuracy over the 38
    test recordings, each decided by its 60 windows as `edgefuse eval` scores recordings)."""
    from edgefuse.trainer.checkpoint import load_run
    from edgefuse.trainer.data import load_dataset
    from edgefuse.trainer.evaluate import baseline_accuracy, recording_scores, run_mask
    from edgefuse.trainer.train import predict_logits, to_tensors, train

    ds = load_dataset(spec_with(hop_s), Path(joined), progress=False)
    test = load_dataset(spec_with(5.0), Path(joined), progress=False).subset("test")
    with tempfile.TemporaryDirectory(prefix="dsads-windows-run-") as out:
        train(spec_with(hop_s), Path(joined), Path(out), seed=seed, progress=False, dataset=ds)
        spec, model, ckpt = load_run(Path(out))
        x, _, _ = to_tensors(test)
        per_recording = recording_scores(spec, predict_logits(model, x, run_mask(spec, ckpt, test.mask)), test)
        return baseline_accuracy(Path(out), test), int((ds.split == "train").sum()), per_recording["accuracy"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--jobs", type=int, default=1, help="trainings at once (each one torch thread)")
    p.add_argument("--checks-only", action="store_true", help="only the two value-for-value checks, no training")
    args = p.parse_args()
    if not (DATA / "labels.csv").is_file():
        p.error(f"{DATA} is not converted yet: run benchmarks/realdata/dsads.py convert first")
    with tempfile.TemporaryDirectory(prefix="dsads-windows-") as tmp:
        joined = Path(tmp)
        join(joined)
        n = check_windows(joined)
        print(f"window_hop_s 5.0 on the 152 joined recordings: {n} windows, each equal to its converted segment")
        order = join_people(Path(tmp) / "people")
        n = check_ranges(Path(tmp) / "people", order)
        print(
            f"window_hop_s 5.0 on the 8 per-person recordings labelled by time range: {n} windows, each equal to "
            "its converted segment, with its activity"
        )
        if args.checks_only:
            return 0
        jobs = [(str(joined), hop, seed) for seed in range(args.seeds) for hop in (5.0, 2.5)]
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(run, *zip(*jobs, strict=True)))
    print(
        "| window_hop_s | training windows | test accuracy per seed (the bench's 2,280 test segments) | mean "
        "| per test recording (38), per seed |"
    )
    print("|---|---|---|---|---|")
    for hop in (5.0, 2.5):
        got = [r for (_, h, _), r in zip(jobs, results, strict=True) if h == hop]
        accs = ", ".join(f"{100 * a:.1f} %" for a, _, _ in got)
        recs = ", ".join(f"{100 * r:.1f} %" for _, _, r in got)
        print(f"| {hop:g} s | {got[0][1]} | {accs} | {100 * np.mean([a for a, _, _ in got]):.1f} % | {recs} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
