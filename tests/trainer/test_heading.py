"""Training-only turn of the wearer's compass heading (model.heading_deg): magnetometers turn about gravity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgefuse.spec import SpecError, compass_units, parse_spec
from edgefuse.trainer.augment import augment_batch, heading_plan, turn_heading

UPPER = [f"{u}_{k}_{a}" for u in ("t", "ra") for k in ("acc", "gyr", "mag") for a in "xyz"]  # 18 channels
LOWER = [f"rl_{k}_{a}" for k in ("acc", "mag") for a in "xyz"] + ["temp"]  # 7 channels


def spec(heading, upper=UPPER, rigid=("t_", "ra_")):
    d = {
        "name": "heading",
        "modalities": {
            "upper": {
                "kind": "series",
                "rate_hz": 10,
                "window_s": 1.0,
                "channels": upper,
                "rigid_groups": list(rigid) if rigid else None,
            },
            "lower": {"kind": "series", "rate_hz": 10, "window_s": 1.0, "channels": LOWER},
        },
        "labels": {"y": [0, 1]},
        "model": {"heading_deg": heading},
    }
    return parse_spec(d, "heading")


def imu_batch(b: int, channels: list[str], g: torch.Generator) -> torch.Tensor:
    """Gravity (9.8 along a random tilt) on each 'acc' vector, a unit-ish field on each 'mag' vector, noise."""
    x = torch.randn(b, len(channels), 10, generator=g) * 0.1
    for i, c in enumerate(channels):
        if c.endswith("_acc_x"):
            tilt = torch.randn(b, 3, generator=g) + torch.tensor([0.0, 0.0, 3.0])
            x[:, i : i + 3] += (9.8 * tilt / tilt.norm(dim=1, keepdim=True))[:, :, None]
        if c.endswith("_mag_x"):
            x[:, i : i + 3] += torch.randn(b, 3, 1, generator=g)
    return x


def horizontal_turn(before: torch.Tensor, after: torch.Tensor, gravity: torch.Tensor) -> torch.Tensor:
    """Signed angle (B,) in degrees that turns the window-mean horizontal part of `before` into that of `after`."""
    k = gravity / gravity.norm(dim=1, keepdim=True)
    h0, h1 = (v.mean(2) - (v.mean(2) * k).sum(1, keepdim=True) * k for v in (before, after))
    sin = (torch.cross(h0, h1, dim=1) * k).sum(1)
    return torch.rad2deg(torch.atan2(sin, (h0 * h1).sum(1)))


def test_units_pair_each_magnetometer_with_its_accelerometer():
    assert compass_units(UPPER, ["t_", "ra_"]) == [((0, 1, 2), [(6, 7, 8)]), ((9, 10, 11), [(15, 16, 17)])]
    assert compass_units(LOWER, None) == [((0, 1, 2), [(3, 4, 5)])]
    assert compass_units(["ax", "ay", "az", "gx", "gy", "gz"], None) == []  # no magnetometer: nothing to turn
    with pytest.raises(ValueError, match="'ra_' has a magnetometer vector .* found none"):
        compass_units([c for c in UPPER if not c.startswith("ra_acc")], ["t_", "ra_"])
    with pytest.raises(ValueError, match=r"the modality \(one rigid group\) .* found t_acc_x, ra_acc_x"):
        compass_units(UPPER, None)  # two accelerometers, one group: which is gravity is ambiguous


def test_a_heading_turn_moves_only_the_horizontal_field_by_theta():
    g = torch.Generator().manual_seed(0)
    x = imu_batch(32, UPPER, g)
    theta = torch.linspace(-3.0, 3.0, 32)  # radians
    units = compass_units(UPPER, ["t_", "ra_"])
    out = turn_heading(x, units, theta)
    mags = [6, 7, 8, 15, 16, 17]
    keep = [i for i in range(len(UPPER)) if i not in mags]
    assert torch.equal(out[:, keep], x[:, keep])  # accelerometers and gyroscopes are not touched
    for acc, (mag,) in units:
        a, m = list(acc), list(mag)
        gravity = x[:, a].mean(2)
        torch.testing.assert_close(out[:, m].norm(dim=1), x[:, m].norm(dim=1))  # field strength kept
        k = (gravity / gravity.norm(dim=1, keepdim=True))[:, :, None]
        torch.testing.assert_close(
            (out[:, m] * k).sum(1), (x[:, m] * k).sum(1), atol=1e-4, rtol=1e-4
        )  # vertical part kept
        torch.testing.assert_close(
            horizontal_turn(x[:, m], out[:, m], gravity), torch.rad2deg(theta), atol=1e-2, rtol=0
        )


def test_a_unit_without_gravity_is_left_as_it_is():
    x = torch.zeros(2, len(LOWER), 10)
    x[:, 3:6] = torch.tensor([0.3, 0.0, 0.5])[:, None]  # a field, but the accelerometer reads zero throughout
    x[1, 0:3] = torch.tensor([0.0, 0.0, 9.8])[:, None]  # sample 1 has gravity along z
    out = turn_heading(x, compass_units(LOWER, None), torch.tensor([1.0, 1.0]))
    assert torch.equal(out[0], x[0])
    torch.testing.assert_close(
        out[1, 3:6, 0], torch.tensor([0.3 * np.cos(1.0), 0.3 * np.sin(1.0), 0.5], dtype=torch.float32)
    )


def test_one_heading_per_sample_for_every_modality_and_none_when_off():
    s = spec(90.0)
    deg, plan = heading_plan(s)
    assert deg == 90.0 and list(plan) == ["upper", "lower"]
    g = torch.Generator().manual_seed(1)
    x = {"upper": imu_batch(64, UPPER, g), "lower": imu_batch(64, LOWER, g)}
    kinds = {"upper": "series", "lower": "series"}
    out = augment_batch(x, kinds, 1.0, torch.Generator().manual_seed(2), heading=(deg, plan))
    turns = [
        horizontal_turn(x[m][:, list(mag)], out[m][:, list(mag)], x[m][:, list(acc)].mean(2))
        for m in plan
        for acc, (mag,) in plan[m]
    ]
    # jitter and per-channel scaling blur each measured turn by a few degrees; the heading itself is shared
    for t in turns[1:]:
        assert (t - turns[0]).abs().median() < 5.0 and (t - turns[0]).abs().max() < 25.0  # independent: ~50 / ~150
    assert turns[0].abs().max() <= 90.0 + 15.0 and turns[0].abs().max() > 60.0 and turns[0].std() > 20.0
    half = augment_batch(x, kinds, 0.5, torch.Generator().manual_seed(2), heading=(deg, plan))
    measured = horizontal_turn(x["lower"][:, 3:6], half["lower"][:, 3:6], x["lower"][:, 0:3].mean(2))
    assert measured.abs().max() <= 45.0 + 15.0  # the angle follows the augment strength
    assert heading_plan(spec(0.0)) is None


def test_the_spec_refuses_a_heading_it_cannot_apply():
    with pytest.raises(SpecError, match=r"model.heading_deg: modalities.upper: rigid group 'ra_' has a magnetometer"):
        spec(180.0, [c for c in UPPER if not c.startswith("ra_acc")])
    with pytest.raises(SpecError, match=r"model.heading_deg: modalities.upper: the modality \(one rigid group\)"):
        spec(180.0, rigid=None)  # only the first problem shown here: upper has two accelerometers in one group
    d = {
        "name": "h",
        "modalities": {"imu": {"kind": "series", "rate_hz": 10, "window_s": 1.0, "channels": ["ax", "ay", "az"]}},
        "labels": {"y": [0, 1]},
        "model": {"heading_deg": 180},
    }
    with pytest.raises(SpecError, match="model.heading_deg: no series modality has a magnetometer vector"):
        parse_spec(d, "h")
    with pytest.raises(SpecError, match="model.heading_deg"):
        spec(200.0)  # beyond 180 degrees
    d["modalities"] = {"upper": {"kind": "series", "rate_hz": 10, "window_s": 1.0, "channels": UPPER}}
    d["modalities"]["upper"]["rigid_groups"] = ["t_"]
    with pytest.raises(SpecError) as err:  # a prefix that misses ra_: one error, on rigid_groups, not a heading one
        parse_spec(d, "h")
    assert "rigid_groups: channel ra_acc_x" in str(err.value) and "heading_deg" not in str(err.value)


def test_training_turns_the_heading_only_when_asked(tmp_path, one_thread, monkeypatch):
    import edgefuse.trainer.augment as augment
    from edgefuse.trainer.train import train

    rng = np.random.default_rng(0)
    rows = ["sample,split,y"]
    for i in range(32):
        folder = tmp_path / "data" / "samples" / f"s{i:02d}"
        folder.mkdir(parents=True)
        np.save(folder / "upper.npy", rng.normal(i % 2, 1.0, (10, len(UPPER))).astype(np.float32))
        np.save(folder / "lower.npy", rng.normal(i % 2, 1.0, (10, len(LOWER))).astype(np.float32))
        rows.append(f"s{i:02d},{('train', 'train', 'val', 'test')[i % 4]},{i % 2}")
    (tmp_path / "data" / "labels.csv").write_text("\n".join(rows) + "\n")
    calls = []
    real = augment.turn_heading

    def spy(x, units, theta):
        calls.append((x.shape[1], units, float(theta.abs().max())))
        return real(x, units, theta)

    monkeypatch.setattr(augment, "turn_heading", spy)
    cfg = {"epochs": 1, "batch_size": 8, "threads": 1}
    base = spec(0.0).model_dump()
    train(parse_spec({**base, "train": cfg}, "h"), tmp_path / "data", tmp_path / "off", progress=False)
    assert calls == []
    on = parse_spec({**base, "train": cfg, "model": {**base["model"], "heading_deg": 30.0}}, "h")
    train(on, tmp_path / "data", tmp_path / "on", progress=False)
    assert len(calls) == 4  # 16 training samples in batches of 8, two modalities each
    assert {c[0] for c in calls} == {18, 7} and all(0.0 < c[2] <= np.deg2rad(30.0) + 1e-6 for c in calls)
