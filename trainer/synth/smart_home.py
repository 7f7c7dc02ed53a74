"""Smart home: a hallway camera, a microphone and environmental sensors (motion, door, climate, light, smoke).

Each stream alone leaves events confusable, and the three together tell them apart (docs/dataset.md):
  camera  a person walking in through an open door (person_entering) or lying on the floor (fall); every other
          event shows the same empty hallway with the front door shut.
  mic     doorbell chimes, glass shattering and the smoke alarm's beeps are distinct; a knock, a fall's thuds and
          an entering person's footsteps come from one thud model; a faint kitchen sizzle is hard to hear (cooking
          ~ idle).
  env     door contact + motion (person_entering), motion alone (fall), a steam plume's humidity and temperature
          rise (cooking), smoke (alarm); knock, doorbell, glass_break and idle all read as a quiet house.

Optional multilabel head `activities` (tv, kettle, washer): things going on at the same time as the event, each in
~30% of episodes, any combination: a TV in another room (speech-band noise with a syllable-rate envelope and music, a
major triad whose root changes at each scene cut, on the mic; its glow moving the light sensor at each scene cut by
30-80 lux, or 15-30 % of the room light when more), a kettle whistling (a steady 1.8-2.4 kHz tone with vibrato on
the mic), a washing machine spinning (a 100-160 Hz motor hum with its harmonic, swelling with the drum's turns, on
the mic). Without the head the TV is random background (30%, no music, no glow) and kettle and washer never appear.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from edgefuse.spec import ModalitySpec
from edgefuse.trainer.synth import signals as sg
from edgefuse.trainer.synth.base import Generator, register

EVENTS = ("person_entering", "door_knock", "doorbell", "glass_break", "fall", "cooking", "alarm", "idle")
ENV = ("motion", "door", "temperature", "humidity", "light", "smoke")
THUDS = ("person_entering", "door_knock", "fall")  # one shared thud model: these sound alike

# caption paraphrases (trainer/synth/captions.py combines one per slot and holds some combinations out of training)
EVENT_PHRASES = {
    "person_entering": (
        "someone comes in through the front door",
        "a person enters through the front door",
        "somebody walks in through the front door",
    ),
    "door_knock": (
        "someone knocks at the front door",
        "a person knocks on the front door",
        "somebody is knocking at the front door",
    ),
    "doorbell": ("someone rings the doorbell", "the doorbell rings", "a visitor rings the doorbell"),
    "glass_break": ("glass breaks", "a window shatters", "the sound of breaking glass is heard"),
    "fall": ("a person falls to the floor", "someone falls down in the hallway", "somebody has fallen on the floor"),
    "cooking": (
        "someone is cooking in the kitchen",
        "food is being cooked in the kitchen",
        "a meal is cooking in the kitchen",
    ),
    "alarm": ("the smoke alarm goes off", "the smoke alarm is beeping", "the fire alarm sounds"),
    "idle": ("nothing happens", "the house is quiet", "all is calm in the house"),
}
LIGHT_PHRASES = {
    "dark": ("in the dark", "with the lights low", "in a dim hallway"),
    "bright": ("in a bright hallway", "with the lights on", "in good light"),
}
TV_PHRASES = ("while the tv is on", "with the tv playing in another room")
DARK_LUX = 30.0


@register("smart_home")
class SmartHome(Generator):
    """Hallway events; see the module docstring and docs/dataset.md for the signal models."""

    modalities = {"camera": "image", "mic": "audio", "env": "series"}
    channels = {"env": ENV}
    heads = {"event": EVENTS}
    multilabel = {"activities": ("tv", "kettle", "washer")}

    def episode(self, labels: dict[str, str], rng: np.random.Generator, duration_s: float) -> dict[str, Any]:
        ev = labels["event"]
        d = duration_s
        p: dict[str, Any] = {"event": ev}
        # ambient light 5..400 lux (night lamp .. daylight): drives the light sensor and the camera's exposure
        p["lux"] = 10 ** rng.uniform(0.7, 2.6)
        p["scene"] = _scene(rng)
        p["t_open"] = rng.uniform(-0.5, 1.0)  # person_entering: the door starts to open
        p["t_fall"] = rng.uniform(-1.5, 0.8)  # fall: the person hits the floor
        p["walk_speed"] = rng.uniform(0.1, 0.2)  # hallway depths per second
        # 40% of visitors switch the hall light on shortly after entering
        p["t_switch"] = p["t_open"] + rng.uniform(0.3, 2.0) if rng.random() < 0.4 else math.inf
        p["lux_on"] = rng.uniform(150, 400)
        p["thuds"] = _thud_train(rng, -1.0, d + 0.5) if ev in THUDS else np.zeros(0)
        if ev == "fall":  # nothing before the fall itself; a louder first thud
            p["thuds"] = np.concatenate([[p["t_fall"]], p["thuds"][p["thuds"] > p["t_fall"] + 0.15]])
        if ev == "person_entering":  # footsteps once the door is open
            p["thuds"] = p["thuds"][p["thuds"] > p["t_open"] + 0.2]
        p["motion"] = _motion_intervals(ev, rng, p, d)
        p["env_base"] = (rng.uniform(18, 25), rng.uniform(30, 60), rng.uniform(0.0, 0.02))
        p["t_steam"] = rng.uniform(-3.0, 0.5)  # cooking: the steam plume reaches the sensor
        p["steam"] = (rng.uniform(0.04, 0.12), rng.uniform(0.5, 1.5))  # degC/s, %RH/s
        p["t_smoke"] = rng.uniform(-3.0, 0.5)  # alarm: smoke reaches the detector
        p["smoke"] = (rng.uniform(0.12, 0.3), rng.uniform(0.01, 0.05))  # level, rise per second
        acts = labels.get("activities")
        p["activities"] = None if acts is None else set(filter(None, acts.split("|")))
        if p["activities"] is not None:  # the TV's glow on the light sensor: swing (lux, share), scene cuts per s
            p["tv_glow"] = (rng.uniform(30, 80), rng.uniform(0.15, 0.3), rng.uniform(1.5, 3.0))
        return p

    def caption_slots(self, p: dict[str, Any], duration_s: float) -> list[list[str]]:
        """The event, the light at the tick (the light sensor and the camera's exposure: dark below 30 lux) and,
        when one plays, the TV heard from another room."""
        dark = _lux(p, duration_s) < DARK_LUX
        slots = [list(EVENT_PHRASES[p["event"]]), list(LIGHT_PHRASES["dark" if dark else "bright"])]
        if p.get("tv"):
            slots.append(list(TV_PHRASES))
        return slots

    # -- camera -----------------------------------------------------------------------------------------------------
    def render_camera(self, p: dict, span: tuple[float, float], m: ModalitySpec, rng: np.random.Generator):
        times = sg.grid(m, *span)
        h, w = m.shape  # type: ignore[misc]
        frames = np.empty((len(times), h, w, 3), dtype=np.uint8)  # (F, H, W, 3) BGR
        for i, t in enumerate(times):
            img = _draw_hallway(p, float(t), h, w)
            exposure = 0.35 + 0.65 * min(1.0, max(0.0, math.log10(_lux(p, float(t))) / 2.6))
            frames[i] = sg.camera_finish(img, rng, exposure, self.noise)
        return frames

    # -- microphone -------------------------------------------------------------------------------------------------
    def render_mic(self, p: dict, span: tuple[float, float], m: ModalitySpec, rng: np.random.Generator):
        r = m.rate_hz
        k0, k1 = sg.grid_range(m, *span)
        n = k1 - k0
        t = np.arange(k0, k1) / r
        ev = p["event"]
        # room: pink noise (ventilation, traffic outside) and mains hum at 50 or 60 Hz
        x = sg.colored_noise(rng, n, 1.0) * rng.uniform(0.004, 0.02) * max(self.noise, 0.05)
        x += sg.mains_hum(t, rng.choice([50.0, 60.0]), rng.uniform(0.001, 0.01), rng.uniform(0, sg.TAU))
        acts = p.get("activities")
        tv = rng.random() < 0.3 if acts is None else "tv" in acts
        p["tv"] = bool(tv)  # kept for the caption
        if tv:  # a TV in another room: speech-band noise with a syllable-rate envelope
            env = 0.5 + 0.5 * np.sin(sg.TAU * rng.uniform(3, 5) * t + rng.uniform(0, sg.TAU))
            amp = rng.uniform(0.003, 0.012) if acts is None else rng.uniform(0.015, 0.04)  # a labelled TV is audible
            x += sg.band_noise(rng, n, r, 300, 3000) * env * amp
            if acts is not None:  # a labelled TV also plays music: a major triad whose root changes at scene cuts
                _, _, rate = p["tv_glow"]
                root = 350 * 2 ** ((np.floor(t * rate) * 7 % 12) / 12)  # (N,) Hz, one root per scene
                chord = sum(np.sin(sg.TAU * np.cumsum(root * k) / r) for k in (1.0, 1.26, 1.5))
                x += (chord * rng.uniform(0.015, 0.03)).astype(np.float32)
        if acts is not None and "kettle" in acts:  # a whistling kettle: a steady tone with a little vibrato
            f = rng.uniform(1800, min(2400, 0.45 * r))
            phase = sg.TAU * f * t + 8 * np.sin(sg.TAU * rng.uniform(4, 7) * t)
            x += (np.sin(phase) * rng.uniform(0.03, 0.08)).astype(np.float32)
        if acts is not None and "washer" in acts:  # a spinning washer: motor hum + harmonic, swelling per drum turn
            f, turn = rng.uniform(100, 160), rng.uniform(0.8, 1.5)
            swell = 0.7 + 0.3 * np.sin(sg.TAU * turn * t + rng.uniform(0, sg.TAU))
            hum = np.sin(sg.TAU * f * t) + 0.6 * np.sin(sg.TAU * 2 * f * t + 1.0)
            x += (hum * swell * rng.uniform(0.06, 0.12)).astype(np.float32)
        for onset in p["thuds"][(p["thuds"] > span[0] - 0.25) & (p["thuds"] < span[1])]:
            sg.overlay(x, k0, r, onset, _thud(rng, r, loud=ev == "fall" and onset == p["t_fall"]))
        if ev == "doorbell":
            _doorbell(x, k0, r, rng, span)
        elif ev == "glass_break":
            _glass(x, k0, r, rng, span)
        elif ev == "alarm":
            f = rng.uniform(2900, 3500)  # piezo smoke-alarm tone
            on, off = rng.uniform(0.1, 0.25), rng.uniform(0.1, 0.25)
            gate = ((t - rng.uniform(0, 1)) % (on + off)) < on
            square = np.where((t * f) % 1.0 < 0.5, 1.0, -1.0)
            x += (square * gate * rng.uniform(0.1, 0.4)).astype(np.float32)
        elif ev == "cooking":  # a pan sizzling in the kitchen: faint hiss plus crackles, often below the room noise
            x += sg.band_noise(rng, n, r, 2000, 7000) * rng.uniform(0.0, 0.006)
            for onset in sg.onsets(rng, span[0], span[1], 0.04, 0.005):
                sg.overlay(x, k0, r, onset, rng.standard_normal(40).astype(np.float32) * rng.uniform(0, 0.02))
        gain = rng.uniform(0.7, 1.3)  # microphone sensitivity / placement
        return sg.pcm_clip(x * gain)[:, None].repeat(m.n_channels, axis=1)  # (N, C)

    # -- environmental sensors --------------------------------------------------------------------------------------
    def render_env(self, p: dict, span: tuple[float, float], m: ModalitySpec, rng: np.random.Generator):
        t = sg.grid(m, *span)
        n = len(t)
        ev, q = p["event"], self.noise
        temp0, hum0, smoke0 = p["env_base"]
        motion = np.zeros(n, dtype=np.float32)
        for a, b in p["motion"]:
            motion[(t >= a) & (t < b)] = 1.0
        door = ((t >= p["t_open"]) if ev == "person_entering" else np.zeros(n, bool)).astype(np.float32)
        temp = temp0 + sg.smooth_walk(rng, n, 0.004 * q) + rng.normal(0, 0.02 * q, n)
        hum = hum0 + sg.smooth_walk(rng, n, 0.05 * q) + rng.normal(0, 0.15 * q, n)
        smoke = smoke0 + np.abs(rng.normal(0, 0.003 * q, n))
        if ev == "cooking":  # a steam plume: temperature and humidity climb, with turbulence
            dt = np.maximum(t - p["t_steam"], 0)
            temp += p["steam"][0] * dt * (1 + 0.2 * rng.standard_normal(n))
            hum += p["steam"][1] * dt * (1 + 0.2 * rng.standard_normal(n))
        elif ev == "alarm":  # smoke over the detector's threshold, rising; a little heat
            dt = np.maximum(t - p["t_smoke"], 0)
            smoke += (dt > 0) * (p["smoke"][0] + p["smoke"][1] * dt) * (1 + 0.1 * rng.standard_normal(n))
            temp += 0.03 * dt
        elif ev == "person_entering":  # outside air through the open door
            temp -= 0.02 * np.maximum(t - p["t_open"], 0)
        light = np.array([_lux(p, float(ti)) for ti in t]) * (1 + 0.01 * q * rng.standard_normal(n))
        if p.get("activities") and "tv" in p["activities"]:  # the TV's glow: its brightness jumps at each scene cut
            swing, share, rate = p["tv_glow"]
            cuts = np.floor(t * rate)  # the scene index at each row; a fixed pseudo-random brightness per scene
            # at least `share` of the room's light: well above the sensor's 1 % noise in a bright room too
            light = light + max(swing, share * p["lux"]) * np.sin(cuts * 12.9898 + swing * 78.233) ** 2
        cols = {
            "motion": motion,
            "door": door,
            "temperature": np.round(temp, 2),
            "humidity": np.round(np.clip(hum, 0, 100), 1),
            "light": np.round(np.maximum(light, 0), 0),
            "smoke": np.round(np.clip(smoke, 0, 1), 3),
        }
        return np.stack([cols[c] for c in m.channels], axis=1).astype(np.float32)  # (T, C)


# ---------------------------------------------------------------------------------------------------------------------
# event timing


def _thud_train(rng: np.random.Generator, t0: float, t1: float) -> np.ndarray:
    """Knocks, footsteps and a fallen person's struggling share this: bursts of 1-3 thuds, gaps under 0.7 s."""
    out, t = [], t0 + rng.uniform(0, 0.5)
    while t < t1:
        for _ in range(rng.integers(1, 4)):
            out.append(t)
            t += rng.uniform(0.12, 0.3)
        t += rng.uniform(0.2, 0.6)
    return np.array(out)


def _motion_intervals(ev: str, rng: np.random.Generator, p: dict, d: float) -> list[tuple[float, float]]:
    """PIR output: on while someone moves (retriggered), off otherwise; rare false triggers (pets, sun)."""
    if ev == "person_entering":
        return [(p["t_open"] + rng.uniform(0.2, 0.6), d + 1)]
    if ev == "fall":  # the fall itself, then the person moving on the floor every 0.5-1.8 s
        out = [(p["t_fall"] - 0.3, p["t_fall"] + rng.uniform(1.0, 2.0))]
        t = out[0][1]
        while t < d:
            t += rng.uniform(0.5, 1.8)
            out.append((t, t + rng.uniform(0.3, 1.0)))
        return out
    if rng.random() < 0.08:
        a = rng.uniform(0, d)
        return [(a, a + rng.uniform(0.3, 0.8))]
    return []


def _lux(p: dict, t: float) -> float:
    return p["lux_on"] if p["event"] == "person_entering" and t >= p["t_switch"] else p["lux"]


# ---------------------------------------------------------------------------------------------------------------------
# sounds


def _thud(rng: np.random.Generator, r: float, loud: bool = False) -> np.ndarray:
    """A knuckle on a door, a foot on a floor or a body on the ground: a low damped resonance plus a short click."""
    f = rng.uniform(60, 200)
    x = sg.decaying_tone(r, 0.2, [f, 2.3 * f], [1.0, 0.3], rng.uniform(0.02, 0.06))
    n = round(0.01 * r)
    # the contact click: noise smoothed over ~0.4 ms, so it stays mostly below 2-3 kHz like wood or a floor
    click = np.convolve(rng.standard_normal(n), np.ones(max(1, round(r / 2500))) / 2, mode="same")
    x[:n] += (click * np.exp(-np.arange(n) / (0.002 * r)) * 0.4).astype(np.float32)
    return x * rng.uniform(0.08, 0.35) * (2.0 if loud else 1.0)


def _doorbell(x: np.ndarray, k0: int, r: float, rng: np.random.Generator, span: tuple[float, float]) -> None:
    """Ding-dong: two struck bars a major third apart, pressed again every 0.9-1.3 s."""
    f1 = rng.uniform(550, 900)
    period, amp = rng.uniform(0.9, 1.3), rng.uniform(0.06, 0.3)
    tau = rng.uniform(0.3, 0.6)
    ding = sg.decaying_tone(r, 1.2, [f1, 2 * f1, 3 * f1], [1.0, 0.4, 0.15], tau) * amp
    dong = sg.decaying_tone(r, 1.2, [0.8 * f1, 1.6 * f1, 2.4 * f1], [1.0, 0.4, 0.15], tau) * amp
    gap = rng.uniform(0.35, 0.45)
    t = -rng.uniform(0, period) - 1.0
    while t < span[1]:
        if t + 1.2 + gap > span[0]:
            sg.overlay(x, k0, r, t, ding)
            sg.overlay(x, k0, r, t + gap, dong)
        t += period


def _glass(x: np.ndarray, k0: int, r: float, rng: np.random.Generator, span: tuple[float, float]) -> None:
    """A pane shatters (a broadband crash), then shards keep falling and tinkling (short high partials)."""
    t_break = rng.uniform(-1.0, 1.5)
    crash = rng.standard_normal(round(0.4 * r)).astype(np.float32)
    crash *= np.exp(-np.arange(crash.size) / (0.08 * r)).astype(np.float32) * rng.uniform(0.2, 0.5)
    sg.overlay(x, k0, r, t_break, crash)
    for onset in sg.onsets(rng, max(span[0] - 0.1, t_break), span[1], rng.uniform(0.06, 0.15), 0.01):
        f = rng.uniform(2500, min(7000, 0.45 * r))
        amp = rng.uniform(0.04, 0.2) * math.exp(-(onset - t_break) / 10.0)
        sg.overlay(
            x, k0, r, onset, sg.decaying_tone(r, 0.08, [f, 1.53 * f], [1.0, 0.5], rng.uniform(0.005, 0.02)) * amp
        )


# ---------------------------------------------------------------------------------------------------------------------
# the hallway picture (drawn at 2x on a canvas, then area-downsampled like a camera's binning)


def _scene(rng: np.random.Generator) -> dict[str, Any]:
    def color(lo: float, hi: float) -> tuple[float, float, float]:
        return tuple(float(c) for c in rng.uniform(lo, hi, 3))

    return {
        "wall": color(150, 230),
        "floor": tuple(float(c) for c in np.array([40, 70, 110]) * rng.uniform(0.7, 1.5)),
        "ceiling": color(200, 245),
        "door": color(40, 160),
        "outside": color(30, 90) if rng.random() < 0.5 else color(170, 240),
        "shift": (rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03)),
        "rug": color(30, 200) if rng.random() < 0.6 else None,
        "picture": color(20, 220) if rng.random() < 0.5 else None,
        "coat": color(20, 120) if rng.random() < 0.3 else None,
        "shirt": color(20, 230),
        "pants": color(20, 120),
        "skin": tuple(float(c) for c in np.array([110, 150, 200]) * rng.uniform(0.45, 1.1)),
        "height": rng.uniform(0.85, 1.1),
        "person_x": rng.uniform(0.35, 0.65),
        "fall_xy": (rng.uniform(0.3, 0.7), rng.uniform(0.74, 0.88)),
        "fall_angle": rng.uniform(-20, 20) + (180 if rng.random() < 0.5 else 0),
    }


class _Canvas:
    """Normalized (u, v) in [0, 1] drawing on a 2x canvas with sub-pixel, anti-aliased OpenCV primitives."""

    SHIFT = 3

    def __init__(self, h: int, w: int, shift: tuple[float, float]):
        self.h, self.w, self.du, self.dv = 2 * h, 2 * w, shift[0], shift[1]
        self.img = np.zeros((self.h, self.w, 3), dtype=np.uint8)

    def pt(self, u: float, v: float) -> tuple[int, int]:
        s = 1 << self.SHIFT
        return round((u + self.du) * self.w * s), round((v + self.dv) * self.h * s)

    def poly(self, pts: list[tuple[float, float]], color) -> None:
        arr = np.array([self.pt(u, v) for u, v in pts], dtype=np.int32)
        cv2.fillPoly(self.img, [arr], color, cv2.LINE_AA, self.SHIFT)

    def line(self, a: tuple[float, float], b: tuple[float, float], color, width: float) -> None:
        cv2.line(self.img, self.pt(*a), self.pt(*b), color, max(1, round(width * self.w)), cv2.LINE_AA, self.SHIFT)

    def ellipse(self, c: tuple[float, float], axes: tuple[float, float], angle: float, color) -> None:
        s = 1 << self.SHIFT
        ax = (max(1, round(axes[0] * self.w * s)), max(1, round(axes[1] * self.h * s)))
        cv2.ellipse(self.img, self.pt(*c), ax, angle, 0, 360, color, -1, cv2.LINE_AA, self.SHIFT)

    def out(self, h: int, w: int) -> np.ndarray:
        return cv2.resize(self.img, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)


def _draw_hallway(p: dict, t: float, h: int, w: int) -> np.ndarray:
    """The hallway seen from its far end: walls in perspective, the front door on the back wall."""
    s = p["scene"]
    c = _Canvas(h, w, s["shift"])
    lo, hi = -0.1, 1.1  # walls extend past the frame so the camera shift never shows an empty edge
    c.poly([(lo, lo), (hi, lo), (0.7, 0.22), (0.3, 0.22)], s["ceiling"])
    c.poly([(lo, hi), (hi, hi), (0.7, 0.62), (0.3, 0.62)], s["floor"])
    shade = tuple(0.8 * v for v in s["wall"])
    c.poly([(lo, lo), (0.3, 0.22), (0.3, 0.62), (lo, hi)], shade)
    c.poly([(hi, lo), (0.7, 0.22), (0.7, 0.62), (hi, hi)], shade)
    c.poly([(0.3, 0.22), (0.7, 0.22), (0.7, 0.62), (0.3, 0.62)], s["wall"])
    if s["rug"] is not None:
        c.ellipse((0.5, 0.8), (0.22, 0.07), 0, s["rug"])
    if s["picture"] is not None:
        c.poly([(0.86, 0.3), (0.95, 0.25), (0.95, 0.45), (0.86, 0.47)], s["picture"])
    if s["coat"] is not None:  # a coat on a hook: a dark upright shape, a little like a person
        c.ellipse((0.12, 0.5), (0.04, 0.14), 5, s["coat"])
    _door(c, p, t)
    ev = p["event"]
    if ev == "person_entering" and t >= p["t_open"] + 0.3:
        z = min(0.7, max(0.0, (t - p["t_open"] - 0.6) * p["walk_speed"]))
        u = 0.5 + (s["person_x"] - 0.5) * z / 0.7
        _standing_person(c, s, u, 0.62 + 0.33 * z, 1.0 + 1.4 * z, t)
    elif ev == "fall" and t >= p["t_fall"]:
        _lying_person(c, s, t)
    return c.out(h, w)


def _door(c: _Canvas, p: dict, t: float) -> None:
    s = p["scene"]
    x0, x1, y0, y1 = 0.42, 0.58, 0.32, 0.62
    opening = p["event"] == "person_entering" and t > p["t_open"]
    if not opening:
        c.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], s["door"])
        c.ellipse((x1 - 0.025, 0.48), (0.008, 0.008), 0, (40, 180, 200))
        return
    c.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], s["outside"])
    theta = min(1.0, (t - p["t_open"]) / 0.8) * math.radians(80)  # swings inward over 0.8 s
    ex = x0 - 0.16 * math.sin(theta) * 0.6  # free edge comes toward the camera, to the left of the hinge
    grow = 0.06 * math.sin(theta)
    c.poly([(x0, y0), (ex, y0 - grow), (ex, y1 + grow), (x0, y1)], s["door"])


def _standing_person(c: _Canvas, s: dict, u: float, v_feet: float, scale: float, t: float) -> None:
    """A walking person, feet at (u, v_feet); `scale` grows as they come toward the camera."""
    hgt = 0.27 * s["height"] * scale
    swing = 0.02 * scale * math.sin(sg.TAU * 1.8 * t)
    hip = (u, v_feet - 0.45 * hgt)
    c.line(hip, (u - 0.02 * scale + swing, v_feet), s["pants"], 0.022 * scale)
    c.line(hip, (u + 0.02 * scale - swing, v_feet), s["pants"], 0.022 * scale)
    c.ellipse((u, v_feet - 0.66 * hgt), (0.035 * scale, 0.2 * hgt), 0, s["shirt"])
    c.line(
        (u - 0.03 * scale, v_feet - 0.8 * hgt),
        (u - 0.04 * scale - swing, v_feet - 0.5 * hgt),
        s["shirt"],
        0.015 * scale,
    )
    c.line(
        (u + 0.03 * scale, v_feet - 0.8 * hgt),
        (u + 0.04 * scale + swing, v_feet - 0.5 * hgt),
        s["shirt"],
        0.015 * scale,
    )
    c.ellipse((u, v_feet - 0.92 * hgt), (0.022 * scale, 0.08 * hgt), 0, s["skin"])


def _lying_person(c: _Canvas, s: dict, t: float) -> None:
    """A person on the floor, roughly horizontal, stirring a little."""
    u, v = s["fall_xy"]
    ang = s["fall_angle"] + 4 * math.sin(sg.TAU * 0.7 * t)
    a = math.radians(ang)
    length = 0.2 * s["height"]
    dx, dy = math.cos(a) * length, math.sin(a) * length * 0.5
    c.line((u - dx, v - dy), (u - 1.9 * dx, v - 1.9 * dy), s["pants"], 0.035)
    c.ellipse((u, v), (length, 0.045), math.degrees(math.atan2(dy, dx)), s["shirt"])
    c.ellipse((u + 1.15 * dx, v + 1.15 * dy), (0.03, 0.035), 0, s["skin"])
