"""People's own keys: one passphrase-encrypted Ed25519 key file per person, in their key folder.

The workspace never holds a person's private key; it keeps their public key
(and its history). A person's key folder is `--keys DIR`, else
`$VOXGATE_KEYS`, else `$XDG_CONFIG_HOME/voxgate/keys` (`~/.config/voxgate/keys`).
Each key is `<folder>/<name>.key`, encrypted PKCS#8 PEM (`cryptography`'s
`BestAvailableEncryption`, readable by `openssl pkey`), mode 0600, in a
folder of mode 0700; `<name>.pub` beside it is the OpenSSH public line.

Several people's keys may share one folder (the demo and the tests do), each
under its own passphrase: `$VOXGATE_PASSPHRASE_<NAME>` (the name upper-cased,
anything but letters and digits as `_`), else `$VOXGATE_PASSPHRASE`, else a
prompt on the terminal. A `Keyring` is what services sign with.
"""

from __future__ import annotations

import base64
import functools
import getpass
import hashlib
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pipeline.errors import IdentityError, InputError
from pipeline.identity.keys import public_key_of
from pipeline.store.files import atomic_output

KEYS_ENV: Final = "VOXGATE_KEYS"
PASSPHRASE_ENV: Final = "VOXGATE_PASSPHRASE"
MIN_PASSPHRASE: Final = 8
_NAME = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")

Passphrases = Callable[[str], bytes]
"""Returns the passphrase for a person's key (by user name), or raises `IdentityError`."""


def default_folder(env: Mapping[str, str] | None = None) -> Path:
    """The key folder: $VOXGATE_KEYS, else the user's configuration folder (XDG)."""
    env = os.environ if env is None else env
    if env.get(KEYS_ENV):
        return Path(env[KEYS_ENV]).expanduser()
    config = Path(env["XDG_CONFIG_HOME"]).expanduser() if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return config / "voxgate" / "keys"


def passphrase_env_name(name: str) -> str:
    return f"{PASSPHRASE_ENV}_{re.sub(r'[^A-Z0-9]', '_', name.upper())}"


def env_passphrases(env: Mapping[str, str] | None = None, *, prompt: bool = True) -> Passphrases:
    """Passphrases from the environment (per person first), else asked on the terminal."""

    def lookup(name: str) -> bytes:
        e = os.environ if env is None else env
        value = e.get(passphrase_env_name(name)) or e.get(PASSPHRASE_ENV)
        if value:
            return value.encode("utf-8")
        if prompt and sys.stdin.isatty():
            return getpass.getpass(f"Passphrase for {name}'s key: ").encode("utf-8")
        raise IdentityError(f"No passphrase for {name}'s key: set {passphrase_env_name(name)} or {PASSPHRASE_ENV}, "
                            "or run the command in a terminal to be asked.")

    return lookup


@functools.lru_cache(maxsize=4096)
def fingerprint(public: bytes) -> str:
    """The key's fingerprint as `ssh-keygen -l` prints it: SHA256 of the OpenSSH key blob, base64 (a pure function
    of the key's bytes, so worked out once per key)."""
    blob = base64.b64decode(openssh_line(public).split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def openssh_line(public: bytes, comment: str = "") -> str:
    line = Ed25519PublicKey.from_public_bytes(public).public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return f"{line} {comment}".strip()


def read_public_key(path: Path) -> bytes:
    """A raw Ed25519 public key from a file: an OpenSSH line (`ssh-ed25519 …`) or a PEM public key.

    A private key given by mistake is refused without being read further: the
    workspace must never receive one.
    """
    try:
        data = path.expanduser().read_bytes()
    except OSError as exc:
        raise InputError(f"Could not read the public key {path}: {exc.strerror}.") from None
    if b"PRIVATE KEY" in data:
        raise InputError(f"{path} is a private key; give the public key (`voxgate key init` wrote NAME.pub beside it).")
    text = data.strip()
    try:
        if text.startswith(b"ssh-"):
            key = serialization.load_ssh_public_key(b" ".join(text.split()[:2]))
        else:
            key = serialization.load_pem_public_key(text)
    except (ValueError, TypeError, IndexError):
        raise InputError(f"{path} is not an OpenSSH or PEM public key.") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InputError(f"{path} is not an Ed25519 public key; make one with `voxgate key init NAME`.")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise InputError(f"{name!r} is not a valid user name: use lower-case letters, digits, '.', '_' or '-'.")


def key_path(folder: Path, name: str) -> Path:
    _check_name(name)
    return folder / f"{name}.key"


def _prepare_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(folder, 0o700)
    except OSError as exc:
        raise IdentityError(f"Could not prepare the key folder {folder}: {exc.strerror}.") from None


def write_key(folder: Path, name: str, key: Ed25519PrivateKey, passphrase: bytes) -> Path:
    """Write `key` encrypted under `passphrase` to `<folder>/<name>.key` (0600, never overwritten) and its .pub."""
    if len(passphrase) < MIN_PASSPHRASE:
        raise InputError(f"The passphrase is shorter than {MIN_PASSPHRASE} characters; choose a longer one.")
    path = key_path(folder, name)
    _prepare_folder(folder)
    if path.exists():
        raise IdentityError(f"{path} already exists; refusing to overwrite {name}'s key (move it aside first).")
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.BestAvailableEncryption(passphrase))
    try:
        with atomic_output(path, mode=0o600) as tmp:
            tmp.write_bytes(pem)
        with atomic_output(folder / f"{name}.pub", mode=0o644) as tmp:
            tmp.write_text(openssh_line(public_key_of(key), f"voxgate:{name}") + "\n")
    except OSError as exc:
        raise IdentityError(f"Could not write {path}: {exc.strerror}.") from None
    return path


def create_key(folder: Path, name: str, passphrase: bytes) -> bytes:
    """A new key for `name` in `folder`; returns the raw public key."""
    key = Ed25519PrivateKey.generate()
    write_key(folder, name, key, passphrase)
    return public_key_of(key)


def load_key(folder: Path, name: str, passphrase: bytes) -> Ed25519PrivateKey:
    """`name`'s private key, decrypted; `IdentityError` in one line when missing or the passphrase is wrong."""
    path = key_path(folder, name)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise IdentityError(f"No key for {name} in {folder}; {name} signs with their own key folder "
                            f"(--keys DIR or ${KEYS_ENV}), or creates one with `voxgate key init {name}`.") from None
    except OSError as exc:
        raise IdentityError(f"Could not read {path}: {exc.strerror}.") from None
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError:
        raise IdentityError(f"{path} is not encrypted; a person's key must be passphrase-protected "
                            f"(re-export it with `voxgate key handover`).") from None
    except ValueError:
        raise IdentityError(f"Wrong passphrase for {name}'s key ({path}).") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"{path} is not an Ed25519 key.")
    return key


@dataclass
class Keyring:
    """Where people's keys are and how their passphrases are found; unlocked keys are kept for this process."""

    folder: Path
    passphrases: Passphrases
    _unlocked: dict[str, Ed25519PrivateKey] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, folder: Path | None = None) -> Keyring:
        return cls(folder or default_folder(), env_passphrases())

    def key(self, name: str) -> Ed25519PrivateKey:
        if name not in self._unlocked:
            self._unlocked[name] = load_key(self.folder, name, self.passphrases(name))
        return self._unlocked[name]
