"""Multilabel and regression heads on tiny data: the loader's columns and errors, training beats chance, the
thresholds come from the validation split only, and a spec can mix head kinds."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgefuse.errors import DataError
from edgefuse.heads import HEAD_KINDS, labels_on, tune_thresholds
from edgefuse.spec import SpecError, parse_spec
from edgefuse.trainer.data import load_dataset

EVENTS = ["bell", "kettle", "tv"]
CHANNELS = ["a", "b", "c", "v"]


def heads_spec(**over) -> object:
    """One series modality; a class head, a multilabel head and a regression head."""
    d = {
        "name": "heads",
        "modalities": {"imu": {"kind": "series", "rate_hz": 20, "window_s": 1.0, "channels": CHANNELS}},
        "labels": {"mode": ["calm", "busy"]},
        "multilabel": {"events": EVENTS},
        "regression": {"speed": {"unit": "km/h", "min": 0, "max": 100}},
        "model": {"dim": 16, "modality_dropout": 0.0, "unimodal_aux": 0.0},
        "train": {"epochs": 12, "batch_size": 32, "lr": 0.01, "patience": 12, "threads": 1, "ema_epochs": 0},
        **over,
    }
    return parse_spec(d, "heads")


def write_heads_data(root: Path, n: int = 240, seed: int = 0) -> Path:
    """Series whose channels a, b, c carry a 3 Hz burst when bell, kettle, tv happen (any subset at once) and
    whose channel v sits at speed / 25; mode is busy when two or more events happen. One speed in ten is unknown."""
    rng = np.random.default_rng(seed)
    t = np.arange(20) / 20
    rows = []
    for i in range(n):
        on = rng.random(3) < 0.35
        speed = float(rng.uniform(0, 100))
        x = 0.3 * rng.standard_normal((20, 4))
        for k in range(3):
            x[:, k] += 1.5 * on[k] * np.sin(2 * np.pi * 3 * t + rng.uniform(0, 6))
        x[:, 3] += speed / 25
        folder = root / "samples" / f"{i:04d}"
        folder.mkdir(parents=True)
        np.savetxt(folder / "imu.csv", x, fmt="%.5f", delimiter=",", header=",".join(CHANNELS), comments="")
        split = "train" if i < 0.6 * n else "val" if i < 0.8 * n else "test"
        cell = "|".join(e for e, o in zip(EVENTS, on, strict=True) if o)
        rows.append(
            [f"{i:04d}", split, "busy" if on.sum() >= 2 else "calm", cell, "" if i % 10 == 3 else f"{speed:.2f}"]
        )
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sample", "split", "mode", "events", "speed"])
        w.writerows(rows)
    return root


@pytest.fixture(scope="module")
def heads_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_heads_data(tmp_path_factory.mktemp("heads") / "data")


@pytest.fixture(scope="module")
def heads_run(heads_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    from edgefuse.trainer.train import train

    spec = heads_spec()
    run = tmp_path_factory.mktemp("heads-run") / "run"
    metrics = train(spec, heads_data, run, progress=False)
    return spec, run, metrics


# -- spec --------------------------------------------------------------------------------------------------------------


def test_spec_sections_and_their_errors_are_one_line_each():
    spec = heads_spec()
    assert spec.head_kinds == {"mode": "class", "events": "multilabel", "speed": "regression"}
    assert spec.heads == ["mode"]  # the class heads
    with pytest.raises(SpecError) as err:
        heads_spec(
            multilabel={"mode": ["x"], "ev": ["a|b", "a"]}, regression={"speed": {"unit": "s", "min": 5, "max": 1}}
        )
    problems = dict(err.value.problems)
    assert problems["multilabel.mode"] == "head name already used in 'labels'"
    assert "without '|'" in problems["multilabel.ev"]
    assert problems["regression.speed"] == "min 5.0 must be below max 1.0"
    only_regression = heads_spec(labels={}, multilabel={})  # labels are optional when another head kind is there
    assert only_regression.head_kinds == {"speed": "regression"}
    with pytest.raises(SpecError, match="at least one head is required"):
        heads_spec(labels={}, multilabel={}, regression={})


# -- data --------------------------------------------------------------------------------------------------------------


def test_loader_reads_multilabel_and_regression_columns(heads_data: Path):
    ds = load_dataset(heads_spec(), heads_data, progress=False)
    ev, speed = ds.extra["events"], ds.extra["speed"]
    assert ev.shape == (240, 3) and ev.dtype == np.float32 and set(np.unique(ev)) <= {0.0, 1.0}
    with open(heads_data / "labels.csv") as f:
        rows = list(csv.DictReader(f))
    for i in (0, 1, 2, 3, 17):
        assert [EVENTS[k] for k in np.flatnonzero(ev[i])] == [e for e in rows[i]["events"].split("|") if e]
    assert np.isnan(speed[3]) and np.isnan(speed).sum() == 24  # empty = unknown
    assert speed[0] == pytest.approx(float(rows[0]["speed"]))
    assert ds.subset("val").extra["events"].shape == (48, 3)


@pytest.mark.parametrize(
    ("column", "cell", "message"),
    [
        ("events", "bell|oven", r"labels\.csv: line 2 \(sample '0000'\): unknown events label\(s\) \['oven'\]"),
        ("speed", "fast", r"labels\.csv: line 2 \(sample '0000'\): speed value 'fast' is not a finite number"),
        ("speed", "nan", r"speed value 'nan' is not a finite number"),
    ],
)
def test_loader_refuses_bad_cells_in_one_line(heads_data: Path, tmp_path: Path, column: str, cell: str, message: str):
    data = tmp_path / "data"
    shutil.copytree(heads_data, data)
    with open(data / "labels.csv") as f:
        rows = list(csv.reader(f))
    rows[1][rows[0].index(column)] = cell
    with open(data / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    with pytest.raises(DataError, match=message) as err:
        load_dataset(heads_spec(), data, progress=False)
    assert "\n" not in str(err.value)


# -- registry ----------------------------------------------------------------------------------------------------------


def test_thresholds_maximize_f1_and_post_processing_applies_them():
    y = np.array([[1, 0], [1, 0], [0, 1], [0, 0], [0, 1]], dtype=np.float32)
    p = np.array([[0.9, 0.2], [0.4, 0.1], [0.3, 0.8], [0.1, 0.7], [0.35, 0.75]])
    thr = tune_thresholds(y, p)
    assert thr[0] == pytest.approx(0.4)  # 0.4 keeps both positives and no negative: F1 1
    assert thr[1] == pytest.approx(0.75)
    assert labels_on(np.array([0.45, 0.74]), ["x", "y"], thr) == ["x"]
    m = HEAD_KINDS["multilabel"].metrics(y, p, ["x", "y"], thresholds=thr)
    assert m["per_label"]["x"]["f1"] == 1.0 and m["per_label"]["y"]["f1"] == 1.0 and m["mAP"] == 1.0
    r = HEAD_KINDS["regression"].metrics(np.array([1.0, np.nan, 3.0]), np.array([[2.0], [9.0], [3.0]]), ["v"])
    assert r["mae"] == 0.5 and r["rmse"] == pytest.approx(np.sqrt(0.5)) and r["n"] == 2


# -- training ----------------------------------------------------------------------------------------------------------


def test_mixed_heads_train_and_beat_chance(heads_run, heads_data: Path):
    import torch

    from edgefuse.trainer.checkpoint import load_run
    from edgefuse.trainer.train import to_tensors

    spec, run, metrics = heads_run
    _, model, ckpt = load_run(run)
    test = load_dataset(spec, heads_data, progress=False).subset("test")
    inputs, mask, _ = to_tensors(test)
    with torch.inference_mode():
        out = model(inputs, mask)
    kinds = HEAD_KINDS
    y = test.extra["events"]
    m = kinds["multilabel"].metrics(
        y, out["events"].sigmoid().numpy(), EVENTS, thresholds=model.head_thresholds("events")
    )
    assert m["mAP"] > y.mean() + 0.3  # chance mAP is the label prevalence (~0.35)
    r = kinds["regression"].metrics(test.extra["speed"], out["speed"].numpy(), ["speed"], train_mean=50.0)
    assert r["mae"] < 0.5 * r["mae_predicting_train_mean"]  # far below predicting the mean
    assert out["speed"].shape == (48, 1) and 0 <= float(out["speed"].mean()) <= 100  # in km/h, not standardized
    assert set(metrics["val_heads"]) == {"mode", "events", "speed"}
    assert all(0 <= v <= 1 for v in metrics["val_heads"].values())
    assert metrics["thresholds"]["events"].keys() == set(EVENTS)
    assert ckpt["metrics"]["target_stats"]["speed"]["std"] > 10


def test_thresholds_come_from_the_validation_split_only(heads_data: Path, tmp_path: Path):
    """Flipping every test label leaves the tuned thresholds exactly as they were; changing val labels moves them."""
    from edgefuse.trainer.train import train

    spec = heads_spec(train={"epochs": 2, "batch_size": 32, "threads": 1, "ema_epochs": 0})
    base = train(spec, heads_data, tmp_path / "a", progress=False)["thresholds"]["events"]
    for split, run in (("test", "b"), ("val", "c")):
        data = tmp_path / f"data-{split}"
        shutil.copytree(heads_data, data, ignore=shutil.ignore_patterns(".cache"))
        with open(data / "labels.csv") as f:
            rows = list(csv.reader(f))
        for r in rows[1:]:
            if r[1] == split:
                r[3] = "|".join(e for e in EVENTS if e not in r[3].split("|"))  # the complement
        with open(data / "labels.csv", "w", newline="") as f:
            csv.writer(f).writerows(rows)
        got = train(spec, data, tmp_path / run, progress=False)["thresholds"]["events"]
        if split == "test":
            assert got == base
        else:
            assert got != base


# -- export ------------------------------------------------------------------------------------------------------------


def test_export_writes_each_head_kind_with_parity_and_int8(heads_run, heads_data: Path, tmp_path: Path):
    """ONNX outputs per kind (softmax, sigmoid, value in km/h) match torch; the manifest carries the kind, the
    validation thresholds and the unit; fp16 and INT8 variants are scored per kind on the test split."""
    import onnxruntime as ort

    from edgefuse.deploy.export import export_bundle
    from edgefuse.deploy.export import load_checkpoint as load
    from edgefuse.manifest import load_manifest

    spec, run, metrics = heads_run
    m = export_bundle(run, tmp_path / "bundle", heads_data, ["fp32", "fp16", "int8"])
    outs = {o.head: o for o in load_manifest(tmp_path / "bundle" / "manifest.json").outputs}
    assert [(o.name, o.kind) for o in outs.values()] == [
        ("scores_mode", "class"),
        ("scores_events", "multilabel"),
        ("value_speed", "regression"),
    ]
    assert outs["events"].thresholds == pytest.approx(list(metrics["thresholds"]["events"].values()))
    assert (outs["speed"].unit, outs["speed"].min, outs["speed"].max, outs["speed"].shape) == ("km/h", 0, 100, [-1, 1])
    assert m.parity.max_abs_diff <= 1e-4
    for v in m.variants.values():
        assert set(v.accuracy) == {"mode", "events", "speed"}
    assert m.variants["fp32"].accuracy["events"] > 0.7  # held-out mAP
    # the graph itself: sigmoid rows do not sum to 1, the value is in km/h
    ds = load_dataset(spec, heads_data, progress=False).subset("test")
    feeds = {"imu": ds.inputs["imu"], "mask": ds.mask}
    sess = ort.InferenceSession(str(tmp_path / "bundle" / "model.onnx"), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))
    assert np.allclose(got["scores_mode"].sum(1), 1, atol=1e-5)
    assert ((got["scores_events"] >= 0) & (got["scores_events"] <= 1)).all()
    assert not np.allclose(got["scores_events"].sum(1), 1)
    known = ~np.isnan(ds.extra["speed"])
    assert np.abs(got["value_speed"][known, 0] - ds.extra["speed"][known]).mean() < 12  # km/h
    _, model, _ = load(run)
    assert outs["events"].thresholds == pytest.approx(model.head_thresholds("events"))


# -- evaluation --------------------------------------------------------------------------------------------------------


def test_eval_report_has_map_per_label_f1_mae_and_rmse(heads_run, heads_data: Path, tmp_path: Path):
    import json

    from edgefuse.trainer.evaluate import evaluate

    spec, run, _ = heads_run
    r = evaluate(run, heads_data, tmp_path / "report.json", with_baselines=False, progress=False)
    ml, reg = r["multilabel"]["events"], r["regression"]["speed"]
    ds = load_dataset(spec, heads_data, progress=False).subset("test")
    assert ml["mAP"] > ds.extra["events"].mean() + 0.3 and set(ml["per_label"]) == set(EVENTS)
    assert all(
        0 <= s["f1"] <= 1 and s["support"] == int(ds.extra["events"][:, k].sum())
        for k, s in enumerate(ml["per_label"].values())
    )
    assert reg["unit"] == "km/h" and reg["n"] == int((~np.isnan(ds.extra["speed"])).sum())
    assert reg["rmse"] >= reg["mae"] > 0 and reg["mae"] < 0.5 * reg["mae_predicting_train_mean"]
    assert r["heads"]["mode"]["accuracy"] > 0.5  # the class head alongside
    assert json.loads((tmp_path / "report.json").read_text())["multilabel"]["events"]["mAP"] == ml["mAP"]
    md = (tmp_path / "report.md").read_text()
    assert "## Multilabel head `events`: mAP" in md and "| speed | km/h |" in md


def test_a_spec_without_class_heads_trains_and_evaluates(heads_data: Path, tmp_path: Path):
    from edgefuse.trainer.evaluate import evaluate
    from edgefuse.trainer.train import train

    spec = heads_spec(labels={}, train={"epochs": 3, "batch_size": 32, "threads": 1, "ema_epochs": 0})
    metrics = train(spec, heads_data, tmp_path / "run", progress=False)
    assert set(metrics["val_heads"]) == {"events", "speed"} and "temperature" not in metrics
    r = evaluate(tmp_path / "run", heads_data, tmp_path / "r.json", with_baselines=False, progress=False)
    assert r["heads"] == {} and r["multilabel"]["events"]["mAP"] > 0 and r["regression"]["speed"]["mae"] > 0
    assert "Regression heads" in (tmp_path / "r.md").read_text()


def test_eval_command_prints_the_new_heads(heads_run, heads_data: Path, tmp_path: Path, capsys):
    from edgefuse.cli import main

    _, run, _ = heads_run
    assert (
        main(
            [
                "eval",
                "--run",
                str(run),
                "--data",
                str(heads_data),
                "--report",
                str(tmp_path / "r.json"),
                "--no-baselines",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "events (multilabel): mAP" in out and "speed (regression): MAE" in out and "km/h" in out
