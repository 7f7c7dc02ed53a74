"""The anomaly autoencoder on tiny real data: it trains on normal samples only, its thresholds come from the
validation split, its score rises on injected faults, and masked modalities never count."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _trainer_tiny import tiny_spec

from edgefuse.spec import SpecError, parse_spec, spec_to_dict
from edgefuse.trainer.anomaly import (
    FAULTS,
    anomaly_scores,
    evaluate_anomaly,
    fault_refs,
    inject,
    load_anomaly,
    normal_rows,
    normal_split,
    raw_errors,
    stuck,
    train_anomaly,
)

pytestmark = pytest.mark.usefixtures("one_thread")

EXCLUDED = "alarm"


def anomaly_spec(**extra):
    d = spec_to_dict(tiny_spec())
    d["anomaly"] = {"exclude": {"event": [EXCLUDED]}, "epochs": 6, "latent": 8, "hidden": 64, **extra}
    return parse_spec(d, "tiny smart_home + anomaly")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    from edgefuse.trainer.data import load_dataset
    from edgefuse.trainer.synth import write_dataset

    root = tmp_path_factory.mktemp("anomaly")
    spec = anomaly_spec()
    data = write_dataset(spec, root / "data", 160, seed=0, progress=False)
    ds = load_dataset(spec, data, progress=False)
    metrics = train_anomaly(spec, ds, root / "run", data, progress=False)
    return spec, ds, root / "run", metrics


def test_trains_on_normal_samples_only_and_saves_the_run(trained):
    spec, ds, run, metrics = trained
    train = ds.subset("train")
    alarm = spec.labels["event"].index(EXCLUDED)
    n_normal = int((train.targets["event"] != alarm).sum())
    assert metrics["n_train"] == n_normal < len(train)  # the held-out event never reaches training
    assert metrics["history"][-1]["train_error"] < metrics["history"][0]["train_error"]
    saved = json.loads((run / "anomaly.json").read_text())
    assert saved["thresholds"] == metrics["thresholds"]
    spec2, model, _ = load_anomaly(run)
    assert spec2.anomaly.exclude == {"event": [EXCLUDED]}
    assert float(model.fused_threshold) == pytest.approx(metrics["thresholds"]["fused"])


def test_thresholds_are_the_validation_quantile(trained):
    spec, ds, run, metrics = trained
    _, model, _ = load_anomaly(run)
    val = normal_split(spec, ds, "val")
    scores, fused = anomaly_scores(model, val.inputs, val.mask)
    assert metrics["thresholds"]["fused"] == pytest.approx(float(np.quantile(fused, spec.anomaly.quantile)), abs=1e-5)
    for j, m in enumerate(spec.modality_names):
        rows = val.mask[:, j] > 0.5
        want = float(np.quantile(scores[rows, j], spec.anomaly.quantile))
        assert metrics["thresholds"]["modalities"][m] == pytest.approx(want, abs=1e-5)
    # the scores are standardized on that same split: about zero mean, unit spread per modality
    assert np.abs(scores[val.mask[:, 0] > 0.5, 0].mean()) < 0.3


def test_score_rises_on_a_stuck_sensor(trained):
    spec, ds, run, _ = trained
    _, model, _ = load_anomaly(run)
    clean = normal_split(spec, ds, "test")
    env = spec.modality_names.index("env")
    rows = clean.mask[:, env] > 0.5
    refs = fault_refs(spec, normal_split(spec, ds, "train"))
    faulty = {m: v.copy() for m, v in clean.inputs.items()}
    rng = np.random.default_rng(0)
    for i in np.flatnonzero(rows):
        faulty["env"][i] = stuck(faulty["env"][i], rng, refs["env"])
    s0, f0 = anomaly_scores(model, clean.inputs, clean.mask)
    s1, f1 = anomaly_scores(model, faulty, clean.mask)
    assert np.median(s1[rows, env] - s0[rows, env]) > 1.0  # more than a validation std higher for most samples
    assert (s1[rows, env] > s0[rows, env]).mean() >= 0.8
    assert np.median(f1[rows]) > np.median(f0[rows])
    others = [j for j in range(len(spec.modality_names)) if j != env]
    assert np.allclose(s1[rows][:, others], s0[rows][:, others], atol=3.0)  # the fault is placed in env


def test_masked_modality_scores_zero_and_is_left_out(trained):
    spec, ds, run, _ = trained
    _, model, _ = load_anomaly(run)
    clean = normal_split(spec, ds, "test")
    cam = spec.modality_names.index("camera")
    dark = {m: v.copy() for m, v in clean.inputs.items()}
    dark["camera"][:] = 0.0  # a covered lens everywhere, but masked: it must not raise anything
    mask = clean.mask.copy()
    mask[:, cam] = 0.0
    s_masked, f_masked = anomaly_scores(model, dark, mask)
    assert np.all(s_masked[:, cam] == 0.0)
    s_open, f_open = anomaly_scores(model, dark, clean.mask)
    assert np.median(s_open[:, cam]) > 3.0  # the same dark frames, present, score far above normal
    assert np.median(f_masked) < np.median(f_open)


def test_fault_injection_changes_only_the_named_modality(trained):
    spec, ds, _, _ = trained
    clean = normal_split(spec, ds, "test")
    refs = fault_refs(spec, normal_split(spec, ds, "train"))
    for kind, (kinds, _) in FAULTS.items():
        inputs, hit, which = inject(spec, clean, kind, refs, seed=1)
        assert hit.all(), kind  # every modality is present in the synthetic data
        for m in spec.modality_names:
            changed = np.any(inputs[m] != clean.inputs[m], axis=tuple(range(1, inputs[m].ndim)))
            if spec.modalities[m].kind not in kinds:
                assert not changed.any(), (kind, m)
            else:
                assert np.array_equal(changed, np.array([w == m for w in which])), (kind, m)


def test_evaluation_reports_roc_auc_per_fault_kind(trained):
    _, ds, run, _ = trained
    r = evaluate_anomaly(run, ds)
    assert set(r["kinds"]) == {*FAULTS, "unseen"}
    for kind in ("covered", "clipping", "drift", "dropout"):  # gross faults: separable even on this tiny model
        assert r["kinds"][kind]["roc_auc"] > 0.9, (kind, r["kinds"][kind])
    assert r["kinds"]["unseen"]["classes"] == {"event": [EXCLUDED]}
    assert 0.0 <= r["false_alarm_rate"] <= 0.2


def test_errors_are_deterministic_in_eval_mode(trained):
    spec, ds, run, _ = trained
    _, model, _ = load_anomaly(run)
    val = ds.subset("val")
    assert np.array_equal(raw_errors(model, val.inputs, val.mask), raw_errors(model, val.inputs, val.mask))
    assert normal_rows(spec, val).sum() < len(val)


def test_anomaly_only_spec_needs_no_labels(tmp_path):
    d = spec_to_dict(tiny_spec())
    d.pop("labels")
    d["anomaly"] = {}
    spec = parse_spec(d, "no labels")
    assert spec.heads == [] and spec.anomaly.quantile == 0.99
    d.pop("anomaly")
    with pytest.raises(SpecError, match="labels: at least one head is required"):
        parse_spec(d, "nothing")


def test_spec_errors_name_the_field():
    d = spec_to_dict(tiny_spec())
    d["anomaly"] = {"exclude": {"event": ["tornado"], "room": ["x"]}, "quantile": 1.5, "fuse": "min"}
    with pytest.raises(SpecError) as err:
        parse_spec(d, "bad")
    text = str(err.value)
    assert "anomaly.quantile:" in text and "anomaly.fuse:" in text
    assert "anomaly.exclude.event: 'tornado' is not a class of labels.event" in text
    assert "anomaly.exclude.room: no head named 'room' in labels" in text
    d["anomaly"] = {"exclude": {"event": list(d["labels"]["event"])}}
    with pytest.raises(SpecError, match="every class is excluded"):
        parse_spec(d, "bad")


def test_train_verb_trains_an_anomaly_only_spec(trained, tmp_path, capsys):
    import yaml

    from edgefuse.cli import main

    spec, ds, _, _ = trained
    d = spec_to_dict(spec)
    d.pop("labels")
    d["anomaly"] = {"epochs": 1, "latent": 4, "hidden": 16}
    cfg = tmp_path / "only_anomaly.yaml"
    cfg.write_text(yaml.safe_dump(d))
    data = tmp_path / "data"
    from edgefuse.trainer.synth import write_dataset

    write_dataset(spec, data, 24, seed=1, progress=False)
    assert main(["train", "--config", str(cfg), "--data", str(data), "--out", str(tmp_path / "run")]) == 0
    assert "anomaly model" in capsys.readouterr().out
    assert (tmp_path / "run" / "anomaly.pt").is_file() and not (tmp_path / "run" / "checkpoint.pt").exists()
    _, model, ckpt = load_anomaly(tmp_path / "run")
    assert ckpt["metrics"]["excluded"] == {} and ckpt["metrics"]["n_train"] > 0
    assert np.isfinite(float(model.fused_threshold))
    report = tmp_path / "report.json"
    assert main(["eval", "--run", str(tmp_path / "run"), "--data", str(data), "--report", str(report)]) == 0
    assert "anomaly: ROC-AUC stuck" in capsys.readouterr().out
    r = json.loads(report.read_text())
    assert "accuracy" not in r and set(r["anomaly"]["kinds"]) == set(FAULTS)  # no labels: no unseen class
    assert "| covered |" in report.with_suffix(".md").read_text()


@pytest.mark.slow
def test_train_then_eval_reports_roc_auc_in_json_and_markdown(trained, tmp_path):
    from edgefuse.trainer.evaluate import evaluate
    from edgefuse.trainer.train import train

    spec, ds, _, _ = trained
    data = tmp_path / "data"
    from edgefuse.trainer.synth import write_dataset

    write_dataset(spec, data, 160, seed=0, progress=False)  # the fixture's samples, again (same seed)
    m = train(spec, data, tmp_path / "run", epochs=1, progress=False, dataset=ds)
    assert (tmp_path / "run" / "checkpoint.pt").is_file() and (tmp_path / "run" / "anomaly.pt").is_file()
    assert m["anomaly"]["n_train"] < m["n_train"]  # the classifier saw the excluded class, the anomaly model did not
    r = evaluate(tmp_path / "run", data, tmp_path / "report.json", with_baselines=False, dataset=ds)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["anomaly"]["kinds"].keys() == r["anomaly"]["kinds"].keys() == {*FAULTS, "unseen"}
    md = (tmp_path / "report.md").read_text()
    assert "## Anomaly scores" in md
    auc = r["anomaly"]["kinds"]["covered"]["roc_auc"]
    assert f"| covered | {auc:.3f} |" in md
