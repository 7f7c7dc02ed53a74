"""Training-only rotation of series x/y/z vectors (model.rotate_deg, modalities.<m>.rigid_groups)."""

from __future__ import annotations

import math

import pytest
import torch

from edgefuse.spec import SpecError, parse_spec, rigid_group_of, xyz_triplets
from edgefuse.trainer.augment import augment_batch, rotate_triplets, rotation_plan

CHANNELS = [
    "t_acc_x",
    "t_acc_y",
    "t_acc_z",
    "t_gyr_x",
    "t_gyr_y",
    "t_gyr_z",
    "temp",
    "ra_acc_x",
    "ra_acc_y",
    "ra_acc_z",
]


def spec(rotate, rigid=None, extra_channels=()):
    imu = {"kind": "series", "rate_hz": 10, "window_s": 1.0, "channels": CHANNELS + list(extra_channels)}
    if rigid is not None:
        imu["rigid_groups"] = rigid
    d = {
        "name": "rot",
        "modalities": {
            "imu": imu,
            "env": {"kind": "series", "rate_hz": 10, "window_s": 1.0, "channels": ["x", "y", "z"]},
        },
        "labels": {"y": [0, 1]},
        "model": {"rotate_deg": rotate},
    }
    return parse_spec(d, "rot")


def test_triplets_are_found_by_name_and_grouped_by_prefix():
    assert xyz_triplets(CHANNELS) == [(0, 1, 2), (3, 4, 5), (7, 8, 9)]
    assert xyz_triplets(["X", "Y", "Z", "w"]) == [(0, 1, 2)]
    assert xyz_triplets(["ax", "ay", "gx"]) == []  # an incomplete vector is not one
    assert rigid_group_of(CHANNELS, None) == [0, 0, 0]
    assert rigid_group_of(CHANNELS, ["t_", "ra_"]) == [0, 0, 1]
    with pytest.raises(ValueError, match="ra_acc_x .* exactly one prefix, found none"):
        rigid_group_of(CHANNELS, ["t_"])
    with pytest.raises(ValueError, match="no x/y/z channel triplet starts with 'la_'"):
        rigid_group_of(CHANNELS, ["t_", "ra_", "la_"])


def angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle in degrees between the vectors a and b (B, 3, T) at each step."""
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    return torch.rad2deg(torch.arccos(cos.clamp(-1, 1)))


def test_each_rigid_group_turns_as_one_within_the_limit_and_other_channels_stay():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, len(CHANNELS), 5, generator=g) + 3.0
    out = rotate_triplets(x, xyz_triplets(CHANNELS), 40.0, g, [0, 0, 1])
    assert torch.equal(out[:, 6], x[:, 6])  # temp: not a vector
    t_acc, t_gyr, ra = (slice(0, 3), slice(3, 6), slice(7, 10))
    for s in (t_acc, t_gyr, ra):
        torch.testing.assert_close(out[:, s].norm(dim=1), x[:, s].norm(dim=1))  # a rotation keeps lengths
        turned = angles(x[:, s], out[:, s])
        assert turned.max() <= 40.0 + 1e-3 and turned.mean() > 5.0  # turned, never beyond the limit
    # one rotation per rigid group: angles between the torso's two vectors are kept, torso vs right arm are not
    torch.testing.assert_close(
        angles(out[:, t_acc], out[:, t_gyr]), angles(x[:, t_acc], x[:, t_gyr]), atol=1e-3, rtol=0
    )
    assert (angles(out[:, t_acc], out[:, ra]) - angles(x[:, t_acc], x[:, ra])).abs().max() > 5.0
    assert torch.equal(rotate_triplets(x, xyz_triplets(CHANNELS), 0.0, g), x)


def test_the_spec_names_which_modalities_turn_and_how_far():
    plan = rotation_plan(spec(30.0, ["t_", "ra_"]))
    assert plan == {"imu": (30.0, [(0, 1, 2), (3, 4, 5), (7, 8, 9)], [0, 0, 1]), "env": (30.0, [(0, 1, 2)], [0])}
    plan = rotation_plan(spec({"imu": 60.0}))
    assert list(plan) == ["imu"] and plan["imu"][0] == 60.0 and plan["imu"][2] == [0, 0, 0]
    assert rotation_plan(spec(0.0)) == {}
    with pytest.raises(SpecError, match=r"model.rotate_deg.cam: no modality named 'cam'"):
        spec({"cam": 10.0})
    with pytest.raises(SpecError, match=r"modalities.imu: rigid_groups: channel ra_acc_x"):
        spec(10.0, ["t_"])


def test_rotation_follows_the_augment_strength():
    x = {"imu": torch.randn(8, len(CHANNELS), 5) + 3.0}
    plan = rotation_plan(spec(90.0))
    off = augment_batch(x, {"imu": "series"}, 0.0, torch.Generator().manual_seed(0), plan)
    assert torch.equal(off["imu"], x["imu"])
    on = augment_batch(x, {"imu": "series"}, 1.0, torch.Generator().manual_seed(0), plan)
    ratio = on["imu"][:, 0:3].norm(dim=1) / x["imu"][:, 0:3].norm(dim=1)  # series scaling is 1 +- 0.1 per channel
    assert ratio.min() > 0.85 and ratio.max() < 1.15
    assert angles(x["imu"][:, 0:3], on["imu"][:, 0:3]).max() > 30.0  # turned, not only scaled and shifted
    assert math.isclose(plan["imu"][0], 90.0)


def test_training_turns_the_batches_only_when_asked(tmp_path, one_thread, monkeypatch):
    from test_recipe import minimal_spec, write_minimal_data

    import edgefuse.trainer.augment as augment
    from edgefuse.trainer.train import train

    calls = []
    real = augment.rotate_triplets

    def spy(x, triplets, max_deg, g=None, groups=None):
        calls.append((tuple(x.shape[1:]), triplets, max_deg, groups))
        return real(x, triplets, max_deg, g, groups)

    monkeypatch.setattr(augment, "rotate_triplets", spy)
    data = write_minimal_data(tmp_path / "data")
    cfg = {"epochs": 1, "batch_size": 8, "threads": 1}
    train(minimal_spec(train=cfg), data, tmp_path / "off", progress=False)
    assert calls == []
    metrics = train(minimal_spec(train=cfg, model={"rotate_deg": 45}), data, tmp_path / "on", progress=False)
    assert len(calls) == 3  # 24 training samples in batches of 8, each turned
    assert all(c == ((3, 20), [(0, 1, 2)], 45.0, [0]) for c in calls)
    assert 0.0 <= metrics["val_accuracy"] <= 1.0
