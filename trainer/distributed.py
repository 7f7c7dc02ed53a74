"""Data-parallel training with torch.distributed: `edgefuse train --nproc N`, or torchrun for several hosts.

    edgefuse train --config configs/smart_home.yaml --data data/home --out runs/home --nproc 2
    # the same, spelled out (what --nproc runs):
    torchrun --standalone --nproc-per-node 2 -m edgefuse.cli train --config ... --data ... --out ...
    # two hosts with 8 GPUs each: run on every host, with its own --node-rank
    torchrun --nnodes 2 --nproc-per-node 8 --node-rank 0 --rdzv-backend c10d --rdzv-endpoint host0:29500 \\
        -m edgefuse.cli train --config ... --data /shared/data/home --out /shared/runs/home

Each process reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, ...), joins the process group (nccl when
CUDA is there, gloo on CPU) and wraps the model in DistributedDataParallel. The recipe is the one-process recipe:
the seeded batch order is the same on every rank, and each global batch of `train.batch_size` is split across the
ranks (Distributed.shard), so the optimizer takes the same number of steps on the same batches, and the
learning-rate schedule is unchanged. Each rank's loss is weighted by its share of the batch, so the gradient that
DDP averages is the gradient of the global batch mean. Every training sample is seen exactly once per epoch,
by exactly one rank. BatchNorm statistics are per rank (DDP broadcasts rank 0's running statistics each step).

Rank 0 alone validates, decides early stopping (broadcast to the others), logs and writes the run folder, in the
same format as one process. Why not torch's DistributedSampler: it pads the last shard with repeated samples, or
drops them (drop_last), and it shards the epoch rather than each batch, which would change the batch size and the
step count; the split here keeps both.

EDGEFUSE_DDP_INDICES=<folder> makes each rank write the sample indices it trained on, one JSON line per epoch
(indices.rank<r>.jsonl); the tests check the sharding with it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgefuse._optional import require

torch = require("torch", "training")
dist = torch.distributed


class Distributed:
    """This process's place in a torchrun job; `from_env()` gives None outside one (or with one process)."""

    def __init__(self, rank: int, world: int, local_rank: int, local_world: int):
        self.rank, self.world, self.local_rank, self.local_world = rank, world, local_rank, local_world
        self.cuda = torch.cuda.is_available()
        self.device = torch.device(f"cuda:{local_rank}") if self.cuda else torch.device("cpu")
        self._trace = None
        folder = os.environ.get("EDGEFUSE_DDP_INDICES")
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            self._trace = open(Path(folder) / f"indices.rank{rank}.jsonl", "a")  # noqa: SIM115 - closed in close()
        self._epoch: list[int] = []

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Distributed | None:
        """Join the process group torchrun describes in the environment; None for a single process."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return None
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        if not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(local_rank)
            dist.init_process_group(backend)
        return cls(rank, world, local_rank, local_world)

    def threads(self, per_host: int) -> int:
        """CPU threads per rank: the spec's threads shared by the ranks on this host."""
        return max(1, per_host // self.local_world)

    def wrap(self, model: Any) -> Any:
        """The model in DistributedDataParallel; `.aux_loss()` still reaches the model."""
        if self.cuda:
            model.to(self.device)  # in place: the optimizer and the checkpoint keep the same parameters
        return _DDP(model, device_ids=[self.local_rank] if self.cuda else None)

    def evaluator(self, model: Any) -> Any:
        """What rank 0 validates with: the model itself on CPU, or an adapter feeding it on its GPU."""
        return _OnDevice(model, self.device) if self.cuda else model

    def follow(self, one_epoch: Callable[[], Any], epochs: int) -> dict[str, Any]:
        """A rank other than 0: run `one_epoch` (its shards of every batch) until rank 0 says stop; writes nothing."""
        for _ in range(epochs):
            one_epoch()
            if self.agree(False):
                break
        self.close()
        return {"rank": self.rank, "world_size": self.world}

    def shard(self, batch: Any) -> tuple[Any, float]:
        """This rank's part of a global batch of sample indices, and the weight of its loss (its share of the
        batch times the world size: DDP averages gradients over ranks, so the result is the global-batch mean)."""
        part = batch.tensor_split(self.world)[self.rank]
        if self._trace is not None:
            self._epoch.extend(int(i) for i in part)
        return part, len(part) * self.world / len(batch)

    def min_batch(self) -> int:
        """The smallest global batch: two samples per rank (BatchNorm needs two in training mode)."""
        return 2 * self.world

    def average_grads(self, params: Any) -> None:
        """Average over the ranks the gradients of parameters DDP does not own (the trainer's unimodal heads)."""
        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= self.world

    def mean(self, value: float) -> float:
        """The mean of a number over the ranks (the training loss rank 0 logs)."""
        t = torch.tensor([float(value)], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t) / self.world

    def agree(self, stop: bool) -> bool:
        """Rank 0's early-stopping decision, on every rank."""
        t = torch.tensor([1 if stop else 0], dtype=torch.int64)
        dist.broadcast(t, src=0)
        if self._trace is not None:
            self._trace.write(json.dumps(self._epoch) + "\n")
            self._trace.flush()
            self._epoch = []
        return bool(t)

    def close(self) -> None:
        if self._trace is not None:
            self._trace.close()
        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


class _DDP(torch.nn.parallel.DistributedDataParallel):
    """DDP that takes the trainer's CPU tensors: on a GPU, inputs go to the device and logits come back, so the
    loop and its loss stay device-free. Attributes it lacks (the model's own: aux_loss, last outputs) are the
    wrapped model's, so the training loop calls it as it calls the model."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)

    def forward(self, inputs: dict[str, Any], mask: Any) -> dict[str, Any]:
        if self.device_ids:
            dev = torch.device(f"cuda:{self.device_ids[0]}")
            out = super().forward({m: x.to(dev, non_blocking=True) for m, x in inputs.items()}, mask.to(dev))
            return {h: v.cpu() for h, v in out.items()}
        return super().forward(inputs, mask)

    def aux_loss(self) -> Any:
        return self.module.aux_loss().cpu()


class _OnDevice(torch.nn.Module):
    """Rank 0's validation on its GPU: same calls as the model, CPU tensors in and out."""

    def __init__(self, model: Any, device: Any):
        super().__init__()
        self.model, self.device = model, device

    def forward(self, inputs: dict[str, Any], mask: Any) -> dict[str, Any]:
        out = self.model({m: x.to(self.device) for m, x in inputs.items()}, mask.to(self.device))
        return {h: v.cpu() for h, v in out.items()}


def launch(args: argparse.Namespace) -> int:
    """`edgefuse train --nproc N`: run this same training under torchrun on this host; returns its exit code.

    The config, the overrides and the data folder are checked here first, so a typo is one error line, not N
    processes failing under torchrun."""
    from edgefuse.errors import DataError
    from edgefuse.spec import SpecError, load_spec
    from edgefuse.trainer.train import PRETRAIN_ONE_PROCESS, apply_overrides, masked_modalities

    spec = apply_overrides(load_spec(args.config), epochs=args.epochs, fusion=args.fusion, seed=args.seed)
    masked_modalities(spec, args.only, getattr(args, "drop", None))
    if spec.train.pretrain and args.only is None:
        raise SpecError(str(args.config), [("train.pretrain", PRETRAIN_ONE_PROCESS)])
    if not Path(args.data).is_dir():
        raise DataError(args.data, "no such dataset folder (--data)")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
           "-m", "edgefuse.cli", "train", "--config", str(args.config), "--data", str(args.data),
           "--out", str(args.out)]  # fmt: skip
    for flag in ("epochs", "fusion", "only", "drop", "seed"):
        value = getattr(args, flag, None)
        if value is not None:
            cmd += [f"--{flag}", str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}  # torchrun's default, unwarned
    return subprocess.run(cmd, env=env, check=False).returncode
