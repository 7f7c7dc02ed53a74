"""The folder dataset: labels.csv + one folder of modality files per sample (docs/dataset.md), loaded as tensors.

    DATA/labels.csv                 sample,split,<head>...[,group]   (split: train, val or test)
    DATA/samples/<sample>/<modality>.<ext>   one file per modality, ext by kind: EXTENSIONS
    DATA/samples/<sample>/segments.csv      optional: labelled time ranges t0_s,t1_s,<head>... (range_labels)
    DATA/captions.csv               optional: sample,caption (several rows per sample; trainer/caption.py)
    DATA/dataset.json               optional: what wrote it

Nothing here knows the built-in scenarios: the spec says which modalities, shapes and labels to expect. Every
problem is a DataError naming the file and what is wrong with it. Decoded arrays are cached under DATA/.cache,
keyed by a hash of the spec's modalities and labels and of every file's bytes, so a stale cache is never used. With
`train.window_hop_s` the cache keeps whole audio and series recordings and videos' frames, cut into windows after it
(`windows`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import struct
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from edgefuse._optional import require
from edgefuse.errors import DataError
from edgefuse.preprocess import prepare_audio, prepare_image, prepare_text
from edgefuse.spec import ModalitySpec, ScenarioSpec
from edgefuse.trainer.caption import read_captions

SPLITS = ("train", "val", "test")
VIDEO = (".mp4", ".avi", ".mov", ".mkv", ".webm")  # an image modality's recording: frames on its rate_hz grid
EXTENSIONS = {
    "image": (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", *VIDEO),  # OpenCV (load_image, load_video)
    "audio": (".wav", ".flac", ".ogg", ".mp3"),  # WAV read here (read_wav), the others by libsndfile (read_audio)
    "series": (".csv", ".npy"),
    "text": (".txt",),
}
TIME_COLUMN = "t_s"  # a series CSV's optional timestamp column (seconds): rows at any rate, put on the rate_hz grid
VAL_FRACTION = 0.15  # of the train split, held out for validation when labels.csv has no val rows
GROUP_COLUMN = "group"  # labels.csv's optional column: the person, session or place each sample comes from
SEGMENTS = "segments.csv"  # a sample's labelled time ranges (t0_s,t1_s,<head>...), cut by train.window_hop_s
CACHE_VERSION = 2  # bump when decoding changes, so old caches stop matching
PAD_HINT = " (train.pad_short: true pads short recordings)"
HOLD_HINT = " (train.hold_missing: true holds a channel's last value over empty or NaN cells)"


@dataclass
class Dataset:
    """Decoded samples: model-ready inputs per modality, a presence mask, and class indices per head."""

    spec: ScenarioSpec
    ids: list[str]
    split: np.ndarray  # (N,) str: train / val / test
    inputs: dict[str, np.ndarray]  # modality -> (N, *input_shape) float32 (text: int64 token ids)
    mask: np.ndarray  # (N, M) float32, 1 = present, spec modality order
    targets: dict[str, np.ndarray]  # head -> (N,) int64 class index into spec.labels[head]
    # multilabel head -> (N, K) float32 0/1 in spec.multilabel[head] order; regression head -> (N,) float32 in the
    # head's unit, NaN = unknown (masked out of the loss and the metrics)
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    # captions.csv (trainer/caption.py): the reference captions of each sample; None when the folder has none
    captions: list[list[str]] | None = None
    # (N,) str: labels.csv's `group` column (read_labels); None when it has none
    group: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, split: str) -> Dataset:
        """The samples of one split (train, val or test)."""
        return self.rows(self.split == split)

    def rows(self, keep: np.ndarray) -> Dataset:
        """The samples where the boolean (N,) `keep` is true, every field cut alike."""
        keep = np.flatnonzero(keep)
        return Dataset(
            spec=self.spec,
            ids=[self.ids[i] for i in keep],
            split=self.split[keep],
            inputs={k: v[keep] for k, v in self.inputs.items()},
            mask=self.mask[keep],
            targets={k: v[keep] for k, v in self.targets.items()},
            extra={k: v[keep] for k, v in self.extra.items()},
            captions=[self.captions[i] for i in keep] if self.captions is not None else None,
            group=self.group[keep] if self.group is not None else None,
        )


# ---------------------------------------------------------------------------------------------------------------------
# labels.csv


def read_labels(spec: ScenarioSpec, root: Path) -> tuple[list[tuple[str, str, dict[str, str]]], np.ndarray | None]:
    """(sample, split, labels) per row of labels.csv, every value checked against the spec; and (N,) its `group`
    column, or None when it has none (or a head is named group: the column is then that head's)."""
    path = root / "labels.csv"
    if not path.is_file():
        raise DataError(
            path, "missing: a dataset needs labels.csv with columns sample,split,<head>... (docs/dataset.md)"
        )
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets often write a BOM
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(path, f"cannot read: {err}") from None
    if not rows:
        raise DataError(path, "empty: expected a header row sample,split,<head>...")
    header = [h.strip() for h in rows[0]]
    heads = list(spec.head_kinds)
    missing = [c for c in ("sample", "split", *heads) if c not in header]
    if missing:
        raise DataError(path, f"missing column(s) {missing}; the header is {header}")
    col = {name: header.index(name) for name in ("sample", "split", *heads)}
    grouped = GROUP_COLUMN in header and GROUP_COLUMN not in spec.head_kinds
    out, seen, groups = [], set(), []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise DataError(path, f"line {line}: {len(row)} values for {len(header)} columns")
        sample, split = row[col["sample"]].strip(), row[col["split"]].strip()
        if not sample or "/" in sample or "\\" in sample or sample.startswith("."):
            raise DataError(path, f"line {line}: bad sample name '{sample}' (a folder name under samples/)")
        if sample in seen:
            raise DataError(path, f"line {line}: sample '{sample}' is listed twice")
        seen.add(sample)
        if split not in SPLITS:
            raise DataError(
                path, f"line {line} (sample '{sample}'): unknown split '{split}'; use one of {list(SPLITS)}"
            )
        labels = {}
        ranged = "segments" not in spec.modalities and (root / "samples" / sample / SEGMENTS).is_file()
        if ranged and (spec.multilabel or spec.regression):
            raise DataError(
                root / "samples" / sample / SEGMENTS,
                "labelled time ranges carry class heads only; this spec also has multilabel or regression heads",
            )
        for head in spec.heads:
            value = row[col[head]].strip()
            if ranged:  # its labels come from its segments.csv, window by window (range_labels)
                if value:
                    raise DataError(
                        path,
                        f"line {line} (sample '{sample}'): {head} '{value}' here and time ranges in its {SEGMENTS}; "
                        "leave the cell empty",
                    )
                labels[head] = ""
                continue
            if value not in spec.labels[head]:
                raise DataError(
                    path,
                    f"line {line} (sample '{sample}'): unknown {head} label '{value}'; allowed: {spec.labels[head]}",
                )
            labels[head] = value
        for head in spec.multilabel:
            labels[head] = _multilabel_cell(spec, head, row[col[head]], path, line, sample)
        for head in spec.regression:
            labels[head] = _regression_cell(head, row[col[head]], path, line, sample)
        if grouped:
            group = row[header.index(GROUP_COLUMN)].strip()
            if not group:
                raise DataError(
                    path, f"line {line} (sample '{sample}'): empty group (a group column needs one per row)"
                )
            groups.append(group)
        out.append((sample, split, labels))
    if not out:
        raise DataError(path, "no samples listed")
    return out, np.array(groups) if grouped else None


def _multilabel_cell(spec: ScenarioSpec, head: str, cell: str, path: Path, line: int, sample: str) -> str:
    """A multilabel cell: the present labels joined by "|" (empty = none); every label must be the head's."""
    present = [v.strip() for v in cell.split("|") if v.strip()]
    unknown = [v for v in present if v not in spec.multilabel[head]]
    if unknown:
        raise DataError(
            path,
            f"line {line} (sample '{sample}'): unknown {head} label(s) {unknown}; allowed: {spec.multilabel[head]} "
            "joined by '|'",
        )
    return "|".join(present)


def _regression_cell(head: str, cell: str, path: Path, line: int, sample: str) -> str:
    """A regression cell: a finite number in the head's unit, or empty (unknown)."""
    value = cell.strip()
    if value:
        try:
            ok = np.isfinite(float(value))
        except ValueError:
            ok = False
        if not ok:
            raise DataError(
                path,
                f"line {line} (sample '{sample}'): {head} value '{value}' is not a finite number (empty = unknown)",
            )
    return value


def head_targets(spec: ScenarioSpec, rows: list[dict[str, str]]) -> dict[str, np.ndarray]:
    """Targets of the multilabel and regression heads from label rows (head -> cell text, as read_labels gives)."""
    out: dict[str, np.ndarray] = {}
    for head, names in spec.multilabel.items():
        y = np.zeros((len(rows), len(names)), dtype=np.float32)  # (N, K)
        for i, r in enumerate(rows):
            for v in filter(None, r.get(head, "").split("|")):
                y[i, names.index(v)] = 1.0
        out[head] = y
    for head in spec.regression:
        out[head] = np.array([float(r[head]) if r.get(head) else np.nan for r in rows], dtype=np.float32)  # (N,)
    return out


# ---------------------------------------------------------------------------------------------------------------------
# one file per modality


def find_file(folder: Path, name: str, m: ModalitySpec, listing: set[str]) -> Path | None:
    """The file of modality `name` in a sample folder, or None when the modality is missing there."""
    for ext in EXTENSIONS[m.kind]:
        if name + ext in listing:
            return folder / (name + ext)
    return None


MAX_IMAGE_PIXELS = 1 << 25  # 33.5 MP: above any camera frame; a 1 MB PNG of 20000x20000 would decode to 1.2 GB


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header alone (Pillow reads no pixels on open); DataError if unreadable."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, with our limit
            with Image.open(path) as im:
                return im.size
    except Image.DecompressionBombError as err:
        raise DataError(path, f"image is above the {MAX_IMAGE_PIXELS:,}-pixel limit ({err})") from None
    except (OSError, ValueError) as err:
        raise DataError(path, f"unreadable image: {str(err)[:100]}") from None


def load_image(path: Path, m: ModalitySpec) -> np.ndarray:
    """PNG, JPEG, BMP, WebP or TIFF -> (C, H, W) float32 in [0, 1] via edgefuse.preprocess (the runtime's code).

    The pixel count is checked from the header before decoding, so a tiny file claiming a huge image is refused."""
    w, h = image_size(path)
    if w * h > MAX_IMAGE_PIXELS:
        raise DataError(path, f"image is {w}x{h} = {w * h:,} pixels, above the {MAX_IMAGE_PIXELS:,}-pixel limit")
    frame = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)
    if frame is None:
        raise DataError(path, f"unreadable image: not a {path.suffix[1:].upper()} OpenCV can decode")
    return prepare_image(frame, m)


def load_video(path: Path, m: ModalitySpec, whole: bool = False) -> np.ndarray:
    """MP4, AVI, MOV, MKV or WebM (decoded by OpenCV's FFmpeg) -> (T, C, H, W) float32 frames as load_image gives
    them: the last frame (T = 1; the image at the tick, where the recording ends), or with `whole` one frame per step
    of the rate_hz grid ending at the last frame and going back to the first, each the latest frame shown at that
    step (the runtime's camera: the newest frame at the tick)."""
    with _quiet_stderr(True):  # FFmpeg prints its own lines ("moov atom not found") for a broken file
        cap = cv2.VideoCapture(str(path))
        try:
            if not cap.isOpened():
                raise DataError(path, f"unreadable video: OpenCV cannot open this {path.suffix[1:].upper()}")
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            if w * h > MAX_IMAGE_PIXELS:
                raise DataError(
                    path, f"video is {w}x{h} = {w * h:,} pixels, above the {MAX_IMAGE_PIXELS:,}-pixel limit"
                )
            fps, pts = cap.get(cv2.CAP_PROP_FPS), []
            while cap.grab():  # pass 1: every frame's presentation time (s)
                pts.append(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000)
        finally:
            cap.release()
        if not pts:
            raise DataError(path, "unreadable video: no decodable frame")
        t = np.array(pts)
        if len(t) > 1 and not (np.diff(t) > 0).all():  # a container without usable times: the nominal frame rate
            if not fps > 0:
                raise DataError(path, "video frames carry no increasing times and the file states no frame rate")
            t = np.arange(len(t)) / fps
        step = 1.0 / m.rate_hz
        n = int(np.floor((t[-1] - t[0]) / step + 1e-6)) + 1 if whole else 1  # grid steps back to the first frame
        need, have = n * 4 * int(np.prod(m.input_shape)), os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        if need > have // 4:  # frame times spanning hours (or forged) would otherwise take the machine's memory
            raise DataError(
                path,
                f"frames span {t[-1] - t[0]:,.0f} s: {n:,} steps of the {m.rate_hz:g} Hz grid would take "
                f"{need / 2**30:.1f} GiB, more than a quarter of this machine's memory",
            )
        grid = t[-1] - step * np.arange(n - 1, -1, -1)  # (n,) ascending, ends at the last frame
        pick = np.searchsorted(t, grid + 1e-6, side="right") - 1  # (n,) the latest frame at or before each step
        frames, want = {}, set(pick.tolist())
        cap = cv2.VideoCapture(str(path))
        try:
            for i in range(max(want) + 1):  # pass 2: decode only the frames picked
                if not cap.grab():
                    raise DataError(path, f"unreadable video: frame {i} of {len(t)} did not decode a second time")
                if i in want:
                    ok, frame = cap.retrieve()
                    if not ok:
                        raise DataError(path, f"unreadable video: frame {i} does not decode")
                    frames[i] = prepare_image(frame, m)
        finally:
            cap.release()
    return np.stack([frames[i] for i in pick.tolist()])


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """A RIFF/WAVE file -> ((n, channels) float32 in [-1, 1], sample rate). PCM 8/16/24/32-bit and IEEE float."""
    data = path.read_bytes()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise DataError(path, "not a WAV file (no RIFF/WAVE header)")
    fmt, pcm, pos = None, None, 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = data[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            if len(body) < 16:
                raise DataError(path, "truncated fmt chunk")
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real tag is the sub-format's
                tag = struct.unpack("<H", body[24:26])[0]
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            pcm = body
        pos += 8 + size + (size & 1)
    if fmt is None or pcm is None:
        raise DataError(path, "WAV without fmt or data chunk")
    tag, channels, rate, bits = fmt
    if channels < 1:
        raise DataError(path, "WAV with 0 channels")
    width = bits // 8
    if tag == 1 and bits in (8, 16, 24, 32):
        pcm = pcm[: len(pcm) // (width * channels) * width * channels]
        if bits == 8:
            x = (np.frombuffer(pcm, np.uint8).astype(np.float32) - 128.0) / 128.0
        elif bits == 24:
            b = np.frombuffer(pcm, np.uint8).reshape(-1, 3)
            ints = (b[:, 0].astype(np.int32) | (b[:, 1].astype(np.int32) << 8) | (b[:, 2].astype(np.int32) << 16)) << 8
            x = (ints >> 8).astype(np.float32) / 8388608.0
        else:
            x = np.frombuffer(pcm, f"<i{width}").astype(np.float32) / float(2 ** (bits - 1))
    elif tag == 3 and bits in (32, 64):
        pcm = pcm[: len(pcm) // (width * channels) * width * channels]
        x = np.frombuffer(pcm, f"<f{width}").astype(np.float32)
    else:
        raise DataError(path, f"unsupported WAV encoding (format tag {tag}, {bits} bits): use PCM or IEEE float")
    return x.reshape(-1, channels), rate


@contextmanager
def _quiet_stderr(quiet: bool) -> Iterator[None]:
    """Send file descriptor 2 to /dev/null meanwhile (C libraries' diagnostics; our own errors come after)."""
    if not quiet:
        yield
        return
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """A FLAC, Ogg (Vorbis, Opus) or MP3 file -> ((n, channels) float32 in [-1, 1], sample rate), decoded by
    libsndfile through soundfile (the `train` extra); DataError in one line when it cannot decode the file."""
    sf = require("soundfile", f"reading {path.suffix} audio")
    try:
        with _quiet_stderr(path.suffix == ".mp3"):  # libsndfile's MP3 decoder prints "Note: ..." lines on fd 2
            x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        problem = " ".join(str(getattr(err, "error_string", err)).split())  # libsndfile's reason, without the path
        if "does not exist" in problem and path.is_file():  # what libsndfile says of an MP3 it finds no frame in
            problem = "no decodable audio frames"
        raise DataError(path, f"unreadable {path.suffix[1:].upper()} audio: {problem}") from None
    if x.shape[0] == 0:
        raise DataError(path, "no audio samples")
    return x, int(rate)


def load_audio(path: Path, m: ModalitySpec, whole: bool = False, short: bool = False) -> np.ndarray:
    """WAV, FLAC, Ogg or MP3 -> (C, n_steps) float32: the last window_s of the recording (the window ends at the
    tick); `whole`: the whole recording, (C, T) with T >= n_steps. `short`: a recording shorter than the window is
    returned whole, (C, T) with T < n_steps, instead of an error (`pad_start` pads it)."""
    x, rate = read_wav(path) if path.suffix == ".wav" else read_audio(path)
    if rate <= 0:
        raise DataError(path, f"sample rate {rate} Hz")
    if not np.isfinite(x).all():
        raise DataError(path, "contains NaN or inf samples")
    try:
        x = prepare_audio(x, rate, m)  # another rate or channel count: converted as the runtime's microphone does
    except ValueError as err:
        raise DataError(path, str(err)) from None
    if x.shape[0] < m.n_steps and not (short and x.shape[0]):
        at = f" once resampled to {m.rate_hz:g} Hz" if rate != m.rate_hz else ""
        raise DataError(
            path, f"too short: {x.shape[0]} samples{at}, expected at least {m.n_steps} ({m.window_s} s){PAD_HINT}"
        )
    return np.ascontiguousarray(x[0 if whole else -m.n_steps :].T)  # (C, n_steps), or (C, T) whole


def hold_last(path: Path, x: np.ndarray, names: list[str], held: list[int]) -> np.ndarray:
    """`train.hold_missing`: each NaN of x (T, C) takes its column's previous value (the first value for NaNs before
    it), as a sensor that did not report holds its last reading; appends the number of cells held to `held`. A
    column with no value at all is an error."""
    miss = np.isnan(x)
    if not miss.any():
        held.append(0)
        return x
    empty = np.flatnonzero(miss.all(axis=0))
    if len(empty):
        raise DataError(path, f"column '{names[empty[0]]}' has no value at all (every cell empty or NaN)")
    rows = np.where(miss, 0, np.arange(len(x))[:, None])  # (T, C) own row where present
    np.maximum.accumulate(rows, axis=0, out=rows)  # the last row with a value, at or before each row
    rows = np.where(np.cumsum(~miss, axis=0) == 0, np.argmax(~miss, axis=0)[None, :], rows)  # before the first: it
    held.append(int(miss.sum()))
    return x[rows, np.arange(x.shape[1])[None, :]]


def load_series(
    path: Path, m: ModalitySpec, whole: bool = False, short: bool = False, held: list[int] | None = None
) -> np.ndarray:
    """CSV (header = channel names) or .npy (T, C) -> (C, n_steps) float32: the last n_steps rows (`whole`: all of
    them, (C, T) with T >= n_steps). A CSV with a `t_s` column (seconds, increasing) may be at any rate: it is put on
    the rate_hz grid ending at its last row. `short`: as for load_audio. `held` (a list): empty or NaN cells are held
    (hold_last) instead of an error, and the number held is appended to it."""
    channels = list(m.channels)  # type: ignore[arg-type]
    if path.suffix == ".npy":
        try:
            x = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DataError(path, f"unreadable .npy: {err}") from None
        if x.ndim != 2 or x.shape[1] != len(channels):
            raise DataError(path, f"shape {x.shape}, expected (T, {len(channels)}) with columns {channels}")
        x = x.astype(np.float32)
        bad = np.argwhere(np.isinf(x) | (np.isnan(x) if held is None else False))
        if bad.size:
            r, c = bad[0]
            hint = HOLD_HINT if np.isnan(x[r, c]) else ""
            raise DataError(path, f"non-finite value at row {r}, column '{channels[c]}'{hint}")
        if held is not None:
            x = hold_last(path, x, channels, held)
    else:
        x, t = _read_series_csv(path, channels, held)
        if t is not None:
            return _onto_grid(path, t, x, m, whole, short)
    if x.shape[0] < m.n_steps and not (short and x.shape[0]):
        raise DataError(path, f"too short: {x.shape[0]} rows, expected at least {m.n_steps} ({m.window_s} s){PAD_HINT}")
    return np.ascontiguousarray(x[0 if whole else -m.n_steps :].T)  # (C, n_steps), or (C, T) whole


def _onto_grid(
    path: Path, t: np.ndarray, x: np.ndarray, m: ModalitySpec, whole: bool = False, short: bool = False
) -> np.ndarray:
    """Rows stamped `t` (seconds) -> (C, n_steps) on the rate_hz grid ending at the last row, each step taking the
    nearest row as the runtime's synchronizer does for a sensor at another rate (runtime/sync.py _resample: values
    are never interpolated); a step with no row within 0.75 of the longer period is a gap, an error here. `whole`:
    the grid goes back as far as the rows do, (C, T) with T >= n_steps. `short`: rows spanning less than the window
    give the steps back to the first row, (C, T) with T < n_steps, instead of an error."""
    from edgefuse.runtime.sync import _resample

    steps = np.diff(t)  # (k - 1,)
    if not (steps > 0).all():
        raise DataError(
            path, f"column 't_s' must increase from row to row (row {int(np.argmax(steps <= 0)) + 3} does not)"
        )
    n, step_ns = m.n_steps, 1e9 / m.rate_hz
    if len(t) < 2:
        raise DataError(path, f"too short: {len(t)} row(s), expected at least {m.window_s} s")
    ts = np.round((t - t[0]) * 1e9).astype(np.int64)  # (k,) ns since the first row
    src_ns = float(np.median(steps)) * 1e9
    cover = 0.75 * max(src_ns, step_ns)
    back = int((ts[-1] + cover) // step_ns) + 1  # steps back to the first row (within cover of it)
    if whole:
        n = max(n, back)
    grid = ts[-1] - np.round(step_ns * np.arange(n - 1, -1, -1)).astype(np.int64)  # (n,) ends at the last row
    if grid[0] < -cover:
        if not short:
            raise DataError(
                path, f"too short: rows span {t[-1] - t[0]:.3f} s, expected at least {m.window_s} s{PAD_HINT}"
            )
        n, grid = back, grid[-back:]
    out, covered, _, _ = _resample(ts, x, grid, src_ns, False, cover)
    if covered < n:
        ones = _resample(ts, np.ones((len(ts), 1), np.float32), grid, src_ns, False, cover)[0][0]  # 0 where uncovered
        gap = t[0] + grid[int(np.argmin(ones))] / 1e9
        raise DataError(path, f"gap in column 't_s' near {gap:.3f} s: no row within {cover / 1e6:.0f} ms of the grid")
    return out


def _read_series_csv(
    path: Path, channels: list[str], held: list[int] | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """(rows (k, C) in the spec's channel order, the `t_s` column (k,) or None when the file has none). Comma-separated,
    or semicolon- or tab-separated when the header holds no comma (as spreadsheets in many locales export it).
    `held`: as for load_series (a `t_s` cell must never be missing)."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # -sig: spreadsheets often write a BOM
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(path, f"cannot read: {err}") from None
    if not lines:
        raise DataError(path, f"empty: expected a header with channels {channels}")
    sep = next((c for c in (",", ";", "\t") if c in lines[0]), ",")
    header = [h.strip() for h in lines[0].split(sep)]
    stamped = TIME_COLUMN in header and TIME_COLUMN not in channels
    missing = [c for c in channels if c not in header]
    unknown = [h for h in header if h not in channels and not (stamped and h == TIME_COLUMN)]
    if missing or unknown:
        raise DataError(
            path, f"header {header}: missing channel(s) {missing}, unknown column(s) {unknown}; expected {channels}"
        )
    order = [header.index(c) for c in channels]
    while len(lines) > 1 and not lines[-1].strip():  # blank lines at the end; one inside is a row of empty cells
        lines.pop()
    rows = [ln if ln.strip() or len(header) == 1 else sep * (len(header) - 1) for ln in lines[1:]]
    cells = sep.join(rows).split(sep)
    if held is not None:  # an empty cell is a missing value, held below
        cells = [c if c.strip() else "nan" for c in cells]
    try:
        # numpy parses the strings in C; any bad value or ragged row falls through to the diagnosis below
        x = np.array(cells, dtype=np.float64).reshape(len(rows), len(header))
    except ValueError:
        for i, ln in enumerate(rows):
            vals = ln.split(sep)
            if len(vals) != len(header):
                raise DataError(path, f"row {i + 2}: {len(vals)} values for {len(header)} columns") from None
            for h, v in zip(header, vals, strict=True):
                try:
                    float(v if v.strip() or held is None else "nan")
                except ValueError:
                    hint = HOLD_HINT if not v.strip() else ""
                    raise DataError(path, f"row {i + 2}, column '{h}': '{v.strip()}' is not a number{hint}") from None
        x = np.zeros((len(rows), len(header)))  # only reached without rows: too short, reported by the caller
    holdable = np.zeros(len(header), bool)
    holdable[order] = held is not None  # channel columns; never t_s
    bad = np.argwhere(np.isinf(x) | (np.isnan(x) & ~holdable[None, :]))
    if bad.size:
        r, c = bad[0]
        hint = HOLD_HINT if np.isnan(x[r, c]) and header[c] != TIME_COLUMN else ""
        raise DataError(path, f"row {r + 2}, column '{header[c]}': {x[r, c]} (NaN/inf) is not allowed{hint}")
    out = x[:, order].astype(np.float32)
    if held is not None:
        out = hold_last(path, out, channels, held)
    return out, (x[:, header.index(TIME_COLUMN)] if stamped else None)


def load_text(path: Path, m: ModalitySpec, buckets: int, ngrams: int) -> np.ndarray:
    """UTF-8 text -> (max_tokens,) int64 hashed token ids (edgefuse.text, as the runtime hashes)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(path, f"not UTF-8 text ({err.reason} at byte {err.start})") from None
    return prepare_text(text, m, buckets, ngrams)


# ---------------------------------------------------------------------------------------------------------------------
# the whole dataset, with a cache


def _text_params(spec: ScenarioSpec, name: str) -> tuple[int, int]:
    enc = spec.model.encoders.get(name)
    return (enc.buckets, enc.ngrams) if enc is not None and enc.type == "hashed_embedding" else (4096, 2)


def _scan(spec: ScenarioSpec, root: Path, rows: list) -> list[dict[str, Path]]:
    """Per sample, modality -> file; DataError for a missing folder or a sample without any modality file."""
    out = []
    for sample, _, _ in rows:
        folder = root / "samples" / sample
        try:
            listing = set(os.listdir(folder))
        except OSError:
            raise DataError(folder, f"sample folder missing (listed in {root / 'labels.csv'})") from None
        files = {}
        for name, m in spec.modalities.items():
            path = find_file(folder, name, m, listing)
            if path is not None:
                files[name] = path
        if not files:
            wanted = [f"{n}{'|'.join(EXTENSIONS[m.kind])}" for n, m in spec.modalities.items()]
            raise DataError(folder, f"no modality file at all; expected some of {wanted}")
        out.append(files)
    return out


def _cache_key(spec: ScenarioSpec, root: Path, files: list[dict[str, Path]]) -> str:
    """Hash of what decoding depends on: the spec's modalities (with an audio source's select_channels), labels and
    text hashing, labels.csv and the bytes of every sample file (content, not mtimes: a file rewritten within the
    same clock tick still changes it)."""
    h = hashlib.blake2b(digest_size=16)
    meta = {
        "v": CACHE_VERSION,
        "modalities": {k: v.model_dump(mode="json", exclude={"sync", "source"}) for k, v in spec.modalities.items()},
        "labels": spec.labels,
        "text": {n: _text_params(spec, n) for n, m in spec.modalities.items() if m.kind == "text"},
        # the one source field decoding reads: the channels an audio recording is mixed from (prepare_audio)
        "select": {n: m.source.select_channels for n, m in spec.modalities.items() if m.kind == "audio"},
        "whole": spec.train.window_hop_s is not None,  # whole recordings, cut into windows after the cache
        **({"pad": True} if spec.train.pad_short else {}),  # (absent when off: caches made before it still match)
        **({"hold": True} if spec.train.hold_missing else {}),
    }
    h.update(json.dumps(meta, sort_keys=True).encode())
    h.update((root / "labels.csv").read_bytes())
    for sample_files in files:
        for name in sorted(sample_files):
            path = sample_files[name]
            h.update(path.name.encode() + b"\0")
            h.update(path.read_bytes())
    return h.hexdigest()


def pad_start(x: np.ndarray, n: int, kind: str) -> np.ndarray:
    """(C, T) with T < n -> (C, n): the recording ends where the window ends; before it, audio is silence (zeros) and
    a series holds its first row."""
    fill = (
        np.zeros((x.shape[0], n - x.shape[1]), x.dtype) if kind == "audio" else np.repeat(x[:, :1], n - x.shape[1], 1)
    )
    return np.concatenate([fill, x], axis=1)


def _decode(
    spec: ScenarioSpec, files: list[dict[str, Path]], progress: bool, whole: bool = False
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every sample's files -> (inputs, mask (N, M)): modality -> (N, *input_shape). `whole`: audio and series keep
    their whole recordings instead of the last window, as "rows_<m>" (sum of T, C) all samples' rows back to back
    and "len_<m>" (N,) each sample's T (0 where missing); images as "rows_<m>" (sum of T, C, H, W), a still one
    frame, a video its frames on the rate_hz grid (load_video); cut into windows by `windows`. With `train.pad_short`,
    "short_<m>" (N,) holds the steps each audio or series recording had before `pad_start` (0: not padded); with
    `train.hold_missing`, "held_<m>" (N,) the cells each series file had held (hold_last)."""
    n, names = len(files), spec.modality_names
    ragged = {k for k, m in spec.modalities.items() if whole and m.kind in ("audio", "series", "image")}
    inputs = {
        k: np.zeros((n, *m.input_shape), dtype=m.input_dtype) for k, m in spec.modalities.items() if k not in ragged
    }
    rows: dict[str, list[np.ndarray]] = {k: [] for k in ragged}
    lengths = {k: np.zeros(n, dtype=np.int64) for k in ragged}
    mask = np.zeros((n, len(names)), dtype=np.float32)
    pad = spec.train.pad_short
    timed = [k for k, m in spec.modalities.items() if m.kind in ("audio", "series")]
    short = {k: np.zeros(n, dtype=np.int64) for k in timed} if pad else {}
    hold = spec.train.hold_missing
    held = {k: np.zeros(n, dtype=np.int64) for k, m in spec.modalities.items() if m.kind == "series"} if hold else {}
    loaders = {"audio": load_audio, "series": load_series}
    for i, sample_files in enumerate(tqdm(files, desc="load dataset", unit="sample", disable=not progress)):
        for j, name in enumerate(names):
            path = sample_files.get(name)
            if path is None:
                continue  # missing modality: zeros, masked
            m = spec.modalities[name]
            if m.kind == "text":
                inputs[name][i] = load_text(path, m, *_text_params(spec, name))
            elif m.kind == "image":  # (T, C, H, W): a still is one frame, a video its frames (load_video)
                x = load_video(path, m, whole=name in ragged) if path.suffix in VIDEO else load_image(path, m)[None]
                if name in ragged:
                    rows[name].append(x)
                    lengths[name][i] = len(x)
                else:
                    inputs[name][i] = x[-1]
            else:
                cells: list[int] = []
                more = {"held": cells} if hold and m.kind == "series" else {}
                x = loaders[m.kind](path, m, whole=name in ragged, short=pad, **more)  # (C, T)
                if cells:
                    held[name][i] = cells[0]
                if x.shape[1] < m.n_steps:
                    short[name][i] = x.shape[1]
                    x = pad_start(x, m.n_steps, m.kind)
                if name in ragged:
                    rows[name].append(x.T)
                    lengths[name][i] = x.shape[1]
                else:
                    inputs[name][i] = x
            mask[i, j] = 1.0
    for k in ragged:
        m = spec.modalities[k]
        empty = np.zeros((0, *m.input_shape) if m.kind == "image" else (0, m.input_shape[0]), np.float32)
        inputs[f"rows_{k}"] = np.concatenate(rows[k]) if rows[k] else empty
        inputs[f"len_{k}"] = lengths[k]
    inputs.update({f"short_{k}": v for k, v in short.items()})
    inputs.update({f"held_{k}": v for k, v in held.items()})
    return inputs, mask


def windows(
    spec: ScenarioSpec, inputs: dict[str, np.ndarray], mask: np.ndarray, hop_s: float
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Whole recordings (`_decode(whole=True)`) -> windows every hop_s: (inputs, mask, sample (W,), k (W,)).

    A sample's recordings all end at its tick. Window k of a sample ends k * hop_s before that (k = 0 the last
    window, the one a sample gives without hop_s); in each audio or series recording it ends round(k * hop_s *
    rate_hz) rows before the last (rounded per window, so modalities at other rates never drift apart). A sample
    gives as many windows as fit in the shortest of its audio and series recordings and videos (one when it has
    none); a window's image is the video frame at the step round(k * hop_s * rate_hz) before the last (a still: the
    same in each), and its text is the same in each."""
    names, n = spec.modality_names, len(mask)
    ragged = [name for name in spec.modalities if f"len_{name}" in inputs]
    counts = np.full(n, np.iinfo(np.int64).max)  # windows per sample: those that fit in every recording
    for name in ragged:
        m, T = spec.modalities[name], inputs[f"len_{name}"]
        fit = np.floor((T - m.n_steps) / (hop_s * m.rate_hz) + 1e-9).astype(np.int64) + 1  # k * hop_s * rate <= T - n
        if m.kind == "image":  # a still (one frame) fits any number of windows
            fit = np.where(T > 1, fit, np.iinfo(np.int64).max)
        counts = np.where(mask[:, names.index(name)] > 0, np.minimum(counts, fit), counts)
    counts = np.where(counts == np.iinfo(np.int64).max, 1, counts)  # no audio or series: the one window
    per_window = sum(4 * int(np.prod(m.input_shape)) for m in spec.modalities.values())  # bytes, float32 (text: less)
    need, have = int(counts.sum()) * per_window, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have // 2:
        raise DataError(
            "train.window_hop_s",
            f"{hop_s:g} s cuts {int(counts.sum()):,} windows ({need / 2**30:.1f} GiB), more than half of this "
            f"machine's {have / 2**30:.0f} GiB of memory: use a longer hop",
        )
    sample = np.repeat(np.arange(n), counts)  # (W,)
    k = np.arange(len(sample)) - np.repeat(np.cumsum(counts) - counts, counts)  # (W,) 0 = the last window
    out = {name: v[sample] for name, v in inputs.items() if not name.startswith(("rows_", "len_"))}
    for name in ragged:
        m, T, rows = spec.modalities[name], inputs[f"len_{name}"], inputs[f"rows_{name}"]
        end = np.cumsum(T)[sample] - np.round(k * hop_s * m.rate_hz).astype(np.int64)  # (W,) exclusive
        if m.kind == "image":  # the frame shown at the window's end; a still's only frame
            first = (np.cumsum(T) - T)[sample]
            idx = np.where(T[sample] > 1, end - 1, first).clip(0, max(0, len(rows) - 1))
            x = rows[idx] if len(rows) else np.zeros((len(sample), *m.input_shape), np.float32)
            out[name] = np.where((T[sample] > 0)[:, None, None, None], x, 0.0).astype(np.float32)
            continue
        idx = np.clip(end[:, None] - m.n_steps + np.arange(m.n_steps)[None, :], 0, max(0, len(rows) - 1))
        x = rows[idx] if len(rows) else np.zeros((len(sample), m.n_steps, m.input_shape[0]), np.float32)
        x = np.where((T[sample] > 0)[:, None, None], x, 0.0).astype(np.float32)  # a missing recording: zeros
        out[name] = np.ascontiguousarray(x.transpose(0, 2, 1))  # (W, C, n_steps)
    return out, mask[sample], sample, k


def carve_val(split: np.ndarray, classes: np.ndarray | None, groups: np.ndarray | None = None) -> np.ndarray:
    """(N,) bool: the VAL_FRACTION of the train samples to hold out for validation, per class of `classes` (N,) when
    given (a class with fewer than 4 train samples keeps them all), drawn with a fixed seed so every run on a dataset
    holds out the same samples. Samples of one recording or person may then sit in both train and val, unless
    `groups` (N,) names each sample's group: whole groups are then held out, in a fixed shuffled order until they
    hold VAL_FRACTION of the train samples, never every group (with one group, samples are drawn as without)."""
    out = np.zeros(len(split), dtype=bool)
    train = np.flatnonzero(split == "train")
    rng = np.random.default_rng(0)
    names = np.unique(groups[train]) if groups is not None else np.array([])
    if len(names) >= 2:
        want = round(len(train) * VAL_FRACTION)
        for g in rng.permutation(names)[:-1]:  # the last one always trains
            if out.sum() >= max(1, want):
                break
            out[train[groups[train] == g]] = True
        return out
    groups = [train] if classes is None else [train[classes[train] == c] for c in np.unique(classes[train])]
    for g in groups:
        out[rng.permutation(g)[: round(len(g) * VAL_FRACTION)]] = True
    return out


def recording_name(sample_id: str) -> str:
    """The recording a window was cut from: its id without '#<k>' and '@<t0>' (windows)."""
    return sample_id.split("#")[0].split("@")[0]


def fold_units(ds: Dataset) -> tuple[str, np.ndarray | None]:
    """What cross-validation keeps whole: ("group", labels.csv's groups) when there is a group column, else
    ("recording", each window's recording name) when windows were cut, else ("sample", None)."""
    if ds.group is not None:
        return "group", ds.group
    if any("#" in i for i in ds.ids):
        return "recording", np.array([recording_name(i) for i in ds.ids])
    return "sample", None


def cv_folds(ds: Dataset, k: int) -> tuple[str, list[np.ndarray]]:
    """Cross-validation folds over the train and val samples (the test split is never in one): (unit, k boolean (N,)
    masks, each a fold's validation samples). The unit kept whole is fold_units'. Groups and recordings go, largest
    first, to the fold holding fewest samples so far (names break ties); samples are dealt round-robin in class
    order (first class head), shuffled with a fixed seed within each class. k is capped at the number of units."""
    pool = np.flatnonzero(ds.split != "test")
    unit, names = fold_units(ds)
    if names is None:
        rng = np.random.default_rng(0)
        y = ds.targets[ds.spec.heads[0]][pool] if ds.spec.heads else np.zeros(len(pool), np.int64)
        order = pool[np.lexsort((rng.permutation(len(pool)), y))]  # by class, shuffled within
        k = min(k, len(order))
        fold = np.full(len(ds), -1)
        fold[order] = np.arange(len(order)) % k
        return unit, [fold == j for j in range(k)]
    units, sizes = np.unique(names[pool], return_counts=True)
    k = min(k, len(units))
    load, members = np.zeros(k, np.int64), [[] for _ in range(k)]
    for i in sorted(range(len(units)), key=lambda i: (-sizes[i], str(units[i]))):
        j = int(np.argmin(load))
        load[j] += sizes[i]
        members[j].append(units[i])
    return unit, [(ds.split != "test") & np.isin(names, m) for m in members]


def load_dataset(spec: ScenarioSpec, root: str | Path, progress: bool = True) -> Dataset:
    """Load a folder dataset for `spec`; decoded arrays are cached in root/.cache and reused while valid."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "dataset folder not found")
    rows, group = read_labels(spec, root)
    files = _scan(spec, root, rows)
    key = _cache_key(spec, root, files)
    cache = root / ".cache" / f"{key}.npz"
    ids = [r[0] for r in rows]
    split = np.array([r[1] for r in rows])
    # -1: labelled by the sample's segments.csv, window by window (range_labels)
    targets = {
        h: np.array([spec.labels[h].index(r[2][h]) if r[2][h] else -1 for r in rows], dtype=np.int64)
        for h in spec.heads
    }
    ranged = np.flatnonzero(targets[spec.heads[0]] < 0) if spec.heads else np.zeros(0, np.int64)
    if len(ranged) and spec.train.window_hop_s is None:
        raise DataError(
            root / "samples" / ids[ranged[0]] / SEGMENTS,
            "labelled time ranges need train.window_hop_s (the recording is cut into windows, each labelled by the "
            "range covering its end)",
        )
    if (
        not (split == "val").any()
        and (carved := carve_val(split, targets[spec.heads[0]] if spec.heads else None, group)).any()
    ):
        split = np.where(carved, "val", split)
        held = np.unique(group[carved]) if group is not None else []
        how = (
            f"whole groups, {len(held)} of {len(np.unique(group[carved | (split == 'train')]))}: "
            + ", ".join(f"'{g}'" for g in held[:5])
            + (", ..." if len(held) > 5 else "")
            if len(held)
            else f"{VAL_FRACTION:.0%}{', per class' if spec.heads else ''}"
        )
        print(
            f"note: {root / 'labels.csv'}: no 'val' rows; {(split == 'val').sum()} of the train samples ({how}, "
            "fixed seed) are held out for validation",
            file=sys.stderr,
        )
    if group is not None:
        _note_shared_groups(root, split, group)
    hop_s = spec.train.window_hop_s
    cached = _read_cache(cache, spec)
    if cached is not None:
        inputs, mask = cached
    else:
        inputs, mask = _decode(spec, files, progress, whole=hop_s is not None)
        _write_cache(cache, inputs, mask)
    for name in [k for k in inputs if k.startswith("held_")]:
        _note_held(root, name[5:], inputs.pop(name))
    for name in [k for k in inputs if k.startswith("short_")]:
        _note_padded(
            root, spec.modalities[name[6:]], name[6:], inputs.pop(name), mask[:, spec.modality_names.index(name[6:])]
        )
    captions = read_captions(root, ids) if spec.captions is not None else None
    extra = head_targets(spec, [r[2] for r in rows])
    if hop_s is not None:  # every window of a sample keeps its split, labels and captions
        ends = recording_ends(spec, inputs, len(mask))  # (N,)
        _note_coarse_video(root, spec, inputs, hop_s)
        inputs, mask, sample, k = windows(spec, inputs, mask, hop_s)
        targets = {h: v[sample] for h, v in targets.items()}
        start = range_labels(spec, root, ids, ranged, sample, ends[sample] - k * hop_s, targets)
        ids = [
            f"{ids[i]}#{j}" if np.isnan(t0) else f"{ids[i]}@{t0:g}#{j}"
            for i, j, t0 in zip(sample, k, start, strict=True)
        ]
        split = split[sample]
        extra = {h: v[sample] for h, v in extra.items()}
        captions = [captions[i] for i in sample] if captions is not None else None
        group = group[sample] if group is not None else None
    ds = Dataset(spec, ids, split, inputs, mask, targets, extra, captions, group)
    if len(ranged):  # windows no labelled range covers are left out (ranged samples need a hop: refused above)
        keep = targets[spec.heads[0]] >= 0
        _note_unlabelled(root, int((~keep).sum()), int(np.isin(sample, ranged).sum()))
        return ds.rows(keep)
    return ds


def recording_ends(spec: ScenarioSpec, inputs: dict[str, np.ndarray], n: int) -> np.ndarray:
    """(N,) seconds: each sample's longest audio or series recording (`_decode(whole=True)`), where its recordings
    end; its labelled time ranges count from that recording's start."""
    ends = np.zeros(n)
    for name, m in spec.modalities.items():
        if m.kind in ("audio", "series") and f"len_{name}" in inputs:
            ends = np.maximum(ends, inputs[f"len_{name}"] / m.rate_hz)
    return ends


def range_labels(
    spec: ScenarioSpec,
    root: Path,
    names: list[str],
    ranged: np.ndarray,
    sample: np.ndarray,
    end_s: np.ndarray,
    targets: dict[str, np.ndarray],
) -> np.ndarray:
    """Windows (of `sample` (W,), ending `end_s` (W,) seconds from their recording's start) of the samples `ranged`
    take the class labels of the time range in their sample's segments.csv that covers their last instant (1 ns
    before the end), by the rule a recorded session's ticks follow (runtime/sync.py label_at); filled into `targets`
    (W,) in place, -1 where no range covers.
    Returns (W,) each window's range start (t0_s), NaN for windows of other samples or of no range."""
    from bisect import bisect_right

    from edgefuse.runtime.record import read_labels as read_ranges
    from edgefuse.runtime.sync import NS, label_at, label_segments

    start = np.full(len(sample), np.nan)
    for i in ranged:
        path = root / "samples" / names[i] / SEGMENTS
        segments = label_segments(read_ranges(path, spec.labels), 0, spec.labels, str(path))
        starts = [seg[0] for seg in segments]
        for w in np.flatnonzero(sample == i):
            t = round(end_s[w] * NS) - 1  # the window's last instant: back-to-back ranges give a window ending on
            truth = label_at(segments, starts, t)  # their boundary to the range it holds, not to the next
            if truth is not None:
                start[w] = starts[bisect_right(starts, t) - 1] / NS
                for h in spec.heads:
                    targets[h][w] = spec.labels[h].index(truth[h])
    return start


def _note_coarse_video(root: Path, spec: ScenarioSpec, inputs: dict[str, np.ndarray], hop_s: float) -> None:
    """One line on stderr when a modality's videos sit on a rate_hz grid coarser than the hop: windows would then
    share frames (an image modality's rate_hz is 1 Hz when unset)."""
    for name, m in spec.modalities.items():
        if m.kind == "image" and (inputs.get(f"len_{name}", np.zeros(1)) > 1).any() and hop_s * m.rate_hz < 1:
            print(
                f"note: {root}: '{name}' videos give frames on its {m.rate_hz:g} Hz rate_hz grid, coarser than the "
                f"{hop_s:g} s hop, so neighbouring windows share a frame; set modalities.{name}.rate_hz to the camera's "
                "rate",
                file=sys.stderr,
            )


def _note_unlabelled(root: Path, left_out: int, of: int) -> None:
    """One line on stderr: how many windows of the samples with labelled time ranges no range covers."""
    if left_out:
        print(
            f"note: {root}: {left_out:,} of {of:,} windows of the recordings with {SEGMENTS} end outside every "
            "labelled time range and are left out",
            file=sys.stderr,
        )


def _note_shared_groups(root: Path, split: np.ndarray, group: np.ndarray) -> None:
    """One line on stderr when a group has samples in more than one split (a person seen in training and in test)."""
    shared = [g for g in np.unique(group) if len(set(split[group == g])) > 1]
    if shared:
        names = ", ".join(
            f"'{g}' ({'/'.join(s for s in SPLITS if (split[group == g] == s).any())})" for g in shared[:3]
        )
        print(
            f"note: {root / 'labels.csv'}: {len(shared)} group(s) have samples in more than one split, e.g. {names}: "
            "validation and test then score groups seen in training",
            file=sys.stderr,
        )


def _note_held(root: Path, name: str, held: np.ndarray) -> None:
    """One line on stderr: how many empty or NaN cells of a modality's files train.hold_missing held, in how many."""
    if held.any():
        print(
            f"note: {root}: train.hold_missing held the last value over {int(held.sum()):,} empty or NaN cells of "
            f"'{name}' in {int((held > 0).sum()):,} of its files",
            file=sys.stderr,
        )


def _note_padded(root: Path, m: ModalitySpec, name: str, short: np.ndarray, present: np.ndarray) -> None:
    """One line on stderr: how many of a modality's recordings train.pad_short padded, and the shortest."""
    if not short.any():
        return
    print(
        f"note: {root}: train.pad_short padded {int((short > 0).sum()):,} of {int((present > 0).sum()):,} '{name}' "
        f"recordings shorter than its {m.window_s:g} s window at their start (shortest "
        f"{short[short > 0].min() / m.rate_hz:.3f} s)",
        file=sys.stderr,
    )


def _read_cache(path: Path, spec: ScenarioSpec) -> tuple[dict, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            inputs = {name[3:]: z[name] for name in z.files if name.startswith("in_")}  # see _decode
            mask = z["mask"]
        if not all(name in inputs or f"rows_{name}" in inputs for name in spec.modalities):
            return None
    except (OSError, KeyError, ValueError):
        return None  # a damaged cache is rebuilt, never trusted
    return inputs, mask


def _write_cache(path: Path, inputs: dict[str, np.ndarray], mask: np.ndarray) -> None:
    """Write atomically (tmp + rename); keep the 4 newest caches. A read-only dataset folder just goes uncached."""
    try:
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
        np.savez_compressed(tmp, mask=mask, **{f"in_{k}": v for k, v in inputs.items()})
        os.replace(tmp, path)
        old = sorted(path.parent.glob("*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)[4:]
        for p in old:
            p.unlink(missing_ok=True)
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------------------------------
# Recorded sessions (runtime/record.py) as training data


def load_data(spec: ScenarioSpec, root: str | Path, progress: bool = True) -> Dataset:
    """A folder dataset (docs/dataset.md), or a recorded session folder with its labels.csv (docs/recording.md).

    A session's windows are cut by the runtime's own synchronizer, so training sees exactly what serving fuses.
    """
    root = Path(root)
    if (root / "session.json").exists():
        return dataset_from_session(spec, root)
    return load_dataset(spec, root, progress=progress)


def dataset_from_session(spec: ScenarioSpec, session: str | Path, labels: str | Path | None = None) -> Dataset:
    """Training windows of a recorded session, split train/val/test by whole labelled time range.

    Neighbouring ticks share most of their window, so a labelled range goes to one split as a whole (split by
    range, not by tick, or the test split would leak training windows). The split fractions are spec.synth.splits
    (0.7 / 0.15 / 0.15 by default), drawn with a fixed seed.
    """
    from edgefuse.runtime.record import SessionReader, read_labels
    from edgefuse.runtime.sync import windows_from_session

    reader = SessionReader(session)
    rows = read_labels(labels, spec.labels) if labels is not None else reader.labels()
    where = Path(labels) if labels is not None else Path(session) / "labels.csv"
    if not rows:
        raise DataError(where, "no labelled time ranges: a session needs labels.csv (t0_s,t1_s,<head>...) to train on")
    rows = sorted(rows, key=lambda r: r[0])
    if len(rows) < 3:
        raise DataError(where, f"{len(rows)} labelled range(s): at least 3 are needed for train, val and test splits")
    w = windows_from_session(spec, reader, rows)
    if len(w) == 0:
        raise DataError(where, "no fusion tick falls inside a labelled time range")
    seg = np.searchsorted([r[0] for r in rows], (w.t_ns - reader.start_ns) / 1e9, side="right") - 1  # (N,)
    fractions = spec.synth.splits if spec.synth is not None else {"train": 0.7, "val": 0.15, "test": 0.15}
    n = len(rows)
    n_val, n_test = (max(1, round(n * fractions.get(k, 0.15))) for k in ("val", "test"))
    order = np.random.default_rng(0).permutation(n)
    split_of = np.empty(n, dtype=object)
    split_of[order[:n_test]], split_of[order[n_test : n_test + n_val]] = "test", "val"
    split_of[order[n_test + n_val :]] = "train"
    split = split_of[seg].astype(str)  # (N,)
    ids = [f"{Path(session).name}@{(t - reader.start_ns) / 1e9:.3f}s" for t in w.t_ns]
    return Dataset(spec=spec, ids=ids, split=split, inputs=w.inputs, mask=w.mask, targets=w.targets)
