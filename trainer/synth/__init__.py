"""Synthetic scenario data: one documented, deterministic generator per scenario, registered by name.

    from edgefuse.trainer.synth import get_generator, write_dataset, synth_session
    write_dataset(spec, "data/home", samples=2400, seed=0)      # the folder dataset format (docs/dataset.md)
    session = synth_session(spec, duration_s=60, seed=1)         # continuous streams + ground truth for the runtime

Signal models, and why no single modality tells every class apart, are documented in docs/dataset.md.
"""

from edgefuse.trainer.synth import customer_service, driving, smart_home  # noqa: F401  (register the generators)
from edgefuse.trainer.synth.base import GENERATORS, Generator, episode_duration_s, get_generator, register
from edgefuse.trainer.synth.session import SynthSession, synth_session
from edgefuse.trainer.synth.writer import cli_synth, cut_sample, write_dataset

__all__ = [
    "GENERATORS",
    "Generator",
    "SynthSession",
    "cli_synth",
    "cut_sample",
    "episode_duration_s",
    "get_generator",
    "register",
    "synth_session",
    "write_dataset",
]
