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
  edgefuse check-data --config configs/smart_home.yaml --data data/home
  edgefuse train --config configs/smart_home.yaml --data data/home --out runs/home
  edgefuse eval  --run runs/home --data data/home --report runs/home/report.json
  edgefuse export --run runs/home --out bundles/home --data data/home --precision fp16,int8
  edgefuse check-trt --bundle bundles/home
  edgefuse build-engine --bundle bundles/home --precision fp16
  edgefuse bench --bundle bundles/home --data data/home --json runs/home/bench.json
  edgefuse run --config configs/smart_home.yaml --bundle bundles/home --duration 30 --summary run.json
  edgefuse run --config configs/smart_home.yaml --bundle bundles/home --precision int8 --device cuda:0
  edgefuse listen --endpoint tcp://127.0.0.1:5555
  edgefuse record --config configs/smart_home.yaml --out sessions/s1 --duration 60
  edgefuse replay --session sessions/s1 --bundle bundles/home --fast
  edgefuse monitor --endpoint tcp://127.0.0.1:5555 --port 8080
  edgefuse doctor --config configs/jetson_usb.yaml
  edgefuse keygen --out keys --name runtime                         # CURVE keys (docs/security.md)
  edgefuse sign --bundle bundles/home --key keys/release.ed25519
  edgefuse relay --in 'tcp://*:5556' --out 'tcp://*:5557'          # a fleet: runtimes --connect to --in
  edgefuse monitor --relay tcp://hub:5557 --port 8080                # every device behind the relay
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
    p.add_argument(
        "--nproc", type=int, default=1, help="data-parallel processes on this host (torchrun; trainer/distributed.py)"
    )
    p.add_argument("--seeds", type=int, default=None, help="train N seeds (seed, seed+1, ...) into OUT/seed-<n>/")
    p.add_argument(
        "--folds",
        type=int,
        default=None,
        metavar="K",
        help="cross-validate: train K times into OUT/fold-<n>/, each fold of the train and val samples validating in "
        "turn (whole groups of labels.csv's group column, or recordings, held out together); the test split is untouched",
    )


def _check_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="scenario YAML")
    p.add_argument(
        "--data", required=True, help="dataset folder (docs/dataset.md), or a recorded session with labels.csv"
    )
    p.add_argument("--json", default=None, help="also write the summary as JSON to this path")


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


def _model_flags(p: argparse.ArgumentParser, backend: bool = True) -> None:
    """Overrides of the scenario's runtime.model section (None: the config's value)."""
    if backend:
        p.add_argument(
            "--backend", default=None, help="override runtime.model.backend: auto, onnxruntime, tensorrt, torch"
        )
        p.add_argument("--precision", default=None, help="override runtime.model.precision: fp32, fp16, int8")
    p.add_argument("--device", default=None, help="override runtime.model.device: auto, cpu, cuda[:N], dla[:N]")
    p.add_argument(
        "--cuda-graphs",
        default=None,
        action=argparse.BooleanOptionalAction,
        help="override runtime.model.cuda_graphs (torch backend on CUDA)",
    )
    p.add_argument("--threads", type=int, default=None, help="override runtime.model.threads (CPU intra-op threads)")


def _build_engine(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", required=True, help="bundle folder written by `edgefuse export`")
    p.add_argument(
        "--precision", default="fp32", choices=["fp32", "fp16", "int8"], help="which variant to build (int8: int8-trt)"
    )
    p.add_argument("--dla", type=int, default=None, help="Jetson DLA core to use, with GPU fallback (fixed batch)")
    p.add_argument("--batch", default=None, help="comma list of fixed batch sizes, one engine each (DLA default: 1)")
    p.add_argument("--allow-tf32", action="store_true", help="let fp32 layers use TF32 math (off: fp32 parity)")
    p.add_argument("--workspace-mb", type=int, default=1024, help="builder workspace memory pool limit")


def _check_trt(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", required=True, help="bundle folder written by `edgefuse export`")
    p.add_argument("--tensorrt", default="10,11", help="TensorRT major versions to check against (10, 11)")
    p.add_argument("--dla", action="store_true", help="also list the layers DLA cannot run (GPU fallback)")
    p.add_argument("--no-record", action="store_true", help="do not write the result into manifest.json")


def _bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", required=True, help="bundle folder")
    p.add_argument("--data", required=True, help="dataset folder; accuracy on its test split")
    p.add_argument("--json", default=None, help="write the rows as JSON here")
    p.add_argument("--backends", default="onnxruntime,torch,tensorrt", help="comma list of backends to try")
    p.add_argument("--iters", type=int, default=200, help="timed batch-1 iterations per row")
    _model_flags(p, backend=False)


def _run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="scenario YAML (modalities, sources, sync, runtime)")
    p.add_argument("--bundle", required=True, help="bundle folder")
    p.add_argument("--duration", type=float, default=None, help="seconds to run (default: until SIGINT/SIGTERM)")
    p.add_argument("--summary", default=None, help="write the run summary JSON here")
    _model_flags(p)
    p.add_argument("--endpoint", default=None, help="override runtime.publish.endpoint")
    p.add_argument("--groups", type=int, default=None, help="override runtime.groups")
    p.add_argument("--record", default=None, help="also record the raw streams to this session folder")
    _fleet_args(p)


def _fleet_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device-id", default=None, help="override runtime.device_id (default: the host name)")
    p.add_argument(
        "--connect", action="append", default=None, help="also publish to this relay (`edgefuse relay --in`); repeat"
    )


def _listen(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoint", default="tcp://127.0.0.1:5555", help="the runtime's PUB endpoint")
    p.add_argument("--topic", default="result", help="topic prefix to subscribe to")
    p.add_argument("--count", type=int, default=None, help="exit after this many messages")
    p.add_argument("--json", action="store_true", help="print one JSON object per line")
    _curve_client(p)


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
    p.add_argument("--endpoint", default=None, help="override runtime.publish.endpoint (e.g. tcp://127.0.0.1:5556)")
    _model_flags(p)
    _fleet_args(p)


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (0-65535)")
    return port


def _monitor(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--endpoint", action="append", default=None, help="a runtime's PUB endpoint (default tcp://127.0.0.1:5555); "
        "repeat for a fleet of runtimes"
    )  # fmt: skip
    p.add_argument("--relay", action="append", default=None, help="an `edgefuse relay --out` endpoint: the fleet view")
    p.add_argument("--host", default="127.0.0.1", help="address the web page is served on")
    p.add_argument("--port", type=_port, default=8080, help="port the web page is served on")
    _curve_client(p)


def _keygen(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="folder for the key files")
    p.add_argument("--name", required=True, help="key name: NAME.key / NAME.key_secret (CURVE) or NAME.ed25519(.pub)")
    p.add_argument("--ed25519", action="store_true", help="a bundle-signing key pair instead of a CURVE one")


def _sign(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", required=True, help="bundle folder to sign (writes manifest.sig)")
    p.add_argument("--key", required=True, help="ed25519 secret key file from `edgefuse keygen --ed25519`")


def _curve_client(p: argparse.ArgumentParser) -> None:
    p.add_argument("--curve-server-key", default=None, help="the runtime's CURVE public certificate (NAME.key)")
    p.add_argument("--curve-key", default=None, help="this client's CURVE secret certificate (NAME.key_secret)")


def _relay(p: argparse.ArgumentParser) -> None:
    p.add_argument("--in", dest="in_endpoint", default="tcp://127.0.0.1:5556", help="runtimes connect here (XSUB)")
    p.add_argument("--out", dest="out_endpoint", default="tcp://127.0.0.1:5557", help="subscribers connect here (XPUB)")
    p.add_argument("--hwm", type=int, default=10_000, help="messages queued per peer before a slow subscriber loses")
    p.add_argument("--metrics-port", type=int, default=None, help="serve the relay's Prometheus metrics here")
    p.add_argument("--curve-secret-key", default=None, help="zmq.auth certificate with the relay's secret key")
    p.add_argument("--curve-authorized-keys", default=None, help="folder of client public-key certificates")
    p.add_argument("--no-accounting", action="store_true", help="no per-device counts (the proxy alone)")


def _demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="scenario YAML (default: the packaged smart_home.yaml)")
    p.add_argument("--out", default="runs/demo", help="folder for the data, run, bundle and reports")
    p.add_argument("--samples", type=int, default=None, help="synthetic samples (default: the spec's)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of live streaming at the end")
    _model_flags(p)


def _doctor(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="scenario YAML: also check what each of its modalities needs here")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")


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
        "check-data",
        "edgefuse.trainer.datacheck:cli_check_data",
        "load a dataset as training will and summarise it: splits, classes, modalities present, groups, warnings",
        "edgefuse check-data --config configs/smart_home.yaml --data data/home --json data/home/summary.json",
        _check_data,
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
        "check-trt",
        "edgefuse.deploy.trt_check:cli_check_trt",
        "check statically that TensorRT can parse every variant of a bundle (no GPU needed)",
        "edgefuse check-trt --bundle bundles/home\n  edgefuse check-trt --bundle bundles/home --dla --tensorrt 10",
        _check_trt,
    ),
    Verb(
        "build-engine",
        "edgefuse.deploy.engine:cli_build_engine",
        "build a TensorRT engine for this GPU from a bundle",
        "edgefuse build-engine --bundle bundles/home --precision fp16\n"
        "  edgefuse build-engine --bundle bundles/home --precision int8 --dla 0 --batch 1,8   # Jetson DLA",
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
        "doctor",
        "edgefuse.runtime.doctor:cli_doctor",
        "list this host's audio inputs, cameras, OpenCV, GPU and backends; check a config's devices",
        "edgefuse doctor --config configs/jetson_usb.yaml\n  edgefuse doctor --json",
        _doctor,
    ),
    Verb(
        "relay",
        "edgefuse.runtime.relay:cli_relay",
        "forward many runtimes to many subscribers through one ZeroMQ proxy",
        "edgefuse relay --in 'tcp://*:5556' --out 'tcp://*:5557' --metrics-port 9200",
        _relay,
    ),
    Verb(
        "monitor",
        "edgefuse.runtime.monitor.server:cli_monitor",
        "serve a live web dashboard of a running runtime",
        "edgefuse monitor --endpoint tcp://127.0.0.1:5555 --port 8080",
        _monitor,
    ),
    Verb(
        "keygen",
        "edgefuse.keys:cli_keygen",
        "make a CURVE key pair for ZeroMQ sockets, or an ed25519 one for bundle signatures",
        "edgefuse keygen --out keys --name runtime\n  edgefuse keygen --out keys --name release --ed25519",
        _keygen,
    ),
    Verb(
        "sign",
        "edgefuse.deploy.bundle:cli_sign",
        "sign a bundle's manifest with an ed25519 key (checked when EDGEFUSE_BUNDLE_PUBLIC_KEY is set)",
        "edgefuse sign --bundle bundles/home --key keys/release.ed25519",
        _sign,
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
    import zmq

    from edgefuse._optional import MissingDependency
    from edgefuse.errors import EdgefuseError

    try:
        handler = getattr(importlib.import_module(module_name), func_name)
        rc = handler(args)
    except (EdgefuseError, MissingDependency) as err:
        # errors about the user's inputs: one clear message, no stack trace
        print(f"edgefuse {args.verb}: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # a path or port the user named: missing, not permitted, in use
        where = f"{err.filename}: " if err.filename else ""
        print(f"edgefuse {args.verb}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 1
    except zmq.ZMQError as err:  # an endpoint the user named: malformed, address in use, unknown transport
        print(f"edgefuse {args.verb}: error: ZeroMQ: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
