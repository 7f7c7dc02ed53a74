"""Driving: a front camera, an IMU, CAN-bus signals and a cabin microphone.

One lateral model drives every manoeuvre: a raised-cosine pulse of lateral acceleration (the steering input). In a
lane change the road stays straight and the car drifts across the lane line with a small heading angle; in a
turn the road curves and the car follows it. The IMU and the CAN bus feel the same pulse either way, so they tell
left from right but not a lane change from a turn; the camera sees the difference (a line crossing under the car
vs the road bending away). An emergency vehicle behind makes the driver slow down and move right: on the IMU, the
CAN bus and the camera it is a lane change to the right; only the microphone hears the siren. Hard braking shows
on the IMU and CAN (and a close lead car on the camera, which also appears in ordinary traffic).

Optional regression head `speed` (km/h): the car's speed at the tick, from the same dynamics the CAN speed channel,
the engine's pitch and the camera's road motion render.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from edgefuse.spec import ModalitySpec
from edgefuse.trainer.synth import signals as sg
from edgefuse.trainer.synth.base import Generator, register

MANEUVERS = (
    "lane_change_left",
    "lane_change_right",
    "hard_braking",
    "turn_left",
    "turn_right",
    "emergency_vehicle",
    "cruise",
)
IMU = ("accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z")
CAN = ("speed", "steering_angle", "brake", "throttle")
SIDE = {"lane_change_left": 1, "turn_left": 1, "lane_change_right": -1, "turn_right": -1, "emergency_vehicle": -1}
LANE_W = 3.6  # m
G = 9.81
WHEELBASE, STEER_RATIO = 2.8, 15.0


@register("driving")
class Driving(Generator):
    """Driving manoeuvres; see the module docstring and docs/dataset.md for the signal models."""

    modalities = {"front_cam": "image", "imu": "series", "can": "series", "mic": "audio"}
    channels = {"imu": IMU, "can": CAN}
    heads = {"maneuver": MANEUVERS}
    regression = {"speed": "km/h"}

    def targets(self, p: dict[str, Any], duration_s: float) -> dict[str, float]:
        return {"speed": float(self._dynamics(p, np.array([duration_s]))["v"][0] * 3.6)}  # m/s -> km/h

    def episode(self, labels: dict[str, str], rng: np.random.Generator, duration_s: float) -> dict[str, Any]:
        ev = labels["maneuver"]
        d = duration_s
        p: dict[str, Any] = {"event": ev, "side": SIDE.get(ev, 0)}
        p["curve"] = ev.startswith("turn")
        # m/s, 30-90 km/h; hard braking from 65 km/h up, so even the hardest stop lasts into every tick's window
        p["v0"] = rng.uniform(18, 27) if ev == "hard_braking" else rng.uniform(8, 25)
        # lateral pulse (t0, duration, peak m/s^2): its middle 60-80% spans [window_span - 1 s, end], so every tick
        # (t >= window_span) sees the manoeuvre under way in its frame and in most of its windows
        a = max(0.0, self.spec.window_span_s() - 1.0)
        h = (d - a) / rng.uniform(0.6, 0.8)
        p["hump"] = (a - rng.uniform(0.05, 0.15) * h, h, rng.uniform(1.0, 2.5))
        # longitudinal acceleration (m/s^2) from t_ax on; drivers often lift off or brake a little in manoeuvres
        p["kappa_ahead"] = rng.uniform(1 / 80, 1 / 25)
        p["t_ax"] = rng.uniform(-0.5, 0.8)
        if ev == "hard_braking":
            p["ax"] = rng.uniform(-8.0, -5.0)
        elif ev == "emergency_vehicle":
            p["ax"] = rng.uniform(-1.8, -0.4)
        elif ev == "cruise":
            p["ax"] = rng.uniform(-0.2, 0.2)
        else:
            p["ax"] = rng.uniform(-1.2, 0.4)
        p["y0"], p["wander"] = rng.normal(0, 0.25), rng.uniform(0.02, 0.1)  # lane-keeping offset (m), yaw wobble
        p["gear"] = rng.uniform(2.0, 3.2)  # engine firing frequency per m/s of speed
        # a lead car: always close in hard braking (it braked first), often present at any distance otherwise
        hb = ev == "hard_braking"
        p["lead"] = (
            rng.uniform(6, 18) if hb else (rng.uniform(12, 60) if rng.random() < 0.5 else None),
            rng.random() < (0.9 if hb else 0.25),  # brake lights
            tuple(float(c) for c in rng.uniform(20, 220, 3)),
        )
        sky = np.array([[235, 206, 135], [205, 205, 200], [130, 160, 225], [120, 90, 60]])[rng.integers(4)]
        p["look"] = {
            "sky": tuple(float(c) for c in np.clip(sky + rng.normal(0, 12, 3), 0, 255)),
            "grass": tuple(float(c) for c in rng.uniform([20, 60, 20], [90, 150, 90])),
            "road": float(rng.uniform(60, 120)),
            "horizon": rng.uniform(0.36, 0.44),
            "exposure": rng.uniform(0.45, 1.0),
            "dash_phase": rng.uniform(0, 12),
        }
        return p

    # -- vehicle dynamics (shared by every modality) ----------------------------------------------------------------
    def _dynamics(self, p: dict, t: np.ndarray) -> dict[str, np.ndarray]:
        """Lateral/longitudinal state at times t: a_lat, a_x, v, yaw rate, road curvature ahead, offset, heading."""
        t0, h, peak = p["hump"]
        a_lat = p["side"] * peak * sg.hump(t, t0, h)
        on = t >= p["t_ax"]
        a_x = np.where(on, p["ax"], 0.0) * np.clip((t - p["t_ax"]) / 0.3, 0, 1)  # 0.3 s to build up
        v = np.maximum(p["v0"] + np.where(on, p["ax"] * (t - p["t_ax"]), 0.0), 0.5)
        a_cmd = a_x  # what the driver asks for: the brake stays pressed once the car has stopped
        a_x = np.where(v <= 0.5, 0.0, a_x)
        yaw = a_lat / v + p["wander"] * 0.02 * np.sin(sg.TAU * 0.3 * t + p["y0"])
        if p["curve"]:  # the road bends with the car: no offset or heading relative to the lane
            kappa = p["side"] * np.maximum(np.abs(a_lat), 1e-9) / v**2
            y = np.full_like(t, p["y0"])
            psi = np.zeros_like(t)
        else:  # straight road: the car drifts across, heading = lateral speed / speed
            kappa = np.zeros_like(t)
            # clipped to the road: very long episodes (sessions) would otherwise drift off it
            y = np.clip(p["y0"] + p["side"] * peak * sg.hump_integral2(t, t0, h), -1.2 * LANE_W, 1.2 * LANE_W)
            psi = p["side"] * peak * sg.hump_integral(t, t0, h) / v
        # the camera sees the road ahead: in a turn it bends at the bend's own curvature (radius 25-80 m) even
        # while the car's path is still entering it or already leaving it
        view = p["side"] * np.maximum(np.abs(kappa), p["kappa_ahead"]) if p["curve"] else kappa
        return {"a_lat": a_lat, "a_x": a_x, "a_cmd": a_cmd, "v": v, "yaw": yaw, "kappa": view, "y": y, "psi": psi}

    # -- IMU --------------------------------------------------------------------------------------------------------
    def render_imu(self, p: dict, span: tuple[float, float], m: ModalitySpec, rng: np.random.Generator):
        t = sg.grid(m, *span)
        n, q = len(t), self.noise
        s = self._dynamics(p, t)
        dt = 1.0 / m.rate_hz
        rough = rng.uniform(0.5, 1.5)  # road roughness
        vib = lambda sd: sg.colored_noise(rng, n, 0.5) * sd * rough * q  # noqa: E731 - road and engine vibration
        cols = {
            "accel_x": s["a_x"] + vib(0.15),
            "accel_y": s["a_lat"] + vib(0.15),
            "accel_z": G + vib(0.3),
            # body roll follows lateral acceleration, pitch follows braking: their rates are derivatives
            "gyro_x": 0.012 * np.gradient(s["a_lat"], dt) + rng.normal(0, 0.004 * q, n) if n > 1 else np.zeros(n),
            "gyro_y": -0.008 * np.gradient(s["a_x"], dt) + rng.normal(0, 0.004 * q, n) if n > 1 else np.zeros(n),
            "gyro_z": s["yaw"] + rng.uniform(-0.003, 0.003) + rng.normal(0, 0.004 * q, n),
        }
        return np.stack([cols[c] for c in m.channels], axis=1).astype(np.float32)  # (T, C)

    # -- CAN bus ----------------------------------------------------------------------------------------------------
    def render_can(self, p: dict, span: tuple[float, float], m: ModalitySpec, rng: np.random.Generator):
        t = sg.grid(m, *span)
        n, q = len(t), self.noise
        s = self._dynamics(p, t)
        road_wheel = np.arctan(WHEELBASE * s["yaw"] / s["v"])  # bicycle model: curvature = yaw rate / speed
        steer = np.degrees(road_wheel) * STEER_RATIO + rng.uniform(-1, 1) + sg.smooth_walk(rng, n, 0.15 * q, 0.1)
        # pedals: brake beyond 0.5 m/s^2 of engine braking; throttle against drag and for acceleration
        brake = np.clip(-(s["a_cmd"] + 0.5) / 9.0 * 100, 0, 100)
        throttle = np.where(brake > 0, 0.0, np.clip(8 + 0.03 * s["v"] ** 2 + 18 * s["a_x"], 0, 100))
        cols = {
            "speed": np.round(s["v"] * 3.6 + rng.normal(0, 0.1 * q, n), 1),  # km/h
            "steering_angle": np.round(steer, 1),  # degrees at the steering wheel, left positive
            "brake": np.round(brake + np.abs(rng.normal(0, 0.3 * q, n)) * (brake > 0), 1),  # % pedal
            "throttle": np.round(throttle + rng.normal(0, 0.5 * q, n) * (throttle > 0), 1),  # % pedal
        }
        return np.stack([cols[c] for c in m.channels], axis=1).astype(np.float32)  # (T, C)

    # -- cabin microphone -------------------------------------------------------------------------------------------
    def render_mic(self, p: dict, span: tuple[float, float], m: ModalitySpec, rng: np.random.Generator):
        r = m.rate_hz
        k0, k1 = sg.grid_range(m, *span)
        n = k1 - k0
        t = np.arange(k0, k1) / r
        v = np.interp(t, t[::160], self._dynamics(p, t[::160])["v"])  # speed changes slowly: 100 Hz is plenty
        # tyre and wind noise (brown-ish, louder with speed) and the engine's firing frequency and its harmonics
        x = sg.colored_noise(rng, n, 1.5) * (0.01 + 0.0012 * v) * max(self.noise, 0.05)
        f_eng = p["gear"] * v
        phase = sg.TAU * np.cumsum(f_eng) / r + rng.uniform(0, sg.TAU)
        x += (rng.uniform(0.005, 0.03) * (np.sin(phase) + 0.4 * np.sin(2 * phase))).astype(np.float32)
        if rng.random() < 0.3:  # the radio: notes of a tune
            for onset in sg.onsets(rng, span[0] - 0.3, span[1], 0.25, 0.1):
                f = 220 * 2 ** (rng.integers(0, 24) / 12)
                note = sg.decaying_tone(r, 0.35, [f, 2 * f, 3 * f], [1, 0.5, 0.25], 0.15) * rng.uniform(0.01, 0.04)
                sg.overlay(x, k0, r, onset, note)
        if p["event"] == "emergency_vehicle":
            x += _siren(rng, t, r)
        return sg.pcm_clip(x)[:, None].repeat(m.n_channels, axis=1)  # (N, C)

    # -- front camera -----------------------------------------------------------------------------------------------
    def render_front_cam(self, p: dict, span: tuple[float, float], m: ModalitySpec, rng: np.random.Generator):
        times = sg.grid(m, *span)
        h, w = m.shape  # type: ignore[misc]
        frames = np.empty((len(times), h, w, 3), dtype=np.uint8)  # (F, H, W, 3) BGR
        if len(times) == 0:
            return frames
        s = self._dynamics(p, times)
        travelled = p["v0"] * times  # for the dashes' scroll; speed changes within an episode barely show
        for i in range(len(times)):
            img = _draw_road(p, {k: float(val[i]) for k, val in s.items()}, float(travelled[i]), h, w)
            frames[i] = sg.camera_finish(img, rng, p["look"]["exposure"], self.noise)
        return frames


def _siren(rng: np.random.Generator, t: np.ndarray, r: float) -> np.ndarray:
    """A siren sweeping 600-1500 Hz: a slow wail or a fast yelp, with harmonics; quiet when far away."""
    period = rng.uniform(3.0, 5.0) if rng.random() < 0.6 else rng.uniform(0.2, 0.4)
    lo, hi = rng.uniform(600, 750), rng.uniform(1300, 1500)
    sweep = 0.5 - 0.5 * np.cos(sg.TAU * t / period + rng.uniform(0, sg.TAU))
    f = lo + (hi - lo) * sweep
    phase = sg.TAU * np.cumsum(f) / r
    wave = np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.3 * np.sin(3 * phase)
    return (wave * rng.uniform(0.02, 0.2)).astype(np.float32)


def _draw_road(p: dict, s: dict[str, float], travelled: float, h: int, w: int) -> np.ndarray:
    """A pinhole view of a three-lane road: ground points (X left, Z ahead) -> image (u, v) normalized."""
    look = p["look"]
    H, W = 2 * h, 2 * w
    img = np.empty((H, W, 3), dtype=np.uint8)
    hz = look["horizon"]
    img[: int(hz * H)] = np.array(look["sky"], dtype=np.uint8)
    img[int(hz * H) :] = np.array(look["grass"], dtype=np.uint8)
    f, cam_h = 1.0, 1.5
    z = np.geomspace(1.2, 150, 40)

    def project(x_road: float, zz: np.ndarray) -> np.ndarray:
        x = x_road + s["kappa"] * zz**2 / 2 - s["y"] - s["psi"] * zz
        u = 0.5 - f * x / zz
        v = hz + f * cam_h / zz
        return np.stack([u * W, v * H], axis=1)

    sh = 8
    pts = lambda a: np.round(a * sh).astype(np.int32)  # noqa: E731 - fixed-point coordinates for cv2 shift
    edge = 1.5 * LANE_W + 0.6
    road = np.concatenate([project(edge, z), project(-edge, z)[::-1]])
    gray = look["road"]
    cv2.fillPoly(img, [pts(road)], (gray, gray, gray * 1.05), cv2.LINE_AA, 3)
    white = (235, 235, 235)
    for x_line in (-1.5 * LANE_W, 1.5 * LANE_W):  # solid road edges
        cv2.polylines(img, [pts(project(x_line, z))], False, white, 1, cv2.LINE_AA, 3)
    # dashed lane lines: 3 m dashes every 12 m, scrolling with the distance travelled; all dashes in one call
    z0 = np.arange(1.2 - (travelled + look["dash_phase"]) % 12.0, 150, 12.0)
    z0 = z0[z0 + 3.0 > 1.2]
    za = np.maximum(z0, 1.2)
    seg = (za[:, None] + (z0[:, None] + 3.0 - za[:, None]) * np.linspace(0, 1, 4)[None]).ravel()  # (D*4,)
    quads = []
    for x_line in (-0.5 * LANE_W, 0.5 * LANE_W):
        a = project(x_line + 0.08, seg).reshape(-1, 4, 2)
        b = project(x_line - 0.08, seg).reshape(-1, 4, 2)[:, ::-1]
        quads += list(pts(np.concatenate([a, b], axis=1)))  # (D, 8, 2) each
    cv2.fillPoly(img, quads, white, cv2.LINE_AA, 3)
    dist, braking, color = p["lead"]
    if dist is not None:
        _lead_car(img, project, dist, braking, color, H, W, f, hz, pts)
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)


def _lead_car(img, project, dist, braking, color, H, W, f, hz, pts) -> None:
    """The car ahead in the original lane: a box 1.8 m wide and 1.4 m tall; red lamps when it brakes."""
    (u, v_bottom) = project(0.0, np.array([dist]))[0]
    half = f * 0.9 / dist * W
    top = (hz + f * (1.5 - 1.4) / dist) * H  # camera 1.5 m up, car roof 1.4 m
    body = np.array([[u - half, top], [u + half, top], [u + half, v_bottom], [u - half, v_bottom]])
    cv2.fillPoly(img, [pts(body)], color, cv2.LINE_AA, 3)
    lamp = (40, 40, 255) if braking else (30, 30, 110)
    lh = max((v_bottom - top) * 0.18, 0.6)
    lw = half * 0.3
    for cx in (u - half + lw, u + half - lw):
        rect = np.array([[cx - lw, top + lh], [cx + lw, top + lh], [cx + lw, top + 2 * lh], [cx - lw, top + 2 * lh]])
        cv2.fillPoly(img, [pts(rect)], lamp, cv2.LINE_AA, 3)
