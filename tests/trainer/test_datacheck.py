"""`edgefuse check-data`: the dataset summary a user reads before training, on a real folder, and without torch."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from edgefuse.cli import main

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "smart_home.yaml")


def test_check_data_counts_every_class_per_split_and_writes_the_same_json(home_spec, home_data: Path, tmp_path, capsys):
    rows = list(csv.DictReader((home_data / "labels.csv").open()))
    assert main(["check-data", "--config", CONFIG, "--data", str(home_data), "--json",
                 str(tmp_path / "s.json")]) == 0  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    per = Counter(r["split"] for r in rows)
    assert out[0] == f"{home_data}: 24 samples (train {per['train']}, val {per['val']}, test {per['test']})"
    assert out[1] == "modalities present: camera 24; mic 24; env 24"
    s = json.loads((tmp_path / "s.json").read_text())
    counts = Counter((r["event"], r["split"]) for r in rows)
    table = s["heads"]["event"]["classes"]
    assert list(table) == home_spec.labels["event"]
    for c in home_spec.labels["event"]:
        assert table[c] == {sp: counts[c, sp] for sp in ("train", "val", "test")}
        line = next(ln for ln in out if ln.startswith(c + " "))
        assert line.split() == [c, *(str(counts[c, sp]) for sp in ("train", "val", "test"))]


def test_check_data_warns_of_a_class_never_trained_and_of_a_group_in_two_splits(home_data: Path, tmp_path, capsys):
    root = tmp_path / "d"
    shutil.copytree(home_data, root, ignore=shutil.ignore_patterns(".cache"))
    rows = list(csv.DictReader((root / "labels.csv").open()))
    gone = rows[0]["event"]
    for r in rows:
        if r["event"] == gone and r["split"] == "train":
            r["split"] = "test"
        r["group"] = "p1" if r["sample"] == rows[0]["sample"] else f"q{rows.index(r) % 3}"
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert main(["check-data", "--config", CONFIG, "--data", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"warning: event: no 'train' sample of ['{gone}']: the model cannot learn to predict them" in out
    assert "groups: 4 (" in out and "; in two splits: q0, q1, q2" in out


def test_check_data_runs_without_importing_torch(home_data: Path):
    code = (
        "import sys; from edgefuse.cli import main; "
        f"rc = main(['check-data', '--config', {CONFIG!r}, '--data', {str(home_data)!r}]); "
        "assert rc == 0 and 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr


def test_check_data_counts_the_windows_of_each_recording(tmp_path):
    from edgefuse.spec import parse_spec
    from edgefuse.trainer.data import load_dataset
    from edgefuse.trainer.datacheck import render, summary

    root = tmp_path / "d"
    for name, rows in (("r0", 50), ("r1", 30), ("r2", 20)):  # 10 Hz, 2 s windows every 1 s: 4, 2 and 1 windows
        (root / "samples" / name).mkdir(parents=True)
        (root / "samples" / name / "env.csv").write_text("a\n" + "\n".join(str(i) for i in range(rows)) + "\n")
    (root / "labels.csv").write_text("sample,split,event\nr0,train,x\nr1,val,y\nr2,test,y\n")
    spec = parse_spec(
        {
            "name": "w",
            "modalities": {"env": {"kind": "series", "rate_hz": 10, "window_s": 2.0, "channels": ["a"]}},
            "labels": {"event": ["x", "y"]},
            "train": {"window_hop_s": 1.0},
        }
    )
    s = summary(spec, load_dataset(spec, root, progress=False))
    assert s["samples"] == 7 and s["splits"] == {"train": 4, "val": 2, "test": 1}
    assert s["recordings"] == 3 and s["windows_per_recording"] == {"min": 1, "median": 2.0, "max": 4}
    assert render(s, "d").splitlines()[0] == (
        "d: 7 samples (train 4, val 2, test 1), windows of 3 recordings (1 to 4 each, median 2)"
    )
    assert s["heads"]["event"]["classes"] == {
        "x": {"train": 4, "val": 0, "test": 0},
        "y": {"train": 0, "val": 2, "test": 1},
    }
    assert s["warnings"] == ["event: no 'train' sample of ['y']: the model cannot learn to predict them"]
    assert s["modalities"] == {"env": 7}
