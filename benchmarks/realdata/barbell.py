"""Barbell exercises from a wrist IMU (MbientLab MetaMotion): accelerometer + gyroscope, 6 classes.

Source: the raw recordings of the "ML-Fitness-Tracker" project, github.com/SebasMBK/ML-Fitness-Tracker, folder
fitness_data/ (commit 56d3f9e, 2024-05-24; the same MetaMotion data set Dave Ebbelaar published with his
"tracking barbell exercises" course). 5 participants (A-E) did bench press, overhead press, squat, deadlift and
barbell row in heavy and medium sets, plus rest; each set is one accelerometer CSV (12.5 Hz, g) and one gyroscope
CSV (25 Hz, deg/s). No one on this project wrote or touched the data.

Fetching: this machine reaches only package registries, so the snapshot is brought by the session's `fetch` tool
(github:SebasMBK/ML-Fitness-Tracker -> a bare git directory); elsewhere `git clone` the repository. Either way:

    python benchmarks/realdata/barbell.py convert --src /path/to/ML-Fitness-Tracker --out data/realdata/barbell

reads fitness_data/ from a work tree, or from a bare git directory (via `git show`), and writes the folder dataset
(docs/dataset.md): one sample per 4 s window (hop 1 s) of one set, acc.npy (50, 3) + gyro.npy (100, 3). A set goes
to one split as a whole (70/15/15 of the sets of each exercise, seeded), so no window of a test set overlaps one
seen in training. The label is the exercise; participants are mixed across splits.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
from _folder import converter_main, write_labels

HERE = Path(__file__).resolve().parent
SPEC = HERE / "barbell.yaml"
CLASSES = ["bench", "ohp", "squat", "dead", "row", "rest"]
WINDOW_S, HOP_S = 4.0, 1.0
RATES = {"Accelerometer": 12.5, "Gyroscope": 25.0}


def _listing(src: Path) -> dict[str, bytes | Path]:
    """fitness_data/*.csv of a work tree (paths) or of a bare git directory (bytes via git show)."""
    tree = src / "fitness_data"
    if tree.is_dir():
        return {p.name: p for p in sorted(tree.glob("*.csv"))}
    names = subprocess.run(
        ["git", "--git-dir", str(src), "ls-tree", "--name-only", "HEAD", "fitness_data/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    out = {}
    for name in names:
        if name.endswith(".csv"):
            blob = subprocess.run(
                ["git", "--git-dir", str(src), "show", f"HEAD:{name}"], capture_output=True, check=True
            )
            out[Path(name).name] = blob.stdout
    return out


def _read(item: bytes | Path, where: str) -> np.ndarray:
    """(T, 4): epoch ms, x, y, z; a file that is not a MetaMotion CSV (epoch, time, elapsed, x, y, z; at least two
    rows) stops the conversion with one line naming it."""
    try:
        text = item.read_text() if isinstance(item, Path) else item.decode()
        rows = list(csv.reader(io.StringIO(text)))[1:]
        x = np.array([[float(r[0]), float(r[3]), float(r[4]), float(r[5])] for r in rows if len(r) >= 6])
    except (ValueError, UnicodeDecodeError) as err:
        raise SystemExit(f"{where}: expected MetaMotion CSV rows (epoch ms, time, elapsed, x, y, z): {err}") from None
    if x.shape[0] < 2:
        raise SystemExit(f"{where}: expected MetaMotion CSV rows (epoch ms, time, elapsed, x, y, z), found {len(x)}")
    return x


def convert(src: Path, out: Path, seed: int = 0) -> dict[str, int]:
    """Write the folder dataset; returns samples per split."""
    files = _listing(src)
    sets: dict[str, dict[str, np.ndarray]] = {}
    for name, item in files.items():
        sensor = next((s for s in RATES if f"_{s}_" in name), None)
        if "_MetaWear_" not in name or sensor is None or name.count("-") < 2:
            continue  # not one sensor's recording of a set (<participant>-<exercise>-<set>_MetaWear_<start>_...)
        stem = name.split("_MetaWear_")[0]
        key = stem + "@" + name.split("_MetaWear_")[1].split("_")[0]  # participant-exercise-set@start time
        sets.setdefault(key, {})[sensor] = _read(item, f"{src}/fitness_data/{name}")
    sets = {k: v for k, v in sets.items() if len(v) == 2 and k.split("-")[1] in CLASSES}
    if not sets:
        raise SystemExit(f"{src}: no fitness_data/ set with both an accelerometer and a gyroscope CSV found")
    label_of = {k: k.split("-")[1] for k in sets}
    rng = np.random.default_rng(seed)
    split_of = {}
    for c in CLASSES:
        keys = sorted(k for k in sets if label_of[k] == c)
        keys = [keys[i] for i in rng.permutation(len(keys))]
        n_test, n_val = max(1, round(0.15 * len(keys))), max(1, round(0.15 * len(keys)))
        for i, k in enumerate(keys):
            split_of[k] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    (out / "samples").mkdir(parents=True, exist_ok=True)
    n_acc, n_gyro = round(WINDOW_S * RATES["Accelerometer"]), round(WINDOW_S * RATES["Gyroscope"])
    rows, counts = [], {"train": 0, "val": 0, "test": 0}
    for k in sorted(sets):
        acc, gyro = sets[k]["Accelerometer"], sets[k]["Gyroscope"]
        t0, t1 = max(acc[0, 0], gyro[0, 0]) + WINDOW_S * 1000, min(acc[-1, 0], gyro[-1, 0])
        for j, t in enumerate(np.arange(t0, t1 + 1, HOP_S * 1000)):
            a = acc[acc[:, 0] <= t][-n_acc:, 1:]
            g = gyro[gyro[:, 0] <= t][-n_gyro:, 1:]
            if len(a) < n_acc or len(g) < n_gyro:
                continue
            sample = f"{k.replace('@', '_').replace(':', '')}-{j:03d}"
            folder = out / "samples" / sample
            folder.mkdir(exist_ok=True)
            np.save(folder / "acc.npy", a.astype(np.float32))
            np.save(folder / "gyro.npy", g.astype(np.float32))
            rows.append((sample, split_of[k], label_of[k]))
            counts[split_of[k]] += 1
    write_labels(out, "exercise", rows)
    return counts


def main(argv: list[str] | None = None) -> int:
    return converter_main(convert, __doc__, "fitness_data/", "data/realdata/barbell", argv)


if __name__ == "__main__":
    sys.exit(main())
