"""Content credentials (C2PA): the workspace's signing identity, signed exports, and reading a file's manifest.

Every export whose format can hold a manifest carries one signed with the
workspace's certificate: WAV, MP3 and MP4/M4A embed it. c2pa cannot embed
into Ogg, so an Ogg export gets a sidecar ``<file>.c2pa`` beside it, bound to
the Ogg's bytes by hash. The manifest declares the audio as made by a trained
model (a `c2pa.created` action with digital source type
trainedAlgorithmicMedia), names the payload watermark as a soft binding, and
carries our assertion `org.voxgate.provenance`: organisation, voice, consent
record, statement revision, approvals and render settings.

The manifest is signed at render time, so it can only hold the approvals that
exist then: the text and owner approvals. Audio sign-off comes after the audio
by its nature; it lives in the registry and the audit log, and `voxgate
verify` reports it from there.

The identity lives in ``<home>/keys/c2pa/``:

    signer.pem   the signing chain: the signing certificate first, the CA verifiers should trust last
    signer.key   its private key (EC P-256 for ES256, mode 0600)
    trusted.pem  every chain this workspace has signed with; its CA certificates are the
                 trust anchors, the others the signing certificates we pin

`init` makes a CA and a signing certificate; the CA's private key exists only
in memory during `init`, so the signing key is the one secret to guard. An
operator may import their own chain (`import_identity`). A manifest counts as
ours (TRUSTED) only when c2pa validates its chain up to one of our anchors
*and* its signing certificate is one we signed with: an imported chain may end
at a public CA that certifies other people too.

Measured with c2pa-python 0.38.1 (c2pa-rs 0.91.3) on this project's 2-core
machine, for an 11 s clip: signing with the read-back check 9 ms (MP3, M4A,
Ogg sidecar) to 23 ms (WAV, 1 MB); reading and validating 2-7 ms.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import tempfile
import wave
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from importlib.metadata import version
from pathlib import Path
from typing import IO, Any, Final

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pipeline.errors import InputError, ProvenanceError, StoreError, map_exceptions
from pipeline.store.files import PRIVATE_MODE, atomic_output, private_dir

TRAINED_ALGORITHMIC_MEDIA: Final = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
ASSERTION_LABEL: Final = "org.voxgate.provenance"
PAYLOAD_ALGORITHM: Final = "voxgate.payload.v1"
SIDECAR_SUFFIX: Final = ".c2pa"
SIGNER_CHAIN: Final = "signer.pem"
SIGNER_KEY: Final = "signer.key"
TRUSTED_CHAINS: Final = "trusted.pem"
IDENTITY_FILES: Final = (SIGNER_CHAIN, SIGNER_KEY, TRUSTED_CHAINS)
CA_VALIDITY: Final = timedelta(days=20 * 365)
#: Long, because readers check the signing certificate when they read: a clip must stay verifiable for years.
SIGNER_VALIDITY: Final = timedelta(days=10 * 365)
CLOCK_SKEW: Final = timedelta(hours=1)
_X509_NAME_MAX: Final = 64  # RFC 5280 upper bound for CN and O
_SIGNING_ALG: Final = b"es256"
_SIGNING_ERRORS: Final = {c2pa.C2paError: ProvenanceError, OSError: ProvenanceError}
_MISSING: Final = "{path} is missing; run `voxgate init` on this workspace again to create it."


class CredentialStatus(str, Enum):
    """What a file's content credentials say, as checked against this workspace."""

    TRUSTED = "trusted"  # signed by this workspace and the audio is unchanged since
    UNTRUSTED = "untrusted"  # a valid manifest, but signed by someone else
    TAMPERED = "tampered"  # a manifest whose signature or hashes no longer match the file
    ABSENT = "absent"  # no manifest (or a format that cannot hold one, without a sidecar)


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


@dataclass(frozen=True)
class CredentialReport:
    """One file's manifest as read and validated; the assertions mean something only when TRUSTED."""

    status: CredentialStatus
    signer: str = ""  # subject of the signing certificate, as the manifest names it
    problems: tuple[str, ...] = ()  # c2pa failure codes, or why the manifest could not be read
    provenance: Mapping[str, Any] | None = None  # our assertion, if the manifest has one
    source_type: str | None = None  # digitalSourceType of the c2pa.created action
    sidecar: bool = False

    @property
    def clip_id(self) -> int | None:
        """The clip the manifest names (a claim unless the status is TRUSTED)."""
        clip = (self.provenance or {}).get("clip")
        return clip if isinstance(clip, int) and not isinstance(clip, bool) else None


@dataclass(frozen=True)
class SignedApproval:
    reviewer: str
    stage: str
    decision: str
    signature_sha256: str


@dataclass(frozen=True)
class ClipProvenance:
    """Everything a clip's manifest asserts about where it came from."""

    clip_id: int
    organisation: str
    voice_id: str
    voice_name: str
    consent_id: int
    consent_sha256: str
    statement_id: int
    revision: int
    revision_sha256: str
    language: str
    created_at: datetime
    approvals: tuple[SignedApproval, ...]  # text and owner approvals: audio sign-off comes after signing
    settings: Mapping[str, Any]
    #: What the file's payload mark carries: the clip id in the clip's own files, a delivery's serial in a
    #: recipient's copy (pipeline.domain.serials). Only the registry maps a delivery to its recipient.
    payload_serial: int | None = None

    @property
    def serial(self) -> int:
        return self.clip_id if self.payload_serial is None else self.payload_serial

    def manifest(self) -> dict[str, Any]:
        """The manifest definition c2pa's Builder takes."""
        agent = {"name": "voxgate", "version": version("voxgate")}
        created = {"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                   "when": self.created_at.isoformat(), "softwareAgent": agent}
        serial = base64.b64encode(self.serial.to_bytes(8, "big")).decode()
        return {
            "claim_generator_info": [agent],
            "title": f"{self.organisation}: statement {self.statement_id}, clip {self.clip_id} (AI-generated voice)",
            "assertions": [
                {"label": "c2pa.actions.v2", "data": {"actions": [created]}},
                # The payload watermark is how a copy that lost this manifest finds its way back to it.
                {"label": "c2pa.soft-binding",
                 "data": {"alg": PAYLOAD_ALGORITHM, "blocks": [{"scope": {}, "value": serial}]}},
                {"label": ASSERTION_LABEL, "data": {
                    "clip": self.clip_id,
                    "organisation": self.organisation,
                    "voice": {"id": self.voice_id, "name": self.voice_name},
                    "consent": {"id": self.consent_id, "sha256": self.consent_sha256},
                    "statement": {"id": self.statement_id, "revision": self.revision, "sha256": self.revision_sha256},
                    "language": self.language,
                    "approvals": [vars(a) for a in self.approvals],
                    "approvals_scope": "text and owner approvals at render time; audio sign-off is in the "
                                       "publisher's registry and audit log",
                    "watermark": {"algorithm": PAYLOAD_ALGORITHM, "payload_serial": self.serial},
                    "render": dict(self.settings),
                }},
            ],
        }


# --- identity -----------------------------------------------------------------


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
            _write_new(building / SIGNER_KEY, _key_pem(key), 0o600)
            _write_new(building / SIGNER_CHAIN, chain, PRIVATE_MODE)
            _write_new(building / TRUSTED_CHAINS, chain, PRIVATE_MODE)
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
        _replace(trusted, (trusted.read_bytes() if trusted.exists() else b"") + new, PRIVATE_MODE)
        _replace(folder / SIGNER_CHAIN, chain, PRIVATE_MODE)
        _replace(folder / SIGNER_KEY, identity.key_pem, 0o600)
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
    with map_exceptions({c2pa.C2paError: InputError}, "c2pa refused to sign with this certificate"):
        _sign(identity, test, "audio/wav", audio, signed)
    report = _read(signed, None, identity.trust)
    if report.status is not CredentialStatus.TRUSTED:
        raise InputError(f"A test file signed with this certificate reads as {report.status.value} "
                         f"({', '.join(report.problems) or 'no reason given'}); check its key usage "
                         "(digitalSignature), extended key usage (e.g. emailProtection) and chain.")


# --- signing and reading ----------------------------------------------------------


def can_embed(mime: str) -> bool:
    """Whether c2pa can write a manifest into this format; the others get a sidecar."""
    return mime in c2pa.Builder.get_supported_mime_types()


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def embed_credentials(path: Path, mime: str, manifest: Mapping[str, Any], identity: SigningIdentity) -> None:
    """Sign the file at `path` in place, then read it back: it must validate as ours, naming the same clip."""
    with map_exceptions(_SIGNING_ERRORS, f"Could not sign the {mime} export"), atomic_output(path) as tmp:
        with path.open("rb") as src, tmp.open("w+b") as dst:
            _sign(identity, manifest, mime, src, dst)
    _check_signed(read_credentials(path, identity.trust), manifest, mime)


def write_sidecar(path: Path, mime: str, manifest: Mapping[str, Any], identity: SigningIdentity) -> Path:
    """Write ``<path>.c2pa``, a manifest bound to the file's bytes, for formats that cannot embed one."""
    dest = sidecar_path(path)
    with map_exceptions(_SIGNING_ERRORS, f"Could not sign the {mime} export"):
        with path.open("rb") as src:
            # c2pa still writes the asset to the destination; with no-embed it is an unchanged copy.
            _replace(dest, _sign(identity, manifest, mime, src, io.BytesIO(), embed=False), PRIVATE_MODE)
    _check_signed(read_credentials(path, identity.trust), manifest, mime)
    return dest


def read_credentials(path: Path, trust: TrustList) -> CredentialReport:
    """Read and validate the manifest in `path` (or in its ``.c2pa`` sidecar) against `trust`."""
    sidecar = sidecar_path(path)
    with map_exceptions({OSError: InputError}, f"Could not read {path}"):
        manifest_data = sidecar.read_bytes() if sidecar.is_file() else None
        with path.open("rb") as stream:
            return _read(stream, manifest_data, trust)


def _read(stream: IO[bytes], manifest_data: bytes | None, trust: TrustList) -> CredentialReport:
    stream.seek(0)
    sidecar = manifest_data is not None
    try:
        with _trust_context(trust) as ctx, c2pa.Reader(None, stream, manifest_data, ctx) as reader:
            state = reader.get_validation_state()
            results = reader.get_validation_results() or {}
            active = reader.get_active_manifest() or {}
    except (c2pa.C2paError.ManifestNotFound, c2pa.C2paError.NotSupported):
        return CredentialReport(CredentialStatus.ABSENT)
    except c2pa.C2paError as exc:  # a manifest is there but cannot be parsed: it was damaged
        return CredentialReport(CredentialStatus.TAMPERED, problems=(f"unreadable manifest: {exc}",), sidecar=sidecar)
    failures = tuple(f["code"] for f in results.get("activeManifest", {}).get("failure", []))
    info = active.get("signature_info", {})
    signer = ", ".join(x for x in (info.get("common_name"), info.get("issuer")) if x)
    if state == "Invalid":
        status = CredentialStatus.TAMPERED
    elif state == "Trusted" and _serial(info.get("cert_serial_number")) in trust.signer_serials:
        status = CredentialStatus.TRUSTED
    else:
        status = CredentialStatus.UNTRUSTED
        if state == "Trusted":
            failures += ("signing certificate chains to our CA but is not one this workspace signs with",)
    assertions = {a.get("label"): a.get("data") for a in active.get("assertions", [])}
    actions = (assertions.get("c2pa.actions.v2") or assertions.get("c2pa.actions") or {}).get("actions", [])
    created = next((a for a in actions if a.get("action") == "c2pa.created"), {})
    provenance = assertions.get(ASSERTION_LABEL)
    return CredentialReport(status, signer, failures, provenance if isinstance(provenance, dict) else None,
                            created.get("digitalSourceType"), sidecar)


def _sign(identity: SigningIdentity, manifest: Mapping[str, Any], mime: str, src: IO[bytes], dst: IO[bytes],
          *, embed: bool = True) -> bytes:
    info = c2pa.C2paSignerInfo(_SIGNING_ALG, identity.chain_pem, identity.key_pem, None)
    with c2pa.Signer.from_info(info) as signer, c2pa.Builder(dict(manifest)) as builder:
        if not embed:
            builder.set_no_embed()
        return builder.sign(signer, mime, src, dst)


def _check_signed(report: CredentialReport, manifest: Mapping[str, Any], mime: str) -> None:
    """Fail closed: an export leaves only if its credentials read back as ours, for this clip."""
    expected = next(a["data"]["clip"] for a in manifest["assertions"] if a["label"] == ASSERTION_LABEL)
    if report.status is not CredentialStatus.TRUSTED or report.clip_id != expected:
        raise ProvenanceError(
            f"The {mime} export's content credentials read back as {report.status.value} "
            f"({', '.join(report.problems) or f'clip {report.clip_id}'}); the clip was not written. "
            "Check the workspace's signing identity (keys/c2pa)."
        )


def _trust_context(trust: TrustList) -> c2pa.Context:
    # trust_anchors replaces c2pa's default list, so only our anchors make a manifest Trusted.
    config = {"trust": {"trust_anchors": trust.anchors_pem}, "verify": {"verify_trust": True}}
    with c2pa.Settings.from_dict(config) as settings:
        return c2pa.Context(settings=settings)


def _serial(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


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


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with `mode` from the start (a key is never readable by others, even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _replace(path: Path, data: bytes, mode: int) -> None:
    """Write `path` atomically with `mode` (the temporary file has it from the start)."""
    with atomic_output(path, mode=mode) as tmp:
        tmp.write_bytes(data)
