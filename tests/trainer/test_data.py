"""The folder dataset loader: round trips from the writer, user-made scenarios, every bad-data error, the cache."""

from __future__ import annotations

import os
import shutil
import struct
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgefuse.errors import DataError
from edgefuse.preprocess import prepare_image, prepare_text
from edgefuse.spec import load_spec, parse_spec
from edgefuse.trainer.data import load_dataset, read_wav
from edgefuse.trainer.synth import cut_sample, get_generator

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".cache"))
    return dst


def write_wav16(path: Path, x: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(x.shape[1])
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


def write_float_wav(path: Path, x: np.ndarray, rate: int) -> None:
    """IEEE float32 WAV, written by hand (the stdlib wave module only writes PCM)."""
    data = x.astype("<f4").tobytes()
    ch = x.shape[1]
    fmt = struct.pack("<HHIIHH", 3, ch, rate, rate * 4 * ch, 4 * ch, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


# ---------------------------------------------------------------------------------------------------------------------
# round trips


def test_round_trip_smart_home(home_spec, home_data: Path):
    ds = load_dataset(home_spec, home_data, progress=False)
    n = len(ds)
    assert n == 24 and ds.ids[0] == "000000"
    for name, m in home_spec.modalities.items():
        assert ds.inputs[name].shape == (n, *m.input_shape) and ds.inputs[name].dtype == np.float32
    assert ds.mask.shape == (n, 3) and ds.mask.min() == 1.0
    assert set(ds.split) == {"train", "val", "test"} and (ds.split == "train").sum() == round(0.7 * 24)
    lines = (home_data / "labels.csv").read_text().splitlines()[1:]
    classes = home_spec.labels["event"]
    assert [classes[i] for i in ds.targets["event"]] == [ln.split(",")[2] for ln in lines]
    # values: the loader returns what the generator rendered (PCM16 / %.6g rounding aside)
    gen = get_generator(home_spec, 0)
    for i in (0, 5):
        rng = np.random.default_rng([0, i])
        sample = cut_sample(gen, gen.sample_labels(rng), rng)
        assert np.array_equal(ds.inputs["camera"][i], prepare_image(sample["camera"], home_spec.modalities["camera"]))
        assert np.abs(ds.inputs["mic"][i].T - sample["mic"]).max() < 2 / 32767
        np.testing.assert_allclose(ds.inputs["env"][i].T, sample["env"], rtol=1e-5, atol=1e-4)
    train = ds.subset("train")
    assert len(train) == (ds.split == "train").sum() and set(train.split) == {"train"}
    assert np.array_equal(train.targets["event"], ds.targets["event"][ds.split == "train"])


def test_round_trip_optional_camera_and_text(cs_data: Path):
    spec = load_spec(CONFIGS / "customer_service.yaml")
    ds = load_dataset(spec, cs_data, progress=False)
    cam = spec.modality_names.index("camera")
    has_cam = np.array([(cs_data / "samples" / s / "camera.png").exists() for s in ds.ids])
    assert 0 < has_cam.sum() < len(ds)
    assert np.array_equal(ds.mask[:, cam], has_cam.astype(np.float32))
    assert not ds.inputs["camera"][~has_cam].any()  # missing -> zeros
    assert ds.inputs["transcript"].dtype == np.int64 and ds.inputs["transcript"].shape == (24, 32)
    text = (cs_data / "samples" / ds.ids[3] / "transcript.txt").read_text()
    enc = spec.model.encoders["transcript"]
    expect = prepare_text(text, spec.modalities["transcript"], enc.buckets, enc.ngrams)
    assert np.array_equal(ds.inputs["transcript"][3], expect) and expect[0] > 0
    assert set(ds.targets) == {"intent", "sentiment", "escalate"}


USER_SPEC = {
    "name": "pump_monitor",
    "modalities": {
        "vibration": {"kind": "series", "rate_hz": 50, "window_s": 1.0, "channels": ["x", "y"]},
        "sound": {"kind": "audio", "rate_hz": 8000, "window_s": 0.5, "channels": 2},
        "note": {"kind": "text", "rate_hz": 1, "shape": [8]},
        "gauge": {"kind": "image", "rate_hz": 1, "shape": [16, 24], "channels": 1},
    },
    "labels": {"state": ["ok", "worn"], "load": ["low", "high"]},
    "model": {
        "encoders": {
            "vibration": {"type": "gru"},
            "sound": {"type": "logmel_cnn"},
            "note": {"type": "hashed_embedding", "buckets": 64, "ngrams": 1},
            "gauge": {"type": "dwcnn"},
        }
    },
}


def make_user_dataset(root: Path) -> Path:
    """A scenario none of the generators knows, filled by hand: longer recordings, float WAV, .npy, JPEG."""
    rng = np.random.default_rng(0)
    (root / "samples").mkdir(parents=True)
    rows = ["sample,split,load,state,operator"]  # any column order; extra columns are ignored
    for i, (split, state, load) in enumerate([("train", "ok", "low"), ("val", "worn", "high"), ("test", "ok", "high")]):
        d = root / "samples" / f"pump{i}"
        d.mkdir()
        vib = rng.normal(size=(80, 2)).astype(np.float32)  # 80 rows > 50 needed: the last 50 count
        if i == 1:
            np.save(d / "vibration.npy", vib)
        else:
            (d / "vibration.csv").write_text("y,x\n" + "\n".join(f"{b},{a}" for a, b in vib))
        snd = rng.uniform(-0.5, 0.5, size=(6000, 2)).astype(np.float32)
        (write_float_wav if i == 0 else write_wav16)(d / "sound.wav", snd, 8000)
        (d / "note.txt").write_text("bearing noise 🙂 after service", encoding="utf-8")
        if i != 2:  # the third sample has no gauge photo: masked
            cv2.imwrite(str(d / "gauge.jpg"), rng.integers(0, 255, (32, 48, 3), dtype=np.uint8))
        rows.append(f"pump{i},{split},{load},{state},anna")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_user_scenario_loads_without_generator(tmp_path: Path):
    spec = parse_spec(USER_SPEC)
    root = make_user_dataset(tmp_path / "pump")
    ds = load_dataset(spec, root, progress=False)
    assert ds.inputs["vibration"].shape == (3, 2, 50) and ds.inputs["sound"].shape == (3, 2, 4000)
    assert ds.inputs["gauge"].shape == (3, 1, 16, 24) and ds.inputs["note"].shape == (3, 8)
    assert ds.mask[:, spec.modality_names.index("gauge")].tolist() == [1, 1, 0]
    assert ds.targets["state"].tolist() == [0, 1, 0] and ds.targets["load"].tolist() == [0, 1, 1]
    # the window ends at the tick: the last 50 rows, columns reordered to the spec's channel order
    vib = np.loadtxt(root / "samples/pump0/vibration.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(ds.inputs["vibration"][0], vib[-50:, ::-1].T, rtol=1e-6)
    np.testing.assert_allclose(ds.inputs["vibration"][1], np.load(root / "samples/pump1/vibration.npy")[-50:].T)
    snd, rate = read_wav(root / "samples/pump0/sound.wav")
    assert rate == 8000 and np.array_equal(ds.inputs["sound"][0], snd[-4000:].T)


# ---------------------------------------------------------------------------------------------------------------------
# bad data: each case names the file and the problem


def broken(src: Path, dst: Path, edit) -> Path:
    root = copy(src, dst)
    edit(root)
    return root


def rewrite_labels(root: Path, fn) -> None:
    p = root / "labels.csv"
    lines = p.read_text().splitlines()
    p.write_text("\n".join(fn(lines)) + "\n")


def sub(lines: list[str], i: int, old: str, new: str) -> list[str]:
    lines[i] = lines[i].replace(old, new)
    return lines


def first_sample(root: Path) -> Path:
    return root / "samples" / "000000"


CASES = {
    "labels_missing": (lambda r: (r / "labels.csv").unlink(), "labels.csv", "missing"),
    "head_column_missing": (
        lambda r: rewrite_labels(r, lambda ls: [",".join(x.split(",")[:2]) for x in ls]),
        "labels.csv",
        "missing column(s) ['event']",
    ),
    "unknown_label": (
        lambda r: rewrite_labels(r, lambda ls: ls[:2] + [ls[2].rsplit(",", 1)[0] + ",explosion"] + ls[3:]),
        "labels.csv",
        "line 3 (sample '000001'): unknown event label 'explosion'; allowed: ['person_entering'",
    ),
    "unknown_split": (
        lambda r: rewrite_labels(
            r, lambda ls: [ls[0], ",".join([ls[1].split(",")[0], "holdout", *ls[1].split(",")[2:]])] + ls[2:]
        ),
        "labels.csv",
        "unknown split 'holdout'",
    ),
    "sample_folder_missing": (lambda r: shutil.rmtree(first_sample(r)), "000000", "sample folder missing"),
    "audio_short": (
        lambda r: write_wav16(first_sample(r) / "mic.wav", np.zeros((9000, 1)), 16000),
        "mic.wav",
        "too short: 9000 samples, expected at least 16000",
    ),
    "audio_short_at_another_rate": (
        lambda r: write_wav16(first_sample(r) / "mic.wav", np.zeros((4000, 1)), 8000),
        "mic.wav",
        "too short: 8000 samples once resampled to 16000 Hz, expected at least 16000 (1.0 s)",
    ),
    "series_short": (
        lambda r: (first_sample(r) / "env.csv").write_text(
            "\n".join((first_sample(r) / "env.csv").read_text().splitlines()[:11]) + "\n"
        ),
        "env.csv",
        "too short: 10 rows, expected at least 40",
    ),
    "series_channels": (
        lambda r: (first_sample(r) / "env.csv").write_text(
            (first_sample(r) / "env.csv").read_text().replace("humidity", "humidty", 1)
        ),
        "env.csv",
        "missing channel(s) ['humidity'], unknown column(s) ['humidty']",
    ),
    "series_nan": (
        lambda r: _nan_in(first_sample(r) / "env.csv", row=7, col=3),
        "env.csv",
        "row 7, column 'humidity': nan (NaN/inf) is not allowed",
    ),
    "series_not_number": (
        lambda r: _nan_in(first_sample(r) / "env.csv", row=4, col=0, value="open"),
        "env.csv",
        "row 4, column 'motion': 'open' is not a number",
    ),
    "image_unreadable": (
        lambda r: (first_sample(r) / "camera.png").write_bytes(b"\x89PNG not really"),
        "camera.png",
        "unreadable image",
    ),
    "no_modality": (
        lambda r: [p.unlink() for p in first_sample(r).iterdir()],
        "000000",
        "no modality file at all",
    ),
}


def _nan_in(path: Path, row: int, col: int, value: str = "nan") -> None:
    """Put `value` at 1-based file line `row`, column index `col`."""
    lines = path.read_text().splitlines()
    cells = lines[row - 1].split(",")
    cells[col] = value
    lines[row - 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_data_names_file_and_problem(tmp_path: Path, home_spec, home_data: Path, case: str):
    edit, file_part, message = CASES[case]
    root = broken(home_data, tmp_path / "d", edit)
    with pytest.raises(DataError) as err:
        load_dataset(home_spec, root, progress=False)
    assert file_part in err.value.path
    assert message in err.value.problem


def test_audio_at_another_rate_and_channel_count_is_converted_as_the_microphone_does(
    tmp_path: Path, home_spec, home_data: Path
):
    import soxr

    from edgefuse.preprocess import mix_matrix
    from edgefuse.spec import spec_to_dict

    rate, n = 44100, 16000  # a 44.1 kHz stereo recording for the 16 kHz mono, 1 s microphone of smart_home
    t = np.arange(int(rate * 1.5)) / rate
    x = np.stack([0.5 * np.sin(2 * np.pi * 1000 * t), 0.2 * np.sin(2 * np.pi * 3000 * t)], axis=1)
    root = broken(home_data, tmp_path / "d", lambda r: write_wav16(first_sample(r) / "mic.wav", x, rate))
    ds = load_dataset(home_spec, root, progress=False)
    got = ds.inputs["mic"][list(ds.ids).index("000000"), 0]  # (n,)
    # the runtime microphone's path (runtime/sources/microphone.py): the device's channels mixed by mix_matrix, then
    # soxr's streaming resampler at HQ, fed 512-frame device blocks
    pcm, _ = read_wav(first_sample(root) / "mic.wav")
    stream = soxr.ResampleStream(rate, 16000, 1, dtype="float32", quality="HQ")
    blocks = np.array_split(pcm @ mix_matrix(2, 1, None), range(512, len(pcm), 512))
    live = np.concatenate([stream.resample_chunk(b, last=i == len(blocks) - 1) for i, b in enumerate(blocks)])
    np.testing.assert_allclose(got, live[-n:, 0], atol=1e-6)
    amp = np.abs(np.fft.rfft(got)) * 2 / n  # 1 Hz bins over the 1 s window
    assert amp[1000] == pytest.approx(0.25, abs=0.005) and amp[3000] == pytest.approx(0.1, abs=0.005)  # the mean
    assert np.delete(amp, [1000, 3000]).max() < 0.005
    # source.select_channels picks a channel of the recording, as it picks one of the device's
    d = spec_to_dict(home_spec)
    d["modalities"]["mic"]["source"]["select_channels"] = [0]
    left = load_dataset(parse_spec(d), root, progress=False).inputs["mic"][list(ds.ids).index("000000"), 0]
    amp = np.abs(np.fft.rfft(left)) * 2 / n
    assert amp[1000] == pytest.approx(0.5, abs=0.005) and amp[3000] < 0.005
    d["modalities"]["mic"]["source"]["select_channels"] = [2]
    with pytest.raises(DataError) as err:
        load_dataset(parse_spec(d), root, progress=False)
    assert err.value.path.endswith("000000/mic.wav")
    assert err.value.problem == "source.select_channels [2] needs 3 channels, the recording has 2"


def test_flac_ogg_and_mp3_recordings_load_as_the_wav_of_the_same_sound(
    tmp_path: Path, home_spec, home_data: Path, capfd
):
    import soundfile as sf

    rate, n = 16000, 16000  # smart_home's microphone: 16 kHz mono, 1 s
    t = np.arange(int(rate * 1.5)) / rate
    x = (0.4 * np.sin(2 * np.pi * 1000 * t) + 0.2 * np.sin(2 * np.pi * 3000 * t))[:, None]
    as_wav = broken(home_data, tmp_path / "wav", lambda r: write_wav16(first_sample(r) / "mic.wav", x, rate))
    want = load_dataset(home_spec, as_wav, progress=False).inputs["mic"][list(range(24))].copy()
    for fmt, subtype in (("flac", "PCM_16"), ("ogg", "VORBIS"), ("mp3", "MPEG_LAYER_III")):

        def swap(r: Path, fmt: str = fmt, subtype: str = subtype) -> None:
            (first_sample(r) / "mic.wav").unlink()
            pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")  # the WAV's 16-bit samples, as write_wav16 wrote them
            sf.write(first_sample(r) / f"mic.{fmt}", pcm, rate, format=fmt.upper(), subtype=subtype)

        root = broken(as_wav, tmp_path / fmt, swap)
        got = load_dataset(home_spec, root, progress=False)
        i = list(got.ids).index("000000")
        others = [j for j in range(len(got)) if j != i]
        np.testing.assert_array_equal(got.inputs["mic"][others], want[others])  # the other samples' WAVs as before
        if fmt == "flac":  # lossless: the same 16-bit samples
            np.testing.assert_array_equal(got.inputs["mic"][i], want[i])
        else:  # lossy: the same two tones at the same levels in the last second, little else
            amp = np.abs(np.fft.rfft(got.inputs["mic"][i, 0])) * 2 / n
            assert amp[1000] == pytest.approx(0.4, abs=0.04) and amp[3000] == pytest.approx(0.2, abs=0.03), fmt
            assert np.delete(amp, [999, 1000, 1001, 2999, 3000, 3001]).max() < 0.02, fmt
    bad = broken(
        home_data, tmp_path / "bad", lambda r: (first_sample(r) / "mic.wav").rename(first_sample(r) / "mic.flac")
    )
    with pytest.raises(DataError) as err:  # WAV bytes named .flac: libsndfile's reason, in one line
        (first_sample(bad) / "mic.flac").write_bytes(b"fLaC" + b"\0" * 40)
        load_dataset(home_spec, bad, progress=False)
    assert err.value.path.endswith("000000/mic.flac") and err.value.problem.startswith("unreadable FLAC audio: ")
    assert "\n" not in err.value.problem
    (first_sample(bad) / "mic.flac").rename(first_sample(bad) / "mic.mp3")
    (first_sample(bad) / "mic.mp3").write_bytes(b"not an mp3 at all")
    capfd.readouterr()
    with pytest.raises(DataError) as err:
        load_dataset(home_spec, bad, progress=False)
    assert err.value.problem == "unreadable MP3 audio: no decodable audio frames"
    assert "Note:" not in capfd.readouterr().err  # the decoder's own diagnostics do not reach the terminal


def test_bmp_webp_and_tiff_images_load_as_the_png_of_the_same_picture(tmp_path: Path, home_spec, home_data: Path):
    png = cv2.imread(str(first_sample(home_data) / "camera.png"), cv2.IMREAD_COLOR)
    ds = load_dataset(home_spec, home_data, progress=False)
    want = ds.inputs["camera"][list(ds.ids).index("000000")]
    for ext, params in ((".bmp", []), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]), (".tiff", [])):  # 101: lossless

        def swap(r: Path, ext: str = ext, params: list = params) -> None:
            (first_sample(r) / "camera.png").unlink()
            assert cv2.imwrite(str(first_sample(r) / f"camera{ext}"), png, params)

        got = load_dataset(home_spec, broken(home_data, tmp_path / ext[1:], swap), progress=False)
        np.testing.assert_array_equal(got.inputs["camera"][list(got.ids).index("000000")], want)
    bad = broken(home_data, tmp_path / "bad", lambda r: (first_sample(r) / "camera.png").unlink())
    (first_sample(bad) / "camera.webp").write_bytes(b"RIFF\x10\0\0\0WEBPVP8 not really")
    with pytest.raises(DataError) as err:
        load_dataset(home_spec, bad, progress=False)
    assert err.value.path.endswith("000000/camera.webp") and err.value.problem.startswith("unreadable image")


ENV = ["motion", "door", "temperature", "humidity", "light", "smoke"]  # smart_home's env: 10 Hz, 4 s = 40 steps


def write_stamped_csv(path: Path, t: np.ndarray) -> None:
    """A `t_s` column then smart_home's env channels; every channel of row i holds i (+ the channel's index / 10)."""
    rows = [f"{ti:.6f}," + ",".join(f"{i + c / 10:g}" for c in range(len(ENV))) for i, ti in enumerate(t)]
    path.write_text("t_s," + ",".join(ENV) + "\n" + "\n".join(rows) + "\n")


def test_a_series_csv_with_t_s_goes_on_the_rate_grid_taking_the_nearest_row(tmp_path, home_spec, home_data: Path):
    rng = np.random.default_rng(0)
    t = 1000.0 + np.arange(150) / 25 + rng.uniform(-0.003, 0.003, 150)  # 6 s at 25 Hz, jittered +-3 ms
    root = broken(home_data, tmp_path / "d", lambda r: write_stamped_csv(first_sample(r) / "env.csv", t))
    ds = load_dataset(home_spec, root, progress=False)
    got = ds.inputs["env"][list(ds.ids).index("000000")]  # (6, 40)
    grid = t[-1] - np.arange(39, -1, -1) / 10  # the 10 Hz grid ending at the last row
    nearest = np.abs(t[None, :] - grid[:, None]).argmin(axis=1)  # (40,)
    np.testing.assert_allclose(got, nearest[None, :] + np.arange(6)[:, None] / 10, atol=1e-5)
    assert nearest[-1] == 149 and set(np.diff(nearest)) <= {2, 3}  # 25 Hz rows, one in 2.5 taken
    # rows already at 10 Hz: the same 40 values as the file without t_s (its last 40 rows)
    t10 = 5.0 + np.arange(50) / 10
    at_rate = broken(home_data, tmp_path / "e", lambda r: write_stamped_csv(first_sample(r) / "env.csv", t10))
    got = load_dataset(home_spec, at_rate, progress=False).inputs["env"][list(ds.ids).index("000000")]
    np.testing.assert_allclose(got, np.arange(10, 50)[None, :] + np.arange(6)[:, None] / 10, atol=1e-5)


@pytest.mark.parametrize(
    "t, problem",
    [
        (np.r_[np.arange(20) / 25, np.arange(20, 150) / 25 + 1.0][np.r_[0:30, 29, 30:150]], "row 32 does not"),
        (np.r_[np.arange(60), np.arange(80, 150)] / 25, "gap in column 't_s' near 2.460 s: no row within 75 ms"),
        (np.arange(80) / 25, "too short: rows span 3.160 s, expected at least 4.0 s"),
    ],
    ids=["not_increasing", "gap", "too_short"],
)
def test_bad_t_s_column_is_named(tmp_path, home_spec, home_data: Path, t, problem):
    root = broken(home_data, tmp_path / "d", lambda r: write_stamped_csv(first_sample(r) / "env.csv", t))
    with pytest.raises(DataError) as err:
        load_dataset(home_spec, root, progress=False)
    assert err.value.path.endswith("000000/env.csv") and problem in err.value.problem


def test_text_not_utf8(tmp_path: Path, cs_data: Path):
    spec = load_spec(CONFIGS / "customer_service.yaml")
    root = copy(cs_data, tmp_path / "cs")
    (root / "samples" / "000002" / "transcript.txt").write_bytes("caf\xe9 cancel".encode("latin-1"))
    with pytest.raises(DataError) as err:
        load_dataset(spec, root, progress=False)
    assert err.value.path.endswith("000002/transcript.txt") and "not UTF-8" in err.value.problem


def test_error_message_reads_path_colon_problem(tmp_path: Path, home_spec, home_data: Path):
    root = broken(home_data, tmp_path / "d", CASES["audio_short"][0])
    with pytest.raises(DataError, match=r"000000/mic\.wav: too short: 9000 samples, expected at least 16000"):
        load_dataset(home_spec, root, progress=False)


# ---------------------------------------------------------------------------------------------------------------------
# the cache


def test_cache_reused_and_invalidated_by_any_change(tmp_path: Path, home_spec, home_data: Path):
    root = copy(home_data, tmp_path / "d")
    first = load_dataset(home_spec, root, progress=False)
    caches = list((root / ".cache").glob("*.npz"))
    assert len(caches) == 1
    # a reused cache gives identical arrays
    again = load_dataset(home_spec, root, progress=False)
    assert np.array_equal(again.inputs["mic"], first.inputs["mic"]) and list((root / ".cache").glob("*.npz")) == caches
    # change one value of one file, keep its size and mtime: the content hash still sees it
    env = first_sample(root) / "env.csv"
    st = env.stat()
    text = env.read_text()
    lines = text.splitlines()
    cells = lines[-1].split(",")
    cells[0] = "1" if cells[0] == "0" else "0"
    env.write_text("\n".join(lines[:-1] + [",".join(cells)]) + "\n")
    os.utime(env, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert env.stat().st_size == st.st_size
    changed = load_dataset(home_spec, root, progress=False)
    motion = home_spec.modalities["env"].channels.index("motion")
    assert changed.inputs["env"][0, motion, -1] == float(cells[0]) != first.inputs["env"][0, motion, -1]
    # relabelling a sample changes targets without touching the cache of inputs
    rewrite_labels(root, lambda ls: sub(ls, 1, ls[1].split(",")[2], "idle" if "idle" not in ls[1] else "alarm"))
    relabelled = load_dataset(home_spec, root, progress=False)
    assert relabelled.targets["event"][0] != first.targets["event"][0]
    assert np.array_equal(relabelled.inputs["env"], changed.inputs["env"])


def test_corrupt_cache_is_rebuilt(tmp_path: Path, home_spec, home_data: Path):
    root = copy(home_data, tmp_path / "d")
    good = load_dataset(home_spec, root, progress=False)
    (cache,) = (root / ".cache").glob("*.npz")
    cache.write_bytes(b"garbage")
    again = load_dataset(home_spec, root, progress=False)
    assert np.array_equal(again.inputs["camera"], good.inputs["camera"])


# ---------------------------------------------------------------------------------------------------------------------
# long recordings cut into windows (train.window_hop_s)

WINDOWED = {
    "name": "windowed",
    "modalities": {
        "cam": {"kind": "image", "shape": [8, 8], "channels": 1},
        "mic": {"kind": "audio", "rate_hz": 1000, "window_s": 0.5},
        "env": {"kind": "series", "rate_hz": 10, "window_s": 2.0, "channels": ["a"]},
    },
    "labels": {"event": ["x", "y"]},
}


def write_windowed(root: Path) -> Path:
    """s0: 2 s of audio + 5 s of series + a still; s1: exactly one window of each; s2: 3 s of series only, its rows
    stamped at 20 Hz (t_s). Audio sample j holds j / 4000, series row i holds i (its time in rate steps)."""
    (root / "samples").mkdir(parents=True)
    (root / "labels.csv").write_text("sample,split,event\ns0,train,x\ns1,val,y\ns2,test,y\n")
    for name, audio_s, series_rows in (("s0", 2.0, 50), ("s1", 0.5, 20), ("s2", None, None)):
        d = root / "samples" / name
        d.mkdir()
        cv2.imwrite(str(d / "cam.png"), np.full((8, 8), 40 * int(name[1]) + 10, np.uint8))
        if audio_s is not None:
            write_float_wav(d / "mic.wav", (np.arange(int(audio_s * 1000)) / 4000)[:, None], 1000)
        if series_rows is not None:
            (d / "env.csv").write_text("a\n" + "\n".join(str(i) for i in range(series_rows)) + "\n")
    t = np.arange(61) / 20  # 3.0 s at 20 Hz: the 10 Hz grid takes every other row (value 10 * t)
    (root / "samples" / "s2" / "env.csv").write_text("t_s,a\n" + "\n".join(f"{v:.4f},{v * 10:g}" for v in t) + "\n")
    return root


def test_window_hop_cuts_long_recordings_into_aligned_windows(tmp_path):
    root = write_windowed(tmp_path / "d")
    last = load_dataset(parse_spec(WINDOWED), root, progress=False)  # unset: one window per sample, the last
    d = {**WINDOWED, "train": {"window_hop_s": 0.5}}
    ds = load_dataset(parse_spec(d), root, progress=False)
    # s0: audio fits (2000 - 500) / 500 + 1 = 4 windows, series (50 - 20) / 5 + 1 = 7: the shorter decides
    assert ds.ids == ["s0#0", "s0#1", "s0#2", "s0#3", "s1#0", "s2#0", "s2#1", "s2#2"]
    assert list(ds.split) == ["train"] * 4 + ["val"] + ["test"] * 3
    assert list(ds.targets["event"]) == [0, 0, 0, 0, 1, 1, 1, 1]
    for w, k in enumerate(range(4)):  # window k ends k * 0.5 s before the end, in both modalities
        np.testing.assert_allclose(ds.inputs["mic"][w, 0], np.arange(1500 - 500 * k, 2000 - 500 * k) / 4000, atol=1e-7)
        np.testing.assert_array_equal(ds.inputs["env"][w, 0], np.arange(30 - 5 * k, 50 - 5 * k))
        np.testing.assert_array_equal(ds.inputs["cam"][w], last.inputs["cam"][0])  # the still repeats
    for k in range(3):  # s2: no audio (masked, zeros); its 20 Hz rows on the 10 Hz grid, back to its first row
        w = 5 + k
        np.testing.assert_allclose(ds.inputs["env"][w, 0], np.arange(11 - 5 * k, 31 - 5 * k), atol=1e-4)
        assert not ds.inputs["mic"][w].any() and list(ds.mask[w]) == [1.0, 0.0, 1.0]
    for i, w in enumerate((0, 4, 5)):  # each sample's window 0 is what an unset hop loads
        for name in WINDOWED["modalities"]:
            np.testing.assert_array_equal(ds.inputs[name][w], last.inputs[name][i])
    again = load_dataset(parse_spec({**WINDOWED, "train": {"window_hop_s": 1.0}}), root, progress=False)
    assert again.ids == ["s0#0", "s0#1", "s1#0", "s2#0", "s2#1"]  # the cache keeps whole recordings: any hop reuses it
    np.testing.assert_array_equal(again.inputs["env"][1, 0], np.arange(20, 40))
    assert len(list((root / ".cache").glob("*.npz"))) == 2  # one with last windows, one with whole recordings


def test_a_window_hop_shorter_than_a_step_or_beyond_memory_is_refused_in_one_line(tmp_path, monkeypatch):
    from edgefuse.spec import SpecError
    from edgefuse.trainer import data as data_module

    with pytest.raises(SpecError) as err:  # env runs at 10 Hz: a 0.05 s hop would repeat its rows
        parse_spec({**WINDOWED, "train": {"window_hop_s": 0.05}})
    assert "train.window_hop_s: 0.05 s is shorter than one step of env (0.1 s)" in str(err.value)
    root = write_windowed(tmp_path / "d")
    monkeypatch.setattr(data_module.os, "sysconf", lambda name: {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 1}[name])
    with pytest.raises(DataError) as err:  # 8 windows of 8x8 + 500 + 20 floats need 18 KiB; "memory" is 4 KiB
        load_dataset(parse_spec({**WINDOWED, "train": {"window_hop_s": 0.5}}), root, progress=False)
    assert err.value.path == "train.window_hop_s"
    assert err.value.problem.startswith("0.5 s cuts 8 windows (0.0 GiB), more than half of this machine's 0 GiB")


def write_short(root: Path) -> Path:
    """p0: 0.2 s of audio (sample j holds j / 4000) and 8 series rows (row i holds i + 1), both shorter than their
    window; p1: a whole audio window, and series rows stamped at 20 Hz over 1.0 s (t_s; value 10 t + 1)."""
    (root / "samples" / "p0").mkdir(parents=True)
    (root / "samples" / "p1").mkdir()
    (root / "labels.csv").write_text("sample,split,event\np0,train,x\np1,val,y\n")
    write_float_wav(root / "samples" / "p0" / "mic.wav", (np.arange(200) / 4000)[:, None], 1000)
    (root / "samples" / "p0" / "env.csv").write_text("a\n" + "\n".join(str(i + 1) for i in range(8)) + "\n")
    write_float_wav(root / "samples" / "p1" / "mic.wav", np.full((500, 1), 0.25), 1000)
    t = np.arange(21) / 20
    (root / "samples" / "p1" / "env.csv").write_text("t_s,a\n" + "\n".join(f"{v:.4f},{10 * v + 1:g}" for v in t) + "\n")
    return root


def test_pad_short_pads_short_clips_at_their_start_and_says_how_many(tmp_path, capfd):
    root = write_short(tmp_path / "d")
    with pytest.raises(DataError) as err:  # off (the default): an error that names the option
        load_dataset(parse_spec(WINDOWED), root, progress=False)
    assert err.value.path.endswith("p0/mic.wav")
    assert err.value.problem == (
        "too short: 200 samples, expected at least 500 (0.5 s) (train.pad_short: true pads short recordings)"
    )
    spec = parse_spec({**WINDOWED, "train": {"pad_short": True}})
    capfd.readouterr()
    for _ in range(2):  # decoded, then from the cache: the same arrays and the same note
        ds = load_dataset(spec, root, progress=False)
        # audio: silence before the clip, which ends where the window ends
        np.testing.assert_array_equal(ds.inputs["mic"][0, 0, :300], 0.0)
        np.testing.assert_allclose(ds.inputs["mic"][0, 0, 300:], np.arange(200) / 4000, atol=1e-7)
        np.testing.assert_allclose(ds.inputs["mic"][1, 0], 0.25, atol=1e-7)  # a whole window: untouched
        # series: the first row held before the rows; a t_s file's 10 Hz grid goes back to its first row (11 steps)
        np.testing.assert_array_equal(ds.inputs["env"][0, 0], [1] * 12 + list(range(1, 9)))
        np.testing.assert_allclose(ds.inputs["env"][1, 0], [1] * 9 + list(range(1, 12)), atol=1e-4)
        assert ds.mask[:, 1:].min() == 1.0 and sorted(ds.inputs) == ["cam", "env", "mic"]
        err_lines = capfd.readouterr().err.splitlines()
        assert err_lines == [
            f"note: {root}: train.pad_short padded 1 of 2 'mic' recordings shorter than its 0.5 s window at their "
            "start (shortest 0.200 s)",
            f"note: {root}: train.pad_short padded 2 of 2 'env' recordings shorter than its 2 s window at their "
            "start (shortest 0.800 s)",
        ]
    assert len(list((root / ".cache").glob("*.npz"))) == 1
    # with a hop, a padded recording gives one window: the padded one
    hop = load_dataset(
        parse_spec({**WINDOWED, "train": {"pad_short": True, "window_hop_s": 0.1}}), root, progress=False
    )
    assert hop.ids == ["p0#0", "p1#0"]
    for name in ("mic", "env"):
        np.testing.assert_array_equal(hop.inputs[name], ds.inputs[name])


def write_video(path: Path, values: list[int], fps: float, fourcc: str) -> None:
    """An 8x8 gray video, frame i all `values[i]`, written by OpenCV's FFmpeg (a real container and codec)."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (8, 8), False)
    assert w.isOpened()
    for v in values:
        w.write(np.full((8, 8), v, np.uint8))
    w.release()


@pytest.mark.parametrize("ext, fourcc", [(".avi", "MJPG"), (".mp4", "mp4v")])
def test_a_video_gives_the_frame_at_the_tick_and_with_a_hop_the_frame_at_each_window_end(tmp_path, ext, fourcc):
    root = write_windowed(tmp_path / "d")
    (root / "samples" / "s0" / "cam.png").unlink()
    write_video(root / "samples" / "s0" / f"cam{ext}", [10 * i for i in range(25)], 10, fourcc)  # 2.5 s at 10 fps
    write_video(root / "samples" / "s2" / f"cam{ext}", [200], 10, fourcc)  # a one-frame video: a still
    (root / "samples" / "s2" / "cam.png").unlink()
    d = {**WINDOWED, "modalities": {**WINDOWED["modalities"], "cam": {**WINDOWED["modalities"]["cam"], "rate_hz": 10}}}
    last = load_dataset(parse_spec(d), root, progress=False)
    np.testing.assert_allclose(last.inputs["cam"][0], 240 / 255, atol=2 / 255)  # the last frame: the one at the tick
    np.testing.assert_allclose(last.inputs["cam"][2], 200 / 255, atol=2 / 255)
    ds = load_dataset(parse_spec({**d, "train": {"window_hop_s": 0.5}}), root, progress=False)
    # s0: audio fits 4 windows, series 7, the video's 10 Hz grid (25 steps back to its first frame) 5: audio decides
    assert ds.ids == ["s0#0", "s0#1", "s0#2", "s0#3", "s1#0", "s2#0", "s2#1", "s2#2"]
    for w in range(4):  # window k ends k * 0.5 s earlier: frame 24 - 5k (2.4 - 0.5 k s)
        np.testing.assert_allclose(ds.inputs["cam"][w], 10 * (24 - 5 * w) / 255, atol=2 / 255)
    np.testing.assert_array_equal(ds.inputs["cam"][4], last.inputs["cam"][1])  # s1's png still
    for w in (5, 6, 7):  # the one-frame video repeats, as a still does
        np.testing.assert_allclose(ds.inputs["cam"][w], 200 / 255, atol=2 / 255)
    # a video shorter than the audio limits the windows: 13 frames (1.2 s) fit 3 windows 0.5 s apart
    write_video(root / "samples" / "s0" / f"cam{ext}", [10 * i for i in range(13)], 10, fourcc)
    short = load_dataset(parse_spec({**d, "train": {"window_hop_s": 0.5}}), root, progress=False)
    assert short.ids[:4] == ["s0#0", "s0#1", "s0#2", "s1#0"]
    np.testing.assert_allclose(short.inputs["cam"][2], 20 / 255, atol=2 / 255)  # 1.2 - 1.0 s: frame 2


def test_videos_on_a_grid_coarser_than_the_hop_are_noted(tmp_path, capfd):
    root = write_windowed(tmp_path / "d")
    (root / "samples" / "s0" / "cam.png").unlink()
    write_video(root / "samples" / "s0" / "cam.avi", [10 * i for i in range(25)], 10, "MJPG")
    capfd.readouterr()
    load_dataset(parse_spec({**WINDOWED, "train": {"window_hop_s": 0.5}}), root, progress=False)  # cam: 1 Hz (unset)
    assert capfd.readouterr().err.strip() == (
        f"note: {root}: 'cam' videos give frames on its 1 Hz rate_hz grid, coarser than the 0.5 s hop, so "
        "neighbouring windows share a frame; set modalities.cam.rate_hz to the camera's rate"
    )
    d = {**WINDOWED, "modalities": {**WINDOWED["modalities"], "cam": {**WINDOWED["modalities"]["cam"], "rate_hz": 10}}}
    load_dataset(parse_spec({**d, "train": {"window_hop_s": 0.5}}), root, progress=False)
    assert capfd.readouterr().err == ""


def test_a_broken_video_is_named_in_one_line(tmp_path, capfd):
    root = write_windowed(tmp_path / "d")
    (root / "samples" / "s0" / "cam.png").unlink()
    (root / "samples" / "s0" / "cam.mp4").write_bytes(b"\0\0\0\x18ftypmp42" + bytes(200))
    capfd.readouterr()
    with pytest.raises(DataError) as err:
        load_dataset(parse_spec(WINDOWED), root, progress=False)
    assert err.value.path.endswith("s0/cam.mp4")
    assert err.value.problem == "unreadable video: OpenCV cannot open this MP4"
    assert capfd.readouterr().err == ""  # FFmpeg's own lines do not reach the terminal


def test_a_video_whose_frames_would_not_fit_in_memory_is_refused_in_one_line(tmp_path, monkeypatch):
    from edgefuse.trainer import data as data_module

    root = write_windowed(tmp_path / "d")
    (root / "samples" / "s0" / "cam.png").unlink()
    write_video(root / "samples" / "s0" / "cam.avi", [10 * i for i in range(25)], 10, "MJPG")
    monkeypatch.setattr(data_module.os, "sysconf", lambda name: {"SC_PAGE_SIZE": 1024, "SC_PHYS_PAGES": 1}[name])
    d = {**WINDOWED, "modalities": {**WINDOWED["modalities"], "cam": {**WINDOWED["modalities"]["cam"], "rate_hz": 10}}}
    with pytest.raises(DataError) as err:  # 25 steps of 8x8 floats: 6.4 KB; a quarter of "memory" is 256 bytes
        load_dataset(parse_spec({**d, "train": {"window_hop_s": 0.5}}), root, progress=False)
    assert err.value.path.endswith("s0/cam.avi")
    assert err.value.problem == (
        "frames span 2 s: 25 steps of the 10 Hz grid would take 0.0 GiB, more than a quarter of this machine's memory"
    )


def test_labelled_time_ranges_label_each_window_by_the_range_covering_its_end(tmp_path, capfd):
    """r0: 4 s of audio and series with a segments.csv; r1: labelled in labels.csv as usual. Audio sample j holds
    j / 4000, series row i holds i."""
    root = tmp_path / "d"
    for name, secs in (("r0", 4.0), ("r1", 2.0)):
        d = root / "samples" / name
        d.mkdir(parents=True)
        write_float_wav(d / "mic.wav", (np.arange(int(secs * 1000)) / 4000)[:, None], 1000)
        (d / "env.csv").write_text("a\n" + "\n".join(str(i) for i in range(int(secs * 10))) + "\n")
    (root / "labels.csv").write_text("sample,split,event\nr0,train,\nr1,test,y\n")
    ranges = "t0_s,t1_s,event\n0,2.4,x\n2.6,3.4,y\n3.6,4.0,x\n"  # gaps at 2.4-2.6 and 3.4-3.6 s
    (root / "samples" / "r0" / "segments.csv").write_text(ranges)
    plain = load_dataset(parse_spec({**WINDOWED, "train": {"window_hop_s": 0.5}}), root, progress=False)
    # r0: env fits (40 - 20) / 5 + 1 = 5 windows, ending at 4.0, 3.5, 3.0, 2.5 and 2.0 s; 3.5 and 2.5 fall in gaps
    assert plain.ids == ["r0@3.6#0", "r0@2.6#2", "r0@0#4", "r1#0"]
    assert list(plain.targets["event"]) == [0, 1, 0, 1] and list(plain.split) == ["train", "train", "train", "test"]
    for w, k in enumerate((0, 2, 4)):  # the same rows as any window k
        np.testing.assert_array_equal(plain.inputs["env"][w, 0], np.arange(20 - 5 * k, 40 - 5 * k))
        np.testing.assert_allclose(plain.inputs["mic"][w, 0], np.arange(3500 - 500 * k, 4000 - 500 * k) / 4000)
    assert capfd.readouterr().err.strip() == (
        f"note: {root}: 2 of 5 windows of the recordings with segments.csv end outside every labelled time range "
        "and are left out"
    )
    # eval's per-recording scores then decide each labelled range once: its windows share its label
    from edgefuse.trainer.evaluate import recording_ids

    assert list(recording_ids(plain)) == ["r0@3.6", "r0@2.6", "r0@0", "r1"]

    def refused(spec: dict) -> DataError:
        with pytest.raises(DataError) as err:
            load_dataset(parse_spec(spec), root, progress=False)
        return err.value

    # back-to-back ranges: a window ending on their boundary belongs to the range it holds
    (root / "samples" / "r0" / "segments.csv").write_text("t0_s,t1_s,event\n0,3,x\n3,4,y\n")
    back = load_dataset(parse_spec({**WINDOWED, "train": {"window_hop_s": 0.5}}), root, progress=False)
    assert back.ids == ["r0@3#0", "r0@3#1", "r0@0#2", "r0@0#3", "r0@0#4", "r1#0"]  # ends 4, 3.5 | 3, 2.5, 2
    assert list(back.targets["event"]) == [1, 1, 0, 0, 0, 1]
    (root / "samples" / "r0" / "segments.csv").write_text(ranges)
    err = refused(WINDOWED)  # without a hop
    assert err.path.endswith("r0/segments.csv") and err.problem.startswith(
        "labelled time ranges need train.window_hop_s"
    )
    (root / "samples" / "r0" / "segments.csv").write_text(ranges.replace("2.6,3.4,y", "2.6,3.4,z"))
    err = refused({**WINDOWED, "train": {"window_hop_s": 0.5}})
    assert err.path.endswith("r0/segments.csv") and err.problem == "line 3: event='z' is not one of ['x', 'y']"
    (root / "samples" / "r0" / "segments.csv").write_text(ranges)
    (root / "labels.csv").write_text("sample,split,event\nr0,train,x\nr1,test,y\n")
    err = refused({**WINDOWED, "train": {"window_hop_s": 0.5}})
    assert err.path.endswith("labels.csv")
    assert (
        err.problem == "line 2 (sample 'r0'): event 'x' here and time ranges in its segments.csv; leave the cell empty"
    )
    (root / "labels.csv").write_text("sample,split,event,speed\nr0,train,,\nr1,test,y,1.5\n")
    err = refused({**WINDOWED, "regression": {"speed": {"unit": "m/s"}}, "train": {"window_hop_s": 0.5}})
    assert err.path.endswith("r0/segments.csv")
    assert (
        err.problem == "labelled time ranges carry class heads only; this spec also has multilabel or regression heads"
    )


def test_series_csv_with_a_bom_semicolons_or_tabs_loads_as_the_comma_file(tmp_path, home_spec, home_data: Path):
    ds = load_dataset(home_spec, home_data, progress=False)
    i = list(ds.ids).index("000000")
    text = (first_sample(home_data) / "env.csv").read_text()
    for name, edit in {
        "bom": lambda t: "\ufeff" + t,
        "semicolon": lambda t: t.replace(",", ";"),
        "tab": lambda t: t.replace(",", "\t"),
    }.items():
        root = broken(home_data, tmp_path / name, lambda r, e=edit: (first_sample(r) / "env.csv").write_text(e(text)))
        np.testing.assert_array_equal(
            load_dataset(home_spec, root, progress=False).inputs["env"][i], ds.inputs["env"][i]
        )
    # a semicolon file with decimal commas: the cell is named
    lines = text.replace(",", ";").splitlines()
    lines[5] = lines[5].replace(".", ",", 1)
    root = broken(home_data, tmp_path / "decimal", lambda r: (first_sample(r) / "env.csv").write_text("\n".join(lines)))
    with pytest.raises(DataError) as err:
        load_dataset(home_spec, root, progress=False)
    assert err.value.path.endswith("000000/env.csv") and err.value.problem.startswith("row 6, column '")
    assert err.value.problem.endswith("is not a number")


def test_hold_missing_holds_each_channels_last_value_over_empty_or_nan_cells(tmp_path, capfd):
    root = write_windowed(tmp_path / "d")  # s0's env.csv: one channel 'a', row i holds i (50 rows, 10 Hz, 2 s window)
    (root / "samples" / "s0" / "env.csv").write_text(
        "a\n" + "\n".join("" if i < 3 or 35 <= i < 38 else ("nan" if i == 45 else str(i)) for i in range(50)) + "\n"
    )
    with pytest.raises(DataError) as err:  # off (the default): the first empty cell, with the option named
        load_dataset(parse_spec(WINDOWED), root, progress=False)
    assert err.value.path.endswith("s0/env.csv")
    assert err.value.problem == (
        "row 2, column 'a': '' is not a number (train.hold_missing: true holds a channel's last value over empty or "
        "NaN cells)"
    )
    capfd.readouterr()
    ds = load_dataset(parse_spec({**WINDOWED, "train": {"hold_missing": True}}), root, progress=False)
    # the last 20 rows (30-49): 35-37 hold 34, 45 holds 44
    want = [30, 31, 32, 33, 34, 34, 34, 34, 38, 39, 40, 41, 42, 43, 44, 44, 46, 47, 48, 49]
    np.testing.assert_array_equal(ds.inputs["env"][0, 0], want)
    assert capfd.readouterr().err.strip().splitlines()[0] == (
        f"note: {root}: train.hold_missing held the last value over 7 empty or NaN cells of 'env' in 1 of its files"
    )
    # cells before a channel's first value take that value; a blank line inside a file is a row of empty cells
    (root / "samples" / "s1" / "env.csv").write_text("a\n\n\n\n" + "\n".join(str(i) for i in range(3, 20)) + "\n\n")
    ds = load_dataset(parse_spec({**WINDOWED, "train": {"hold_missing": True}}), root, progress=False)
    np.testing.assert_array_equal(ds.inputs["env"][1, 0], [3, 3, 3] + list(range(3, 20)))
    # a channel with no value at all, and inf, stay errors
    (root / "samples" / "s1" / "env.csv").write_text("t_s,a\n" + "\n".join(f"{i / 10}," for i in range(20)) + "\n")
    with pytest.raises(DataError) as err:
        load_dataset(parse_spec({**WINDOWED, "train": {"hold_missing": True}}), root, progress=False)
    assert err.value.path.endswith("s1/env.csv")
    assert err.value.problem == "column 'a' has no value at all (every cell empty or NaN)"
    (root / "samples" / "s1" / "env.csv").write_text(
        "a\n" + "\n".join("inf" if i == 4 else "1" for i in range(20)) + "\n"
    )
    with pytest.raises(DataError) as err:
        load_dataset(parse_spec({**WINDOWED, "train": {"hold_missing": True}}), root, progress=False)
    assert err.value.problem == "row 6, column 'a': inf (NaN/inf) is not allowed"
