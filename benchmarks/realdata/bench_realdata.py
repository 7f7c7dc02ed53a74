"""Real-data benchmark: edgefuse's default recipe against a classical reference on public datasets.

    python benchmarks/realdata/barbell.py convert --src <snapshot> --out data/realdata/barbell   # once (see there)
    python benchmarks/realdata/bench_realdata.py --datasets barbell --seeds 3

Per dataset (its spec is benchmarks/realdata/<name>.yaml, its data data/realdata/<name>):
  edgefuse   `train --seeds N` then `eval --seeds N` with the default recipe: fused model, its unimodal baselines
             trained with the same recipe and seed (for the first --baseline-seeds seeds), mean +- std over seeds,
             bootstrap 95 % CIs, ECE before/after temperature scaling, parameters, ONNX Runtime batch-1 latency on
             this CPU (1 thread)
  reference  per modality, logistic regression (its C picked per modality by validation log-loss) and gradient
             boosting (scikit-learn) on standard features, late fusion by summed log-probabilities; the better of
             the two on validation is reported. Features by modality kind:
             series: per channel mean, std, min, max, quartiles, 8 FFT band energies; image: the raw pixels
             (flattened); audio: per log-mel band (40 bands, 512-sample frames, hop 256) mean and std over time
Targets (issue 10): fused >= reference + 3 points and >= best edgefuse unimodal + 5 points; seed std <= 1.5 points;
ECE <= 0.05 after calibration; <= 500k params; ONNX Runtime batch-1 <= 1 ms; training <= 10 min per dataset.
Writes runs/realdata/<name>/ and the "Real data" section of BENCHMARKS.md; the rows of datasets not measured in this
run stay there, under the command and date of the run that measured them.
Datasets: barbell, signlang, utdmhad, dsads, speechcifar (converters and their sources: benchmarks/realdata/<name>.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from _sections import write_section  # noqa: E402

from edgefuse.errors import DataError  # noqa: E402
from edgefuse.spec import SpecError, load_spec  # noqa: E402
from edgefuse.trainer.data import load_dataset  # noqa: E402
from edgefuse.trainer.evaluate import evaluate_seeds  # noqa: E402
from edgefuse.trainer.train import seed_dirs, train_seeds  # noqa: E402

ROOT = HERE.parents[1]
PUBLISHED = {
    "barbell": "none known for these recordings split by set",
    "signlang": "Sernani et al., RTA-CSIT 2021 (CEUR 2872, pp. 74-83): a Bi-LSTM on EMG + IMU, stratified "
    "70/10/20 shuffle splits, evaluated in github.com/airtlab/italian-sign-language-recognition; their figures "
    "are not reproduced here",
    "utdmhad": "Chen, Jafari and Kehtarnavaz, ICIP 2015, same cross-subject protocol (odd subjects train, even test): "
    "inertial 67.2 %, depth 66.1 %, depth + inertial 79.1 % (collaborative representation classifier); this split "
    "also holds subject 7 out of training for validation",
    "dsads": "Altun, Barshan and Tunçel, Pattern Recognition 43(10), 2010, and Barshan and Yüksek 2014 evaluate all "
    "five units together (10-fold and leave-one-subject-out); not this two-modality person split, no figure quoted",
    "speechcifar": "two unimodal sets paired by class; Warden 2018 (arXiv:1804.03209): 88.2 % on the Speech Commands "
    "v0.02 test set's 12 classes after training on ~85k clips; CIFAR-10 (Krizhevsky 2009) is scored with 50k training "
    "images; neither protocol is this one (2.7k pairs), no figure applies",
}


def features(x: np.ndarray) -> np.ndarray:
    """(N, C, T) series -> (N, 14 C) standard per-channel features."""
    spec = np.abs(np.fft.rfft(x - x.mean(axis=2, keepdims=True), axis=2))
    parts = [x.mean(2), x.std(2), x.min(2), x.max(2), np.percentile(x, 25, axis=2), np.percentile(x, 75, axis=2)]
    parts += [b.mean(2) for b in np.array_split(spec, 8, axis=2)]
    return np.concatenate(parts, axis=1)


def image_features(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) images -> (N, C H W) raw pixels."""
    return x.reshape(len(x), -1).astype(np.float64)


LOGMEL = {"n_fft": 512, "hop": 256, "n_mels": 40}  # the logmel_cnn encoder's defaults (docs/spec.md)


def audio_features(x: np.ndarray, rate_hz: float, chunk: int = 256) -> np.ndarray:
    """(N, C, T) waveforms -> (N, 2 n_mels C): per channel and log-mel band, the mean and std over time of the
    log-mel power (scipy's STFT, periodic Hann window, no padding; the HTK mel filterbank of the model's own front
    end, trainer/models/logmel.py). Chunks of `chunk` clips keep the complex spectrogram small."""
    from scipy.signal import stft

    from edgefuse.trainer.models.logmel import mel_filterbank

    n_fft, hop, n_mels = LOGMEL["n_fft"], LOGMEL["hop"], LOGMEL["n_mels"]
    fb = mel_filterbank(rate_hz, n_fft, n_mels)  # (F, n_mels)
    out = []
    for i in range(0, len(x), chunk):
        _, _, z = stft(x[i : i + chunk], nperseg=n_fft, noverlap=n_fft - hop, boundary=None, padded=False, axis=-1)
        mel = np.einsum("ncft,fm->ncmt", np.abs(z) ** 2, fb)  # (n, C, n_mels, frames)
        logmel = np.log(mel + 1e-10)
        out.append(np.concatenate([logmel.mean(-1), logmel.std(-1)], axis=-1).reshape(len(logmel), -1))
    return np.concatenate(out).astype(np.float64)


def modality_features(x: np.ndarray, m) -> np.ndarray:
    """The reference's features for one modality, by its kind (`m` is the spec's ModalitySpec)."""
    if m.kind == "image":
        return image_features(x)
    if m.kind == "audio":
        return audio_features(x.astype(np.float32), m.rate_hz)
    if m.kind == "series":
        return features(x.astype(np.float64))
    raise SystemExit(f"modality kind {m.kind!r}: the classical reference has no features for it")


LR_C = (0.01, 0.1, 1.0, 10.0)  # logistic regression's inverse regularization strengths tried per modality


def reference(ds) -> dict:
    """Per-modality LR (C chosen per modality by validation log-loss, from LR_C) and gradient boosting, late fusion
    by summed log-probabilities; the better of the two by validation accuracy is reported.

    One BLAS/OpenMP thread: on a shared 2-core host, OpenMP threads that spin against other processes made gradient
    boosting over 10x slower; the result does not depend on the thread count."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _reference(ds)


def _reference(ds) -> dict:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    (head,) = ds.spec.heads
    y = ds.targets[head]
    tr, va, te = (ds.split == s for s in ("train", "val", "test"))
    lr = lambda c: make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))  # noqa: E731
    makers = {  # name -> candidate models; per modality, the one with the lowest validation log-loss is kept
        "logistic_regression": [lambda c=c: lr(c) for c in LR_C],
        "gradient_boosting": [lambda: HistGradientBoostingClassifier(max_iter=100, random_state=0)],
    }
    feats = {m: modality_features(ds.inputs[m], ds.spec.modalities[m]) for m in ds.spec.modality_names}
    out = {}
    for name, candidates in makers.items():
        logp = {"val": 0.0, "test": 0.0}
        per, chosen = {}, {}
        for m, X in feats.items():
            fits = []
            for i, make in enumerate(candidates):
                clf = make().fit(X[tr], y[tr])
                lv, lt = (np.log(clf.predict_proba(X[s]) + 1e-12) for s in (va, te))
                fits.append((-lv[np.arange(len(lv)), y[va]].mean(), i, lv, lt))
            _, i, lv, lt = min(fits, key=lambda f: f[0])
            per[m] = float((lt.argmax(1) == y[te]).mean())
            if len(candidates) > 1:
                chosen[m] = LR_C[i]
            logp = {"val": logp["val"] + lv, "test": logp["test"] + lt}
        out[name] = {
            "unimodal": per,
            "val_accuracy": float((logp["val"].argmax(1) == y[va]).mean()),
            "accuracy": float((logp["test"].argmax(1) == y[te]).mean()),
            **({"C": chosen} if chosen else {}),
        }
    best = max(out, key=lambda k: out[k]["val_accuracy"])
    return {"chosen": best, **out[best], "all": out}


def onnx_latency_ms(run: Path, out: Path, iters: int = 300) -> float:
    """p50 batch-1 latency of the exported fp32 model in ONNX Runtime, 1 thread."""
    import onnxruntime as ort

    from edgefuse.trainer.checkpoint import load_run
    from edgefuse.trainer.models.onnx import example_inputs, to_onnx

    spec, model, _ = load_run(run)
    path = out / "model.onnx"
    to_onnx(model, spec, path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), example_inputs(spec, batch=1), strict=True)}
    for _ in range(30):
        sess.run(None, feed)
    times = []
    for _ in range(iters):
        t = time.perf_counter_ns()
        sess.run(None, feed)
        times.append((time.perf_counter_ns() - t) / 1e6)
    return float(np.percentile(times, 50))


def bench(name: str, seeds: int, baseline_seeds: int | None) -> dict:
    spec = load_spec(HERE / f"{name}.yaml")
    data = ROOT / "data" / "realdata" / name
    out = ROOT / "runs" / "realdata" / name
    ds = load_dataset(spec, data, progress=False)
    t0 = time.perf_counter()
    tr = train_seeds(spec, data, out, seeds, progress=False, dataset=ds)
    ev = evaluate_seeds(out, data, out / "report.json", seeds, baseline_seeds, progress=False, dataset=ds)
    ref = reference(ds)
    best_uni = max(ev["unimodal"], key=lambda m: ev["unimodal"][m]["mean"])
    row = {
        "dataset": name,
        "samples": {s: int((ds.split == s).sum()) for s in ("train", "val", "test")},
        "fused": ev["accuracy"],
        "macro_f1": ev["macro_f1"],
        "ece_before": ev["ece_before"],
        "ece_after": ev["ece_after"],
        "unimodal": ev["unimodal"],
        "per_seed": ev["seeds"],
        "reference": ref,
        "published": PUBLISHED.get(name, ""),
        "params": json.loads((seed_dirs(out)[0] / "metrics.json").read_text())["params"],
        "train_time_s": tr["train_time_s"],
        "onnx_latency_ms": onnx_latency_ms(seed_dirs(out)[0], out),
        "wall_s": time.perf_counter() - t0,
    }
    acc = row["fused"]["mean"]
    row["pass"] = {
        "beats_reference_by_3": acc - ref["accuracy"] >= 0.03,
        "beats_best_unimodal_by_5": acc - ev["unimodal"][best_uni]["mean"] >= 0.05,
        "seed_std_le_1.5": row["fused"]["std"] <= 0.015,
        "ece_le_0.05": row["ece_after"]["mean"] <= 0.05,
        "params_le_500k": row["params"] <= 500_000,
        "onnx_le_1ms": row["onnx_latency_ms"] <= 1.0,
        "train_le_10min": row["train_time_s"]["mean"] * 1 <= 600,
    }
    return row


def section(rows: list[dict], seeds: int, cmd: str) -> str:
    def pm(d: dict) -> str:
        n = f" (n={d['n']})" if d.get("n", seeds) < seeds else ""
        return f"{100 * d['mean']:.1f} ± {100 * d['std']:.1f}{n}"

    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Real data",
        "",
        f"`{cmd}` on {platform.machine()} ({when}); {seeds} seeds, mean ± std in %. Data: public recordings no one",
        "here wrote, converted by benchmarks/realdata/<name>.py (source repository and commit in its docstring).",
        "",
        "| dataset | train/val/test | fused (default recipe) | macro F1 | best edgefuse unimodal | classical late fusion "
        "| ECE before → after T | params | ONNX b1 p50 | train/seed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        best = max(r["unimodal"], key=lambda m: r["unimodal"][m]["mean"])
        s, ref = r["samples"], r["reference"]
        lines.append(
            f"| {r['dataset']} | {s['train']}/{s['val']}/{s['test']} | {pm(r['fused'])} | {pm(r['macro_f1'])} | "
            f"{best}: {pm(r['unimodal'][best])} | {100 * ref['accuracy']:.1f} ({ref['chosen']}; per modality "
            + ", ".join(f"{m} {100 * v:.1f}" for m, v in ref["unimodal"].items())
            + f") | {r['ece_before']['mean']:.3f} → {r['ece_after']['mean']:.3f} | {r['params']:,} | "
            f"{r['onnx_latency_ms']:.2f} ms | {r['train_time_s']['mean']:.0f} s |"
        )
    lines += ["", "Targets (issue 10), pass/fail as measured:", ""]
    for r in rows:
        best = max(r["unimodal"], key=lambda m: r["unimodal"][m]["mean"])
        gap_ref = 100 * (r["fused"]["mean"] - r["reference"]["accuracy"])
        gap_uni = 100 * (r["fused"]["mean"] - r["unimodal"][best]["mean"])
        lines.append(
            f"- {r['dataset']}: fused - classical {gap_ref:+.1f} pts, fused - best unimodal {gap_uni:+.1f} pts; "
        )
        lines[-1] += ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in r["pass"].items())
        lines.append(f"  published: {r['published']}")
        if r["reference"]["accuracy"] > 0.97:
            lines.append(
                f"  the classical reference scores {100 * r['reference']['accuracy']:.1f} % here, so a +3-point margin "
                "over it is out of reach on this split"
            )
        for p in r["per_seed"]:
            ci = p["ci95"]["accuracy"]
            lines.append(
                f"  - {Path(p['run']).name}: {100 * p['accuracy']:.1f} % (95 % CI {100 * ci[0]:.1f}-{100 * ci[1]:.1f})"
            )
    return "\n".join(lines)


def with_carried(text: str, measured: list[str]) -> str:
    """This run's section plus the rows and targets of datasets measured in earlier runs, each earlier run named by
    its command and date."""
    path = ROOT / "BENCHMARKS.md"
    rows, targets, runs = carried(path.read_text() if path.exists() else "", measured)
    if not rows:
        return text
    lines = text.splitlines()
    table_end = max(i for i, line in enumerate(lines) if line.startswith("| "))
    lines[table_end + 1 : table_end + 1] = rows
    lines += targets
    for cmd, names in runs.items():
        lines += [
            "",
            f"Earlier: {cmd}",
            f"(the rows of {', '.join(names)} are from that run, with the default recipe of its day)",
        ]
    return "\n".join(lines)


def carried(text: str, measured: list[str]) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """From the current section: the table rows and target lines of the datasets this run did not measure, and
    {earlier command line: [its datasets]}, so that re-measuring one dataset keeps the others' last figures."""
    m = re.search(r"<!-- realdata:begin -->(.*?)<!-- realdata:end -->", text, flags=re.S)
    if not m:
        return [], [], {}
    rows, targets, keep, head, pending = [], [], False, None, None
    origin: dict[str, str] = {}  # dataset -> the command line of the run that measured it
    for line in m.group(1).splitlines():
        name = re.match(r"^\| (\w+) \| \d", line)
        if name and name.group(1) not in measured:
            rows.append(line)
        bullet = re.match(r"^- (\w+): ", line)
        if bullet:
            keep = bullet.group(1) not in measured
        elif not line.startswith("  "):
            keep = False
        if keep:
            targets.append(line)
        if line.startswith("`python benchmarks/realdata/bench_realdata.py") and head is None:
            head = re.sub(r"\); .*", ")", line)
        if line.startswith("Earlier: "):
            pending = line.removeprefix("Earlier: ")
        listed = re.match(r"^\(the rows of (.*?) are from that run", line)
        if listed and pending:
            origin.update({n: pending for n in listed.group(1).split(", ")})
    runs: dict[str, list[str]] = {}
    for r in rows:
        n = r.split(" | ")[0][2:]
        runs.setdefault(origin.get(n, head or "(command not recorded)"), []).append(n)
    return rows, targets, runs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="barbell", help="comma list of benchmarks/realdata/<name>.yaml")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument(
        "--baseline-seeds", type=int, default=None, help="train the unimodal baselines for the first N seeds only"
    )
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    p.add_argument("--render", action="store_true", help="only re-render the section from runs/realdata/realdata.json")
    args = p.parse_args()
    names = args.datasets.split(",")
    known = sorted(f.stem for f in HERE.glob("*.yaml"))
    unknown = [name for name in names if name not in known]  # all checked before the first hour-long training
    if unknown:
        p.error(f"--datasets: no benchmarks/realdata/{unknown[0]}.yaml; known: {', '.join(known)}")
    for name in names:
        if not args.render and not (ROOT / "data" / "realdata" / name / "labels.csv").is_file():
            p.error(
                f"data/realdata/{name}: not converted yet; see benchmarks/realdata/{name}.py "
                f"(python benchmarks/realdata/{name}.py convert --src <snapshot> --out data/realdata/{name})"
            )
    cmd = f"python benchmarks/realdata/bench_realdata.py --datasets {args.datasets} --seeds {args.seeds}"
    cmd += f" --baseline-seeds {args.baseline_seeds}" if args.baseline_seeds else ""
    if args.render:
        saved = ROOT / "runs" / "realdata" / "realdata.json"
        if not saved.is_file():
            p.error(f"--render: {saved.relative_to(ROOT)} not found; run the benchmark first")
        rows = json.loads(saved.read_text())
        for r in rows:
            r["published"] = PUBLISHED.get(r["dataset"], r["published"])
        text = section(rows, args.seeds, cmd)
        write_section(ROOT / "BENCHMARKS.md", "realdata", with_carried(text, [r["dataset"] for r in rows]))
        return 0
    rows = []
    for name in names:  # each dataset's numbers are written as soon as they are measured
        try:
            rows.append(bench(name, args.seeds, args.baseline_seeds))
        except (SpecError, DataError) as err:  # a spec or data file that does not load: one line, no traceback
            print(f"bench_realdata: {name}: {str(err).replace(chr(10), '; ')}", file=sys.stderr)
            return 2
        out = ROOT / "runs" / "realdata" / "realdata.json"
        out.write_text(json.dumps(rows, indent=2) + "\n")
        text = section(rows, args.seeds, cmd)
        print(text, flush=True)
        if not args.no_write:
            write_section(ROOT / "BENCHMARKS.md", "realdata", with_carried(text, [r["dataset"] for r in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
