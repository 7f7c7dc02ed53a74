"""`edgefuse <verb>`: one command line for the trainer, deploy and the runtime.

Each verb's handler lives with the code it drives and is imported only when that verb runs, so `edgefuse --help`
and the runtime verbs never import torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from edgefuse import __version__
from edgefuse.spec import FUSION_METHODS

EPILOG = """\
examples:
  edgefuse demo                                                     # synth -> train -> eval -> export -> run
  edgefuse synth --config configs/smart_home.yaml --out data/home --samples 2400 --seed 0
  edgefuse train --config configs/smart_home.yaml --data data/home --out runs/home
  edgefuse eval  --run runs/home --data data/home --report runs/home/report.json
  edgefuse export --run runs/home --out bundles/home --precision int8
  edgefuse build-engine --bundle bundles/home --precision fp16
  edgefuse bench --bundle bundles/home --data data/home --json runs/home/bench.json
  edgefuse run --config configs/smart_home.yaml --bundle bundles/home --duration 30 --summary run.json
  edgefuse listen --endpoint tcp://127.0.0.1:5555
  edgefuse record --config configs/smart_home.yaml --out sessions/s1 --duration 60
  edgefuse replay --session sessions/s1 --bundle bundles/home --fast
  edgefuse monitor --endpoint tcp://127.0.0.1:5555 --port 8080
"""


class Verb:
    """A subcommand: its help, its examples, how to add its arguments, and where its handler lives."""

    def __init__(
        self, name: str, handler: str, help: str, examples: str, add_args: Callable[[argparse.ArgumentParser], None]
    ):
        self.name, self.handler, self.help, self.examples, self.add_args = name, handler, help, examples, add_args


def _synth(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="scenario YAML (configs/*.yaml)")
    p.add_argument("--out", required=True, help="dataset folder to write (the folder dataset format, docs/dataset.md)")
    p.add_argument("--samples", type=int, default=None, help="number of samples (default: the spec's synth.samples)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same bytes")


def _train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="scenario YAML")
    p.add_argument(
        "--data", required=True, help="dataset folder (docs/dataset.md), or a recorded session with labels.csv"
    )
    p.add_argument("--out", required=True, help="run folder: checkpoint.pt, metrics.json, TensorBoard logs")
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    p.add_argument(
        "--fusion", default=None, metavar="METHOD", help="override model.fusion.method: " + ", ".join(FUSION_METHODS)
    )
    p.add_argument("--only", default=None, help="train on one modality only (a unimodal baseline)")
    p.add_argument("--drop", default=None, help="train with one modality always masked (a modality-free baseline)")
    p.add_argument("--seed", type=int, default=None, help="override train.seed")
    p.add_argument("--seeds", type=int, default=None, help="train N seeds (seed, seed+1, ...) into OUT/seed-<n>/")


def _eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run folder written by `edgefuse train`")
    p.add_argument("--data", required=True, help="dataset folder; the test split is evaluated")
    p.add_argument(
        "--report", required=True, help="JSON report path; a .md report and confusion matrix PNGs go beside it"
    )
    p.add_argument("--no-baselines", action="store_true", help="skip training the unimodal baselines (faster)")
    p.add_argument("--split", default="test", help="split to evaluate")
    p.add_argument(
        "--seeds", type=int, default=None, help="evaluate the N seed-<n>/ runs of `train --seeds N`: mean +- std"
    )


def _spec(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--schema", action="store_true", help="print the JSON Schema of a scenario YAML (the default)")
    g.add_argument("--markdown", action="store_true", help="print the key reference (docs/spec.md is this output)")


def _export(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run folder written by `edgefuse train`")
    p.add_argument("--out", required=True, help="bundle folder to write (model.onnx + manifest.json)")
    p.add_argument(
        "--data", default=None, help="dataset folder for parity checks, INT8 calibration and variant accuracy"
    )
    p.add_argument("--precision", default="fp32", help="comma list of fp32, fp16, int8 (fp32 is always written)")


def _build_engine(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", required=True, help="bundle folder written by `edgefuse export`")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"], help="which ONNX variant to build")
    p.add_argument("--dla", type=int, default=None, help="Jetson DLA core to use, with GPU fallback")
    p.add_argument("--workspace-mb", type=int, default=1024, help="builder workspace memory pool limit")


def _bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", required=True, help="bundle folder")
    p.add_argument("--data", required=True, help="dataset folder; accuracy on its test split")
    p.add_argument("--json", default=None, help="write the rows as JSON here")
    p.add_argument("--backends", default="onnxruntime,torch,tensorrt", help="comma list of backends to try")
    p.add_argument("--iters", type=int, default=200, help="timed batch-1 iterations per row")
    p.add_argument(
        "--threads", type=int, default=None, help="intra-op CPU threads for every backend (default: each one's own)"
    )


def _run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="scenario YAML (modalities, sources, sync, runtime)")
    p.add_argument("--bundle", required=True, help="bundle folder")
    p.add_argument("--duration", type=float, default=None, help="seconds to run (default: until SIGINT/SIGTERM)")
    p.add_argument("--summary", default=None, help="write the run summary JSON here")
    p.add_argument("--backend", default=None, help="override runtime.backend: auto, onnxruntime, tensorrt, torch")
    p.add_argument("--endpoint", default=None, help="override runtime.publish.endpoint")
    p.add_argument("--groups", type=int, default=None, help="override runtime.groups")
    p.add_argument("--record", default=None, help="also record the raw streams to this session folder")


def _listen(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoint", default="tcp://127.0.0.1:5555", help="the runtime's PUB endpoint")
    p.add_argument("--topic", default="result", help="topic prefix to subscribe to")
    p.add_argument("--count", type=int, default=None, help="exit after this many messages")
    p.add_argument("--json", action="store_true", help="print one JSON object per line")


def _record(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="scenario YAML (its sources are recorded)")
    p.add_argument("--out", required=True, help="session folder to write")
    p.add_argument("--duration", type=float, default=None, help="seconds to record (default: until SIGINT/SIGTERM)")


def _replay(p: argparse.ArgumentParser) -> None:
    p.add_argument("--session", required=True, help="session folder written by `edgefuse record`")
    p.add_argument("--bundle", required=True, help="bundle folder")
    p.add_argument("--config", default=None, help="scenario YAML (default: the one stored in the session)")
    p.add_argument("--fast", action="store_true", help="as fast as possible instead of real time")
    p.add_argument("--summary", default=None, help="write the run summary JSON here")
    p.add_argument("--results", default=None, help="write every result as JSON lines here")


def _monitor(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoint", default="tcp://127.0.0.1:5555", help="the runtime's PUB endpoint")
    p.add_argument("--host", default="127.0.0.1", help="address the web page is served on")
    p.add_argument("--port", type=int, default=8080, help="port the web page is served on")


def _demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="scenario YAML (default: the packaged smart_home.yaml)")
    p.add_argument("--out", default="runs/demo", help="folder for the data, run, bundle and reports")
    p.add_argument("--samples", type=int, default=None, help="synthetic samples (default: the spec's)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of live streaming at the end")


VERBS = [
    Verb(
        "demo",
        "edgefuse.demo:cli_demo",
        "run the whole pipeline end to end on synthetic data",
        "edgefuse demo\n  edgefuse demo --config configs/driving.yaml --out runs/driving",
        _demo,
    ),
    Verb(
        "synth",
        "edgefuse.trainer.synth:cli_synth",
        "write a deterministic synthetic dataset for a scenario",
        "edgefuse synth --config configs/smart_home.yaml --out data/home --samples 600 --seed 1",
        _synth,
    ),
    Verb(
        "train",
        "edgefuse.trainer.train:cli_train",
        "train a fused model on a dataset folder",
        "edgefuse train --config configs/smart_home.yaml --data data/home --out runs/home\n"
        "  edgefuse train --config configs/driving.yaml --data data/drive --out runs/drive-lmf --fusion low_rank",
        _train,
    ),
    Verb(
        "eval",
        "edgefuse.trainer.evaluate:cli_eval",
        "evaluate a run: accuracy, F1, baselines, ablation, robustness",
        "edgefuse eval --run runs/home --data data/home --report runs/home/report.json",
        _eval,
    ),
    Verb(
        "spec",
        "edgefuse.specdoc:cli_spec",
        "print the scenario spec's JSON Schema, or its key reference as markdown",
        "edgefuse spec --schema > spec.schema.json\n  edgefuse spec --markdown > docs/spec.md",
        _spec,
    ),
    Verb(
        "export",
        "edgefuse.deploy.export:cli_export",
        "export a run to a model bundle (ONNX + manifest), with variants",
        "edgefuse export --run runs/home --data data/home --out bundles/home --precision fp16,int8",
        _export,
    ),
    Verb(
        "build-engine",
        "edgefuse.deploy.engine:cli_build_engine",
        "build a TensorRT engine for this GPU from a bundle",
        "edgefuse build-engine --bundle bundles/home --precision fp16\n"
        "  edgefuse build-engine --bundle bundles/home --precision int8 --dla 0   # Jetson DLA",
        _build_engine,
    ),
    Verb(
        "bench",
        "edgefuse.deploy.bench:cli_bench",
        "benchmark every backend and precision of a bundle",
        "edgefuse bench --bundle bundles/home --data data/home --json bench.json",
        _bench,
    ),
    Verb(
        "run",
        "edgefuse.runtime.app:cli_run",
        "run fused inference on live (or synthetic) streams, publish on ZeroMQ",
        "edgefuse run --config configs/smart_home.yaml --bundle bundles/home --duration 30 --summary run.json",
        _run,
    ),
    Verb(
        "listen",
        "edgefuse.runtime.listen:cli_listen",
        "print a runtime's published results live",
        "edgefuse listen --endpoint tcp://127.0.0.1:5555 --count 10",
        _listen,
    ),
    Verb(
        "record",
        "edgefuse.runtime.record:cli_record",
        "record raw timestamped streams to a crash-safe session",
        "edgefuse record --config configs/smart_home.yaml --out sessions/s1 --duration 60",
        _record,
    ),
    Verb(
        "replay",
        "edgefuse.runtime.app:cli_replay",
        "replay a recorded session through a bundle",
        "edgefuse replay --session sessions/s1 --bundle bundles/home --fast --summary replay.json",
        _replay,
    ),
    Verb(
        "monitor",
        "edgefuse.runtime.monitor.server:cli_monitor",
        "serve a live web dashboard of a running runtime",
        "edgefuse monitor --endpoint tcp://127.0.0.1:5555 --port 8080",
        _monitor,
    ),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgefuse",
        description="Edge multimodal sensor fusion: train, deploy and run fused models on synchronized streams.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgefuse {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="<verb>")
    for v in VERBS:
        p = sub.add_parser(
            v.name,
            help=v.help,
            description=v.help,
            epilog=f"example:\n  {v.examples}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        v.add_args(p)
        p.set_defaults(_handler=v.handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_handler", None):
        parser.print_help()
        return 2
    module_name, func_name = args._handler.split(":")
    from edgefuse._optional import MissingDependency
    from edgefuse.errors import EdgefuseError

    try:
        handler = getattr(importlib.import_module(module_name), func_name)
        rc = handler(args)
    except (EdgefuseError, MissingDependency) as err:
        # errors about the user's inputs: one clear message, no stack trace
        print(f"edgefuse {args.verb}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
