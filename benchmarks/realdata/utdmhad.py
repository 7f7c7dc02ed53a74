"""UTD-MHAD: 27 actions from a wrist inertial sensor (accelerometer + gyroscope) and a Kinect skeleton (20 joints).

Source: the UTD Multimodal Human Action Dataset (Chen, Jafari and Kehtarnavaz, "UTD-MHAD: A multimodal dataset for
human action recognition utilizing a depth camera and a wearable inertial sensor", IEEE ICIP 2015,
doi:10.1109/ICIP.2015.7350781; personal.utdallas.edu/~kehtar/UTD-MHAD.html): 8 subjects x 27 actions x 4 trials,
861 recordings (three corrupted ones were removed by the authors). The .mat files as published are committed in
github.com/xianyang-wong/utd_mhad_human_activity_recognition, folders Inertial/ and Skeleton/ (commit 90cf461,
2018-11-11); no one on this project wrote or touched the data.

  Inertial/a<A>_s<S>_t<T>_inertial.mat  d_iner (T, 6): acceleration x, y, z (g) and angular rate x, y, z (deg/s),
                                        50 Hz, sensor on the right wrist (right thigh for actions 22-27)
  Skeleton/a<A>_s<S>_t<T>_skeleton.mat  d_skel (20, 3, T): 20 Kinect v1 joints x (x, y, z) in metres, ~30 Hz

Published (same cross-subject protocol, subjects 1, 3, 5, 7 train and 2, 4, 6, 8 test): inertial alone 67.2 %,
depth alone 66.1 %, depth + inertial fusion 79.1 % (Chen et al. 2015, collaborative representation classifier).
Skeleton-based results on UTD-MHAD are typically 80-90 % in later work (not with this converter's split).

Conversion: recordings last 2-6.5 s (inertial 107-326 rows, skeleton 41-125 frames), so each is time-normalised
(linear interpolation, numpy.interp) to one 3-s action window: inertial 150 rows (`rate_hz` 50), skeleton 60 frames
(`rate_hz` 20), channels as in utdmhad.yaml. Inertial values are written as published; skeleton joints are written
relative to the hip centre (body-centred coordinates, the usual skeleton representation), the hip centre itself as
recorded. Nothing is scaled.
Split by subject, as published: subjects 1, 3, 5 train, subject 7 validation (early stopping and temperature
scaling see an unseen person, like the test), subjects 2, 4, 6, 8 test.

Fetching: this machine reaches only package registries, so the snapshot is brought by the session's `fetch` tool
(github:xianyang-wong/utd_mhad_human_activity_recognition -> a bare git directory); elsewhere `git clone` it. Then

    python benchmarks/realdata/utdmhad.py convert --src /path/to/the/repository --out data/realdata/utdmhad
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

ACTIONS = [
    "swipe_left", "swipe_right", "wave", "clap", "throw", "arm_cross", "basketball_shoot", "draw_x",
    "draw_circle_cw", "draw_circle_ccw", "draw_triangle", "bowling", "boxing", "baseball_swing", "tennis_swing",
    "arm_curl", "tennis_serve", "push", "knock", "catch", "pickup_throw", "jog", "walk", "sit_to_stand",
    "stand_to_sit", "lunge", "squat",
]  # fmt: skip
JOINTS = [
    "head", "shoulder_c", "spine", "hip_c", "l_shoulder", "l_elbow", "l_wrist", "l_hand", "r_shoulder", "r_elbow",
    "r_wrist", "r_hand", "l_hip", "l_knee", "l_ankle", "l_foot", "r_hip", "r_knee", "r_ankle", "r_foot",
]  # fmt: skip
INERTIAL_STEPS, SKELETON_STEPS = 150, 60
HIP = 4  # hip_center, 1-based as in Skeleton_joint_order.txt
SPLIT = {1: "train", 3: "train", 5: "train", 7: "val", 2: "test", 4: "test", 6: "test", 8: "test"}
NAME = re.compile(r"a(\d+)_s(\d+)_t(\d+)_(inertial|skeleton)\.mat$")


def _mat_files(src: Path) -> dict[str, bytes]:
    """'Inertial/a1_s1_t1_inertial.mat' -> bytes, from a work tree or a bare git directory (one `git archive`)."""
    if (src / "Inertial").is_dir():
        return {
            p.relative_to(src).as_posix(): p.read_bytes()
            for d in ("Inertial", "Skeleton")
            for p in (src / d).glob("*.mat")
        }
    tar = subprocess.run(
        ["git", "--git-dir", str(src), "archive", "HEAD", "Inertial", "Skeleton"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile() and m.name.endswith(".mat")}


def time_normalise(x: np.ndarray, steps: int) -> np.ndarray:
    """(T, C) -> (steps, C) by linear interpolation over the recording's whole duration."""
    src_t = np.linspace(0.0, 1.0, len(x))
    dst_t = np.linspace(0.0, 1.0, steps)
    return np.stack([np.interp(dst_t, src_t, x[:, c]) for c in range(x.shape[1])], axis=1).astype(np.float32)


def body_centred(d: np.ndarray) -> np.ndarray:
    """(20 joints, 3, T) camera coordinates -> (T, 60), joint-major: the hip centre as recorded, every other joint
    relative to it (where a person stands in the room says nothing about the action)."""
    hip = HIP - 1
    rel = d - d[hip : hip + 1]  # (20, 3, T)
    rel[hip] = d[hip]
    return rel.transpose(2, 0, 1).reshape(d.shape[2], -1)


def _read(blob: bytes, kind: str, where: str) -> np.ndarray:
    """One recording as (T, C): inertial d_iner (T, 6); skeleton d_skel (20, 3, T) body-centred to (T, 60). A file
    that is not such a MATLAB file stops the conversion with one line naming it."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    key, shape = ("d_iner", "T x 6") if kind == "inertial" else ("d_skel", "20 x 3 x T")
    try:
        x = np.asarray(loadmat(io.BytesIO(blob))[key], dtype=np.float64)
    except (MatReadError, ValueError, TypeError, KeyError, OSError) as err:
        raise SystemExit(f"{where}: expected a MATLAB file with {key} ({shape}): {err!r}") from None
    ok = x.shape[1:] == (6,) if kind == "inertial" else x.shape[:2] == (20, 3)
    if not ok or x.shape[-1 if kind == "skeleton" else 0] < 2:
        raise SystemExit(f"{where}: expected {key} of {shape} with T >= 2, found {x.shape}")
    return x if kind == "inertial" else body_centred(x)


def convert(src: Path, out: Path) -> dict[str, int]:
    files = _mat_files(src)
    recs: dict[tuple[int, int, int], dict[str, np.ndarray]] = {}
    for name, blob in files.items():
        m = NAME.search(name)
        if m:
            a, s, t, kind = int(m[1]), int(m[2]), int(m[3]), m[4]
            recs.setdefault((a, s, t), {})[kind] = _read(blob, kind, f"{src}/{name}")
    if not recs:
        raise SystemExit(f"{src}: no Inertial/ or Skeleton/ .mat files found")
    (out / "samples").mkdir(parents=True, exist_ok=True)
    rows, counts = [], {"train": 0, "val": 0, "test": 0}
    for (a, s, t), mods in sorted(recs.items()):
        if set(mods) != {"inertial", "skeleton"}:
            continue  # the dataset pairs every recording; skip one that is not paired
        folder = out / "samples" / f"a{a:02d}_s{s}_t{t}"
        folder.mkdir(exist_ok=True)
        np.save(folder / "inertial.npy", time_normalise(mods["inertial"], INERTIAL_STEPS))
        np.save(folder / "skeleton.npy", time_normalise(mods["skeleton"], SKELETON_STEPS))
        rows.append((folder.name, SPLIT[s], ACTIONS[a - 1]))
        counts[SPLIT[s]] += 1
    write_labels(out, "action", rows)
    return counts


def main(argv: list[str] | None = None) -> int:
    return converter_main(convert, __doc__, "Inertial/ + Skeleton/", "data/realdata/utdmhad", argv)


if __name__ == "__main__":
    sys.exit(main())
