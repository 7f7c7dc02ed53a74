"""Italian Sign Language alphabet from a Myo armband: surface EMG (8 channels) + IMU, 26 letters.

Source: github.com/airtlab/An-EMG-and-IMU-Dataset-for-the-Italian-Sign-Language-Alphabet, folder Dataset/
(commit 86d59a1, 2021-02-23): 780 gestures, 30 per letter, one JSON per gesture with 2 s of EMG (8 x 400 at 200 Hz)
and IMU (gyroscope 3, acceleration 3, orientation quaternion 4, 400 rows at 200 Hz). Published by Pacifici, Sernani,
Falcionelli, Tomassini and Dragoni, "A surface electromyography and inertial measurement unit dataset for the
Italian Sign Language alphabet", Data in Brief 33 (2020), doi:10.1016/j.dib.2020.106455. No one on this project
wrote or touched the data.

Fetching: this machine reaches only package registries, so the snapshot is brought by the session's `fetch` tool
(github:airtlab/An-EMG-and-IMU-Dataset-for-the-Italian-Sign-Language-Alphabet -> a bare git directory); elsewhere
`git clone` the repository. Either way:

    python benchmarks/realdata/signlang.py convert --src /path/to/the/repository --out data/realdata/signlang

reads Dataset/<LETTER>/*.json from a work tree, or from a bare git directory (via `git show`), and writes the folder
dataset (docs/dataset.md): emg.npy (400, 8) and imu.npy (400, 10) per gesture. Split 70/15/15 per letter, seeded
(21/4/5 gestures of each letter, ordered by file name).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from _folder import converter_main, write_labels

IMU_CHANNELS = ["gx", "gy", "gz", "ax", "ay", "az", "qw", "qx", "qy", "qz"]


def _gestures(src: Path) -> dict[str, list[tuple[str, dict]]]:
    """letter -> [(path in the repository, parsed JSON)], from a work tree or a bare git directory."""
    out: dict[str, list[tuple[str, dict]]] = {}
    tree = src / "Dataset"
    if tree.is_dir():
        items = [(p.relative_to(src).as_posix(), p.read_bytes()) for p in sorted(tree.glob("*/*.json"))]
    else:
        git = ["git", "--git-dir", str(src)]
        names = subprocess.run(
            [*git, "ls-tree", "-r", "--name-only", "HEAD", "Dataset/"], capture_output=True, text=True, check=True
        ).stdout.split("\n")
        items = [
            (n, subprocess.run([*git, "show", f"HEAD:{n}"], capture_output=True, check=True).stdout)
            for n in sorted(names)
            if n.endswith(".json")
        ]
    for name, blob in items:
        letter = name.split("/")[1]
        try:
            out.setdefault(letter, []).append((name, json.loads(blob)))
        except ValueError as err:
            raise SystemExit(f"{src}/{name}: not JSON ({err})") from None
    return out


def _arrays(g: dict, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(emg (400, 8), imu (400, 10)) of one gesture; a one-line SystemExit naming `where` on any other layout."""
    try:
        emg = np.asarray(g["emg"]["data"], dtype=np.float32)
        rows = g["imu"]["data"]
        imu = np.asarray([[*r["gyroscope"], *r["acceleration"], *r["orientation"]] for r in rows], dtype=np.float32)
    except (KeyError, TypeError, ValueError) as err:
        raise SystemExit(
            f"{where}: expected emg.data and imu.data (gyroscope, acceleration, orientation): {err!r}"
        ) from None
    if emg.shape != (400, 8) or imu.shape != (400, 10):
        raise SystemExit(f"{where}: expected EMG 400 x 8 and IMU 400 x 10, found {emg.shape} and {imu.shape}")
    return emg, imu


def convert(src: Path, out: Path, seed: int = 0) -> dict[str, int]:
    gestures = _gestures(src)
    rng = np.random.default_rng(seed)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    rows, counts = [], {"train": 0, "val": 0, "test": 0}
    for letter in sorted(gestures):
        items = gestures[letter]
        order = rng.permutation(len(items))
        n_test, n_val = round(0.15 * len(items)), round(0.15 * len(items))
        for rank, i in enumerate(order):
            name, g = items[i]
            stem = Path(name).stem
            split = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            emg, imu = _arrays(g, f"{src}/{name}")
            folder = out / "samples" / f"{letter}-{stem[:8]}"
            folder.mkdir(exist_ok=True)
            np.save(folder / "emg.npy", emg)
            np.save(folder / "imu.npy", imu)
            rows.append((folder.name, split, letter))
            counts[split] += 1
    write_labels(out, "letter", rows)
    return counts


def main(argv: list[str] | None = None) -> int:
    return converter_main(convert, __doc__, "Dataset/", "data/realdata/signlang", argv)


if __name__ == "__main__":
    sys.exit(main())
