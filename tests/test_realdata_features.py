"""benchmarks/realdata: the classical reference's image and audio features, and the speechcifar converter on a tiny
tree of real WAV and JPEG files, loaded by the trainer's own loader with the benchmark's spec."""

from __future__ import annotations

import csv
import importlib.util
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

REALDATA = Path(__file__).resolve().parents[1] / "benchmarks" / "realdata"


def _module(name: str):
    sys.path.insert(0, str(REALDATA))  # the converters import their sibling _folder
    spec = importlib.util.spec_from_file_location(f"realdata_{name}", REALDATA / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bench():
    return _module("bench_realdata")


def test_image_features_are_the_raw_pixels(bench):
    x = np.random.default_rng(0).random((3, 3, 4, 5)).astype(np.float32)
    f = bench.image_features(x)
    assert f.shape == (3, 60) and f.dtype == np.float64
    np.testing.assert_array_equal(f[1], x[1].ravel())


def test_audio_features_match_a_direct_log_mel(bench):
    from edgefuse.trainer.models.logmel import mel_filterbank

    rate, t = 16000, np.arange(16000) / 16000
    rng = np.random.default_rng(1)
    x = np.stack([0.5 * np.sin(2 * np.pi * 1000 * t), 0.1 * rng.standard_normal(16000)])[:, None].astype(np.float32)
    f = bench.audio_features(x, rate, chunk=1)  # chunked one clip at a time: same values as one chunk
    np.testing.assert_allclose(f, bench.audio_features(x, rate), rtol=1e-6)
    assert f.shape == (2, 80)
    # by hand: 512-sample frames every 256 samples, no padding, periodic Hann, |rfft|^2 / sum(w)^2, HTK mel, log
    n = (16000 - 512) // 256 + 1
    frames = np.stack([x[:, 0, k * 256 : k * 256 + 512] for k in range(n)], axis=1).astype(np.float64)
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(512) / 512)
    power = np.abs(np.fft.rfft(frames * w, axis=-1)) ** 2 / w.sum() ** 2
    logmel = np.log(power @ mel_filterbank(rate, 512, 40) + 1e-10)  # (N, frames, 40)
    np.testing.assert_allclose(f[:, :40], logmel.mean(1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(f[:, 40:], logmel.std(1), rtol=1e-3, atol=1e-3)
    # a steady 1 kHz tone: loudest in the band around 1 kHz, steady over time; noise spreads over all bands
    centers = np.argmax(mel_filterbank(rate, 512, 40), axis=0) * rate / 512
    assert abs(centers[f[0, :40].argmax()] - 1000) < 100
    assert f[0, 40:].max() < 0.1


def test_modality_features_dispatch_on_kind(bench):
    from edgefuse.spec import ModalitySpec

    x = np.random.default_rng(2).random((2, 3, 40)).astype(np.float32)
    series = ModalitySpec(kind="series", rate_hz=10, window_s=4.0, channels=["a", "b", "c"])
    np.testing.assert_array_equal(bench.modality_features(x, series), bench.features(x.astype(np.float64)))
    image = ModalitySpec(kind="image", shape=[4, 10], channels=3)
    assert bench.modality_features(x.reshape(2, 3, 4, 10), image).shape == (2, 120)
    with pytest.raises(SystemExit, match="text"):
        bench.modality_features(x, ModalitySpec(kind="text", shape=[8]))


def _wav(path: Path, seed: int) -> None:
    pcm = (np.random.default_rng(seed).standard_normal(16000) * 3000).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())


def test_speechcifar_converter_splits_by_speaker_and_loads(tmp_path, monkeypatch):
    import cv2

    from edgefuse.spec import load_spec
    from edgefuse.trainer.data import load_dataset

    conv = _module("speechcifar")
    monkeypatch.setattr(conv, "TRAIN", 20)
    monkeypatch.setattr(conv, "VAL", 10)
    speech, cifar = tmp_path / "speech", tmp_path / "cifar"
    speakers = [f"{i:08x}" for i in range(6)]  # 6 speakers x 10 words, one clip each
    for k, w in enumerate(conv.WORDS):
        d = speech / conv.AUDIO_DIR / w
        d.mkdir(parents=True)
        for i, s in enumerate(speakers):
            _wav(d / f"{s}_nohash_0.wav", 10 * k + i)
    for k, o in enumerate(conv.OBJECTS):
        for part, n in (("train", 8), ("test", 6)):
            (cifar / part / o).mkdir(parents=True)
            for i in range(n):
                img = np.full((32, 32, 3), 20 * k + i, np.uint8)
                cv2.imwrite(str(cifar / part / o / f"{i:04d}.jpg"), img)
    counts = conv.convert(speech, cifar, tmp_path / "out")
    assert sum(counts.values()) == 60 and counts["train"] >= 20 and counts["val"] >= 10 and counts["test"] > 0

    with open(tmp_path / "out" / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    split_of_speaker: dict[str, set[str]] = {}
    for r in rows:
        split_of_speaker.setdefault(r["sample"].split("-")[1], set()).add(r["split"])
        assert r["pair"] == conv.PAIRS[conv.WORDS.index(r["sample"].split("-")[0])]
        assert r["image_source"].split("/")[1] == r["pair"].split("_")[1]
        assert r["image_source"].startswith("test/" if r["split"] == "test" else "train/")
        audio = (tmp_path / "out" / "samples" / r["sample"] / "audio.wav").read_bytes()
        assert audio == (speech / r["audio_source"]).read_bytes()
    assert all(len(s) == 1 for s in split_of_speaker.values())  # no speaker in two splits
    assert len({r["image_source"] for r in rows}) == len(rows)  # no image used twice

    spec = load_spec(REALDATA / "speechcifar.yaml")
    ds = load_dataset(spec, tmp_path / "out", progress=False)
    assert ds.inputs["image"].shape == (60, 3, 32, 32) and ds.inputs["audio"].shape == (60, 1, 16000)
    assert sorted(set(ds.split)) == ["test", "train", "val"]


@pytest.mark.parametrize("name", ["utdmhad", "dsads", "signlang", "barbell", "speechcifar"])
def test_a_converter_given_a_wrong_source_says_so_in_one_line(name, tmp_path, capsys):
    argv = ["convert", "--src", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]
    if name == "speechcifar":
        argv[3:3] = ["--src2", str(tmp_path / "missing2")]
    assert _module(name).main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(str(tmp_path / "missing")), err
    assert "Traceback" not in err


def test_dsads_converter_splits_by_person_and_its_spec_loads_and_turns(tmp_path, capsys):
    """Tiny DSADS tree (2 activities x 8 people x 1 segment of 125 x 45 values): each unit's 9 columns land in its
    modality, people 1-5 train, 6 val, 7-8 test, and the benchmark's spec (rigid groups, heading) loads it."""
    from edgefuse.spec import compass_units, load_spec
    from edgefuse.trainer.augment import heading_plan, rotation_plan
    from edgefuse.trainer.data import load_dataset

    rng = np.random.default_rng(0)
    src = tmp_path / "dsads"
    segments = {}
    for a in (1, 7):
        for p in range(1, 9):
            x = rng.normal(size=(125, 45)).round(4) + np.arange(45.0)[None] * 10  # column c ~ 10 c
            (src / "data" / f"a{a:02d}" / f"p{p}").mkdir(parents=True)
            np.savetxt(src / "data" / f"a{a:02d}" / f"p{p}" / "s01.txt", x, delimiter=",", fmt="%.4f")
            segments[(a, p)] = x
    assert _module("dsads").main(["convert", "--src", str(src), "--out", str(tmp_path / "out")]) == 0
    rows = list(csv.DictReader((tmp_path / "out" / "labels.csv").read_text().splitlines()))
    assert len(rows) == 16
    for r in rows:
        p = int(r["sample"].split("_p")[1][0])
        assert r["split"] == ("train" if p <= 5 else "val" if p == 6 else "test")
        assert r["activity"] == ("sitting" if r["sample"].startswith("a01") else "elevator_still")
    upper = np.load(tmp_path / "out" / "samples" / "a07_p8_s01" / "upper.npy")
    lower = np.load(tmp_path / "out" / "samples" / "a07_p8_s01" / "lower.npy")
    np.testing.assert_allclose(upper, segments[(7, 8)][:, :27], atol=1e-4)  # torso, right arm, left arm
    np.testing.assert_allclose(lower, segments[(7, 8)][:, 27:], atol=1e-4)  # right leg, left leg

    spec = load_spec(REALDATA / "dsads.yaml")
    ds = load_dataset(spec, tmp_path / "out", progress=False)
    assert ds.inputs["upper"].shape == (16, 27, 125) and ds.inputs["lower"].shape == (16, 18, 125)
    assert [len(compass_units(spec.modalities[m].channels, spec.modalities[m].rigid_groups)) for m in ds.inputs] == [
        3,
        2,
    ]
    assert heading_plan(spec)[0] == 180.0 and rotation_plan(spec)["upper"][2] == [0, 0, 0, 1, 1, 1, 2, 2, 2]

    bad = src / "data" / "a01" / "p1" / "s01.txt"
    bad.write_text("1,2,3\n")
    assert _module("dsads").main(["convert", "--src", str(src), "--out", str(tmp_path / "out2")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "a01/p1/s01.txt" in err and "125 rows x 45 columns" in err, err


def test_signlang_converter_reads_myo_json_and_names_a_bad_file(tmp_path, capsys):
    """Tiny tree of the Myo JSON layout (2 letters x 7 gestures): arrays in the spec's channel order, 15/15/70 split
    per letter, loads with the benchmark's spec; a truncated file or a short recording is named in one line."""
    import json

    from edgefuse.spec import load_spec
    from edgefuse.trainer.data import load_dataset

    rng = np.random.default_rng(0)

    def gesture(n=400):
        emg = rng.integers(-128, 128, (n, 8)).tolist()
        imu = [
            {"gyroscope": [1.0, 2.0, 3.0], "acceleration": [0.0, 0.0, 1.0], "orientation": [1.0, 0.0, 0.0, 0.0]}
            for _ in range(n)
        ]
        return {"emg": {"data": emg}, "imu": {"data": imu}}

    src = tmp_path / "sign"
    for letter in ("A", "B"):
        (src / "Dataset" / letter).mkdir(parents=True)
        for i in range(7):
            (src / "Dataset" / letter / f"{letter}{i:02d}-recording.json").write_text(json.dumps(gesture()))
    mod = _module("signlang")
    assert mod.main(["convert", "--src", str(src), "--out", str(tmp_path / "out")]) == 0
    rows = list(csv.DictReader((tmp_path / "out" / "labels.csv").read_text().splitlines()))
    for letter in ("A", "B"):
        splits = sorted(r["split"] for r in rows if r["letter"] == letter)
        assert splits == ["test", "train", "train", "train", "train", "train", "val"]
    one = json.loads((src / "Dataset" / "B" / "B03-recording.json").read_text())
    emg = np.load(tmp_path / "out" / "samples" / "B-B03-reco" / "emg.npy")
    imu = np.load(tmp_path / "out" / "samples" / "B-B03-reco" / "imu.npy")
    np.testing.assert_array_equal(emg, np.asarray(one["emg"]["data"], dtype=np.float32))
    np.testing.assert_array_equal(imu[0], [1, 2, 3, 0, 0, 1, 1, 0, 0, 0])  # gx gy gz ax ay az qw qx qy qz
    ds = load_dataset(load_spec(REALDATA / "signlang.yaml"), tmp_path / "out", progress=False)
    assert ds.inputs["emg"].shape == (14, 8, 400) and ds.inputs["imu"].shape == (14, 10, 400)

    bad = src / "Dataset" / "A" / "A02-recording.json"
    for content, says in [('{"emg": ', "not JSON"), (json.dumps(gesture(399)), "expected EMG 400 x 8")]:
        bad.write_text(content)
        assert mod.main(["convert", "--src", str(src), "--out", str(tmp_path / "out2")]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith(f"{src}/Dataset/A/A02-recording.json: {says}"), err


def test_utdmhad_converter_pairs_mat_files_and_names_a_bad_one(tmp_path, capsys):
    """Tiny tree of real MATLAB files (scipy.io.savemat) in UTD-MHAD's layout: each recording time-normalised (inertial
    to 150 rows, skeleton to 60, joints relative to the hip centre), split by subject, loads with the benchmark's spec;
    an unreadable file or a wrong array is named in one line."""
    from scipy.io import savemat

    from edgefuse.spec import load_spec
    from edgefuse.trainer.data import load_dataset

    rng = np.random.default_rng(0)
    src = tmp_path / "utd"
    (src / "Inertial").mkdir(parents=True)
    (src / "Skeleton").mkdir()
    skel = {}
    for s in (1, 2, 7):
        savemat(src / "Inertial" / f"a3_s{s}_t1_inertial.mat", {"d_iner": rng.normal(size=(180 + s, 6))})
        skel[s] = rng.normal(size=(20, 3, 50 + s))
        savemat(src / "Skeleton" / f"a3_s{s}_t1_skeleton.mat", {"d_skel": skel[s]})
    savemat(src / "Inertial" / "a4_s1_t1_inertial.mat", {"d_iner": np.ones((100, 6))})  # no skeleton: skipped
    mod = _module("utdmhad")
    assert mod.main(["convert", "--src", str(src), "--out", str(tmp_path / "out")]) == 0
    rows = list(csv.DictReader((tmp_path / "out" / "labels.csv").read_text().splitlines()))
    assert [(r["sample"], r["split"], r["action"]) for r in rows] == [
        ("a03_s1_t1", "train", "wave"),
        ("a03_s2_t1", "test", "wave"),
        ("a03_s7_t1", "val", "wave"),
    ]
    inertial = np.load(tmp_path / "out" / "samples" / "a03_s2_t1" / "inertial.npy")
    skeleton = np.load(tmp_path / "out" / "samples" / "a03_s2_t1" / "skeleton.npy")
    assert inertial.shape == (150, 6) and skeleton.shape == (60, 60)
    first = skel[2][:, :, 0] - skel[2][3:4, :, 0]  # frame 0, every joint relative to the hip centre (joint 4)...
    first[3] = skel[2][3, :, 0]  # ...which itself keeps where it was recorded
    np.testing.assert_allclose(skeleton[0], first.reshape(-1), rtol=1e-5, atol=1e-5)
    ds = load_dataset(load_spec(REALDATA / "utdmhad.yaml"), tmp_path / "out", progress=False)
    assert ds.inputs["inertial"].shape == (3, 6, 150) and ds.inputs["skeleton"].shape == (3, 60, 60)

    bad = src / "Skeleton" / "a3_s2_t1_skeleton.mat"
    for write, says in [
        (lambda: bad.write_bytes(b"not a MATLAB file"), "expected a MATLAB file with d_skel"),
        (lambda: savemat(bad, {"d_skel": np.ones((19, 3, 40))}), "expected d_skel of 20 x 3 x T with T >= 2"),
    ]:
        write()
        assert mod.main(["convert", "--src", str(src), "--out", str(tmp_path / "out2")]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith(f"{src}/Skeleton/a3_s2_t1_skeleton.mat: {says}"), err


def test_barbell_converter_windows_each_set_into_one_split_and_names_a_bad_file(tmp_path, capsys):
    """Tiny fitness_data/ tree of MetaMotion CSVs (2 exercises x 3 sets of 8 s): 4 s windows with a 1 s hop, each set
    in one split, the window ending at t holds the rows up to t; a CSV that is not MetaMotion's is named in one line."""
    from edgefuse.spec import load_spec
    from edgefuse.trainer.data import load_dataset

    src = tmp_path / "fit"
    (src / "fitness_data").mkdir(parents=True)
    (src / "fitness_data" / "README.md").write_text("not a recording\n")
    start = 1_547_219_408_000

    def write(name: str, rate: float, offset: float) -> None:
        t = start + np.arange(0, 8000, 1000 / rate)
        lines = ["epoch (ms),time (01:00),elapsed (s),x-axis,y-axis,z-axis"]
        lines += [f"{int(ms)},x,{(ms - start) / 1000:.3f},{offset},{(ms - start) / 1000:.3f},0" for ms in t]
        (src / "fitness_data" / name).write_text("\n".join(lines) + "\n")

    for ex, offset in (("bench", 1.0), ("rest", 2.0)):
        for k in range(3):
            stem = f"A-{ex}-heavy{k}_MetaWear_2019-01-1{k}T16.10.08.270_C42732BE255C"
            write(f"{stem}_Accelerometer_12.500Hz_1.4.4.csv", 12.5, offset)
            write(f"{stem}_Gyroscope_25.000Hz_1.4.4.csv", 25.0, -offset)
    mod = _module("barbell")
    assert mod.main(["convert", "--src", str(src), "--out", str(tmp_path / "out")]) == 0
    rows = list(csv.DictReader((tmp_path / "out" / "labels.csv").read_text().splitlines()))
    split_of_set = {}
    for r in rows:
        split_of_set.setdefault(r["sample"].rsplit("-", 1)[0], set()).add(r["split"])
    assert len(split_of_set) == 6 and all(len(s) == 1 for s in split_of_set.values())  # a set in one split
    for ex in ("bench", "rest"):
        assert sorted(next(iter(s)) for k, s in split_of_set.items() if f"-{ex}-" in k) == ["test", "train", "val"]
    first = sorted(r["sample"] for r in rows if "-bench-heavy0" in r["sample"])
    assert len(first) == 4  # windows ending at 4, 5, 6 and 7 s: the last rows are at 7.92 s (acc), 7.96 s (gyro)
    acc = np.load(tmp_path / "out" / "samples" / first[0] / "acc.npy")
    gyro = np.load(tmp_path / "out" / "samples" / first[0] / "gyro.npy")
    assert acc.shape == (50, 3) and gyro.shape == (100, 3)
    np.testing.assert_allclose(acc[:, 0], 1.0)  # each sensor's own file
    np.testing.assert_allclose(gyro[:, 0], -1.0)
    assert acc[-1, 1] == pytest.approx(4.0) and acc[0, 1] == pytest.approx(0.08)  # the window's last 50 rows up to 4 s
    ds = load_dataset(load_spec(REALDATA / "barbell.yaml"), tmp_path / "out", progress=False)
    assert ds.inputs["acc"].shape == (len(rows), 3, 50) and ds.inputs["gyro"].shape == (len(rows), 3, 100)

    bad = next((src / "fitness_data").glob("A-rest-heavy1_*_Gyroscope_*"))
    bad.write_text("epoch (ms),time,elapsed,x,y,z\n1,x,0,a,b,c\n")
    assert mod.main(["convert", "--src", str(src), "--out", str(tmp_path / "out2")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"{src}/fitness_data/{bad.name}: expected MetaMotion"), err


def test_the_benchmark_refuses_an_unknown_or_unconverted_dataset_in_one_line(bench, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "ROOT", tmp_path)  # data/realdata/ and runs/ under tmp_path: nothing converted
    for argv, said in (
        (["--datasets", "signlang,nosuch"], "--datasets: no benchmarks/realdata/nosuch.yaml; known: barbell, dsads"),
        (["--datasets", "signlang"], "data/realdata/signlang: not converted yet; see benchmarks/realdata/signlang.py"),
        (["--render"], "--render: runs/realdata/realdata.json not found"),
    ):
        monkeypatch.setattr(sys, "argv", ["bench_realdata.py", *argv])
        with pytest.raises(SystemExit) as exit_:
            bench.main()
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and said in err[-1] and "Traceback" not in "".join(err)
    labels = tmp_path / "data" / "realdata" / "signlang" / "labels.csv"
    labels.parent.mkdir(parents=True)
    labels.write_text("sample,split,letter\n")  # converted, but with no samples: the loader's error, one line
    monkeypatch.setattr(sys, "argv", ["bench_realdata.py", "--datasets", "signlang", "--no-write"])
    assert bench.main() == 2
    assert capsys.readouterr().err.strip() == f"bench_realdata: signlang: {labels}: no samples listed"


def test_longtail_cut_keeps_a_geometric_share_per_class_and_the_whole_test_split(tmp_path):
    cut = _module("longtail").write_cut
    src = tmp_path / "src"
    (src / "samples").mkdir(parents=True)
    rows = [
        (f"{c}{split}{i}", split, c)
        for c in "abc"
        for split, n in (("train", 20), ("val", 10), ("test", 5))
        for i in range(n)
    ]
    with open(src / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("sample", "split", "event"), *rows])
    counts = cut(src, tmp_path / "cut", 10.0)
    # in the cut's fixed class order, the k-th of 3 keeps round(n * 10 ** (-k / 2)): 20, 6 and 2 of 20 train samples
    assert sorted(counts.values()) == [2, 6, 20] and (tmp_path / "cut" / "samples").resolve() == src / "samples"
    with open(tmp_path / "cut" / "labels.csv", newline="") as f:
        kept = list(csv.DictReader(f))
    for c, n in counts.items():
        of = [r for r in kept if r["event"] == c]
        val = {20: 10, 6: 3, 2: 1}[n]  # of 10: round(10 * 10 ** (-k / 2))
        assert [len([r for r in of if r["split"] == s]) for s in ("train", "val", "test")] == [n, val, 5]
