"""The training recipe's parts on tiny data: augmentation, the unimodal auxiliary heads, temperature scaling, the
multi-seed report, baseline de-duplication, and a minimal spec (modalities + integer labels) that trains."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgefuse.spec import parse_spec
from edgefuse.trainer.augment import augment_batch
from edgefuse.trainer.calibrate import expected_calibration_error, fit_temperature, nll
from edgefuse.trainer.evaluate import baseline_plan, bootstrap_ci, evaluate_seeds
from edgefuse.trainer.models import build_model
from edgefuse.trainer.train import UnimodalHeads, schedule, train_seeds

KINDS = {"cam": "image", "mic": "audio", "imu": "series", "txt": "text"}


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "cam": torch.rand(4, 3, 16, 16, generator=g),
        "mic": torch.rand(4, 1, 800, generator=g) * 2 - 1,
        "imu": torch.randn(4, 3, 40, generator=g) * 5 + 2,
        "txt": torch.randint(1, 50, (4, 12), generator=g),
    }


def test_augmentations_keep_shape_dtype_and_range_and_change_values():
    x = batch()
    out = augment_batch(x, KINDS, 1.0, torch.Generator().manual_seed(1))
    for m, v in out.items():
        assert v.shape == x[m].shape and v.dtype == x[m].dtype
        assert not torch.equal(v, x[m]), m
    assert out["cam"].min() >= 0 and out["cam"].max() <= 1
    assert out["mic"].abs().max() <= 1
    assert ((out["txt"] == 0) | (out["txt"] == x["txt"])).all()  # tokens are dropped, never invented
    off = augment_batch(x, KINDS, 0.0)
    assert all(torch.equal(off[m], x[m]) for m in x)


def minimal_spec(**extra):
    """Modalities and labels only; integer labels; a still image without rate_hz."""
    d = {
        "name": "minimal",
        "modalities": {
            "cam": {"kind": "image", "shape": [16, 16], "channels": 1},
            "imu": {"kind": "series", "rate_hz": 20, "window_s": 1.0, "channels": ["x", "y", "z"]},
        },
        "labels": {"digit": [0, 1, 2]},
        **extra,
    }
    return parse_spec(d, "minimal")


def test_minimal_spec_gets_defaults_sized_from_the_data():
    spec = minimal_spec()
    assert spec.labels["digit"] == ["0", "1", "2"]
    assert spec.modalities["cam"].rate_hz == 1.0
    assert spec.model.encoders["cam"].type == "dwcnn" and spec.model.encoders["imu"].type == "cnn1d"
    assert spec.model.encoders["imu"].layers == 2  # 20 steps: a shallow stack
    assert schedule(spec.train, steps_per_epoch=10) == (120, 30)  # tiny data: capped at 120 epochs
    assert schedule(spec.train, steps_per_epoch=1000) == (20, 5)


def test_series_without_rate_is_refused_with_its_path():
    from edgefuse.spec import SpecError

    with pytest.raises(SpecError, match=r"modalities.imu: series needs rate_hz"):
        parse_spec(
            {
                "name": "x",
                "modalities": {"imu": {"kind": "series", "window_s": 1, "channels": ["a"]}},
                "labels": {"y": [0, 1]},
            }
        )


def test_augmentation_is_inactive_in_eval_mode():
    spec = minimal_spec()
    model = build_model(spec).eval()
    for enc in model.encoders.values():
        if hasattr(enc, "spec_augment"):
            enc.spec_augment = 1.0
    x = {"cam": torch.rand(3, 1, 16, 16), "imu": torch.randn(3, 3, 20)}
    mask = torch.ones(3, 2)
    with torch.no_grad():
        a, b = model(x, mask)["digit"], model(x, mask)["digit"]
    assert torch.equal(a, b)


def test_unimodal_heads_send_gradient_to_each_encoder_from_its_own_rows():
    spec = minimal_spec()
    model = build_model(spec).train()
    heads = UnimodalHeads(spec)
    x = {"cam": torch.rand(4, 1, 16, 16), "imu": torch.randn(4, 3, 20)}
    mask = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    targets = {"digit": torch.tensor([0, 1, 2, 0])}
    model(x, mask)
    loss = heads.loss(model.last_tokens, mask, targets, torch.arange(4), 0.0)
    loss.backward()
    # each modality's aux head gets gradient; with imu masked in rows 0-1, its head only sees rows 2-3
    assert heads.linear["cam__digit"].weight.grad.abs().sum() > 0
    assert heads.linear["imu__digit"].weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoders["imu"].parameters())
    # the loss is the mean over modalities of per-modality cross-entropy on present rows
    z = model.last_tokens.detach()
    f = torch.nn.functional.cross_entropy
    want = (
        f(heads.linear["cam__digit"](z[:, 0]), targets["digit"])
        + f(heads.linear["imu__digit"](z[2:, 1]), targets["digit"][2:])
    ) / 2
    got = heads.loss(z, mask, targets, torch.arange(4), 0.0).detach()
    assert float(got) == pytest.approx(float(want.detach()), rel=1e-5)


def test_temperature_scaling_lowers_nll_on_held_out_overconfident_logits():
    g = torch.Generator().manual_seed(0)
    n, c = 2000, 4
    y = torch.randint(0, c, (n,), generator=g)
    clean = torch.randn(n, c, generator=g) + 1.5 * torch.nn.functional.one_hot(y, c)
    logits = clean * 4  # overconfident by a factor of 4
    t = fit_temperature(logits[:1000], y[:1000])
    assert 2.5 < t < 6
    held_logits, held_y = logits[1000:], y[1000:]
    assert nll(held_logits / t, held_y) < nll(held_logits, held_y) - 0.1
    ece_raw = expected_calibration_error(held_logits.softmax(-1).numpy(), held_y.numpy())
    ece_cal = expected_calibration_error((held_logits / t).softmax(-1).numpy(), held_y.numpy())
    assert ece_cal < ece_raw / 2


def test_ece_of_a_known_case():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    y = np.array([0, 1, 0, 0])  # bin 0.9: acc 0.5 vs conf 0.9; bin 0.6: acc 1.0 vs conf 0.6
    assert expected_calibration_error(probs, y) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)


def test_two_modalities_train_no_duplicate_baselines():
    spec = minimal_spec()
    assert baseline_plan(spec) == [("only", "cam", {"only": "cam"}), ("only", "imu", {"only": "imu"})]


def test_bootstrap_interval_contains_the_point_estimate_and_narrows_with_n():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    pred = np.where(rng.random(400) < 0.8, y, (y + 1) % 3)
    ci = bootstrap_ci({"h": y}, {"h": pred}, {"h": ["a", "b", "c"]}, n=300)
    acc = (pred == y).mean()
    assert ci["accuracy"][0] < acc < ci["accuracy"][1]
    assert ci["accuracy"][1] - ci["accuracy"][0] < 0.1
    assert 0 < ci["macro_f1"][0] < ci["macro_f1"][1] < 1


def test_bootstrap_over_recordings_resamples_whole_recordings():
    # 10 recordings of 20 windows each, 7 all right and 3 all wrong: 200 windows are not 200 independent samples
    y = np.zeros(200, dtype=np.int64)
    pred = np.repeat([0, 0, 0, 0, 0, 0, 0, 1, 1, 1], 20)
    rec = np.repeat([f"r{i}" for i in range(10)], 20)
    labels = {"h": ["a", "b"]}
    windows = bootstrap_ci({"h": y}, {"h": pred}, labels, n=400)
    recordings = bootstrap_ci({"h": y}, {"h": pred}, labels, n=400, groups=rec)
    width = lambda ci: ci["accuracy"][1] - ci["accuracy"][0]  # noqa: E731
    assert width(windows) < 0.15 and width(recordings) > 0.4  # binomial: about 0.13 with n = 200, 0.57 with n = 10
    # one window per recording is the plain bootstrap, draw for draw
    assert bootstrap_ci({"h": y}, {"h": pred}, labels, n=50, groups=np.arange(200)) == bootstrap_ci(
        {"h": y}, {"h": pred}, labels, n=50
    )


def write_minimal_data(root, n=48):
    """A tiny folder dataset for minimal_spec: the class shows in both modalities (brightness, imu mean)."""
    import cv2

    rng = np.random.default_rng(0)
    rows = ["sample,split,digit"]
    for i in range(n):
        c = i % 3
        folder = root / "samples" / f"s{i:03d}"
        folder.mkdir(parents=True)
        img = np.clip(rng.normal(60 + 70 * c, 20, (16, 16)), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / "cam.png"), img)
        np.save(folder / "imu.npy", rng.normal(c, 1.0, (20, 3)).astype(np.float32))
        rows.append(f"s{i:03d},{('train', 'train', 'val', 'test')[i % 4]},{c}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_minimal_spec_trains_and_multi_seed_eval_reports_mean_and_std(tmp_path, one_thread):
    spec = minimal_spec(train={"epochs": 3, "batch_size": 16, "threads": 1})
    data = write_minimal_data(tmp_path / "data")
    summary = train_seeds(spec, data, tmp_path / "run", 2, progress=False)
    assert summary["seeds"] == [0, 1] and summary["val_accuracy"]["n"] == 2
    assert (tmp_path / "run" / "seed-0" / "checkpoint.pt").is_file()
    r = evaluate_seeds(tmp_path / "run", data, tmp_path / "rep" / "report.json", 2, progress=False)
    accs = [s["accuracy"] for s in r["seeds"]]
    assert r["accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert r["accuracy"]["std"] == pytest.approx(np.std(accs, ddof=1))
    assert set(r["unimodal"]) == {"cam", "imu"} and set(r["without"]) == {"cam", "imu"}
    assert r["without"]["cam"]["mean"] == r["unimodal"]["imu"]["mean"]  # the same run, not a second training
    runs = sorted(p.name for p in (tmp_path / "run" / "seed-0" / "baselines").iterdir())
    assert runs == ["only-cam", "only-imu"]
    one = json.loads((tmp_path / "rep" / "report-seed-0.json").read_text())
    assert one["calibration"]["ece_after"] >= 0 and len(one["ci95"]["accuracy"]) == 2
    assert "+-" in (tmp_path / "rep" / "report.md").read_text()


def test_patience_counts_from_the_kept_epoch(tmp_path, one_thread):
    from edgefuse.trainer.train import EarlyStopping

    stop = EarlyStopping(patience=2, by="score")  # the caption runs' criterion: score, then loss
    model = torch.nn.Linear(1, 1)
    assert not stop.step(1, 0.5, 1.0, {}, model)
    assert not stop.step(2, 0.5, 0.9, {}, model)  # same accuracy, lower loss: kept -> patience restarts here
    assert not stop.step(3, 0.4, 0.8, {}, model)
    assert stop.step(4, 0.5, 1.0, {}, model) and stop.epoch == 2

    by_loss = EarlyStopping(patience=2)  # the default: the lowest validation loss is kept, whatever the accuracy
    assert not by_loss.step(1, 0.9, 1.0, {}, model)
    assert not by_loss.step(2, 0.5, 0.8, {}, model)
    assert not by_loss.step(3, 0.9, 0.9, {}, model)
    assert by_loss.step(4, 0.9, 0.85, {}, model) and by_loss.epoch == 2


def test_nothing_is_kept_and_nothing_stops_before_the_rate_has_decayed():
    from types import SimpleNamespace

    from edgefuse.trainer.train import EarlyStopping, decayed_epoch, lr_factor

    cfg = SimpleNamespace(warmup_epochs=1)
    assert decayed_epoch(cfg, 10) == 7 and decayed_epoch(cfg, 120) == 81
    steps = 100  # per epoch: from the decayed epoch on, the rate is below 30 % of its peak
    assert lr_factor(80 * steps, steps, 120 * steps) < 0.3 < lr_factor(79 * steps, steps, 120 * steps)

    stop = EarlyStopping(patience=2, min_epochs=5)
    model = torch.nn.Linear(1, 1)
    for epoch, loss in [(1, 0.1), (2, 0.5), (3, 0.6), (4, 0.7)]:  # epoch 1's low loss comes before the decay
        assert not stop.step(epoch, 0.5, loss, {}, model)  # patience long run out, but no stop before epoch 5
    assert stop.state is None
    assert not stop.step(5, 0.5, 0.9, {}, model) and stop.epoch == 5  # the first candidate is kept, worse or not
    assert not stop.step(6, 0.5, 0.8, {}, model) and stop.epoch == 6
    assert not stop.step(7, 0.5, 0.85, {}, model)
    assert stop.step(8, 0.5, 0.85, {}, model) and stop.epoch == 6


def test_a_newly_registered_fusion_is_selectable_from_a_config():
    from edgefuse.spec import FUSION_METHODS
    from edgefuse.trainer.models import FUSIONS, register_fusion
    from edgefuse.trainer.models.fusion import Fusion, _masked_mean

    @register_fusion("mean_pool_test", "mean of the present modality tokens")
    class MeanPool(Fusion):
        def __init__(self, n_modalities, dim, classes, cfg, dropout):
            super().__init__(dim, classes, dropout)

        def fuse(self, z, mask):
            return _masked_mean(z, mask)  # (B, D)

    try:
        spec = minimal_spec(model={"fusion": {"method": "mean_pool_test"}})
        model = build_model(spec).eval()
        assert isinstance(model.fusion, MeanPool)
        out = model({"cam": torch.rand(2, 1, 16, 16), "imu": torch.randn(2, 3, 20)}, torch.ones(2, 2))
        assert out["digit"].shape == (2, 3)
    finally:
        FUSIONS.pop("mean_pool_test", None)
        FUSION_METHODS.pop("mean_pool_test", None)


def test_a_newly_registered_encoder_is_selectable_from_a_config_and_documented():
    from typing import Literal

    from pydantic import Field

    from edgefuse.spec import ENCODER_TYPES, SpecError, Strict, unregister_encoder_config
    from edgefuse.specdoc import markdown
    from edgefuse.trainer.models import ENCODERS, register_encoder

    class MeanSeriesTest(Strict):
        type: Literal["mean_series_test"]
        scale: float = Field(1.0, gt=0)  # multiplies the per-channel means

    @register_encoder(MeanSeriesTest, ("series",))
    class MeanSeries(torch.nn.Module):
        def __init__(self, m, cfg, dim):
            super().__init__()
            self.scale, self.proj = cfg.scale, torch.nn.Linear(m.n_channels, dim)

        def forward(self, x):
            return self.proj(self.scale * x.mean(dim=2))  # (B, dim)

    try:
        spec = minimal_spec(
            model={"encoders": {"cam": {"type": "dwcnn"}, "imu": {"type": "mean_series_test", "scale": 2}}}
        )
        assert spec.model.encoders["imu"].scale == 2.0
        model = build_model(spec).eval()
        assert isinstance(model.encoders["imu"], MeanSeries)
        out = model({"cam": torch.rand(2, 1, 16, 16), "imu": torch.randn(2, 3, 20)}, torch.ones(2, 2))
        assert out["digit"].shape == (2, 3)
        assert "model.encoders.<name> (type: mean_series_test)" in markdown() and "| `scale` |" in markdown()
        with pytest.raises(SpecError) as err:  # registered for series only
            minimal_spec(model={"encoders": {"cam": {"type": "mean_series_test"}, "imu": {"type": "cnn1d"}}})
        assert "model.encoders.cam.type: 'mean_series_test' cannot encode image; use one of: dwcnn" in str(err.value)
        with pytest.raises(SpecError, match="model.encoders.imu.scale"):
            minimal_spec(
                model={"encoders": {"cam": {"type": "dwcnn"}, "imu": {"type": "mean_series_test", "scale": 0}}}
            )
    finally:
        ENCODERS.pop("mean_series_test", None)
        unregister_encoder_config("mean_series_test")
    assert "mean_series_test" not in ENCODER_TYPES
    with pytest.raises(SpecError, match="mean_series_test|does not match"):  # gone again
        minimal_spec(model={"encoders": {"cam": {"type": "dwcnn"}, "imu": {"type": "mean_series_test"}}})


def test_loader_cache_is_no_larger_than_the_files_it_caches(tmp_path):
    from edgefuse.trainer.data import load_dataset

    spec = minimal_spec()
    data = write_minimal_data(tmp_path / "data")
    first = load_dataset(spec, data, progress=False)
    (cache,) = (data / ".cache").glob("*.npz")
    files = sum(p.stat().st_size for p in (data / "samples").rglob("*.*"))
    assert cache.stat().st_size <= files
    again = load_dataset(spec, data, progress=False)  # read back from the compressed cache, unchanged
    assert all(np.array_equal(first.inputs[m], again.inputs[m]) for m in spec.modality_names)


def test_a_state_dict_from_before_temperature_scaling_still_loads():
    spec = minimal_spec()
    old = {k: v for k, v in build_model(spec).state_dict().items() if k != "temperature"}
    model = build_model(spec)
    model.temperature.fill_(3.0)
    model.load_state_dict(old)
    assert torch.equal(model.temperature, torch.ones(1))


def test_pretraining_starts_each_encoder_from_its_unimodal_model(tmp_path, one_thread):
    from edgefuse.trainer.checkpoint import load_run
    from edgefuse.trainer.data import load_data
    from edgefuse.trainer.models import build_model
    from edgefuse.trainer.train import pretrain_encoders, series_normalization, train

    spec = minimal_spec(train={"epochs": 2, "batch_size": 16, "threads": 1, "pretrain": True})
    data = write_minimal_data(tmp_path / "data")
    ds = load_data(spec, data, progress=False)
    model = build_model(spec)
    model.set_normalization(series_normalization(spec, ds.subset("train")))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scores = pretrain_encoders(spec, model, ds, data, tmp_path / "pre", masked=[])
    assert set(scores) == {"cam", "imu"} and all(0 <= a <= 1 for a in scores.values())
    for m in ("cam", "imu"):
        uni = load_run(tmp_path / "pre" / f"only-{m}")[1]
        for k, v in uni.encoders[m].state_dict().items():
            assert torch.equal(model.encoders[m].state_dict()[k], v), (m, k)
    moved = [k for k, v in model.state_dict().items() if k.startswith("encoders.") and not torch.equal(v, before[k])]
    assert moved and all(not k.startswith("fusion.") for k in moved)  # only the encoders start from elsewhere
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items() if k.startswith("fusion."))

    m = train(spec, data, tmp_path / "run", progress=False)  # the whole path: pre-train, then the fused training
    assert set(m["pretrain_val_accuracy"]) == {"cam", "imu"}
    assert (tmp_path / "run" / "pretrain" / "only-imu" / "checkpoint.pt").is_file()
