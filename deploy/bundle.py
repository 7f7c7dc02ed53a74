"""A model bundle on disk: BUNDLE/manifest.json plus the files it lists, each checked against its sha256.

Files the manifest does not list (TensorRT engines built later on the target, by `edgefuse build-engine`) are
allowed; the files it lists must be present and unaltered.

Signatures (optional): `edgefuse sign --bundle B --key release.ed25519` writes B/manifest.sig, an ed25519 signature
of manifest.json's bytes. The manifest holds every file's sha256, so the signature covers them all: a file altered
and re-hashed into the manifest breaks it. When a public key is configured (`public_key=`, or the environment
variable EDGEFUSE_BUNDLE_PUBLIC_KEY naming a .ed25519.pub file), load_bundle refuses a bundle that is unsigned or
whose signature does not verify.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from edgefuse.errors import BundleError
from edgefuse.manifest import ENGINE_VARIANT, MANIFEST_NAME, PRECISIONS, Manifest, load_manifest
from edgefuse.spec import ScenarioSpec


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Bundle:
    """A verified bundle: its folder, manifest and scenario spec."""

    dir: Path
    manifest: Manifest
    spec: ScenarioSpec

    def variant_path(self, variant: str) -> Path:
        """The ONNX file of a variant ("fp32", "fp16", "int8", "int8-trt"); BundleError if it was not exported."""
        v = self.manifest.variants.get(variant)
        if v is None:
            have = ", ".join(self.manifest.variants) or "none"
            precision = variant.split("-")[0]
            data = " --data DATA" if precision == "int8" else ""  # INT8 is calibrated on the training split
            raise BundleError(
                f"{self.dir}: no {variant} variant in this bundle (has: {have}); "
                f"re-export with `edgefuse export --precision {precision}{data}`"
            )
        return self.dir / v.file

    def engine_source(self, precision: str) -> Path:
        """The ONNX file a TensorRT engine of `precision` is built from (int8: the symmetric "int8-trt" graph)."""
        return self.variant_path(ENGINE_VARIANT[precision])

    @property
    def precisions(self) -> list[str]:
        """The precisions ONNX Runtime can run from this bundle (variants named after a precision)."""
        return [p for p in self.manifest.variants if p in PRECISIONS]


def verify_files(bundle_dir: Path, files: dict[str, str]) -> None:
    """Check every listed file exists and has its recorded sha256; BundleError names the first bad file."""
    for name, expected in files.items():
        path = bundle_dir / name
        if not path.is_file():
            raise BundleError(f"{path}: missing from the bundle (manifest lists it)")
        found = sha256_file(path)
        if found != expected:
            raise BundleError(
                f"{path}: altered since export (sha256 expected {expected[:12]}..., found {found[:12]}...)"
            )


SIGNATURE_NAME = "manifest.sig"
PUBLIC_KEY_ENV = "EDGEFUSE_BUNDLE_PUBLIC_KEY"


def sign_bundle(bundle_dir: str | Path, secret_key: str | Path) -> Path:
    """Write BUNDLE/manifest.sig: the ed25519 signature (hex) of manifest.json's bytes."""
    from edgefuse.keys import read_ed25519

    bundle_dir = Path(bundle_dir)
    key = read_ed25519(secret_key, "--key", secret=True)
    load_bundle(bundle_dir)  # sign only a bundle whose files match its manifest
    sig = bundle_dir / SIGNATURE_NAME
    sig.write_text(key.sign((bundle_dir / MANIFEST_NAME).read_bytes()).hex() + "\n")
    return sig


def verify_signature(bundle_dir: Path, public_key: str | Path) -> None:
    """BundleError unless BUNDLE/manifest.sig is a valid signature of manifest.json by `public_key`."""
    from edgefuse.keys import KeyFileError, read_ed25519

    try:
        key = read_ed25519(public_key, f"bundle public key ({PUBLIC_KEY_ENV})", secret=False)
    except KeyFileError as err:
        raise BundleError(str(err)) from None
    from cryptography.exceptions import InvalidSignature  # present: read_ed25519 required the package

    sig_path = bundle_dir / SIGNATURE_NAME
    try:
        sig = bytes.fromhex(sig_path.read_text().strip())
    except FileNotFoundError:
        raise BundleError(f"{sig_path}: missing; a public key is configured, so bundles must be signed") from None
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise BundleError(f"{sig_path}: unreadable signature ({err})") from None
    try:
        key.verify(sig, (bundle_dir / MANIFEST_NAME).read_bytes())
    except InvalidSignature:
        raise BundleError(
            f"{bundle_dir / MANIFEST_NAME}: signature does not verify with {public_key}; the bundle was altered "
            "after signing or signed with another key"
        ) from None


def load_bundle(bundle_dir: str | Path, verify: bool = True, public_key: str | Path | None = None) -> Bundle:
    """Read BUNDLE/manifest.json (schema version checked) and verify every listed file's sha256, and the
    signature when a public key is given or configured in EDGEFUSE_BUNDLE_PUBLIC_KEY."""
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise BundleError(f"{bundle_dir}: bundle folder not found")
    public_key = public_key or os.environ.get(PUBLIC_KEY_ENV) or None
    if verify and public_key:
        verify_signature(bundle_dir, public_key)  # first: nothing of an unsigned bundle is trusted, not even JSON
    manifest = load_manifest(bundle_dir / MANIFEST_NAME)
    if verify:
        verify_files(bundle_dir, manifest.files)
    try:
        spec = manifest.scenario()
    except Exception as err:  # noqa: BLE001 - a SpecError inside a manifest is a bundle problem
        raise BundleError(f"{bundle_dir / MANIFEST_NAME}: bad scenario spec: {err}") from None
    return Bundle(dir=bundle_dir, manifest=manifest, spec=spec)


def cli_sign(args: argparse.Namespace) -> int:
    """`edgefuse sign --bundle BUNDLE --key NAME.ed25519`."""
    sig = sign_bundle(args.bundle, args.key)
    print(f"signed {Path(args.bundle) / MANIFEST_NAME} -> {sig}")
    return 0
