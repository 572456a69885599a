"""Key files of the session tokens: an Ed25519 key pair in PEM.

``generate_token_keys(directory)`` writes ``token-signing.key`` (PKCS #8, mode
0600: whoever reads it can mint any user's token) and ``token-verify.pem`` (the
public key, SubjectPublicKeyInfo) and leaves existing files alone, so that
``procall up`` (and ``procall certs``) can call it on every run; the folder is made
``0700``. A verify-key
file may hold several public keys (a key set, for rolling a new key out).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from procall.security.files import private_dir, write_private

__all__ = [
    "PRIVATE_KEY_NAME",
    "PUBLIC_KEY_NAME",
    "KeyFileError",
    "generate_token_keys",
    "load_signing_key",
    "load_verify_keys",
]

PRIVATE_KEY_NAME = "token-signing.key"
PUBLIC_KEY_NAME = "token-verify.pem"
_PEM_BLOCK = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)


class KeyFileError(ValueError):
    """A key file is missing or does not hold the expected key; the message says which."""


def generate_token_keys(directory: Path | str) -> tuple[Path, Path]:
    """Create the token key pair in ``directory`` unless it exists; ``(private, public)``."""
    folder = private_dir(directory)
    private_path = folder / PRIVATE_KEY_NAME
    public_path = folder / PUBLIC_KEY_NAME
    if private_path.exists():
        key = load_signing_key(private_path)
    else:
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        # created 0600 from the start: never readable by others, not even for a moment
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
    if not public_path.exists():
        public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        # not secret, but kept like every file of a data dir: the operator's own
        write_private(public_path, public)
    return private_path, public_path


def _read(path: Path | str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"the {what} file {path} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read the {what} file {path}: {exc.strerror}") from None


def load_signing_key(path: Path | str) -> Ed25519PrivateKey:
    """The Ed25519 private key of a PEM file."""
    data = _read(path, "token signing key")
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise KeyFileError(f"{path} holds no unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} holds no Ed25519 private key")
    return key


def load_verify_keys(path: Path | str) -> list[Ed25519PublicKey]:
    """Every Ed25519 public key of a PEM file (at least one)."""
    data = _read(path, "token verify key")
    keys: list[Ed25519PublicKey] = []
    for block in _PEM_BLOCK.findall(data):
        try:
            key = load_pem_public_key(block)
        except ValueError:
            raise KeyFileError(f"{path} holds a public key that does not parse") from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError(f"{path} holds a public key that is not Ed25519")
        keys.append(key)
    if not keys:
        raise KeyFileError(f"{path} holds no PEM public key")
    return keys
