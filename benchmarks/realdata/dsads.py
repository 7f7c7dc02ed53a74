"""Daily and Sports Activities (DSADS): 19 activities from five body-worn motion units, split into an upper-body and a
lower-body modality, scored on unseen people.

Source: the UCI "Daily and Sports Activities" data set (Altun, Barshan and Tunçel, "Comparative study on classifying
human activities with miniature inertial and magnetic sensors", Pattern Recognition 43(10), 2010,
doi:10.1016/j.patcog.2010.04.019; Barshan and Yüksek, The Computer Journal 57(11), 2014; archive.ics.uci.edu,
data set 256): 8 people (p1-p8) x 19 activities x 60 segments of 5 s, 9120 segments. The text files as published
are committed in github.com/faris0007/Daily-and-Sports-Activity-Detection, folder data/ (commit a224f05,
2024-03-27); no one on this project wrote or touched the data.

  data/a<AA>/p<P>/s<SS>.txt  125 rows (25 Hz, 5 s) x 45 columns: five Xsens MTx units, torso (T), right arm (RA),
                             left arm (LA), right leg (RL), left leg (LL), each x/y/z acceleration (m/s^2),
                             x/y/z angular rate (rad/s), x/y/z magnetic field, in that order

Modalities: `upper` = the torso and both arm units (27 channels), `lower` = both leg units (18 channels): a shirt and
a pair of trousers with sensors, either of which can be missing. Activities such as standing still vs standing in
an elevator, or cycling vs rowing, look alike to one of them.
Published: the papers above report 10-fold and leave-one-subject-out results of several classifiers on all five
units at once; they are not reproduced here and no figure is quoted from them.

Split by person: p1-p5 train, p6 validation, p7-p8 test (no segment of a test person is seen in training).

Fetching: this machine reaches only package registries, so the snapshot is brought by the session's `fetch` tool
(github:faris0007/Daily-and-Sports-Activity-Detection -> a bare git directory); elsewhere `git clone` it. Then

    python benchmarks/realdata/dsads.py convert --src /path/to/the/repository --out data/realdata/dsads
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
from _folder import converter_main, write_labels

ACTIVITIES = [
    "sitting", "standing", "lying_back", "lying_right", "stairs_up", "stairs_down", "elevator_still",
    "elevator_moving", "walking_parking", "treadmill_flat", "treadmill_incline", "running_treadmill", "stepper",
    "cross_trainer", "cycling_horizontal", "cycling_vertical", "rowing", "jumping", "basketball",
]  # fmt: skip
UNITS = ["T", "RA", "LA", "RL", "LL"]  # 9 columns each, in the file's order
MODALITIES = {"upper": ["T", "RA", "LA"], "lower": ["RL", "LL"]}
SPLIT = {1: "train", 2: "train", 3: "train", 4: "train", 5: "train", 6: "val", 7: "test", 8: "test"}
NAME = re.compile(r"data/a(\d\d)/p(\d)/s(\d\d)\.txt$")


def _segments(src: Path) -> dict[str, bytes]:
    """'data/a01/p1/s01.txt' -> bytes, from a work tree or a bare git directory (one `git archive`)."""
    if (src / "data").is_dir():
        return {p.relative_to(src).as_posix(): p.read_bytes() for p in (src / "data").glob("a*/p*/s*.txt")}
    tar = subprocess.run(["git", "--git-dir", str(src), "archive", "HEAD", "data"], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile() and NAME.search(m.name)}


def convert(src: Path, out: Path) -> dict[str, int]:
    files = _segments(src)
    if not files:
        raise SystemExit(f"{src}: no data/a<AA>/p<P>/s<SS>.txt segments found")
    cols = {u: slice(9 * i, 9 * i + 9) for i, u in enumerate(UNITS)}
    (out / "samples").mkdir(parents=True, exist_ok=True)
    rows, counts = [], {"train": 0, "val": 0, "test": 0}
    for name in sorted(files):
        a, p, s = (int(g) for g in NAME.search(name).groups())
        x = np.loadtxt(io.BytesIO(files[name]), delimiter=",", dtype=np.float32)  # (125, 45)
        if x.shape != (125, 45):
            raise SystemExit(f"{src}/{name}: expected 125 rows x 45 columns, found {x.shape}")
        folder = out / "samples" / f"a{a:02d}_p{p}_s{s:02d}"
        folder.mkdir(exist_ok=True)
        for m, units in MODALITIES.items():
            np.save(folder / f"{m}.npy", np.concatenate([x[:, cols[u]] for u in units], axis=1))
        rows.append((folder.name, SPLIT[p], ACTIVITIES[a - 1]))
        counts[SPLIT[p]] += 1
    write_labels(out, "activity", rows)
    return counts


def main(argv: list[str] | None = None) -> int:
    return converter_main(convert, __doc__, "data/", "data/realdata/dsads", argv)


if __name__ == "__main__":
    sys.exit(main())
