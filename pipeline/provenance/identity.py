"""The workspace's C2PA signing identity in ``<home>/keys/c2pa/``: create, import, load, and whom we trust.

    signer.pem   the signing chain: the signing certificate first, the CA verifiers should trust last
    signer.key   its private key (EC P-256 for ES256, mode 0600)
    trusted.pem  every chain this workspace has signed with; its CA certificates are the
                 trust anchors, the others the signing certificates we pin

`init` makes a CA and a signing certificate; the CA's private key exists only
in memory during `init`, so the signing key is the one secret to guard. An
operator may import their own chain (`import_identity`).
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import wave
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pipeline.errors import InputError, StoreError, map_exceptions
from pipeline.provenance.manifest import TRAINED_ALGORITHMIC_MEDIA
from pipeline.store.files import PRIVATE_MODE, atomic_output, private_dir

SIGNER_CHAIN: Final = "signer.pem"
SIGNER_KEY: Final = "signer.key"
TRUSTED_CHAINS: Final = "trusted.pem"
IDENTITY_FILES: Final = (SIGNER_CHAIN, SIGNER_KEY, TRUSTED_CHAINS)
CA_VALIDITY: Final = timedelta(days=20 * 365)
#: Long, because readers check the signing certificate when they read: a clip must stay verifiable for years.
SIGNER_VALIDITY: Final = timedelta(days=10 * 365)
CLOCK_SKEW: Final = timedelta(hours=1)
_X509_NAME_MAX: Final = 64  # RFC 5280 upper bound for CN and O
_MISSING: Final = "{path} is missing; run `voxgate init` on this workspace again to create it."


@dataclass(frozen=True)
class TrustList:
    """Who we accept as the signer of our own clips."""

    anchors_pem: str  # CA certificates, PEM, for the c2pa reader
    signer_serials: frozenset[int]  # serial numbers of every signing certificate we used


@dataclass(frozen=True)
class SigningIdentity:
    chain_pem: bytes
    key_pem: bytes = field(repr=False)  # never in a traceback or a log line
    trust: TrustList = field(repr=False)


def create_identity(folder: Path, organisation: str, *, now: datetime) -> str:
    """Make a CA and a signing certificate for `organisation` in `folder`; return the signer's subject.

    Refuses to replace an existing identity. The CA key is never written.
    """
    org = organisation.strip()[:_X509_NAME_MAX]
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("voxgate content credentials CA", org)
    ca = (_certificate(ca_name, ca_name, ca_key.public_key(), now, CA_VALIDITY)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (_certificate(_name("voxgate content credentials", org), ca_name, key.public_key(), now, SIGNER_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            # c2pa accepts only a few extended key usages for claim signing; emailProtection is one.
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    chain = _pem(leaf) + _pem(ca)
    if folder.exists():
        raise StoreError(f"{folder} already exists; refusing to replace a signing identity.")
    # Written in a private folder that takes the final name last: a crash never leaves half an identity.
    with map_exceptions({OSError: StoreError}, f"Could not create the signing identity in {folder}"):
        building = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            write_new_file(building / SIGNER_KEY, _key_pem(key), 0o600)
            write_new_file(building / SIGNER_CHAIN, chain, PRIVATE_MODE)
            write_new_file(building / TRUSTED_CHAINS, chain, PRIVATE_MODE)
            os.rename(building, folder)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
    return leaf.subject.rfc4514_string()


def import_identity(folder: Path, chain_pem: bytes, key_pem: bytes, *, now: datetime) -> str:
    """Sign with an operator's own chain from now on; earlier clips stay trusted. Returns the signer's subject.

    The chain is the signing certificate first and the CA verifiers should
    trust last. It is tried out (a test file signed and read back as ours)
    before anything is written.
    """
    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as exc:
        raise InputError(f"The certificate file is not PEM certificates ({exc}).") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise InputError("The private key is encrypted; give voxgate an unencrypted PEM key "
                         "(the workspace keeps it in a mode-0600 file).") from None
    except ValueError as exc:
        raise InputError(f"The key file is not a PEM private key ({exc}).") from None
    if len(certs) < 2:
        raise InputError("The certificate file holds one certificate; put the signing certificate first and the CA "
                         "certificate verifiers should trust after it, in one PEM file.")
    leaf, anchor = certs[0], certs[-1]
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InputError("voxgate signs content credentials with ES256; the key must be an EC P-256 key.")
    if key.public_key() != leaf.public_key():
        raise InputError("The private key does not belong to the signing certificate (the first one in the file).")
    if _is_ca(leaf) or not _is_ca(anchor):
        raise InputError("The chain must start with a signing certificate (CA:FALSE) and end with the CA certificate "
                         "verifiers should trust (CA:TRUE).")
    if not leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc:
        raise InputError(f"The signing certificate is not valid now (valid {leaf.not_valid_before_utc:%Y-%m-%d} to "
                         f"{leaf.not_valid_after_utc:%Y-%m-%d}).")
    chain = b"".join(_pem(c) for c in certs)
    identity = SigningIdentity(chain, _key_pem(key), _trust_of(certs))
    _self_test(identity)
    private_dir(folder)
    trusted = folder / TRUSTED_CHAINS
    known = {c.fingerprint(hashes.SHA256()) for c in _read_certs(trusted)} if trusted.exists() else set()
    new = b"".join(_pem(c) for c in certs if c.fingerprint(hashes.SHA256()) not in known)
    # Trust first: a crash part-way leaves at worst a chain and key that do not match, which signing refuses.
    with map_exceptions({OSError: StoreError}, f"Could not write the signing identity to {folder}"):
        replace_file(trusted, (trusted.read_bytes() if trusted.exists() else b"") + new, PRIVATE_MODE)
        replace_file(folder / SIGNER_CHAIN, chain, PRIVATE_MODE)
        replace_file(folder / SIGNER_KEY, identity.key_pem, 0o600)
    return leaf.subject.rfc4514_string()


def load_identity(folder: Path) -> SigningIdentity:
    try:
        chain, key = (folder / SIGNER_CHAIN).read_bytes(), (folder / SIGNER_KEY).read_bytes()
    except FileNotFoundError as exc:
        raise StoreError(_MISSING.format(path=exc.filename)) from None
    return SigningIdentity(chain, key, load_trust(folder))


def load_trust(folder: Path) -> TrustList:
    return _trust_of(_read_certs(folder / TRUSTED_CHAINS))


def _read_certs(path: Path) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except FileNotFoundError:
        raise StoreError(_MISSING.format(path=path)) from None
    except ValueError as exc:
        raise StoreError(f"{path} is not PEM certificates ({exc}); restore it from a backup.") from exc


def _trust_of(certs: list[x509.Certificate]) -> TrustList:
    anchors = b"".join(_pem(c) for c in certs if _is_ca(c)).decode()
    return TrustList(anchors, frozenset(c.serial_number for c in certs if not _is_ca(c)))


def _self_test(identity: SigningIdentity) -> None:
    """Sign a tiny WAV and read it back: c2pa's own checks (key usage, EKU, chain) speak before any real clip."""
    audio = io.BytesIO()
    with wave.open(audio, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 800)  # 0.1 s of silence
    signed = io.BytesIO()
    test = {"claim_generator_info": [{"name": "voxgate"}], "title": "voxgate certificate test", "assertions": [
        {"label": "c2pa.actions.v2", "data": {"actions": [
            {"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA}]}}]}
    from pipeline.provenance.signing import CredentialStatus, read_manifest, sign_manifest

    with map_exceptions({c2pa.C2paError: InputError}, "c2pa refused to sign with this certificate"):
        sign_manifest(identity, test, "audio/wav", audio, signed)
    report = read_manifest(signed, None, identity.trust)
    if report.status is not CredentialStatus.TRUSTED:
        raise InputError(f"A test file signed with this certificate reads as {report.status.value} "
                         f"({', '.join(report.problems) or 'no reason given'}); check its key usage "
                         "(digitalSignature), extended key usage (e.g. emailProtection) and chain.")


# --- X.509 and files ----------------------------------------------------------------------


def _name(common_name: str, organisation: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation)])


def _certificate(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, now: datetime,
                 validity: timedelta) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + validity)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))


def _key_usage(*, digital_signature: bool = False, key_cert_sign: bool = False,
               crl_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=digital_signature, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=key_cert_sign,
                         crl_sign=crl_sign, encipher_only=False, decipher_only=False)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_new_file(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with `mode` from the start (a key is never readable by others, even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def replace_file(path: Path, data: bytes, mode: int) -> None:
    """Write `path` atomically with `mode` (the temporary file has it from the start)."""
    with atomic_output(path, mode=mode) as tmp:
        tmp.write_bytes(data)
