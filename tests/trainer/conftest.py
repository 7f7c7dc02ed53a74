"""Fixtures for the trainer tests: the built-in specs and small synthetic datasets written once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefuse.spec import ScenarioSpec, load_spec

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def spec_of(name: str) -> ScenarioSpec:
    return load_spec(CONFIGS / f"{name}.yaml")


@pytest.fixture
def one_thread():
    """Tiny tensors: intra-op threads only add OpenMP hand-off cost, and the test machine is shared."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def home_spec() -> ScenarioSpec:
    return spec_of("smart_home")


@pytest.fixture(scope="session")
def home_data(tmp_path_factory: pytest.TempPathFactory, home_spec: ScenarioSpec) -> Path:
    """24 smart_home samples (seed 0); tests that alter files copy it first."""
    from edgefuse.trainer.synth import write_dataset

    return write_dataset(home_spec, tmp_path_factory.mktemp("home") / "data", 24, seed=0, progress=False)


@pytest.fixture(scope="session")
def cs_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 customer_service samples (seed 0): voice, transcript and the optional camera."""
    from edgefuse.trainer.synth import write_dataset

    return write_dataset(spec_of("customer_service"), tmp_path_factory.mktemp("cs") / "data", 24, 0, progress=False)
