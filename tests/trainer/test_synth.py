"""The scenario generators: determinism, physical signatures, the dataset writer, sessions and the CLI verb."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from edgefuse.cli import main as cli_main
from edgefuse.spec import ScenarioSpec, SpecError, load_spec, parse_spec, spec_to_dict
from edgefuse.trainer.synth import (
    GENERATORS,
    cut_sample,
    episode_duration_s,
    get_generator,
    synth_session,
    write_dataset,
)
from edgefuse.trainer.synth.customer_service import PHRASES, escalate

SCENARIOS = ["smart_home", "driving", "customer_service"]
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def spec_of(name: str) -> ScenarioSpec:
    return load_spec(CONFIGS / f"{name}.yaml")


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".cache" not in p.parts
    }


def sample_of(name: str, labels: dict[str, str], seed: int) -> dict:
    gen = get_generator(spec_of(name), seed)
    return cut_sample(gen, labels, np.random.default_rng([seed, 99]))


# ---------------------------------------------------------------------------------------------------------------------
# determinism


@pytest.mark.parametrize("name", SCENARIOS)
def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path, name: str):
    spec = spec_of(name)
    a = tree_hashes(write_dataset(spec, tmp_path / "a", 6, seed=3, progress=False))
    b = tree_hashes(write_dataset(spec, tmp_path / "b", 6, seed=3, progress=False))
    c = tree_hashes(write_dataset(spec, tmp_path / "c", 6, seed=4, progress=False))
    assert a == b
    assert len(a) >= 6 * 2 + 2  # labels.csv, dataset.json and the modality files
    changed = [k for k in a if k.startswith("samples/") and a[k] != c.get(k)]
    assert len(changed) >= 6  # another seed changes every sample


def test_sample_does_not_depend_on_count(tmp_path: Path, home_spec):
    small = tree_hashes(write_dataset(home_spec, tmp_path / "s", 3, seed=0, progress=False))
    big = tree_hashes(write_dataset(home_spec, tmp_path / "b", 7, seed=0, progress=False))
    for k, v in small.items():
        if k.startswith("samples/"):
            assert big[k] == v


def test_worker_processes_write_the_same_bytes(tmp_path: Path, home_spec):
    one = tree_hashes(write_dataset(home_spec, tmp_path / "one", 8, seed=1, progress=False))
    two = tree_hashes(write_dataset(home_spec, tmp_path / "two", 8, seed=1, progress=False, workers=2))
    assert one == two


def test_write_refuses_foreign_folder(tmp_path: Path, home_spec):
    from edgefuse.errors import DataError

    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(DataError, match="dataset.json"):
        write_dataset(home_spec, tmp_path, 2, seed=0, progress=False)
    assert (tmp_path / "mine.txt").read_text() == "precious"


# ---------------------------------------------------------------------------------------------------------------------
# shapes and windows


@pytest.mark.parametrize("name", SCENARIOS)
def test_render_covers_episode_at_native_rates(name: str):
    spec = spec_of(name)
    gen = get_generator(spec, 0)
    d = episode_duration_s(spec)
    assert d == pytest.approx(spec.window_span_s() + 1.0)
    rng = np.random.default_rng(5)
    streams = gen.render(gen.sample_labels(rng), rng, d)
    for m_name, m in spec.modalities.items():
        if m_name not in streams:
            assert m.optional
            continue
        x = streams[m_name]
        if m.kind == "image":
            assert x.shape == (int(d * m.rate_hz) + 1, *m.shape, 3) and x.dtype == np.uint8
        elif m.kind == "text":
            assert all(0 < t <= d and isinstance(u, str) and u for t, u in x)
        else:
            assert x.shape == (round(d * m.rate_hz), m.n_channels) and x.dtype == np.float32
            assert np.isfinite(x).all()
            if m.kind == "audio":
                assert np.abs(x).max() <= 1.0


# ---------------------------------------------------------------------------------------------------------------------
# smart home signatures


def band_energy(x: np.ndarray, rate: float, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x[:, 0])) ** 2
    f = np.fft.rfftfreq(x.shape[0], 1 / rate)
    return float(spec[(f >= lo) & (f < hi)].sum())


def test_doorbell_spectrum_peaks_at_its_chime():
    for seed in range(4):
        bell = sample_of("smart_home", {"event": "doorbell"}, seed)["mic"]
        idle = sample_of("smart_home", {"event": "idle"}, seed)["mic"]
        spec = np.abs(np.fft.rfft(bell[:, 0]))
        f = np.fft.rfftfreq(bell.shape[0], 1 / 16000)
        peak = f[np.argmax(spec * (f > 300))]
        assert 430 <= peak <= 920  # the chime's ding (550-900 Hz) or dong (0.8x)
        assert band_energy(bell, 16000, 400, 1000) > 5 * band_energy(idle, 16000, 400, 1000)


def test_alarm_beeps_near_3khz_and_glass_rings_high():
    for seed in range(3):
        alarm = sample_of("smart_home", {"event": "alarm"}, seed)["mic"]
        glass = sample_of("smart_home", {"event": "glass_break"}, seed)["mic"]
        knock = sample_of("smart_home", {"event": "door_knock"}, seed)["mic"]
        assert band_energy(alarm, 16000, 2800, 3600) > 0.5 * band_energy(alarm, 16000, 0, 8000)
        assert band_energy(glass, 16000, 2500, 7500) > 3 * band_energy(knock, 16000, 2500, 7500)
        # a knock is low: most of its energy below 500 Hz
        assert band_energy(knock, 16000, 0, 500) > 0.5 * band_energy(knock, 16000, 0, 8000)


def test_env_sensors_tell_door_smoke_and_steam():
    chans = list(spec_of("smart_home").modalities["env"].channels)
    col = {c: i for i, c in enumerate(chans)}
    for seed in range(4):
        enter = sample_of("smart_home", {"event": "person_entering"}, seed)["env"]
        knock = sample_of("smart_home", {"event": "door_knock"}, seed)["env"]
        cook = sample_of("smart_home", {"event": "cooking"}, seed)["env"]
        alarm = sample_of("smart_home", {"event": "alarm"}, seed)["env"]
        assert enter[-1, col["door"]] == 1 and enter[:, col["motion"]].max() == 1
        assert knock[:, col["door"]].max() == 0
        hum_rise = cook[-5:, col["humidity"]].mean() - cook[:5, col["humidity"]].mean()
        assert hum_rise > 1.0  # >= 0.5 %RH/s over ~3.5 s
        assert abs(knock[-5:, col["humidity"]].mean() - knock[:5, col["humidity"]].mean()) < 1.0
        assert alarm[:, col["smoke"]].min() > 0.1 > knock[:, col["smoke"]].max()


def test_camera_sees_person_not_knock():
    """Same scene (same seed): knock and idle frames differ only by sensor noise, a person entering changes it."""
    diffs = {"door_knock": [], "person_entering": [], "fall": []}
    for seed in range(3):
        idle = sample_of("smart_home", {"event": "idle"}, seed)["camera"].astype(np.float32)
        for ev in diffs:
            frame = sample_of("smart_home", {"event": ev}, seed)["camera"].astype(np.float32)
            changed = np.abs(cv_blur(frame) - cv_blur(idle)).mean(axis=2) > 25  # (H, W) pixels the scene changed
            diffs[ev].append(changed.mean())
    assert max(diffs["door_knock"]) < 0.01
    assert min(diffs["person_entering"]) > 0.015 and min(diffs["fall"]) > 0.015  # a person: 2-80% of the frame


def cv_blur(x: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(x, (5, 5), 1.5)  # average the sensor noise away, keep the scene


# ---------------------------------------------------------------------------------------------------------------------
# driving signatures


def test_steering_and_yaw_sign_tell_left_from_right():
    spec = spec_of("driving")
    steer = list(spec.modalities["can"].channels).index("steering_angle")
    yaw = list(spec.modalities["imu"].channels).index("gyro_z")
    for seed in range(4):
        for ev, sign in [("lane_change_left", 1), ("turn_left", 1), ("lane_change_right", -1), ("turn_right", -1)]:
            s = sample_of("driving", {"maneuver": ev}, seed)
            assert sign * s["can"][:, steer].mean() > 1.0  # degrees at the wheel
            assert sign * s["imu"][:, yaw].mean() > 0.01  # rad/s


def test_hard_braking_on_can_and_imu_cruise_steady():
    spec = spec_of("driving")
    can = {c: i for i, c in enumerate(spec.modalities["can"].channels)}
    for seed in range(4):
        hb = sample_of("driving", {"maneuver": "hard_braking"}, seed)
        cr = sample_of("driving", {"maneuver": "cruise"}, seed)
        decel = np.convolve(hb["imu"][:, 0], np.ones(25) / 25, mode="valid")  # 0.25 s means of accel_x
        assert decel.min() < -4.0 and hb["can"][-5:, can["brake"]].mean() > 30  # the pedal stays down
        speed = hb["can"][:, can["speed"]]
        assert speed[0] - speed[-1] > 20 or speed[-1] < 5  # km/h lost in 2 s, or stopped
        assert abs(cr["imu"][:, 0].mean()) < 0.5 and cr["can"][:, can["brake"]].max() == 0


def test_siren_is_heard_in_its_band():
    ratios = []
    for seed in range(4):
        ev = sample_of("driving", {"maneuver": "emergency_vehicle"}, seed)["mic"]
        lcr = sample_of("driving", {"maneuver": "lane_change_right"}, seed)["mic"]
        ratios.append(band_energy(ev, 16000, 600, 1500) / band_energy(lcr, 16000, 600, 1500))
    assert np.median(ratios) > 5


def test_emergency_vehicle_moves_like_lane_change_right():
    spec = spec_of("driving")
    steer = list(spec.modalities["can"].channels).index("steering_angle")
    ev = [sample_of("driving", {"maneuver": "emergency_vehicle"}, s)["can"][:, steer].mean() for s in range(6)]
    lcr = [sample_of("driving", {"maneuver": "lane_change_right"}, s)["can"][:, steer].mean() for s in range(6)]
    assert max(ev) < 0 and max(lcr) < 0
    assert abs(np.mean(ev) - np.mean(lcr)) < 0.5 * abs(np.mean(lcr))


# ---------------------------------------------------------------------------------------------------------------------
# customer service signatures


def pitch_hz(x: np.ndarray, rate: float) -> float:
    """Median pitch of the loud 50 ms frames: the lag of the highest normalized autocorrelation (70-400 Hz)."""
    frames = x[: len(x) // 400 * 400, 0].reshape(-1, 400)
    energy = (frames**2).mean(1)
    lags = np.arange(int(rate / 400), int(rate / 70))
    f0 = []
    for fr in frames[energy > np.median(energy)]:
        fr = fr - fr.mean()
        ac = [
            np.dot(fr[:-k], fr[k:]) / np.sqrt(np.dot(fr[:-k], fr[:-k]) * np.dot(fr[k:], fr[k:]) + 1e-12) for k in lags
        ]
        f0.append(rate / lags[int(np.argmax(ac))])
    return float(np.median(f0))


def test_angry_voice_higher_louder_than_calm():
    """Same caller (same seed): angry speech has a higher pitch and more energy than calm speech."""
    higher = louder = 0
    for seed in range(8):
        labels = {"intent": "billing", "escalate": "no"}
        calm = sample_of("customer_service", {**labels, "sentiment": "calm"}, seed)["voice"]
        angry = sample_of("customer_service", {**labels, "sentiment": "angry"}, seed)["voice"]
        higher += pitch_hz(angry, 8000) > pitch_hz(calm, 8000)
        louder += (angry**2).mean() > (calm**2).mean()
    assert higher >= 6 and louder >= 6  # the estimator makes an occasional octave error


def test_transcript_carries_intent_and_escalation_rule():
    gen = get_generator(spec_of("customer_service"), 0)
    hits = 0
    for i in range(30):
        rng = np.random.default_rng([0, i])
        labels = gen.sample_labels(rng)
        assert labels["escalate"] == escalate(labels["intent"], labels["sentiment"])
        text = cut_sample(gen, labels, rng)["transcript"]
        assert 0 < len(text.split()) <= 60
        own = {w for p in PHRASES[labels["intent"]] for w in p.split()} - {"my", "i", "the", "a", "to", "is"}
        hits += len(own & set(text.split())) >= 2
    assert hits >= 24
    assert escalate("billing", "angry") == "yes" and escalate("cancel", "frustrated") == "yes"
    assert escalate("billing", "frustrated") == "no" and escalate("complaint", "calm") == "no"


def test_video_camera_in_about_forty_percent_of_calls():
    gen = get_generator(spec_of("customer_service"), 0)
    video = [gen.episode(gen.sample_labels(r), r, 6.0)["video"] for r in (np.random.default_rng(i) for i in range(400))]
    assert 0.33 < np.mean(video) < 0.47


# ---------------------------------------------------------------------------------------------------------------------
# sessions


def test_session_labels_interiors_and_transitions():
    spec = spec_of("smart_home")
    d = episode_duration_s(spec)  # 5 s; the longest window is 4 s
    s = synth_session(spec, 3 * d, seed=2)
    assert [round(t0, 6) for t0, _, _ in s.timeline] == [0.0, d, 2 * d]
    for t0, _, labels in s.timeline:
        assert s.labels_at(t0 + 4.5) == labels  # window [t0 + 0.5, t0 + 4.5] inside the episode
    assert s.labels_at(d + 1.0) is None  # window reaches back into the first episode
    assert s.labels_at(2.0) is None  # not enough history yet
    assert s.labels_at(3 * d) == s.timeline[-1][2]  # the very end of the session
    t, frames = s.streams["camera"]
    assert frames.shape[0] == len(t) == 3 * int(d * 10) + 1 and np.all(np.diff(t) > 0)
    t, audio = s.streams["mic"]
    assert audio.shape == (3 * d * 16000, 1) and t[-1] == pytest.approx(3 * d - 1 / 16000)


def test_session_with_longer_episodes_and_partial_end():
    spec = spec_of("driving")
    s = synth_session(spec, 10.0, seed=1, episode_s=4.0)  # episodes [0, 4), [4, 8), [8, 10]
    assert [(t0, t1) for t0, t1, _ in s.timeline] == [(0.0, 4.0), (4.0, 8.0), (8.0, 10.0)]
    assert s.streams["mic"][1].shape == (10 * 16000, 1) and s.streams["imu"][1].shape == (1000, 6)
    assert s.streams["front_cam"][0][-1] == pytest.approx(10.0) and len(s.streams["front_cam"][0]) == 151
    assert s.labels_at(3.5) == s.timeline[0][2] and s.labels_at(5.0) is None and s.labels_at(7.0) == s.timeline[1][2]


def test_session_text_and_missing_camera():
    spec = spec_of("customer_service")
    s = synth_session(spec, 60.0, seed=0)
    t, utts = s.streams["transcript"]
    assert len(t) == len(utts) > 30 and np.all(np.diff(t) > 0)
    cam_t, frames = s.streams["camera"]
    episodes_with_video = {int(x // episode_duration_s(spec)) for x in cam_t}
    assert 0 < len(episodes_with_video) < len(s.timeline)  # the camera comes and goes with the calls
    assert frames.shape[1:] == (48, 48, 3)


# ---------------------------------------------------------------------------------------------------------------------
# registry, spec checks and the CLI


def test_registry_and_unknown_generator():
    assert set(SCENARIOS) <= set(GENERATORS)
    d = spec_to_dict(spec_of("smart_home"))
    d["synth"]["generator"] = "nope"
    with pytest.raises(SpecError, match="unknown generator 'nope'"):
        get_generator(parse_spec(d), 0)


def test_generator_refuses_spec_it_cannot_render():
    d = spec_to_dict(spec_of("smart_home"))
    d["modalities"]["env"]["channels"] = ["motion", "pressure"]
    d["labels"]["event"].append("earthquake")
    with pytest.raises(SpecError) as err:
        get_generator(parse_spec(d), 0)
    text = str(err.value)
    assert "modalities.env.channels" in text and "pressure" in text and "earthquake" in text


def test_cli_synth_writes_dataset(tmp_path: Path, capsys):
    cfg = CONFIGS / "smart_home.yaml"
    rc = cli_main(["synth", "--config", str(cfg), "--out", str(tmp_path / "d"), "--samples", "5", "--seed", "1"])
    assert rc == 0
    lines = (tmp_path / "d" / "labels.csv").read_text().splitlines()
    assert lines[0] == "sample,split,event" and len(lines) == 6
    assert "wrote 5 smart_home samples" in capsys.readouterr().out
