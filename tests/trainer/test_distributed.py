"""Data-parallel training on CPU: 2 real processes under torchrun (gloo) against 1, on tiny real data."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from _trainer_tiny import CONFIGS, make_data

from edgefuse.spec import spec_to_dict
from edgefuse.trainer.checkpoint import load_run
from edgefuse.trainer.train import train

EPOCHS = 6


@pytest.mark.slow
def test_two_gloo_processes_match_one_and_see_every_sample_once_per_epoch(tmp_path):
    spec, data, ds = make_data(tmp_path)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(spec_to_dict(spec), sort_keys=False))
    one = train(spec, data, tmp_path / "one", epochs=EPOCHS, progress=False, dataset=ds)

    trace = tmp_path / "indices"
    argv = [sys.executable, "-m", "edgefuse.cli", "train", "--config", str(config), "--data", str(data),
            "--out", str(tmp_path / "two"), "--epochs", str(EPOCHS), "--nproc", "2"]  # fmt: skip
    env = {**os.environ, "EDGEFUSE_DDP_INDICES": str(trace)}
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.count("val accuracy") == 1  # rank 0 alone reports

    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["world_size"] == 2 and two["n_train"] == one["n_train"]
    # same recipe, same batches, same steps: the accuracy agrees within seed noise (1 of 30 val samples is 0.033)
    assert abs(two["val_accuracy"] - one["val_accuracy"]) <= 0.15, (one["history"], two["history"])
    chance = np.mean([1 / len(c) for c in spec.labels.values()])
    assert two["val_accuracy"] >= chance + 0.2
    _, model, ckpt = load_run(tmp_path / "two")  # rank 0's checkpoint, in the one-process format
    assert ckpt["metrics"]["val_accuracy"] == two["val_accuracy"]
    assert not (tmp_path / "two" / "tb").exists() or any((tmp_path / "two" / "tb").iterdir())

    # every training sample exactly once per epoch, by exactly one rank, in shares that differ by at most a batch
    epochs = [[json.loads(line) for line in (trace / f"indices.rank{r}.jsonl").read_text().splitlines()]
              for r in (0, 1)]  # fmt: skip
    assert len(epochs[0]) == len(epochs[1]) == two["epochs_run"]
    for r0, r1 in zip(*epochs, strict=True):
        assert sorted(r0 + r1) == list(range(one["n_train"]))
        assert abs(len(r0) - len(r1)) <= -(-one["n_train"] // spec.train.batch_size)  # one sample per batch
    assert epochs[0][0] != epochs[0][1]  # a new order each epoch


def test_nproc_checks_inputs_before_starting_processes(tmp_path, capsys):
    from edgefuse.cli import main

    config = str(CONFIGS / "smart_home.yaml")
    assert main(["train", "--config", config, "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r"),
                 "--nproc", "2"]) == 1  # fmt: skip
    assert "no such dataset folder" in capsys.readouterr().err
    assert main(["train", "--config", config, "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--nproc", "2",
                 "--only", "radar"]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert "--only" in err and "radar" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_nproc_refuses_pretraining_in_one_line(tmp_path, capsys):
    import yaml

    from edgefuse.cli import main

    d = yaml.safe_load((CONFIGS / "smart_home.yaml").read_text())
    d["train"]["pretrain"] = True
    config = tmp_path / "pretrain.yaml"
    config.write_text(yaml.safe_dump(d))
    assert main(["train", "--config", str(config), "--data", str(tmp_path), "--out", str(tmp_path / "r"),
                 "--nproc", "2"]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert "train.pretrain" in err and "--nproc" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()
