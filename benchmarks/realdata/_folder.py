"""What every real-data converter shares: labels.csv in the folder dataset format (docs/dataset.md) and the
`convert --src --out` command line."""

from __future__ import annotations

import argparse
import csv
from collections.abc import Callable
from pathlib import Path


def write_labels(out: Path, head: str, rows: list[tuple[str, str, str]]) -> None:
    """out/labels.csv: one (sample, split, <head>) row per sample."""
    with open(out / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sample", "split", head])
        w.writerows(rows)


def converter_main(
    convert: Callable[[Path, Path], dict[str, int]],
    doc: str | None,
    what: str,
    default_out: str,
    argv: list[str] | None,
) -> int:
    """`<converter>.py convert --src SNAPSHOT --out FOLDER`: run `convert` and print the samples per split."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert", help=f"{what} of a snapshot -> folder dataset")
    c.add_argument("--src", type=Path, required=True, help="work tree or bare git directory of the repository")
    c.add_argument("--out", type=Path, default=Path(default_out))
    args = p.parse_args(argv)
    counts = convert(args.src, args.out)
    print(f"{args.out}: {sum(counts.values())} samples {counts}")
    return 0
