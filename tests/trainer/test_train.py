"""Training on tiny real synthetic data: it learns, checkpoints round-trip, early stopping stops, seeds repeat."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _trainer_tiny import make_data, make_run

from edgefuse.cli import main
from edgefuse.errors import DataError, EdgefuseError
from edgefuse.spec import SpecError, parse_spec, spec_to_dict
from edgefuse.trainer.checkpoint import CheckpointError, load_run
from edgefuse.trainer.evaluate import mean_accuracy, predict, run_mask
from edgefuse.trainer.synth import write_dataset
from edgefuse.trainer.train import decayed_epoch, lr_factor, to_tensors, train

TINY_EPOCHS = 8


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def tiny_run(tiny_data, tmp_path_factory):
    return make_run(tiny_data, tmp_path_factory.mktemp("tiny_run"), TINY_EPOCHS)


def test_learns_well_above_chance(tiny_run):
    spec, _, run, ds = tiny_run
    metrics = json.loads((run / "metrics.json").read_text())
    chance = np.mean([1 / len(c) for c in spec.labels.values()])
    assert metrics["val_accuracy"] >= chance + 0.3, metrics["history"]
    _, model, ckpt = load_run(run)
    test = ds.subset("test")
    inputs, _, _ = to_tensors(test)
    acc = mean_accuracy(predict(model, inputs, run_mask(spec, ckpt, test.mask)), test.targets)
    assert acc >= chance + 0.3


def test_checkpoint_round_trip(tiny_run):
    spec, data, run, ds = tiny_run
    spec2, model, ckpt = load_run(run)
    assert spec2.model == spec.model and spec2.labels == spec.labels and spec2.train.epochs == TINY_EPOCHS
    assert ckpt["data"]["samples"] == len(ds) and ckpt["data"]["path"] == str(data.resolve())
    assert set(ckpt["versions"]) >= {"torch", "numpy", "edgefuse"}
    assert set(ckpt["normalization"]) == {m for m, s in spec.modalities.items() if s.kind == "series"}
    # the stored state is the best epoch's: it reproduces the recorded validation accuracy exactly
    val = ds.subset("val")
    inputs, mask, _ = to_tensors(val)
    assert mean_accuracy(predict(model, inputs, mask), val.targets) == pytest.approx(ckpt["metrics"]["val_accuracy"])
    _, model2, _ = load_run(run)
    with torch.inference_mode():
        a, b = model(inputs, mask), model2(inputs, mask)
    for head in spec.heads:
        assert torch.equal(a[head], b[head])


def test_same_seed_same_metrics_and_other_seed_differs(tiny_data, tmp_path):
    spec, data, ds = tiny_data
    a, b, c = (train(spec, data, tmp_path / f"r{s}", epochs=2, seed=s, progress=False, dataset=ds) for s in (3, 3, 4))
    assert a["history"] == b["history"] and a["val_accuracy"] == b["val_accuracy"]
    assert a["history"] != c["history"]


def test_a_class_without_training_samples_is_named_in_a_warning(tiny_data, tmp_path, capsys):
    import copy

    from edgefuse.trainer.datacheck import classes_not_trained

    spec, data, ds = tiny_data
    ((head, classes),) = spec.labels.items()
    assert classes_not_trained(spec, ds.subset("train").targets) == {}
    train(spec, data, tmp_path / "all", epochs=1, progress=False, dataset=ds)
    assert "warning" not in capsys.readouterr().err
    gone = copy.deepcopy(ds)  # every training sample of the first two classes relabelled as the third
    y = gone.targets[head]
    y[(gone.split == "train") & np.isin(y, [0, 1])] = 2
    assert classes_not_trained(spec, gone.subset("train").targets) == {head: classes[:2]}
    train(spec, data, tmp_path / "gone", epochs=1, progress=False, dataset=gone)
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == (
        f"warning: {data / 'labels.csv'}: no 'train' sample of {head} {classes[:2]}: the model cannot learn to predict "
        "them"
    )
    assert err[1:] == [next(n for n in err if n.startswith("note:"))]  # the third class now outnumbers the others


def test_balanced_scores_shift_each_class_by_minus_its_log_training_frequency(tiny_data, tmp_path, capsys):
    import onnxruntime as ort

    from edgefuse.deploy.bundle import load_bundle
    from edgefuse.deploy.export import export_bundle

    spec, data, ds = tiny_data
    ((head, classes),) = spec.labels.items()
    y = ds.targets[head]
    rare = np.flatnonzero((ds.split == "train") & (y == 0))
    keep = np.ones(len(ds), dtype=bool)
    keep[rare[2:]] = False  # the first class keeps 2 training samples: the others have many times that
    cut = ds.rows(keep)
    counts = np.bincount(y[keep & (ds.split == "train")], minlength=len(classes))
    lo, hi = int(np.argmin(counts)), int(np.argmax(counts))
    assert lo == 0 and counts[hi] >= 3 * counts[lo]
    capsys.readouterr()
    plain = train(spec, data, tmp_path / "plain", epochs=2, progress=False, dataset=cut)
    assert capsys.readouterr().err.strip().splitlines() == [
        f"note: {data / 'labels.csv'}: the 'train' classes of {head} range from 2 samples ({classes[0]}) to "
        f"{counts[hi]} ({classes[hi]}); its scores follow these frequencies (train.balanced: true scores every class "
        "as equally likely)"
    ]
    train(spec, data, tmp_path / "only", epochs=1, progress=False, dataset=cut, only=spec.modality_names[0])
    assert "note" not in capsys.readouterr().err  # a baseline on the same data does not repeat it
    d = spec_to_dict(spec)
    d["train"]["balanced"] = True
    balanced = train(parse_spec(d), data, tmp_path / "balanced", epochs=2, progress=False, dataset=cut)
    assert "note" not in capsys.readouterr().err and "class_bias" not in plain
    bias = -np.log(counts / counts.sum())
    np.testing.assert_allclose(balanced["class_bias"][head], bias - bias.mean(), atol=1e-6)
    # the same training (same seed); only the scores move: logits + bias, so the rare class wins more often
    (_, m_plain, _), (_, m_bal, _) = load_run(tmp_path / "plain"), load_run(tmp_path / "balanced")
    sd_plain, sd_bal = m_plain.state_dict(), m_bal.state_dict()
    assert all(torch.equal(v, sd_bal[k]) for k, v in sd_plain.items() if k != "class_bias")
    inputs, mask, _ = to_tensors(cut.subset("test"))
    with torch.inference_mode():
        z_plain, z_bal = m_plain(inputs, mask)[head], m_bal(inputs, mask)[head]
    np.testing.assert_allclose(z_bal, z_plain + torch.tensor(bias - bias.mean()).float(), atol=1e-5)
    assert (z_bal.argmax(1) == 0).sum() >= (z_plain.argmax(1) == 0).sum()
    # and an exported bundle publishes the shifted scores
    export_bundle(tmp_path / "balanced", tmp_path / "bundle", None, ["fp32"])
    sess = ort.InferenceSession(str(tmp_path / "bundle" / "model.onnx"), providers=["CPUExecutionProvider"])
    (scores,) = sess.run([f"scores_{head}"], {**{m: v.numpy() for m, v in inputs.items()}, "mask": mask.numpy()})
    np.testing.assert_allclose(scores, z_bal.softmax(1).numpy(), atol=1e-4)
    (out,) = [o for o in load_bundle(tmp_path / "bundle").manifest.outputs if o.head == head]
    assert out.meaning.endswith(
        "every class taken as equally likely (train.balanced), not as often as in the training data"
    )


def test_without_val_rows_a_stratified_share_of_train_is_held_out(tiny_data, tmp_path, capsys):
    import shutil

    from edgefuse.trainer.data import load_dataset

    spec, data, ds = tiny_data
    root = tmp_path / "noval"
    shutil.copytree(data, root, ignore=shutil.ignore_patterns(".cache"))
    labels = root / "labels.csv"
    labels.write_text(labels.read_text().replace(",val,", ",train,"))
    capsys.readouterr()
    got = load_dataset(spec, root, progress=False)
    (head,) = spec.heads
    was_train = (ds.split == "train") | (ds.split == "val")
    y = got.targets[head]
    expected = sum(round(((got.split != "test") & (y == c)).sum() * 0.15) for c in np.unique(y[was_train]))
    assert (got.split == "val").sum() == expected > 0 and not (got.split[~was_train] == "val").any()
    assert (got.split == "test").sum() == (ds.split == "test").sum()  # the test split is never touched
    for c in np.unique(y[was_train]):  # per class: 15 % of its train samples, rounded
        n_c = (was_train & (y == c)).sum()
        assert ((got.split == "val") & (y == c)).sum() == round(n_c * 0.15)
    err = capsys.readouterr().err.strip()
    assert err == (
        f"note: {labels}: no 'val' rows; {expected} of the train samples (15%, per class, fixed seed) are held out "
        "for validation"
    )
    again = load_dataset(spec, root, progress=False)  # the same samples every time (from the cache, too)
    assert (again.split == got.split).all()
    metrics = train(spec, root, tmp_path / "run", epochs=1, progress=False, dataset=got)
    assert 0.0 <= metrics["val_accuracy"] <= 1.0


def test_a_group_column_holds_out_whole_groups_and_names_groups_in_two_splits(tiny_data, tmp_path, capsys):
    import csv
    import shutil

    from edgefuse.errors import DataError
    from edgefuse.trainer.data import load_dataset

    spec, data, ds = tiny_data
    root = tmp_path / "groups"
    shutil.copytree(data, root, ignore=shutil.ignore_patterns(".cache"))
    labels = root / "labels.csv"
    rows = list(csv.reader(labels.open()))
    person = {r[0]: f"p{i % 7}" if r[1] != "test" else f"t{i % 3}" for i, r in enumerate(rows[1:])}  # test: its own
    rows = [rows[0] + ["group"]] + [[r[0], "train" if r[1] == "val" else r[1], *r[2:], person[r[0]]] for r in rows[1:]]
    with labels.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    capsys.readouterr()
    got = load_dataset(spec, root, progress=False)
    assert list(got.group) == [person[i] for i in got.ids]
    val, train_ = set(got.group[got.split == "val"]), set(got.group[got.split == "train"])
    assert val and train_ and not val & train_  # whole groups: no person in both
    was_train = (got.split == "train") | (got.split == "val")
    assert (got.split == "val").sum() >= round(0.15 * was_train.sum())  # groups until they hold 15 %
    assert (got.split == "test").sum() == (ds.split == "test").sum()
    held = sorted(val)
    names = ", ".join(f"'{g}'" for g in held)
    err = capsys.readouterr().err.strip()
    assert err == (
        f"note: {labels}: no 'val' rows; {(got.split == 'val').sum()} of the train samples (whole groups, {len(held)} "
        f"of 7: {names}, fixed seed) are held out for validation"
    )
    # the same person in train and test: one note naming the groups and their splits
    rows[1][-1] = "t0"  # a train sample of the test group t0
    with labels.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    capsys.readouterr()
    load_dataset(spec, root, progress=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"note: {labels}: 1 group(s) have samples in more than one split, e.g. 't0' (train/test): validation and "
        "test then score groups seen in training"
    )
    rows[2][-1] = " "
    with labels.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    with pytest.raises(DataError) as e:
        load_dataset(spec, root, progress=False)
    assert e.value.problem == f"line 3 (sample '{rows[2][0]}'): empty group (a group column needs one per row)"


def test_early_stopping_stops(tiny_data, tmp_path):
    spec, data, ds = tiny_data
    d = spec_to_dict(spec)
    d["train"].update(patience=1, lr=1e-2)
    m = train(parse_spec(d), data, tmp_path / "run", epochs=40, progress=False, dataset=ds)
    accs = [h["val_accuracy"] for h in m["history"]]
    losses = [h["val_loss"] for h in m["history"]]
    # the kept epoch: the lowest validation loss from the decayed epoch on; patience counts from that same epoch
    first = decayed_epoch(parse_spec(d).train, 40)
    assert first == 27  # warm-up 1 epoch, then two thirds of the 39-epoch decay
    kept = min(range(first - 1, len(losses)), key=lambda i: losses[i]) + 1
    assert m["stopped_early"] and first <= m["epochs_run"] < 40
    assert m["best_epoch"] == kept
    assert m["epochs_run"] == kept + 1  # patience 1: one epoch without a better kept state, then stop
    assert m["val_accuracy"] == accs[kept - 1] and m["val_loss"] == losses[kept - 1]


def test_lr_schedule_warms_up_then_decays():
    assert lr_factor(0, 10, 100) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100) == pytest.approx(1.0)
    assert lr_factor(10, 10, 100) == pytest.approx(1.0)
    assert lr_factor(55, 10, 100) == pytest.approx(0.05 + 0.95 * 0.5)
    assert lr_factor(100, 10, 100) == pytest.approx(0.05)


def test_only_and_drop_baselines_mask_their_modalities(tiny_data, tmp_path):
    spec, data, ds = tiny_data
    first = spec.modality_names[0]
    m = train(spec, data, tmp_path / "only", epochs=1, only=first, progress=False, dataset=ds)
    assert m["masked"] == spec.modality_names[1:]
    m = train(spec, data, tmp_path / "drop", epochs=1, drop=first, progress=False, dataset=ds)
    assert m["masked"] == [first]
    assert load_run(tmp_path / "drop")[2]["masked"] == [first]
    with pytest.raises(SpecError, match="--only: no modality named 'lidar'"):
        train(spec, data, tmp_path / "x", only="lidar", progress=False, dataset=ds)
    with pytest.raises(SpecError, match="--fusion|model.fusion.method"):
        train(spec, data, tmp_path / "x", fusion="magic", progress=False, dataset=ds)


def test_data_problems_are_data_errors(tiny_data, tmp_path):
    spec, _, _ = tiny_data
    with pytest.raises(DataError):
        train(spec, tmp_path / "nowhere", tmp_path / "run", progress=False)
    # a dataset without a validation split cannot early-stop: refused with the folder named
    d = spec_to_dict(spec)
    d["synth"]["splits"] = {"train": 0.8, "test": 0.2}
    nval = parse_spec(d)
    write_dataset(nval, tmp_path / "noval", 20, seed=0, progress=False)
    with pytest.raises(DataError, match="'val' split has 0 samples"):
        train(nval, tmp_path / "noval", tmp_path / "run", progress=False)


def test_load_run_errors(tiny_run, tmp_path):
    _, _, run, _ = tiny_run
    with pytest.raises(CheckpointError, match="run folder not found"):
        load_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_run(tmp_path / "empty")
    bad = tmp_path / "corrupt"
    bad.mkdir()
    (bad / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes()[:1000])  # truncated
    with pytest.raises(CheckpointError, match="unreadable checkpoint"):
        load_run(bad)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    ckpt["spec"]["model"]["dim"] = -1
    (tmp_path / "badspec").mkdir()
    torch.save(ckpt, tmp_path / "badspec" / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="model.dim"):
        load_run(tmp_path / "badspec")
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    ckpt["state_dict"].pop(next(iter(ckpt["state_dict"])))
    (tmp_path / "badweights").mkdir()
    torch.save(ckpt, tmp_path / "badweights" / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_run(tmp_path / "badweights")
    assert issubclass(CheckpointError, EdgefuseError)


def test_cli_train(tiny_data, tmp_path, capsys):
    spec, data, _ = tiny_data
    cfg = tmp_path / "tiny.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump(spec_to_dict(spec)))
    rc = main(
        [
            "train",
            "--config",
            str(cfg),
            "--data",
            str(data),
            "--out",
            str(tmp_path / "run"),
            "--epochs",
            "1",
            "--drop",
            spec.modality_names[-1],
        ]
    )
    assert rc == 0 and "val accuracy" in capsys.readouterr().out
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["drop"] == spec.modality_names[-1]
    assert list((tmp_path / "run" / "tb").iterdir())  # TensorBoard event file
    rc = main(["train", "--config", str(cfg), "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r2")])
    assert rc == 1 and "error" in capsys.readouterr().err


def test_folds_cross_validate_over_whole_groups_leaving_test_alone(tiny_data, tmp_path):
    import csv
    import dataclasses
    import shutil

    from edgefuse.trainer.data import cv_folds, load_dataset
    from edgefuse.trainer.train import train_folds

    spec, data, ds = tiny_data
    root = tmp_path / "g"
    shutil.copytree(data, root, ignore=shutil.ignore_patterns(".cache"))
    rows = list(csv.reader((root / "labels.csv").open()))
    rows = [rows[0] + ["group"]] + [r + ["t" if r[1] == "test" else f"g{i % 5}"] for i, r in enumerate(rows[1:])]
    with (root / "labels.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    grouped = load_dataset(spec, root, progress=False)
    s = train_folds(spec, root, tmp_path / "cv", 3, epochs=1, progress=False, dataset=grouped)
    assert s["unit"] == "group" and len(s["folds"]) == 3
    held = [set(r["val_groups"]) for r in s["folds"]]
    assert set().union(*held) == {f"g{i}" for i in range(5)} and sum(map(len, held)) == 5  # each group once
    assert sum(r["val_samples"] for r in s["folds"]) == (grouped.split != "test").sum()
    assert json.loads((tmp_path / "cv" / "folds.json").read_text()) == s
    for r in s["folds"]:
        m = json.loads((tmp_path / "cv" / f"fold-{r['fold']}" / "metrics.json").read_text())
        assert m["val_accuracy"] == r["val_accuracy"]
    assert s["val_accuracy"]["mean"] == pytest.approx(np.mean([r["val_accuracy"] for r in s["folds"]]))
    # fold 1 is an ordinary training on that split: the same run again gives the same validation accuracy
    _, masks = cv_folds(grouped, 3)
    split = np.where(grouped.split == "test", "test", np.where(masks[0], "val", "train"))
    again = train(
        spec, root, tmp_path / "again", epochs=1, progress=False, dataset=dataclasses.replace(grouped, split=split)
    )
    assert again["val_accuracy"] == s["folds"][0]["val_accuracy"]
    # without groups: samples dealt round-robin per class, every class spread over the folds, test never in a fold
    unit, masks = cv_folds(ds, 3)
    y = ds.targets[spec.heads[0]]
    assert unit == "sample" and not any((m & (ds.split == "test")).any() for m in masks)
    for c in np.unique(y[ds.split != "test"]):
        per = [int((m & (y == c)).sum()) for m in masks]
        assert max(per) - min(per) <= 1
    with pytest.raises(DataError, match="cross-validation needs at least 2 folds"):
        train_folds(spec, root, tmp_path / "cv1", 1, dataset=grouped)
