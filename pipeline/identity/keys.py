"""Ed25519 keys and signatures: the organisation's key file, and signing and verifying for everyone.

The organisation's key lives in the workspace (mode 0600) and signs what the
organisation asserts (the audit log). People's keys never do: they are in
each person's own key folder (`pipeline.identity.personal`); the database
stores public keys raw (32 bytes).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pipeline.errors import StoreError

_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


def generate_key(path: Path) -> bytes:
    """Create a private key file at `path` (mode 0600, never overwritten); return the raw public key."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise StoreError(f"A key already exists at {path}; refusing to overwrite it.") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    return key.public_key().public_bytes(*_RAW)


def load_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise StoreError(f"Private key {path.name} is missing from the workspace keys folder.") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise StoreError(f"{path.name} is not an Ed25519 private key.")
    return key


def sign(key: Ed25519PrivateKey, payload: bytes) -> bytes:
    return key.sign(payload)


def verify(public_key: bytes, signature: bytes, payload: bytes) -> bool:
    """True only when `signature` is a valid Ed25519 signature of `payload` by `public_key`.

    Every gate verifies the signed records it decides from each time it decides, so the same
    signatures are verified again and again. The answer for the same bytes never changes, so it is
    remembered for these exact bytes (the payload by its SHA-256): a record with one byte changed is
    verified afresh. Only this process's memory holds the answers; nothing on disk can add one.
    """
    key = (bytes(public_key), bytes(signature), hashlib.sha256(payload).digest())
    with _VERIFIED_LOCK:
        known = _VERIFIED.get(key)
    if known is not None:
        return known
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, payload)
        valid = True
    except (InvalidSignature, ValueError):
        valid = False
    with _VERIFIED_LOCK:
        _VERIFIED[key] = valid
        if len(_VERIFIED) > _VERIFIED_MAX:
            _VERIFIED.popitem(last=False)  # the oldest answer goes first
    return valid


_VERIFIED: Final[OrderedDict[tuple[bytes, bytes, bytes], bool]] = OrderedDict()
_VERIFIED_MAX: Final = 1 << 15  # about 10 MB of answers
_VERIFIED_LOCK: Final = threading.Lock()


def public_key_of(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(*_RAW)
