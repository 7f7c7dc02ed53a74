"""Keys: CURVE key pairs for every ZeroMQ socket edgefuse opens, ed25519 key pairs for bundle signatures.

    edgefuse keygen --out keys --name runtime             # keys/runtime.key (public), keys/runtime.key_secret
    edgefuse keygen --out keys --name release --ed25519   # keys/release.ed25519 (secret), keys/release.ed25519.pub

CURVE certificates are zmq.auth's text format (what `zmq.auth.create_certificates` writes and every CURVE library
reads: Z85 keys). Where a socket is a CURVE client, `curve_client()` takes the server's public certificate and this
side's secret certificate (or makes a throwaway key pair when the server admits any client and only encryption is
wanted). docs/security.md shows the whole set-up.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgefuse.errors import EdgefuseError


class KeyFileError(EdgefuseError):
    """A key file that is missing, unreadable or of the wrong kind; the message names the file and the setting."""


def load_curve(path: str | Path, setting: str, secret: bool) -> tuple[bytes, bytes | None]:
    """(public, secret) Z85 keys from a zmq.auth certificate file; KeyFileError naming `setting` and the file."""
    from zmq.auth import load_certificate

    try:
        public, secret_key = load_certificate(Path(path))
    except (OSError, ValueError) as err:
        raise KeyFileError(f"{setting} {path}: cannot load a CURVE certificate ({err})") from None
    if secret and secret_key is None:
        raise KeyFileError(f"{setting} {path}: holds no secret key (give the .key_secret file)")
    return public, secret_key


def curve_client_keys(
    server_key: str | Path | None, client_key: str | Path | None, where: str
) -> tuple[bytes, bytes, bytes] | None:
    """(server public, client public, client secret) for a CURVE client, or None without a server key.

    With no client key, a throwaway pair: the link is encrypted, but a server that checks clients refuses it."""
    import zmq

    if server_key is None:
        if client_key is not None:
            raise KeyFileError(f"{where}: a CURVE client key needs the server's public key as well")
        return None
    server_public, _ = load_curve(server_key, f"{where} server key", secret=False)
    if client_key is None:
        public, secret = zmq.curve_keypair()
        return server_public, public, secret
    public, secret_key = load_curve(client_key, f"{where} client key", secret=True)
    return server_public, public, secret_key  # type: ignore[return-value]


def set_curve_client(sock: Any, keys: tuple[bytes, bytes, bytes] | None) -> None:
    """Apply curve_client_keys() to a socket before it connects (no-op for None)."""
    if keys is not None:
        sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = keys


def curve_client(sock: Any, server_key: str | Path | None, client_key: str | Path | None, where: str) -> None:
    """Make `sock` a CURVE client of the server whose public certificate is `server_key` (no-op when None)."""
    set_curve_client(sock, curve_client_keys(server_key, client_key, where))


def make_ed25519(out: Path, name: str) -> tuple[Path, Path]:
    """A new ed25519 key pair as hex text files: NAME.ed25519 (secret) and NAME.ed25519.pub."""
    from edgefuse._optional import require

    ed = require("cryptography.hazmat.primitives.asymmetric.ed25519", "bundle signatures")
    key = ed.Ed25519PrivateKey.generate()
    secret, public = out / f"{name}.ed25519", out / f"{name}.ed25519.pub"
    secret.write_text(key.private_bytes_raw().hex() + "\n")
    secret.chmod(0o600)
    public.write_text(key.public_key().public_bytes_raw().hex() + "\n")
    return secret, public


def read_ed25519(path: str | Path, setting: str, secret: bool) -> Any:
    """An ed25519 key (cryptography object) from a hex text file; KeyFileError naming the setting and file."""
    from edgefuse._optional import require

    ed = require("cryptography.hazmat.primitives.asymmetric.ed25519", "bundle signatures")
    try:
        raw = bytes.fromhex(Path(path).read_text().strip())
        if len(raw) != 32:
            raise ValueError(f"{len(raw)} bytes, expected 32")
        return ed.Ed25519PrivateKey.from_private_bytes(raw) if secret else ed.Ed25519PublicKey.from_public_bytes(raw)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        kind = "secret" if secret else "public"
        raise KeyFileError(f"{setting} {path}: not an ed25519 {kind} key in hex ({err})") from None


def cli_keygen(args: argparse.Namespace) -> int:
    """`edgefuse keygen --out DIR --name NAME [--ed25519]`."""
    import zmq.auth

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.ed25519:
        secret, public = make_ed25519(out, args.name)
    else:
        public, secret = (Path(p) for p in zmq.auth.create_certificates(out, args.name))
        secret.chmod(0o600)
    print(f"public key: {public}\nsecret key: {secret} (keep it on this machine only)")
    return 0
