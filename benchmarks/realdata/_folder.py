"""What every real-data converter shares: labels.csv in the folder dataset format (docs/dataset.md) and the
`convert --src --out` command line."""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

# the person of a converted sample name, per dataset with people: a01_s1_t1 -> s1 (utdmhad), a01_p7_s01 -> p7 (dsads)
PERSON = {"utdmhad": re.compile(r"_(s\d+)_"), "dsads": re.compile(r"_(p\d+)_")}


def person(dataset: str, sample: str) -> str:
    """The person a converted sample of `dataset` was recorded from (PERSON): 's1', 'p7'."""
    return PERSON[dataset].search(sample).group(1)


def write_labels(out: Path, head: str, rows: list[tuple[str, str, str]], groups: list[str] | None = None) -> None:
    """out/labels.csv: one (sample, split, <head>) row per sample, and a `group` column when `groups` is given."""
    with open(out / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sample", "split", head, *(["group"] if groups is not None else [])])
        w.writerows(rows if groups is None else [(*r, g) for r, g in zip(rows, groups, strict=True)])


def resplit(
    data: Path, root: Path, split_of: Callable[[str, str], str], group_of: Callable[[str], str] | None = None
) -> Path:
    """root/labels.csv: data's labels.csv with each sample's split replaced by split_of(sample, split) (and a group
    column group_of(sample), when given), and root/samples linked to data/samples; for benchmarks that re-split a
    converted dataset (person folds)."""
    root.mkdir(parents=True)
    (root / "samples").symlink_to(data.resolve() / "samples", target_is_directory=True)
    with open(data / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    head = [k for k in rows[0] if k not in ("sample", "split")][0]
    groups = [group_of(r["sample"]) for r in rows] if group_of is not None else None
    write_labels(root, head, [(r["sample"], split_of(r["sample"], r["split"]), r[head]) for r in rows], groups)
    return root


def converter_main(
    convert: Callable[..., dict[str, int]],
    doc: str | None,
    what: str,
    default_out: str,
    argv: list[str] | None,
    second: str | None = None,
) -> int:
    """`<converter>.py convert --src SNAPSHOT [--src2 SNAPSHOT] --out FOLDER`: run `convert(src, [src2,] out)` and
    print the samples per split. `second` (its help text) adds --src2, for a dataset paired from two repositories."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert", help=f"{what} of a snapshot -> folder dataset")
    c.add_argument("--src", type=Path, required=True, help="work tree or bare git directory of the repository")
    if second:
        c.add_argument("--src2", type=Path, required=True, help=f"{second}: work tree or bare git directory")
    c.add_argument("--out", type=Path, default=Path(default_out))
    args = p.parse_args(argv)
    try:
        counts = convert(args.src, args.src2, args.out) if second else convert(args.src, args.out)
    except subprocess.CalledProcessError as err:  # git on a path that is not the expected repository's snapshot
        raw = err.stderr or ""
        detail = (raw.decode(errors="replace") if isinstance(raw, bytes) else raw).strip().splitlines()
        print(f"{args.src}: git {err.cmd[3] if len(err.cmd) > 3 else ''} failed: {detail[0] if detail else err}",
              file=sys.stderr)  # fmt: skip
        return 1
    except (OSError, ValueError, KeyError) as err:  # a missing or unreadable file, a record of the wrong shape
        print(f"{args.src}: {err}", file=sys.stderr)
        return 1
    except SystemExit as err:  # a converter's own one-line message (it names the path)
        if not isinstance(err.code, str):
            raise
        print(err.code, file=sys.stderr)
        return 1
    print(f"{args.out}: {sum(counts.values())} samples {counts}")
    return 0
