"""The generator interface and registry: one generator per scenario, picked by the spec's `synth.generator`.

A generator draws an episode's labels, then its latent parameters (where the person stands, the chime's pitch,
the lane change's timing), then renders each modality from those parameters with its own random stream. Every
signal is a function of absolute episode time, so any span [t0, t1] of an episode can be rendered alone: the
dataset writer renders only the windows a tick at the episode's end needs, the runtime's session renders all.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from edgefuse.spec import ScenarioSpec, SpecError

GENERATORS: dict[str, type[Generator]] = {}


def register(name: str):
    """Class decorator: make a generator available under `name` (the spec's `synth.generator`)."""

    def deco(cls: type[Generator]) -> type[Generator]:
        cls.name = name
        GENERATORS[name] = cls
        return cls

    return deco


def episode_duration_s(spec: ScenarioSpec) -> float:
    """How long one rendered episode lasts: the longest window plus one second of ticks that see only the event."""
    return spec.window_span_s() + 1.0


class Generator:
    """Renders labelled episodes of one scenario.

    Subclasses declare what they can render (`modalities`: name -> kind, `channels` for series, `heads`: head ->
    classes) and implement `episode()` (latent parameters) and one `render_<modality>()` per modality. Optional heads
    of the other kinds, rendered only when the spec declares them: `multilabel` (head -> labels that may happen
    together, each drawn independently with probability `multilabel_p`, and rendered by the subclass from
    `labels[head]`) and `regression` (head -> unit; `targets()` derives the values from the episode's latent
    parameters).
    """

    name: ClassVar[str] = ""
    modalities: ClassVar[dict[str, str]] = {}
    channels: ClassVar[dict[str, tuple[str, ...]]] = {}
    heads: ClassVar[dict[str, tuple[str, ...]]] = {}
    multilabel: ClassVar[dict[str, tuple[str, ...]]] = {}
    multilabel_p: ClassVar[float] = 0.3
    regression: ClassVar[dict[str, str]] = {}

    def __init__(self, spec: ScenarioSpec, seed: int = 0):
        self.spec = spec
        self.seed = seed
        # global noise scale from the spec (synth.noise): 0 = clean signals, 1 = the documented defaults
        self.noise = spec.synth.noise if spec.synth is not None else 1.0
        self._check_spec()

    def _check_spec(self) -> None:
        problems: list[tuple[str, str]] = []
        for name, kind in self.modalities.items():
            m = self.spec.modalities.get(name)
            if m is None:
                problems.append((f"modalities.{name}", f"generator '{self.name}' renders a {kind} named '{name}'"))
            elif m.kind != kind:
                problems.append((f"modalities.{name}.kind", f"generator '{self.name}' renders {kind}, not {m.kind}"))
            elif kind == "series":
                unknown = [c for c in m.channels if c not in self.channels[name]]  # type: ignore[union-attr]
                if unknown:
                    problems.append(
                        (f"modalities.{name}.channels", f"unknown {unknown}; choose from {list(self.channels[name])}")
                    )
        for name in self.spec.modalities:
            if name not in self.modalities:
                problems.append((f"modalities.{name}", f"generator '{self.name}' cannot render it"))
        for head, classes in self.spec.labels.items():
            known = self.heads.get(head)
            if known is None:
                problems.append((f"labels.{head}", f"generator '{self.name}' has heads {list(self.heads)}"))
            elif unknown := [c for c in classes if c not in known]:
                problems.append((f"labels.{head}", f"unknown classes {unknown}; '{self.name}' renders {list(known)}"))
        for head in self.heads:
            if head not in self.spec.labels:
                problems.append((f"labels.{head}", f"generator '{self.name}' needs this head"))
        for head, names in self.spec.multilabel.items():
            known = self.multilabel.get(head)
            if known is None:
                problems.append((f"multilabel.{head}", f"generator '{self.name}' renders {list(self.multilabel)}"))
            elif unknown := [n for n in names if n not in known]:
                problems.append(
                    (f"multilabel.{head}", f"unknown labels {unknown}; '{self.name}' renders {list(known)}")
                )
        for head in self.spec.regression:
            if head not in self.regression:
                problems.append((f"regression.{head}", f"generator '{self.name}' renders {list(self.regression)}"))
        if problems:
            raise SpecError(f"spec '{self.spec.name}'", problems)

    # -- labels ---------------------------------------------------------------------------------------------------
    def sample_labels(self, rng: np.random.Generator) -> dict[str, str]:
        """Labels of one episode: head -> class name, uniform over the spec's classes."""
        return {head: str(classes[rng.integers(len(classes))]) for head, classes in self.spec.labels.items()}

    def sample_multilabel(self, rng: np.random.Generator) -> dict[str, str]:
        """The spec's multilabel heads: each label present with probability `multilabel_p`, joined by "|"."""
        return {
            head: "|".join(n for n in names if rng.random() < self.multilabel_p)
            for head, names in self.spec.multilabel.items()
        }

    def targets(self, p: dict[str, Any], duration_s: float) -> dict[str, float]:
        """Regression targets at the episode's end (the tick), from its latent parameters: head -> value."""
        return {}

    # -- rendering ------------------------------------------------------------------------------------------------
    def episode(self, labels: dict[str, str], rng: np.random.Generator, duration_s: float) -> dict[str, Any]:
        """Latent parameters of one episode (timings, positions, levels) shared by all modalities."""
        raise NotImplementedError

    def caption_slots(self, p: dict[str, Any], duration_s: float) -> list[list[str]] | None:
        """What happens in the rendered episode `p`, as slots of paraphrases (trainer/synth/captions.py); None
        when this generator writes no captions. Called after render(), which may add what it drew to `p`."""
        return None

    def render(
        self,
        labels: dict[str, str],
        rng: np.random.Generator,
        duration_s: float,
        start_s: float | dict[str, float] = 0.0,
    ) -> dict[str, object]:
        """Raw streams of one episode at native rates; row/frame k of each stream is at t = k / rate_hz.

        image (F, H, W, 3) uint8 BGR; audio (N, C) float32 in [-1, 1]; series (T, C) float32 in spec channel
        order; text list[(t_s, utterance)]. A modality absent from the dict is missing in this episode.
        `start_s` (one value, or per modality) renders only [start_s, duration_s]: the rows keep their absolute
        grid, so a span is the same kind of signal as the matching rows of a full render.

        `labels` is completed in place with the spec's multilabel heads (drawn here unless given) and regression
        heads (derived from the episode: targets()), as text cells of labels.csv. A spec without such heads draws
        nothing extra, so its episodes are exactly what they were before these head kinds existed.
        """
        if any(h not in labels for h in self.spec.multilabel):
            labels.update(self.sample_multilabel(rng))
        p = self.episode(labels, rng, duration_s)
        p["labels"] = labels
        if self.spec.regression:
            values = self.targets(p, duration_s)
            labels.update({h: f"{values[h]:.4g}" for h in self.spec.regression})
        self.last_episode = p  # what the writer captions (caption_slots)
        # one independent stream per modality, in the generator's fixed order: a modality's values do not depend
        # on which other modalities are rendered or how many rows they have
        seeds = rng.integers(0, 2**63, size=len(self.modalities))
        out: dict[str, object] = {}
        for (name, _kind), s in zip(self.modalities.items(), seeds, strict=True):
            t0 = start_s.get(name, 0.0) if isinstance(start_s, dict) else start_s
            m = self.spec.modalities[name]
            data = getattr(self, f"render_{name}")(p, (t0, duration_s), m, np.random.default_rng(s))
            if data is not None:
                out[name] = data
        return out


def dataset_starts(spec: ScenarioSpec, duration_s: float) -> dict[str, float]:
    """Per modality, where the span a tick at `duration_s` needs begins (what one dataset sample keeps)."""
    starts = {}
    for name, m in spec.modalities.items():
        if m.kind == "image":  # the frame nearest the tick: the last one on the grid
            starts[name] = math.floor(duration_s * m.rate_hz + 1e-6) / m.rate_hz
        elif m.kind == "text":
            starts[name] = duration_s - m.window_s
        else:  # exactly n_steps rows that end at the tick
            starts[name] = (round(duration_s * m.rate_hz) - m.n_steps) / m.rate_hz
    return starts


def get_generator(spec: ScenarioSpec, seed: int = 0) -> Generator:
    """The generator named by `spec.synth.generator`, checked against the spec; SpecError if unknown."""
    if spec.synth is None:
        raise SpecError(f"spec '{spec.name}'", [("synth", "no synth section: add synth.generator to render data")])
    cls = GENERATORS.get(spec.synth.generator)
    if cls is None:
        known = ", ".join(sorted(GENERATORS)) or "none"
        raise SpecError(
            f"spec '{spec.name}'", [("synth.generator", f"unknown generator '{spec.synth.generator}'; known: {known}")]
        )
    return cls(spec, seed)
