"""The public registry: a signed view of the audit chain that anyone can mirror and check clips against.

If the publisher's server is blocked, a mirror still answers "is this file one
they handed out, and was it revoked?". It is not a third log: every entry is
read from an audit event (release, personal copy made, video or captions
made, consent revoked) and carries that event's sequence number and hash, so
it can be held against the chain and its published head. Recipients' names
never appear: a copy is listed by delivery number and file hashes.

Layout of DIR:

    entries.jsonl  one canonical JSON entry per line, in audit order
    trusted.pem    the workspace's content-credential certificates (public), so
                   a mirror can tell this publisher's credentials from anyone's
    head.json      size, Merkle root over the entries (RFC 6962 hashing: leaf
                   sha256(0x00 || entry), node sha256(0x01 || left || right)),
                   the audit head it was read from, the registry public key,
                   its short fingerprint, and an Ed25519 signature

The registry key is the organisation key that signs the audit chain; its
short fingerprint (`fingerprint`) is what the publisher posts on their own
channels. `open_mirror` refuses a mirror whose head is signed by any other
key, or whose entries do not hash to the signed root (an edited, added or
dropped entry), so two mirrors can be compared by their roots alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select

from pipeline.domain.model import canonical_json
from pipeline.errors import InputError, ProvenanceError
from pipeline.identity.keys import sign, verify
from pipeline.provenance.credentials import TRUSTED_CHAINS
from pipeline.services.workspace import Workspace
from pipeline.store.files import atomic_output
from pipeline.store.models import AuditRow, ClipRow

REGISTRY_VERSION: Final = 1
ENTRIES: Final = "entries.jsonl"
HEAD: Final = "head.json"
TRUST: Final = TRUSTED_CHAINS  # the same name as in a workspace, so `load_trust` reads either


def fingerprint(public_key: bytes) -> str:
    """A short, readable fingerprint of a registry key: 64 bits of its sha256, e.g. `3f2a-91c0-77de-0b15`."""
    digest = hashlib.sha256(public_key).hexdigest()[:16]
    return "-".join(digest[i:i + 4] for i in range(0, 16, 4))


def merkle_root(leaves: list[bytes]) -> str:
    """RFC 6962 Merkle tree hash of the leaves (the empty tree hashes the empty string)."""
    if not leaves:
        return hashlib.sha256(b"").hexdigest()
    level = [hashlib.sha256(b"\x00" + leaf).digest() for leaf in leaves]
    while len(level) > 1:
        paired = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        level = paired + ([level[-1]] if len(level) % 2 else [])
    return level[0].hex()


def export_registry(ws: Workspace, dest: Path, *, now: datetime) -> dict[str, Any]:
    """Write the registry (entries, then the signed head) to `dest`; the head."""
    dest = dest.expanduser()
    if dest.exists() and not dest.is_dir():
        raise InputError(f"{dest} is a file; give a folder for the registry.")
    dest.mkdir(parents=True, exist_ok=True)
    with ws.sessions() as s:
        events = list(s.scalars(select(AuditRow).order_by(AuditRow.seq)))
        entries = [e for event in events if (e := _entry(s, event)) is not None]
    leaves = [canonical_json(e) for e in entries]
    trust = (ws.c2pa_dir / TRUSTED_CHAINS).read_bytes()
    public = ws.org_public_key
    head: dict[str, Any] = {
        "version": REGISTRY_VERSION, "organisation": ws.config.organisation, "size": len(leaves),
        "root": merkle_root(leaves), "audit": {"seq": events[-1].seq, "hash": events[-1].hash} if events else None,
        "c2pa_trust_sha256": hashlib.sha256(trust).hexdigest(),
        "key": public.hex(), "fingerprint": fingerprint(public), "exported_at": now.isoformat(timespec="seconds"),
    }
    head["signature"] = sign(ws.org_key, canonical_json(head)).hex()
    with atomic_output(dest / TRUST) as tmp:
        tmp.write_bytes(trust)
    with atomic_output(dest / ENTRIES) as tmp:
        tmp.write_bytes(b"".join(leaf + b"\n" for leaf in leaves))
    with atomic_output(dest / HEAD) as tmp:
        tmp.write_text(json.dumps(head, indent=1))
    return head


def _entry(s: Any, event: AuditRow) -> dict[str, Any] | None:
    """The registry entry an audit event makes, if any (with the event's place in the chain)."""
    where = {"audit_seq": event.seq, "audit_hash": event.hash, "at": event.at.isoformat(timespec="seconds")}
    match event.action:
        case "voxgate.clip.released":
            clip = s.get(ClipRow, int(event.subject))
            return {"kind": "released", "clip": clip.id, "voice": clip.voice_id,
                    "master_sha256": event.data.get("audio_sha256"), **where}
        case "voxgate.clip.copy_made":
            return {"kind": "copy", "clip": int(event.subject), "delivery": event.data["delivery"],
                    "files": event.data["files"], **where}
        case "voxgate.clip.derived":
            return {"kind": "file", "clip": int(event.subject), "files": {event.data["format"]: event.data["sha256"]},
                    **where}
        case "voxgate.consent.revoked":
            revoked = s.scalars(select(ClipRow.id).where(ClipRow.voice_id == event.subject,
                                                         ClipRow.revoked_at == event.at)).all()
            return {"kind": "revoked", "voice": event.subject, "clips": sorted(revoked), **where}
    return None


@dataclass(frozen=True)
class Mirror:
    """A registry read from a folder and checked against its signed head."""

    folder: Path
    head: Mapping[str, Any]
    entries: tuple[Mapping[str, Any], ...]

    def file(self, sha256: str) -> tuple[int, str, int | None] | None:
        """(clip, format, delivery) of a file handed out with these bytes, if any."""
        for e in self.entries:
            for fmt, digest in e.get("files", {}).items():
                if digest == sha256:
                    return e["clip"], fmt, e.get("delivery")
            if e["kind"] == "released" and e["master_sha256"] == sha256:
                return e["clip"], "wav", None
        return None

    def released(self) -> set[int]:
        return {e["clip"] for e in self.entries if e["kind"] == "released"}

    def revoked(self) -> set[int]:
        return {c for e in self.entries if e["kind"] == "revoked" for c in e["clips"]}


def open_mirror(folder: Path, key_fingerprint: str) -> Mirror:
    """Read a registry mirror; refuse it unless its head is signed by the key with `key_fingerprint`
    and its entries hash to the signed root."""
    folder = folder.expanduser()
    try:
        head = json.loads((folder / HEAD).read_text())
        lines = (folder / ENTRIES).read_bytes().splitlines()
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder} is not a voxgate registry ({exc}); give the folder `voxgate registry export` "
                         "wrote.") from exc
    wanted = key_fingerprint.strip().lower().replace(" ", "")
    try:
        key = bytes.fromhex(head["key"])
        signature = bytes.fromhex(head["signature"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProvenanceError(f"The registry head in {folder} is malformed; fetch the mirror again.") from exc
    if fingerprint(key) != wanted:
        raise ProvenanceError(f"The registry in {folder} is signed by key {fingerprint(key)}, not {wanted}: "
                              "refused. Check the fingerprint the publisher posted on their own channels.")
    unsigned = {k: v for k, v in head.items() if k != "signature"}
    if not verify(key, signature, canonical_json(unsigned)):
        raise ProvenanceError(f"The registry head in {folder} does not carry a valid signature: refused.")
    trust = folder / TRUST
    if not trust.is_file() or hashlib.sha256(trust.read_bytes()).hexdigest() != head.get("c2pa_trust_sha256"):
        raise ProvenanceError(f"The certificates in {trust} are not the ones the registry head names: refused.")
    if head.get("size") != len(lines) or merkle_root(lines) != head.get("root"):
        raise ProvenanceError(f"The entries in {folder} do not match their signed head (an entry was edited, "
                              "added or removed): refused. Fetch the mirror again from another source.")
    return Mirror(folder, head, tuple(json.loads(line) for line in lines))
