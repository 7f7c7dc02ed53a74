"""Evaluation: the NumPy metrics against hand-computed values, and a full report on a tiny trained run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _trainer_tiny import make_data, make_run

from edgefuse.cli import main
from edgefuse.trainer.evaluate import (
    NOISE_LEVELS,
    bootstrap_ci,
    confusion_matrix,
    corrupt,
    evaluate,
    head_metrics,
    macro_f1,
    per_class_scores,
    predict,
    recording_scores,
    run_mask,
)

# y_true = 0 0 1 1 2 2, y_pred = 0 1 1 1 2 0:
#   class 0: tp 1, predicted 2, support 2 -> P 1/2, R 1/2, F1 1/2
#   class 1: tp 2, predicted 3, support 2 -> P 2/3, R 1,   F1 4/5
#   class 2: tp 1, predicted 1, support 2 -> P 1,   R 1/2, F1 2/3
Y_TRUE = np.array([0, 0, 1, 1, 2, 2])
Y_PRED = np.array([0, 1, 1, 1, 2, 0])


def test_confusion_matrix_rows_are_truth():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_per_class_scores_and_macro_f1_by_hand():
    s = per_class_scores(confusion_matrix(Y_TRUE, Y_PRED, 3))
    np.testing.assert_allclose(s["precision"], [1 / 2, 2 / 3, 1])
    np.testing.assert_allclose(s["recall"], [1 / 2, 1, 1 / 2])
    np.testing.assert_allclose(s["f1"], [1 / 2, 4 / 5, 2 / 3])
    assert s["support"].tolist() == [2, 2, 2]
    assert macro_f1(confusion_matrix(Y_TRUE, Y_PRED, 3)) == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)


def test_macro_f1_skips_classes_absent_from_truth_and_predictions():
    # a 4th class nobody has nor predicts does not drag the mean down (scikit-learn's convention)
    assert macro_f1(confusion_matrix(Y_TRUE, Y_PRED, 4)) == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    # a class that is predicted but never true counts with F1 = 0
    cm = confusion_matrix(np.array([0, 0]), np.array([0, 1]), 2)
    assert per_class_scores(cm)["precision"].tolist() == [1.0, 0.0]
    assert macro_f1(cm) == pytest.approx((2 / 3 + 0) / 2)


def test_head_metrics_by_hand():
    h = head_metrics(Y_TRUE, Y_PRED, ["a", "b", "c"])
    assert h["accuracy"] == pytest.approx(4 / 6)
    assert h["per_class"]["b"] == {
        "precision": pytest.approx(2 / 3),
        "recall": 1.0,
        "f1": pytest.approx(0.8),
        "support": 2,
    }
    assert h["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_corrupt_text_and_image():
    rng = np.random.default_rng(0)
    tokens = np.array([[5, 6, 7, 8, 0, 0]] * 200, dtype=np.int64)
    noisy = corrupt(tokens, "text", 1.0, np.ones(1), rng, buckets=4096)  # half of the real tokens replaced
    assert noisy.dtype == np.int64 and (noisy[:, 4:] == 0).all()  # padding stays padding
    assert 0.4 < (noisy[:, :4] != tokens[:, :4]).mean() < 0.6
    assert (corrupt(tokens, "text", 0.0, np.ones(1), rng, 4096) == tokens).all()
    img = np.full((4, 3, 8, 8), 0.5, dtype=np.float32)
    noisy = corrupt(img, "image", 2.0, np.full((1, 3, 1, 1), 0.5, np.float32), rng, 0)
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0 and noisy.std() > 0.2


# ---------------------------------------------------------------------------------------------------------------------
# a report on a real (tiny) run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    # few epochs: the report's values are checked for consistency, not quality, and it trains 6 baselines too
    root = tmp_path_factory.mktemp("tiny_run")
    return make_run(make_data(root), root, epochs=2)


@pytest.fixture(scope="module")
def report(tiny_run, tmp_path_factory):
    spec, data, run, ds = tiny_run
    path = tmp_path_factory.mktemp("report") / "report.json"
    return evaluate(run, data, path, progress=False, dataset=ds), path, spec


def test_report_values(report):
    r, _, spec = report
    for key in ("accuracy", "joint_accuracy", "macro_f1", "heads", "params", "latency_ms", "unimodal", "without"):
        assert key in r
    assert r["ci95"]["unit"] == "sample" and "groups" not in r  # no group column, no windows: samples resampled
    for key in ("ablation", "robustness", "n_test", "split", "run", "data"):
        assert key in r
    assert 0 <= r["joint_accuracy"] <= r["accuracy"] <= 1 and 0 <= r["macro_f1"] <= 1
    for head, h in r["heads"].items():
        cm = np.array(h["confusion"])
        assert cm.shape == (len(spec.labels[head]),) * 2 and cm.sum() == r["n_test"]
        assert sum(c["support"] for c in h["per_class"].values()) == r["n_test"]
        assert h["accuracy"] == pytest.approx(np.trace(cm) / r["n_test"])
    assert r["accuracy"] == pytest.approx(np.mean([h["accuracy"] for h in r["heads"].values()]))
    assert set(r["ablation"]) == set(spec.modality_names) == set(r["unimodal"]) == set(r["without"])
    assert all(0 <= a <= 1 for a in [*r["ablation"].values(), *r["unimodal"].values(), *r["without"].values()])
    for rows in r["robustness"].values():
        assert [p["noise"] for p in rows] == list(NOISE_LEVELS)
        assert rows[0]["accuracy"] == pytest.approx(r["accuracy"])  # noise 0 is the clean model
    assert r["latency_ms"]["p99"] >= r["latency_ms"]["p50"] > 0 and r["latency_ms"]["threads"] >= 1
    assert r["params"] > 0


def test_report_files(report):
    r, path, _ = report
    assert json.loads(path.read_text())["accuracy"] == r["accuracy"]
    md = path.with_suffix(".md").read_text()
    assert f"{r['accuracy']:.3f}" in md and "Robustness" in md
    for head in r["heads"]:
        png = path.with_name(f"report_confusion_{head}.png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.name in md


def test_cli_eval_without_baselines(tiny_run, tmp_path, capsys):
    _, data, run, _ = tiny_run
    rc = main(["eval", "--run", str(run), "--data", str(data), "--report", str(tmp_path / "r.json"), "--no-baselines"])
    assert rc == 0
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["unimodal"] == {} and r["n_test"] > 0
    assert "accuracy" in capsys.readouterr().out


def test_cli_eval_missing_split(tiny_run, tmp_path, capsys):
    _, data, run, _ = tiny_run
    rc = main(["eval", "--run", str(run), "--data", str(data), "--report", str(tmp_path / "r.json"), "--split", "dev"])
    assert rc == 1
    assert "no samples in split 'dev'" in capsys.readouterr().err


def test_recording_scores_sum_each_recordings_window_log_probabilities():
    from types import SimpleNamespace

    import torch

    from edgefuse.spec import parse_spec

    spec = parse_spec(
        {
            "name": "r",
            "modalities": {"s": {"kind": "series", "rate_hz": 10, "window_s": 1, "channels": ["a"]}},
            "labels": {"event": ["x", "y"]},
        }
    )
    # a (x): windows say x, y, y but x by much more; b (y): y; c (y): x twice -> per window 3 of 6 right
    probs = [[0.9, 0.1], [0.4, 0.6], [0.45, 0.55], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]]
    part = SimpleNamespace(
        ids=["a#0", "a#1", "a#2", "b#0", "c#0", "c#1"], targets={"event": np.array([0, 0, 0, 1, 1, 1])}
    )
    got = recording_scores(spec, {"event": torch.tensor(probs).log()}, part)
    # a: log .9 + log .4 + log .45 = -1.82 against log .1 + log .6 + log .55 = -3.41: x, right; b right; c wrong
    assert got["n"] == 3 and got["accuracy"] == pytest.approx(2 / 3)
    assert got["heads"]["event"]["macro_f1"] == pytest.approx((2 / 3 + 2 / 3) / 2)  # x: P 1/2 R 1; y: P 1 R 1/2


def test_a_windowed_run_reports_per_recording_scores(tiny_run, tmp_path):
    from edgefuse.spec import parse_spec, spec_to_dict
    from edgefuse.trainer.data import load_dataset
    from edgefuse.trainer.train import train

    spec, data, _, _ = tiny_run
    d = spec_to_dict(spec)
    d["train"]["window_hop_s"] = 0.5
    windowed = parse_spec(d)
    ds = load_dataset(windowed, data, progress=False)  # the synthetic recordings are one window long: one each
    assert all(i.endswith("#0") for i in ds.ids)
    train(windowed, data, tmp_path / "run", epochs=1, progress=False, dataset=ds)
    r = evaluate(tmp_path / "run", data, tmp_path / "r.json", with_baselines=False, progress=False, dataset=ds)
    assert r["recordings"]["n"] == r["n_test"] and r["recordings"]["accuracy"] == pytest.approx(r["accuracy"])
    assert r["ci95"]["unit"] == "recording"
    assert f"Per recording ({r['n_test']} recordings" in (tmp_path / "r.md").read_text()


def test_seed_summary_carries_the_per_recording_scores():
    from edgefuse.trainer.evaluate import seed_summary, seeds_markdown

    def one(acc: float, rec: float) -> dict:
        cal = {"ece_before": 0.1, "ece_after": 0.05}
        rec_part = {"n": 4, "accuracy": rec, "macro_f1": rec - 0.1, "heads": {}}
        return {
            "accuracy": acc,
            "macro_f1": acc,
            "calibration": cal,
            "unimodal": {},
            "without": {},
            "recordings": rec_part,
        }

    reports = [one(0.8, 0.75), one(0.9, 1.0)]
    s = seed_summary(reports)
    assert s["recordings_accuracy"]["mean"] == pytest.approx(0.875)
    assert s["recordings_accuracy"]["std"] == pytest.approx(np.std([0.75, 1.0], ddof=1))
    assert s["recordings_macro_f1"]["mean"] == pytest.approx(0.775)
    ci = {"accuracy": [0.7, 0.9], "macro_f1": [0.7, 0.9]}
    s.update(seeds=[{**r, "run": f"seed-{i}", "ci95": ci} for i, r in enumerate(reports)], scenario="t")
    s.update(fusion="attention", n_test=10)
    assert "| fused, per recording | 0.875 +- 0.177 | 0.775 +- 0.177 | |" in seeds_markdown(s)
    plain = [{k: v for k, v in r.items() if k != "recordings"} for r in reports]  # windows not cut: no such row
    assert "recordings_accuracy" not in seed_summary(plain)


def test_a_group_column_resamples_whole_groups_and_scores_each_group(tiny_run, tmp_path):
    import csv
    import shutil

    import torch

    from edgefuse.trainer.checkpoint import load_run
    from edgefuse.trainer.data import load_dataset
    from edgefuse.trainer.train import to_tensors

    spec, data, run, _ = tiny_run
    root = tmp_path / "d"
    shutil.copytree(data, root, ignore=shutil.ignore_patterns(".cache"))
    rows = list(csv.reader((root / "labels.csv").open()))
    rows = [rows[0] + ["group"]] + [r + [f"g{i % 4}"] for i, r in enumerate(rows[1:])]
    with (root / "labels.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    ds = load_dataset(spec, root, progress=False)
    r = evaluate(run, root, tmp_path / "r.json", with_baselines=False, progress=False, dataset=ds)
    test = ds.subset("test")
    _, model, ckpt = load_run(run)
    x, _, _ = to_tensors(test)
    with torch.inference_mode():
        preds = predict(model, x, run_mask(spec, ckpt, test.mask))
    assert r["ci95"] == {
        **bootstrap_ci(test.targets, preds, spec.labels, seed=spec.train.seed, groups=test.group),
        "unit": "group",
    }
    assert r["ci95"] != {**bootstrap_ci(test.targets, preds, spec.labels, seed=spec.train.seed), "unit": "group"}
    right = np.mean([preds[h] == test.targets[h] for h in spec.heads], axis=0)
    per = {g: right[test.group == g].mean() for g in ("g0", "g1", "g2", "g3")}
    assert r["groups"]["n"] == 4 and set(r["groups"]["per_group"]) == set(per)
    for g, acc in per.items():
        assert r["groups"]["per_group"][g] == {"n": int((test.group == g).sum()), "accuracy": pytest.approx(acc)}
    worst = min(per, key=per.get)
    assert r["groups"]["worst"] == worst
    assert (
        f"Per group (4 groups; the 95 % intervals resample whole groups): accuracy from {per[worst]:.3f} (group "
        f"'{worst}'" in (tmp_path / "r.md").read_text()
    )
    one = ds.rows(ds.split == "test")
    one.group[:] = "g0"  # a split of one group: no interval over groups, the samples are resampled as without
    r1 = evaluate(run, root, tmp_path / "r1.json", with_baselines=False, progress=False, dataset=one)
    assert r1["ci95"] == {**bootstrap_ci(test.targets, preds, spec.labels, seed=spec.train.seed), "unit": "sample"}
    assert r1["groups"]["n"] == 1 and r1["groups"]["per_group"]["g0"]["accuracy"] == pytest.approx(right.mean())
    assert (
        "Per group (1 group; the 95 % intervals resample samples: one group): accuracy from"
        in (tmp_path / "r1.md").read_text()
    )
