"""Verify a circulating file: gather what it carries and what the registry knows, then one verdict.

Evidence, cheapest first: the file's sha256 against every registered file;
its content credentials (embedded, or a ``<file>.c2pa`` sidecar beside it)
checked against this workspace's certificates; its metadata tags; the
presence and payload watermarks; and, for every clip the file names or is
marked with, its audio searched for in that clip's registered master. The
decision itself is `pipeline.verify.verdict.decide`. Every check lands in the
audit log as `voxgate.verify.checked`, by "public" unless a user is named.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.audio.mix import resample
from pipeline.errors import InputError, ProvenanceError
from pipeline.export.probe import decode, probe
from pipeline.hashing import sha256_file
from pipeline.provenance.credentials import CredentialReport, CredentialStatus, load_trust, read_credentials
from pipeline.provenance.labels import AI_GENERATED_TAG, CLIP_ID_TAG
from pipeline.domain import ClipState
from pipeline.services.copies import payload_mark
from pipeline.services.gates import made_under, standing
from pipeline.services.review import approvals_of, verifier
from pipeline.services.voices import signatures_of, witness_only
from pipeline.services.workspace import Workspace
from pipeline.domain.serials import parse_serial
from pipeline.store.models import ClipFileRow, ClipRow, ConsentRow, DeliveryFileRow, DeliveryRow, StatementRow, VoiceRow
from pipeline.verify import match
from pipeline.verify.verdict import PREMASTER_FORMAT, ClipFacts, Evidence, PayloadReading, Trace, Verdict, decide

if TYPE_CHECKING:
    from pipeline.provenance.presence import PresenceMark

PUBLIC_ACTOR: Final = "public"
_LABEL_TAGS: Final = (AI_GENERATED_TAG.lower(), CLIP_ID_TAG.lower(), "voxgate_statement", "voxgate_voice")


@dataclass(frozen=True)
class ClipRecord:
    """The registry's account of the clip a verdict names, for people to read."""

    clip_id: int
    state: str
    statement_id: int
    revision: int
    text: str | None  # only once released: an unreleased draft's words are not for whoever holds the file
    voice_id: str
    voice_name: str
    owner: str
    approvals: tuple[dict[str, Any], ...]  # reviewer, stage, decision, signature_valid
    created_at: datetime
    released_at: datetime | None
    revoked_at: datetime | None  # the clip's, or else its consent's
    consent_witness_only: bool = False  # the consent was signed by the admin who added it, not by the owner


@dataclass(frozen=True)
class VerifyReport:
    path: Path
    sha256: str
    tags: Mapping[str, str]  # our label tags as found (a claim)
    credentials: CredentialReport
    evidence: Evidence
    verdict: Verdict
    clip: ClipRecord | None
    notes: Mapping[str, str]  # checks that could not run, and why

    def as_dict(self) -> dict[str, Any]:
        """For `--json`: stable keys, plain values."""
        e = self.evidence
        return {
            "file": str(self.path),
            "sha256": self.sha256,
            "verdict": self.verdict.outcome.value,
            "exit_code": self.verdict.exit_code,
            "clip_id": self.verdict.clip_id,
            "reasons": list(self.verdict.reasons),
            "traced_to": None if self.verdict.trace is None else vars(self.verdict.trace),
            "evidence": {
                "registered_file": None if e.registered_file is None else
                {"clip": e.registered_file[0], "format": e.registered_file[1]},
                "credentials": {"status": e.credentials.value, "clip": e.credentials_clip,
                                "signer": e.credentials_signer, "problems": list(e.credentials_problems),
                                "sidecar": self.credentials.sidecar,
                                "digital_source_type": self.credentials.source_type},
                "tags": dict(self.tags),
                "presence": e.presence,
                "payload": None if e.payload is None else
                {"clip": e.payload.serial, "delivery": e.payload.delivery, "confidence": e.payload.confidence},
                "content": {str(clip): {"audible_s": m.audible_s, "matched_s": m.matched_s, "coverage": m.coverage}
                            for clip, m in e.content.items()},
            },
            "clip": None if self.clip is None else vars(self.clip),
            "notes": dict(self.notes),
        }


def verify_file(ws: Workspace, path: Path, *, now: datetime, actor: str | None = None,
                presence: PresenceMark | None = None) -> VerifyReport:
    """Check `path` against this workspace's registry and record the check; `presence` is reused if given."""
    path = path.expanduser()
    if not path.is_file():
        raise InputError(f"{path} is not a file; give the path of the audio file to check.")
    digest = sha256_file(path)
    tags = {k: v for k, v in probe(path).tags.items() if k in _LABEL_TAGS}
    samples, rate = decode(path)
    credentials = read_credentials(path, load_trust(ws.c2pa_dir))
    notes: dict[str, str] = {}
    presence_score = _presence(samples, rate, presence, notes)
    payload = _payload(ws, samples, rate, notes)
    tags_clip = _clip_number(tags.get(CLIP_ID_TAG.lower()))
    with ws.sessions() as s:
        registered, traces = _registered(s, digest)
        payload = _trace_payload(s, payload, traces, notes)
        named = {registered[0] if registered else None, credentials.clip_id, tags_clip,
                 payload.serial if payload else None} - {None}
        rows = {clip: row for clip in sorted(named) if (row := s.get(ClipRow, clip)) is not None}
        facts = {clip: _facts(s, ws, row) for clip, row in rows.items()}
        masters = {clip: row.audio_sha256 for clip, row in rows.items() if row.audio_sha256}
    intact = {registered[0]} if registered else set()
    if credentials.status is CredentialStatus.TRUSTED and credentials.clip_id is not None:
        intact.add(credentials.clip_id)
    suspect = resample(samples, rate, match.RATE)
    content = {clip: match.match_audio(suspect, decode(ws.files.open_checked(sha), match.RATE)[0])
               for clip, sha in masters.items() if clip not in intact}
    evidence = Evidence(
        registered_file=(registered[0], registered[1]) if registered else None,
        credentials=credentials.status, credentials_clip=credentials.clip_id, credentials_signer=credentials.signer,
        credentials_problems=credentials.problems, tags_clip=tags_clip, presence=presence_score, payload=payload,
        content=content, clips=facts, traces=tuple(traces),
    )
    verdict = decide(evidence)
    with ws.transaction() as s:
        who = ws.person(s, actor).name if actor else PUBLIC_ACTOR
        record = _record(s, ws, verdict.clip_id) if verdict.clip_id in rows else None
        ws.record(s, "voxgate.verify.checked", actor=who,
                  subject=verdict.clip_id if verdict.clip_id is not None else digest,
                  data={"verdict": verdict.outcome.value, "sha256": digest, "clip": verdict.clip_id,
                        "credentials": credentials.status.value,
                        "delivery": verdict.trace.delivery if verdict.trace else None}, now=now)
    return VerifyReport(path, digest, tags, credentials, evidence, verdict, record, notes)


def _presence(samples: np.ndarray, rate: int, mark: PresenceMark | None, notes: dict[str, str]) -> float | None:
    from pipeline.provenance.presence import PresenceMark

    try:
        return float((mark or PresenceMark().load()).detect(samples, rate))
    except ProvenanceError as exc:  # Perth missing, or too short or quiet to judge: the other checks still count
        notes["presence"] = str(exc)
        return None


def _payload(ws: Workspace, samples: np.ndarray, rate: int, notes: dict[str, str]) -> PayloadReading | None:
    try:
        found = payload_mark(ws).detect(samples, rate)
    except ProvenanceError as exc:  # too short to carry a full period of the mark
        notes["payload"] = str(exc)
        return None
    return PayloadReading(found.payload, float(found.confidence))


def _registered(s: Session, digest: str) -> tuple[tuple[int, str] | None, list[tuple[int, Trace]]]:
    """(clip, format) of a registered file with these bytes: a clip's own, its premaster, or someone's personal copy."""
    own = s.execute(select(ClipFileRow.clip_id, ClipFileRow.format)
                    .where(ClipFileRow.sha256 == digest).order_by(ClipFileRow.id).limit(1)).first()
    if own is not None:
        return (own[0], own[1]), []
    premaster = s.scalars(select(ClipRow.id).where(ClipRow.premaster_sha256 == digest).limit(1)).first()
    if premaster is not None:  # never handed out: a copy outside the workspace is a leak
        return (premaster, PREMASTER_FORMAT), []
    copy = s.execute(select(DeliveryRow, DeliveryFileRow.format).join(DeliveryFileRow)
                     .where(DeliveryFileRow.sha256 == digest).order_by(DeliveryFileRow.id).limit(1)).first()
    if copy is None:
        return None, []
    delivery, fmt = copy
    return (delivery.clip_id, fmt), [(delivery.clip_id, Trace(delivery.id, delivery.recipient, "bytes"))]


def _trace_payload(s: Session, payload: PayloadReading | None, traces: list[tuple[int, Trace]],
                   notes: dict[str, str]) -> PayloadReading | None:
    """The payload reading in clip terms: a delivery's serial becomes its clip, and its recipient a trace."""
    if payload is None or payload.serial is None:
        return payload
    serial = parse_serial(payload.serial)
    if serial.delivery is None:
        return payload
    delivery = s.get(DeliveryRow, serial.delivery)
    if delivery is None:
        notes["payload"] = f"the payload mark names delivery {serial.delivery}, which this registry does not hold"
        return PayloadReading(None, payload.confidence, serial.delivery)
    traces.append((delivery.clip_id, Trace(delivery.id, delivery.recipient, "payload mark")))
    return PayloadReading(delivery.clip_id, payload.confidence, delivery.id)


def _clip_number(tag: str | None) -> int | None:
    return int(tag) if tag is not None and tag.isascii() and tag.isdigit() else None


def _facts(s: Session, ws: Workspace, clip: ClipRow) -> ClipFacts:
    """The clip as the signed records show it (`services.gates`): its state column is only a claim."""
    found = standing(s, ws, clip)
    revoked = found.state is ClipState.REVOKED
    return ClipFacts(clip.id, found.state.value, revoked, clip.released_at if found.released else None)


def _consent(s: Session, clip: ClipRow) -> ConsentRow:
    """The consent the clip was rendered under (the voice's current one for a clip that never finished)."""
    return made_under(s, clip)


def _record(s: Session, ws: Workspace, clip_id: int) -> ClipRecord:
    clip = s.get(ClipRow, clip_id)
    statement = s.get(StatementRow, clip.statement_id)
    voice = s.get(VoiceRow, clip.voice_id)
    consent = _consent(s, clip)
    valid = verifier(s, ws)
    approvals = tuple(
        {"reviewer": a.reviewer, "stage": a.stage.value, "decision": a.decision.value, "signature_valid": valid(a),
         "signature_sha256": hashlib.sha256(a.signature).hexdigest()}
        for a in approvals_of(s, clip.statement_id) if a.subject_hash in (clip.revision_sha256, clip.audio_sha256)
        and a.revision in (None, clip.revision)
    )
    found = standing(s, ws, clip)
    released = found.released or found.state is ClipState.REVOKED and clip.released_at is not None
    text = next(r.text for r in statement.revisions if r.number == clip.revision) if released else None
    return ClipRecord(clip.id, found.state.value, clip.statement_id, clip.revision, text, voice.id, voice.name, consent.owner,
                      approvals, clip.created_at, clip.released_at if released else None,
                      clip.revoked_at or consent.revoked_at, witness_only(signatures_of(s, consent)))
