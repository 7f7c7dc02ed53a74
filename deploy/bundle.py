"""A model bundle on disk: BUNDLE/manifest.json plus the files it lists, each checked against its sha256.

Files the manifest does not list (TensorRT engines built later on the target, by `edgefuse build-engine`) are
allowed; the files it lists must be present and unaltered.
"""

from __future__ import annotations

import hashlib
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


def load_bundle(bundle_dir: str | Path, verify: bool = True) -> Bundle:
    """Read BUNDLE/manifest.json (schema version checked) and verify every listed file's sha256."""
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise BundleError(f"{bundle_dir}: bundle folder not found")
    manifest = load_manifest(bundle_dir / MANIFEST_NAME)
    if verify:
        verify_files(bundle_dir, manifest.files)
    try:
        spec = manifest.scenario()
    except Exception as err:  # noqa: BLE001 - a SpecError inside a manifest is a bundle problem
        raise BundleError(f"{bundle_dir / MANIFEST_NAME}: bad scenario spec: {err}") from None
    return Bundle(dir=bundle_dir, manifest=manifest, spec=spec)
