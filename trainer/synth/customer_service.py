"""Customer service: the caller's voice (8 kHz telephony), the live transcript, and the camera of a video call.

transcript  carries the intent: templated requests with synonyms, filler and speech-recognizer slips; only
            now and then a sentiment word.
voice       carries the sentiment through prosody: a glottal pulse train through vowel formant filters with
            syllable envelopes; calm is lower, flatter, slower and softer, angry higher, more variable, faster,
            louder and brighter. The speaker's own pitch (90-220 Hz) and the line's gain vary far more than the
            sentiment moves them, so the voice is informative, never decisive.
camera      (about 40% of calls) a face whose mouth curve and brows carry the sentiment.
escalate    a rule of both: "yes" if angry, or frustrated and the intent is cancel or complaint.
escalation_risk  (optional regression head, 0-1) the graded version: 0.7 x the voice's arousal (the call's pitch
            factor, speaking rate and loudness, each placed in its range over all sentiments) + 0.3 if the intent
            is cancel or complaint.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgefuse.spec import ModalitySpec
from edgefuse.trainer.synth import signals as sg
from edgefuse.trainer.synth.base import Generator, register
from edgefuse.trainer.synth.smart_home import _Canvas

INTENTS = ("billing", "cancel", "technical_problem", "complaint", "account_change", "general_inquiry")
SENTIMENTS = ("calm", "frustrated", "angry")
VIDEO_P = 0.4  # share of calls with a camera

# (F1, F2, F3) Hz of five vowels (adult averages); the speaker's vocal tract scales them
VOWELS = np.array([[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240]])
# prosody per sentiment: pitch factor, pitch spread (semitones), syllables per second, loudness, spectral tilt
PROSODY = {
    "calm": ((0.95, 1.08), (0.8, 2.0), (3.2, 4.3), (0.35, 0.6), (1.3, 1.6)),
    "frustrated": ((1.05, 1.22), (1.6, 3.2), (3.9, 5.0), (0.5, 0.8), (1.0, 1.35)),
    "angry": ((1.18, 1.45), (2.8, 5.0), (4.7, 6.2), (0.7, 1.05), (0.7, 1.1)),
}

PHRASES = {
    "billing": [
        "i was charged twice this month",
        "there is a wrong charge on my bill",
        "my invoice is way higher than usual",
        "why did my payment go up",
        "i need a refund for this charge",
        "the bill shows a fee i don't recognize",
    ],
    "cancel": [
        "i want to cancel my subscription",
        "please close my account for good",
        "i'd like to end my contract",
        "stop the service at the end of the month",
        "how do i terminate my plan",
        "i'm leaving so cancel everything",
    ],
    "technical_problem": [
        "the internet keeps dropping out",
        "my router won't connect anymore",
        "the app crashes when i log in",
        "there has been no signal since yesterday",
        "the connection is really slow",
        "my device shows an error code",
    ],
    "complaint": [
        "your agent was rude to me",
        "nobody ever called me back",
        "i've been on hold for an hour",
        "the technician never showed up",
        "this is the third time i'm calling about this",
        "i want to file a formal complaint",
    ],
    "account_change": [
        "i need to update my address",
        "please change the email on my account",
        "can you add a user to my plan",
        "switch me to a different plan",
        "i want to update my payment method",
        "change the phone number on file",
    ],
    "general_inquiry": [
        "what are your opening hours",
        "is there a store near me",
        "how does the family plan work",
        "do you have a student discount",
        "what's included in the basic package",
        "can you tell me about your offers",
    ],
}
# sometimes a caller never says more than this: the intent is then genuinely unclear
VAGUE = ["i have a question about my account", "it's about my plan", "i'm calling about my service"]
FILLER = [
    "hi yes hello",
    "um so",
    "okay",
    "yeah",
    "my name is alex",
    "i've been a customer for years",
    "let me see",
    "right so basically",
    "can you hear me",
    "the account is under my name",
    "like i said",
    "hold on",
]
MOOD_WORDS = {
    "calm": ["thanks for your help", "no rush", "i appreciate it", "that's fine"],
    "frustrated": ["i'm getting frustrated", "this is annoying", "honestly it's been a hassle", "i'm a bit fed up"],
    "angry": ["this is ridiculous", "i'm furious", "absolutely unacceptable", "are you kidding me"],
}
ASR_SLIPS = ["the", "a", "and", "uh", "to", "it", "in", "on"]


def escalate(intent: str, sentiment: str) -> str:
    """The escalation rule: an angry caller, or a frustrated one who wants to cancel or complain."""
    return "yes" if sentiment == "angry" or (sentiment == "frustrated" and intent in ("cancel", "complaint")) else "no"


@register("customer_service")
class CustomerService(Generator):
    """Support calls; see the module docstring and docs/dataset.md for the signal models."""

    modalities = {"voice": "audio", "transcript": "text", "camera": "image"}
    heads = {"intent": INTENTS, "sentiment": SENTIMENTS, "escalate": ("no", "yes")}
    regression = {"escalation_risk": ""}

    def sample_labels(self, rng: np.random.Generator) -> dict[str, str]:
        """Intent and sentiment uniform over the spec's classes; escalate follows from them (escalate())."""
        intents, moods = self.spec.labels["intent"], self.spec.labels["sentiment"]
        intent, mood = str(intents[rng.integers(len(intents))]), str(moods[rng.integers(len(moods))])
        return {"intent": intent, "sentiment": mood, "escalate": escalate(intent, mood)}

    def episode(self, labels: dict[str, str], rng: np.random.Generator, duration_s: float) -> dict[str, Any]:
        mood = labels["sentiment"]
        pf, spread, rate, loud, tilt = (rng.uniform(*r) for r in PROSODY[mood])
        p: dict[str, Any] = {"mood": mood, "intent": labels["intent"]}
        p["f0"] = math.exp(rng.uniform(math.log(90), math.log(220))) * pf  # speaker pitch x sentiment
        p["tract"] = rng.uniform(0.88, 1.15)  # vocal-tract length: scales the formants
        p["loud"], p["tilt"], p["line_gain"] = loud, tilt, rng.uniform(0.5, 1.5)
        p["syllables"] = _syllables(rng, -1.0, duration_s, rate, spread)
        p["utterances"] = _script(rng, labels["intent"], mood, duration_s)
        p["video"] = rng.random() < VIDEO_P
        p["face"] = _face(rng, mood)
        # how aroused the voice sounds, each prosody draw placed in its range over all sentiments (0 calm .. 1)
        p["arousal"] = float(np.mean([(pf - 0.95) / 0.5, (rate - 3.2) / 3.0, (loud - 0.35) / 0.7]))
        return p

    def targets(self, p: dict[str, Any], duration_s: float) -> dict[str, float]:
        risk = 0.7 * p["arousal"] + 0.3 * (p["intent"] in ("cancel", "complaint"))
        return {"escalation_risk": float(np.clip(risk, 0.0, 1.0))}

    # -- voice ------------------------------------------------------------------------------------------------------
    def render_voice(self, p: dict, span: tuple[float, float], m: ModalitySpec, rng: np.random.Generator):
        r = m.rate_hz
        k0, k1 = sg.grid_range(m, *span)
        x = np.zeros(k1 - k0, dtype=np.float32)
        for onset, dur, vowel, semis, slope in p["syllables"]:
            if onset + dur < span[0] or onset > span[1]:
                continue
            sg.overlay(x, k0, r, onset, _syllable(rng, r, dur, p, VOWELS[vowel], semis, slope))
        x = sg.spectral_filter(x, r, sg.band_gain(300, 3400, 3))  # the telephone channel
        x = x * p["line_gain"] + rng.standard_normal(x.size).astype(np.float32) * rng.uniform(0.002, 0.008) * self.noise
        return sg.pcm_clip(x)[:, None].repeat(m.n_channels, axis=1)  # (N, C)

    # -- transcript -------------------------------------------------------------------------------------------------
    def render_transcript(self, p: dict, span: tuple[float, float], m: ModalitySpec, rng: np.random.Generator):
        del m, rng  # the script is drawn with the episode: the words do not depend on the rendered span
        t0, t1 = span
        return [(t, u) for t, u in p["utterances"] if t0 < t <= t1]  # utterance times are > 0

    # -- camera (video calls only) ----------------------------------------------------------------------------------
    def render_camera(self, p: dict, span: tuple[float, float], m: ModalitySpec, rng: np.random.Generator):
        if not p["video"]:
            return None
        times = sg.grid(m, *span)
        h, w = m.shape  # type: ignore[misc]
        frames = np.empty((len(times), h, w, 3), dtype=np.uint8)  # (F, H, W, 3) BGR
        for i, t in enumerate(times):
            talking = _talking(p["syllables"], float(t))
            frames[i] = sg.camera_finish(
                _draw_face(p["face"], float(t), talking, h, w), rng, p["face"]["exposure"], self.noise
            )
        return frames


# ---------------------------------------------------------------------------------------------------------------------
# speech


def _syllables(rng: np.random.Generator, t0: float, t1: float, rate: float, spread: float) -> list[tuple]:
    """(onset, duration, vowel, pitch offset in semitones, pitch slope) per syllable; phrases of 4-10 syllables
    separated by short pauses, each phrase declining in pitch."""
    out, t = [], t0 + rng.uniform(0, 0.3)
    while t < t1:
        n = rng.integers(4, 11)
        for i in range(n):
            dur = rng.uniform(0.7, 1.3) / rate
            semis = rng.normal(0, spread) - 2.0 * i / n  # declination over the phrase
            out.append((t, dur, int(rng.integers(5)), semis, rng.normal(0, spread / 2)))
            t += dur
        t += rng.uniform(0.12, 0.45)
    return out


def _syllable(rng, r: float, dur: float, p: dict, formants: np.ndarray, semis: float, slope: float) -> np.ndarray:
    """One voiced syllable: a glottal pulse train at the syllable's pitch contour through the vowel's formants,
    with a fricative-like burst at its onset and a smooth loudness envelope."""
    n = max(16, round(dur * r))
    u = np.arange(n) / n
    f0 = p["f0"] * 2 ** ((semis + slope * (u - 0.5)) / 12) * (1 + 0.01 * rng.standard_normal())
    phase = np.cumsum(f0) / r
    src = np.diff(np.floor(phase), prepend=0.0)  # one impulse per glottal cycle
    freqs = np.fft.rfftfreq(n, 1 / r)
    env = np.zeros_like(freqs)
    for fk, bw, g in zip(formants * p["tract"], (90, 110, 160), (1.0, 0.6, 0.3), strict=True):
        env += g / (1 + ((freqs - fk) / (bw / 2)) ** 2)
    env *= (np.maximum(freqs, 100) / 500) ** (-p["tilt"])  # glottal roll-off: steeper when calm, flatter when angry
    voiced = np.fft.irfft(np.fft.rfft(src) * env, n)
    burst_n = min(n, round(0.03 * r))
    burst = np.zeros(n)
    burst[:burst_n] = np.diff(rng.standard_normal(burst_n + 1)) * np.exp(-np.arange(burst_n) / (0.008 * r)) * 0.15
    shape = np.sin(np.pi * np.clip(u * 1.15, 0, 1)) ** 0.6  # rise and fall of loudness within the syllable
    x = (voiced / (np.abs(voiced).max() + 1e-9) + burst) * shape * p["loud"] * 0.5
    return x.astype(np.float32)


def _talking(syllables: list[tuple], t: float) -> float:
    """How open the mouth is at t: 1 inside a syllable's nucleus, 0 in pauses."""
    for onset, dur, *_ in syllables:
        if onset <= t < onset + dur:
            return math.sin(math.pi * (t - onset) / dur)
    return 0.0


def _script(rng: np.random.Generator, intent: str, mood: str, d: float) -> list[tuple[float, str]]:
    """The recognizer's utterances (t_s when finalized, text), about one a second; the caller states (and
    restates) the request at least every third utterance, so every 5 s window carries it."""
    vague = rng.random() < 0.05
    moody = rng.random() < 0.3  # only some callers put their mood into words
    chunks: list[str] = []
    since_intent = 2
    while len(chunks) < 3 * d + 6:
        roll = rng.random()
        if since_intent >= 2 or roll < 0.35:
            pool = VAGUE if vague else PHRASES[intent]
            chunks += _split(rng, pool[rng.integers(len(pool))])
            since_intent = 0
        elif moody and roll < 0.6:
            chunks += _split(rng, MOOD_WORDS[mood][rng.integers(4)])
            since_intent += 1
        else:
            chunks.append(FILLER[rng.integers(len(FILLER))])
            since_intent += 1
    out, t = [], rng.uniform(-2.0, 0.0)
    for c in chunks:
        t += rng.uniform(0.7, 1.4)
        if t > d:
            break
        if t > 0:
            out.append((round(t, 3), _asr(rng, c)))
    return out


def _split(rng: np.random.Generator, phrase: str) -> list[str]:
    """A sentence as the recognizer finalizes it: in pieces of 2-5 words."""
    words, out = phrase.split(), []
    while words:
        k = int(rng.integers(2, 6))
        out.append(" ".join(words[:k]))
        words = words[k:]
    return out


def _asr(rng: np.random.Generator, text: str) -> str:
    """Recognizer slips: 4% of words dropped, 4% replaced by a short common word."""
    out = []
    for word in text.split():
        roll = rng.random()
        if roll < 0.04:
            continue
        out.append(ASR_SLIPS[rng.integers(len(ASR_SLIPS))] if roll < 0.08 else word)
    return " ".join(out) or text


# ---------------------------------------------------------------------------------------------------------------------
# face


def _face(rng: np.random.Generator, mood: str) -> dict[str, Any]:
    """Appearance (skin, hair, room) and expression: mouth curve (+ smile) and brow lowering (+ frown)."""
    mouth = {"calm": 0.6, "frustrated": -0.1, "angry": -0.6}[mood] + rng.normal(0, 0.3)
    brow = {"calm": -0.3, "frustrated": 0.3, "angry": 0.8}[mood] + rng.normal(0, 0.3)

    def color(lo, hi):
        return tuple(float(c) for c in rng.uniform(lo, hi, 3))

    return {
        "mouth": mouth,
        "brow": brow,
        "skin": tuple(float(c) for c in np.array([110, 150, 200]) * rng.uniform(0.45, 1.1)),
        "hair": color(10, 90),
        "room": color(60, 220),
        "shirt": color(20, 230),
        "center": (rng.uniform(0.42, 0.58), rng.uniform(0.42, 0.55)),
        "size": rng.uniform(0.85, 1.1),
        "exposure": rng.uniform(0.5, 1.0),
        "sway": rng.uniform(0, sg.TAU),
    }


def _draw_face(f: dict, t: float, talking: float, h: int, w: int) -> np.ndarray:
    """A webcam head-and-shoulders view, drawn in normalized coordinates."""
    c = _Canvas(h, w, (0.01 * math.sin(0.8 * t + f["sway"]), 0.0))
    c.poly([(-0.1, -0.1), (1.1, -0.1), (1.1, 1.1), (-0.1, 1.1)], f["room"])
    cx, cy = f["center"]
    s = f["size"]
    c.ellipse((cx, cy + 0.5 * s), (0.38 * s, 0.2 * s), 0, f["shirt"])
    c.ellipse((cx, cy - 0.06 * s), (0.2 * s, 0.2 * s), 0, f["hair"])
    c.ellipse((cx, cy), (0.17 * s, 0.22 * s), 0, f["skin"])
    for side in (-1, 1):
        ex = cx + side * 0.07 * s
        c.ellipse((ex, cy - 0.03 * s), (0.03 * s, 0.018 * s), 0, (235, 235, 235))
        c.ellipse((ex, cy - 0.03 * s), (0.012 * s, 0.014 * s), 0, (40, 30, 30))
        inner, outer = ex - side * 0.035 * s, ex + side * 0.035 * s
        drop = 0.025 * s * f["brow"]  # a frown pulls the brows' inner ends down
        c.line((inner, cy - 0.075 * s + drop), (outer, cy - 0.085 * s - 0.3 * drop), f["hair"], 0.018 * s)
    # mouth: a parabola whose corners rise with the smile; opens while talking
    xs = np.linspace(-0.07, 0.07, 9) * s
    sag = -f["mouth"] * 0.025 * s * ((xs / (0.07 * s)) ** 2 - 1)  # > 0: the middle hangs below the corners
    opening = 0.03 * s * talking * (1 - (xs / (0.07 * s)) ** 2)
    top = [(cx + x, cy + 0.1 * s + y) for x, y in zip(xs, sag, strict=True)]
    bottom = [(cx + x, cy + 0.1 * s + y + o) for x, y, o in zip(xs, sag, opening, strict=True)]
    c.poly(top + bottom[::-1], (60, 50, 140))
    for a, b in zip(top[:-1], top[1:], strict=True):
        c.line(a, b, (60, 50, 120), 0.012 * s)
    return c.out(h, w)
