"""load_bundle: schema version and every listed file's sha256 checked, each problem naming the file."""

from __future__ import annotations

import json
import shutil

import pytest
from _tiny import make_run

from edgefuse.deploy.bundle import load_bundle, sha256_file
from edgefuse.deploy.export import export_bundle
from edgefuse.errors import BundleError


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    make_run(run_dir, steps=5)
    out = tmp_path_factory.mktemp("b") / "bundle"
    export_bundle(run_dir, out, None, ["fp32", "fp16"])
    return out


@pytest.fixture
def bundle_dir(exported, tmp_path):
    """A fresh copy of the exported bundle that a test may damage."""
    return shutil.copytree(exported, tmp_path / "bundle")


def test_a_good_bundle_loads(bundle_dir):
    b = load_bundle(bundle_dir)
    assert b.spec.name == "tiny" and b.precisions == ["fp32", "fp16"]
    assert b.variant_path("fp16") == bundle_dir / "model.fp16.onnx"
    assert b.manifest.variants["fp16"].sha256 == sha256_file(bundle_dir / "model.fp16.onnx")


def test_files_the_manifest_does_not_list_are_allowed(bundle_dir):
    (bundle_dir / "model.fp16.sm90.engine").write_bytes(b"built later on the target")
    assert load_bundle(bundle_dir).precisions == ["fp32", "fp16"]


def test_missing_file_is_named(bundle_dir):
    (bundle_dir / "model.fp16.onnx").unlink()
    with pytest.raises(BundleError, match=r"model.fp16.onnx: missing from the bundle"):
        load_bundle(bundle_dir)


def test_altered_file_is_named_with_both_hashes(bundle_dir):
    path = bundle_dir / "model.onnx"
    expected = sha256_file(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte in the weights
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError) as info:
        load_bundle(bundle_dir)
    msg = str(info.value)
    assert "model.onnx: altered since export" in msg
    assert expected[:12] in msg and sha256_file(path)[:12] in msg


def test_unknown_schema_version_is_refused(bundle_dir):
    path = bundle_dir / "manifest.json"
    data = json.loads(path.read_text())
    data["schema_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"manifest.json: unknown schema_version 99 \(this edgefuse reads 1\)"):
        load_bundle(bundle_dir)


def test_manifest_missing_or_broken(bundle_dir):
    path = bundle_dir / "manifest.json"
    path.write_text("{not json")
    with pytest.raises(BundleError, match="manifest.json: cannot read as JSON"):
        load_bundle(bundle_dir)
    data = {"schema_version": 1, "created": "now"}
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"manifest.json: invalid manifest: .*inputs: Field required"):
        load_bundle(bundle_dir)
    path.unlink()
    with pytest.raises(BundleError, match="manifest.json: missing; not a bundle"):
        load_bundle(bundle_dir)


def test_absent_variant_and_absent_folder(bundle_dir, tmp_path):
    with pytest.raises(BundleError, match=r"no int8 variant in this bundle \(has: fp32, fp16\).*--precision int8"):
        load_bundle(bundle_dir).variant_path("int8")
    with pytest.raises(BundleError, match="nowhere: bundle folder not found"):
        load_bundle(tmp_path / "nowhere")


def test_a_signed_bundle_refuses_a_rehashed_tampered_file(bundle_dir, tmp_path, monkeypatch, capsys):
    from edgefuse.cli import main

    keys = tmp_path / "keys"
    assert main(["keygen", "--out", str(keys), "--name", "release", "--ed25519"]) == 0
    assert main(["sign", "--bundle", str(bundle_dir), "--key", str(keys / "release.ed25519")]) == 0
    monkeypatch.setenv("EDGEFUSE_BUNDLE_PUBLIC_KEY", str(keys / "release.ed25519.pub"))
    assert load_bundle(bundle_dir).spec.name == "tiny"  # signed and intact
    # the attack: alter model.pt and write its new sha256 into the manifest, as a tool with write access could
    manifest_path = bundle_dir / "manifest.json"
    (bundle_dir / "model.pt").write_bytes((bundle_dir / "model.pt").read_bytes() + b"\0")
    m = json.loads(manifest_path.read_text())
    m["files"]["model.pt"] = sha256_file(bundle_dir / "model.pt")
    manifest_path.write_text(json.dumps(m, indent=2))
    monkeypatch.delenv("EDGEFUSE_BUNDLE_PUBLIC_KEY")
    assert load_bundle(bundle_dir)  # without a key configured, the re-hash passes: the hashes alone cannot tell
    monkeypatch.setenv("EDGEFUSE_BUNDLE_PUBLIC_KEY", str(keys / "release.ed25519.pub"))
    with pytest.raises(BundleError, match=r"manifest.json: signature does not verify"):
        load_bundle(bundle_dir)
    (bundle_dir / "manifest.sig").unlink()
    with pytest.raises(BundleError, match=r"manifest.sig: missing"):
        load_bundle(bundle_dir)
    # another key's signature, and a key file that is not a key: both refused by name
    assert main(["keygen", "--out", str(keys), "--name", "other", "--ed25519"]) == 0
    monkeypatch.delenv("EDGEFUSE_BUNDLE_PUBLIC_KEY")
    assert main(["sign", "--bundle", str(bundle_dir), "--key", str(keys / "other.ed25519")]) == 0
    monkeypatch.setenv("EDGEFUSE_BUNDLE_PUBLIC_KEY", str(keys / "release.ed25519.pub"))
    with pytest.raises(BundleError, match="signature does not verify"):
        load_bundle(bundle_dir)
    monkeypatch.setenv("EDGEFUSE_BUNDLE_PUBLIC_KEY", str(manifest_path))
    with pytest.raises(BundleError, match="not an ed25519 public key"):
        load_bundle(bundle_dir)
