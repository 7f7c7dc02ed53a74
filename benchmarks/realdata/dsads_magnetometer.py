"""Why DSADS's test people's `standing` was read as `elevator_still`: the figures BENCHMARKS.md "Real data" cites.

    python benchmarks/realdata/dsads_magnetometer.py          # after dsads.py convert (and bench_realdata for part 3)

1. Each of the classical reference's features (bench_realdata.features) scored alone on standing vs elevator_still:
   ROC AUC in the training people and in the test people, the best training separators first.
2. The classical logistic regression (C = 1, all features) trained as is, on four copies of the training set turned
   to random compass headings (trainer/augment.turn_heading, the training option model.heading_deg), and without
   the magnetometer channels: test accuracy and how many of the test people's 120 standing samples it gets right.
3. If runs/realdata/dsads holds the bench's runs: per fused seed, standing and elevator_still right out of 120; for
   seed 0's unimodal baselines, how often both are wrong, a perfect pick between them, and their summed
   log-probabilities, how many of the samples both get wrong the fused seed-0 model gets right, and two ensembles
   by summed log-probabilities (fused seed 0 + both unimodal models; the fused seeds).
Prints only; one BLAS thread.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_realdata import ROOT, features  # noqa: E402

from edgefuse.spec import compass_units, load_spec  # noqa: E402
from edgefuse.trainer.data import load_dataset  # noqa: E402

FEATURES = ["mean", "std", "min", "max", "p25", "p75"] + [f"fft{i}" for i in range(8)]


def feature_auc(ds, spec, pair: tuple[int, int]) -> None:
    from sklearn.metrics import roc_auc_score

    y = ds.targets["activity"]
    names, cols = [], []
    for m in spec.modality_names:
        channels = spec.modalities[m].channels
        cols.append(features(ds.inputs[m].astype(np.float64)))
        names += [f"{f} {c}" for f in FEATURES for c in channels]
    x = np.concatenate(cols, axis=1)
    rows = []
    for split in ("train", "test"):
        keep = (ds.split == split) & np.isin(y, pair)
        rows.append([roc_auc_score(y[keep] == pair[1], x[keep, j]) for j in range(x.shape[1])])
    order = np.argsort(-np.abs(np.array(rows[0]) - 0.5))
    print("| feature (standing vs elevator_still) | AUC, training people | AUC, test people |\n|---|---|---|")
    for j in order[:8]:
        print(f"| {names[j]} | {rows[0][j]:.3f} | {rows[1][j]:.3f} |")


def turned(x: dict[str, np.ndarray], spec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One copy of the samples, each turned to a random compass heading (one angle per sample for all units)."""
    import torch

    from edgefuse.trainer.augment import turn_heading

    theta = torch.from_numpy(rng.uniform(-np.pi, np.pi, len(next(iter(x.values())))))
    out = {}
    for m, v in x.items():
        ms = spec.modalities[m]
        units = compass_units(list(ms.channels), ms.rigid_groups)
        out[m] = turn_heading(torch.from_numpy(v.astype(np.float64)), units, theta).numpy()
    return out


def logistic(ds, spec, pair: tuple[int, int]) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y, tr, te = ds.targets["activity"], ds.split == "train", ds.split == "test"
    test = {m: v[te] for m, v in ds.inputs.items()}
    train = {m: v[tr] for m, v in ds.inputs.items()}
    rng = np.random.default_rng(0)
    copies = [turned(train, spec, rng) for _ in range(4)]
    mag = {m: [i for i, c in enumerate(spec.modalities[m].channels) if "_mag_" in c] for m in spec.modality_names}
    drop = lambda d: {m: np.delete(v, mag[m], axis=1) for m, v in d.items()}  # noqa: E731
    variants = {
        "as is": (train, y[tr], test),
        "4 heading-turned copies": (
            {m: np.concatenate([c[m] for c in copies]) for m in train},
            np.tile(y[tr], 4),
            test,
        ),
        "no magnetometer channels": (drop(train), y[tr], drop(test)),
    }
    print("\n| logistic regression trained | test accuracy | test standing right |\n|---|---|---|")
    for name, (xtr, ytr, xte) in variants.items():
        feat = lambda d: np.concatenate([features(d[m].astype(np.float64)) for m in spec.modality_names], 1)  # noqa: E731
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000)).fit(feat(xtr), ytr)
        p = clf.predict(feat(xte))
        right = int((p[y[te] == pair[0]] == pair[0]).sum())
        print(f"| {name} | {100 * (p == y[te]).mean():.1f} % | {right} of {(y[te] == pair[0]).sum()} |")


def runs(ds, pair: tuple[int, int]) -> None:
    import torch

    from edgefuse.trainer.checkpoint import load_run
    from edgefuse.trainer.evaluate import run_mask
    from edgefuse.trainer.train import predict_logits, to_tensors

    base = ROOT / "runs" / "realdata" / "dsads"
    seeds = sorted(base.glob("seed-*/checkpoint.pt"))
    if not seeds:
        print(f"\n{base}: no runs; run bench_realdata.py --datasets dsads for part 3")
        return
    te = ds.subset("test")
    x, _, y = to_tensors(te)
    y = y["activity"].numpy()
    logp = {}
    for run in [c.parent for c in seeds] + sorted(p.parent for p in base.glob("seed-0/baselines/only-*/checkpoint.pt")):
        spec, model, ck = load_run(run)
        with torch.no_grad():
            logits = predict_logits(model, x, run_mask(spec, ck, te.mask))["activity"]
        logp[run.relative_to(base).as_posix()] = torch.log_softmax(logits, dim=1).numpy()
    print("\n| run | test accuracy | standing right | elevator_still right |\n|---|---|---|---|")
    for name, lp in logp.items():
        p = lp.argmax(1)
        s, e = ((p[y == c] == c).sum() for c in pair)
        print(
            f"| {name} | {100 * (p == y).mean():.1f} % | {s} of {(y == pair[0]).sum()} | {e} of {(y == pair[1]).sum()} |"
        )
    uni = [v for k, v in logp.items() if "baselines" in k]
    if len(uni) == 2:
        a, b = (u.argmax(1) == y for u in uni)
        summed = ((uni[0] + uni[1]).argmax(1) == y).mean()
        print(
            f"\nseed-0 unimodal models: both wrong {100 * (~a & ~b).mean():.1f} %, a perfect pick between them "
            f"{100 * (a | b).mean():.1f} %, summed log-probabilities {100 * summed:.1f} %"
        )
        if "seed-0" in logp:
            fused = logp["seed-0"].argmax(1) == y
            print(
                f"the fused seed-0 model gets {(fused & ~a & ~b).sum()} of the {(~a & ~b).sum()} both get wrong right"
            )
            three = ((logp["seed-0"] + uni[0] + uni[1]).argmax(1) == y).mean()
            fused_all = [v for k, v in logp.items() if "baselines" not in k]
            print(
                f"ensembles, log-probabilities summed: fused seed-0 + both unimodal models {100 * three:.1f} %, "
                f"the {len(fused_all)} fused seeds {100 * (sum(fused_all).argmax(1) == y).mean():.1f} %"
            )


def main() -> int:
    from threadpoolctl import threadpool_limits

    spec = load_spec(HERE / "dsads.yaml")
    data = ROOT / "data" / "realdata" / "dsads"
    if not data.is_dir():
        raise SystemExit(f"{data}: not found; convert it first (benchmarks/realdata/dsads.py)")
    ds = load_dataset(spec, data, progress=False)
    acts = spec.labels["activity"]
    pair = (acts.index("standing"), acts.index("elevator_still"))
    with threadpool_limits(1):
        feature_auc(ds, spec, pair)
        logistic(ds, spec, pair)
        runs(ds, pair)
    return 0


if __name__ == "__main__":
    sys.exit(main())
