"""Every verb on a catalogue of bad inputs: a non-zero exit with one `edgefuse <verb>: error:` line that names the
file or field, and never a traceback (in-process for speed; a few cases also as real subprocesses)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import yaml

from edgefuse.cli import main

CONFIGS = Path(__file__).parents[2] / "configs"


def png_header_only(path: Path, width: int, height: int) -> None:
    """A 100-byte PNG whose header claims width x height (a decompression bomb's opening)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)))


def home(tmp_path: Path, name: str, edit) -> str:
    data = yaml.safe_load((CONFIGS / "smart_home.yaml").read_text())
    edit(data)
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return str(p)


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, str]:
    """Bad files of every kind the CLI reads, keyed by what is wrong with them."""
    d = tmp_path_factory.mktemp("bad")
    out = {"missing": str(d / "nope"), "dir": str(d)}
    (d / "not_yaml.yaml").write_text("modalities: [unclosed\n")
    out["not_yaml"] = str(d / "not_yaml.yaml")
    (d / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage")
    out["binary"] = str(d / "binary.yaml")
    out["inf_rate"] = home(d, "inf_rate.yaml", lambda c: c["modalities"]["env"].update(rate_hz=float("inf")))
    out["huge_window"] = home(d, "huge_window.yaml", lambda c: c["modalities"]["env"].update(window_s=1e12))
    out["huge_shape"] = home(d, "huge_shape.yaml", lambda c: c["modalities"]["camera"].update(shape=[10**6, 10**6]))
    # a bundle with a garbage manifest, and one whose manifest is not JSON at all
    (d / "bundle").mkdir()
    (d / "bundle" / "manifest.json").write_text(json.dumps({"schema_version": 1, "inputs": 5}))
    out["bundle"] = str(d / "bundle")
    (d / "bundle2").mkdir()
    (d / "bundle2" / "manifest.json").write_bytes(b"[" * 100_000)
    out["bundle2"] = str(d / "bundle2")
    # a run folder without a checkpoint, and one with a garbage checkpoint
    (d / "run").mkdir()
    (d / "run" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    out["run"] = str(d / "run")
    # a dataset whose one image claims 40000 x 40000 pixels in a 100-byte file
    ds = d / "data"
    (ds / "samples" / "s0").mkdir(parents=True)
    png_header_only(ds / "samples" / "s0" / "camera.png", 40000, 40000)
    (ds / "labels.csv").write_text("sample,split,event\ns0,train,idle\n")
    out["data"] = str(ds)
    # sessions: crafted session.json, and one that is not JSON
    for name, text in [("session", json.dumps({"format": "edgefuse.session", "version": 1, "sources": {"x": 5}})),
                       ("session2", "{")]:  # fmt: skip
        (d / name).mkdir()
        (d / name / "session.json").write_text(text)
    out["session"], out["session2"] = str(d / "session"), str(d / "session2")
    return out


CATALOGUE = [
    # (argv with {placeholders}, text the error must contain)
    ("synth --config {missing} --out {dir}/o", "nope"),
    ("synth --config {not_yaml} --out {dir}/o", "not_yaml.yaml"),
    ("synth --config {binary} --out {dir}/o", "binary.yaml"),
    ("synth --config {inf_rate} --out {dir}/o", "modalities.env.rate_hz"),
    ("synth --config {huge_window} --out {dir}/o", "modalities.env.window_s"),
    ("synth --config {huge_shape} --out {dir}/o", "modalities.camera"),
    ("synth --config {dir} --out {dir}/o", "bad"),
    ("train --config {inf_rate} --data {data} --out {dir}/r", "modalities.env.rate_hz"),
    ("train --config " + str(CONFIGS / "smart_home.yaml") + " --data {missing} --out {dir}/r", "nope"),
    ("train --config " + str(CONFIGS / "smart_home.yaml") + " --data {data} --out {dir}/r", "camera.png"),
    ("eval --run {missing} --data {data} --report {dir}/r.json", "nope"),
    ("eval --run {run} --data {data} --report {dir}/r.json", "checkpoint.pt"),
    ("export --run {run} --out {dir}/b", "checkpoint.pt"),
    ("export --run {missing} --out {dir}/b", "nope"),
    ("build-engine --bundle {bundle}", "edgefuse[trt]"),  # without TensorRT that comes first, naming the extra
    ("bench --bundle {bundle} --data {data}", "manifest.json"),
    ("bench --bundle {bundle2} --data {data}", "manifest.json"),
    ("run --config {inf_rate} --bundle {bundle} --duration 1", "modalities.env.rate_hz"),
    ("run --config " + str(CONFIGS / "smart_home.yaml") + " --bundle {bundle} --duration 1", "manifest.json"),
    ("run --config " + str(CONFIGS / "smart_home.yaml") + " --bundle {missing} --duration 1", "nope"),
    ("record --config {huge_shape} --out {dir}/s", "modalities.camera"),
    ("record --config {missing} --out {dir}/s", "nope"),
    ("replay --session {session} --bundle {bundle}", "sources.x.file"),
    ("replay --session {session2} --bundle {bundle}", "session.json"),
    ("replay --session {missing} --bundle {bundle}", "nope"),
    ("listen --endpoint not-an-endpoint --count 1", "not-an-endpoint"),
    ("monitor --endpoint bogus://x --port 0", "bogus://x"),
    ("monitor --port 99999", "99999"),
    ("demo --config {inf_rate} --out {dir}/demo", "modalities.env.rate_hz"),
]


@pytest.mark.parametrize(("argv", "needle"), CATALOGUE, ids=[c[0].split()[0] + str(i) for i, c in enumerate(CATALOGUE)])
def test_bad_input_is_one_named_line(argv, needle, bad, capsys):
    try:
        rc = main(argv.format(**bad).split())  # an uncaught exception fails the test with its traceback
    except SystemExit as e:  # argparse refusing an argument value: usage, then one error line
        rc = e.code
    err = capsys.readouterr().err.strip()
    verb = argv.split()[0]
    assert rc != 0, err
    last = err.splitlines()[-1] if err else ""
    assert last.startswith(f"edgefuse {verb}: error: ") or err.startswith(f"edgefuse {verb}: error: "), err
    assert needle in err, (needle, err)
    assert "Traceback" not in err and len(last) < 600


def test_real_processes_print_no_traceback(bad):
    for argv in ["replay --session {session} --bundle {bundle}", "train --config {inf_rate} --data {data} --out x",
                 "listen --endpoint not-an-endpoint --count 1"]:  # fmt: skip
        r = subprocess.run(
            [sys.executable, "-m", "edgefuse.cli", *argv.format(**bad).split()], capture_output=True, text=True
        )
        assert r.returncode == 1 and "Traceback" not in r.stderr and "error:" in r.stderr, r.stderr
