"""The `edgefuse` command line: every verb has copy-paste help, and input errors are one clear line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgefuse.cli import VERBS, build_parser, main


def test_every_verb_has_help_with_an_example(capsys):
    for verb in VERBS:
        with pytest.raises(SystemExit) as info:
            main([verb.name, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert f"edgefuse {verb.name}" in out and "example:" in out


def test_handlers_point_at_importable_names():
    # every handler string is "module:function"; the module path sits under the edgefuse distribution
    for verb in VERBS:
        module, func = verb.handler.split(":")
        assert module.startswith("edgefuse.") and func.startswith("cli_"), verb.handler


def test_bad_config_is_one_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodalities: {}\nlabels: {a: [x]}\nmodel: {encoders: {}}\n")
    r = subprocess.run(
        [sys.executable, "-m", "edgefuse.cli", "synth", "--config", str(bad), "--out", str(tmp_path / "d")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert "bad.yaml" in r.stderr and "labels.a: a head needs at least two classes" in r.stderr


def test_help_does_not_import_torch():
    code = "import sys; from edgefuse.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    assert build_parser().prog == "edgefuse"


def test_every_help_example_parses_and_int8_exports_have_data():
    # each example line of `edgefuse --help` and of every verb's help is a command the parser accepts, and an
    # int8 export names --data (INT8 is calibrated on the training split; without it the export always fails)
    from edgefuse.cli import EPILOG

    def words(line: str) -> list[str]:  # the command, without a comment or a shell redirection of its output
        return line.split("#")[0].split(">")[0].split()

    lines = [words(ln) for ln in EPILOG.splitlines() if ln.strip().startswith("edgefuse ")]
    lines += [words(ln) for v in VERBS for ln in v.examples.splitlines()]
    assert len(lines) > 15
    for cmd in lines:
        build_parser().parse_args(cmd[1:])
        if cmd[1] == "export" and "int8" in " ".join(cmd):
            assert "--data" in cmd, cmd
