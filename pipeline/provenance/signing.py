"""Signing exports with the workspace's identity, and reading and validating a file's content credentials.

WAV, MP3 and MP4/M4A embed the manifest; c2pa cannot embed into Ogg, so an
Ogg export gets a sidecar ``<file>.c2pa`` beside it, bound to its bytes by
hash. A manifest counts as ours (TRUSTED) only when c2pa validates its chain
up to one of our anchors *and* its signing certificate is one we signed with.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO, Any, Final

import c2pa

from pipeline.errors import InputError, ProvenanceError, map_exceptions
from pipeline.provenance.identity import SigningIdentity, TrustList, replace_file
from pipeline.provenance.manifest import ASSERTION_LABEL
from pipeline.store.files import PRIVATE_MODE, atomic_output

SIDECAR_SUFFIX: Final = ".c2pa"
_SIGNING_ALG: Final = b"es256"
_SIGNING_ERRORS: Final = {c2pa.C2paError: ProvenanceError, OSError: ProvenanceError}

class CredentialStatus(str, Enum):
    """What a file's content credentials say, as checked against this workspace."""

    TRUSTED = "trusted"  # signed by this workspace and the audio is unchanged since
    UNTRUSTED = "untrusted"  # a valid manifest, but signed by someone else
    TAMPERED = "tampered"  # a manifest whose signature or hashes no longer match the file
    ABSENT = "absent"  # no manifest (or a format that cannot hold one, without a sidecar)


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


def can_embed(mime: str) -> bool:
    """Whether c2pa can write a manifest into this format; the others get a sidecar."""
    return mime in c2pa.Builder.get_supported_mime_types()


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def embed_credentials(path: Path, mime: str, manifest: Mapping[str, Any], identity: SigningIdentity) -> None:
    """Sign the file at `path` in place, then read it back: it must validate as ours, naming the same clip."""
    with map_exceptions(_SIGNING_ERRORS, f"Could not sign the {mime} export"), atomic_output(path) as tmp:
        with path.open("rb") as src, tmp.open("w+b") as dst:
            sign_manifest(identity, manifest, mime, src, dst)
    _check_signed(read_credentials(path, identity.trust), manifest, mime)


def write_sidecar(path: Path, mime: str, manifest: Mapping[str, Any], identity: SigningIdentity) -> Path:
    """Write ``<path>.c2pa``, a manifest bound to the file's bytes, for formats that cannot embed one."""
    dest = sidecar_path(path)
    with map_exceptions(_SIGNING_ERRORS, f"Could not sign the {mime} export"):
        with path.open("rb") as src:
            # c2pa still writes the asset to the destination; with no-embed it is an unchanged copy.
            replace_file(dest, sign_manifest(identity, manifest, mime, src, io.BytesIO(), embed=False), PRIVATE_MODE)
    _check_signed(read_credentials(path, identity.trust), manifest, mime)
    return dest


def read_credentials(path: Path, trust: TrustList) -> CredentialReport:
    """Read and validate the manifest in `path` (or in its ``.c2pa`` sidecar) against `trust`."""
    sidecar = sidecar_path(path)
    with map_exceptions({OSError: InputError}, f"Could not read {path}"):
        manifest_data = sidecar.read_bytes() if sidecar.is_file() else None
        with path.open("rb") as stream:
            return read_manifest(stream, manifest_data, trust)


def read_manifest(stream: IO[bytes], manifest_data: bytes | None, trust: TrustList) -> CredentialReport:
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


def sign_manifest(identity: SigningIdentity, manifest: Mapping[str, Any], mime: str, src: IO[bytes], dst: IO[bytes],
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
