"""What `consent show` and the consent certificate print: the record, its checks, files, signatures and history.

    voxgate consent show VOICE       the record, its checks, files and signatures, and its history
    voxgate consent certificate …    the one-page HTML certificate for the owner to keep
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.domain import ConsentKind, consent_status
from pipeline.errors import InputError, NotFoundError, StoreError
from pipeline.services.voices import (
    WITNESS_ONLY_NOTE,
    binding_revocation,
    consent_history,
    consent_of,
    current_consent,
    get_voice,
    record_problem,
    signatures_of,
    witness_only,
)
from pipeline.services.workspace import Workspace
from pipeline.store.files import SHARED_MODE, atomic_output
from pipeline.store.models import ConsentRow, ConsentScriptRow, EnrollmentRow, RecordingRow, UserRow, VoiceRow


def _status(s: Session, voice: VoiceRow, row: ConsentRow, now: datetime) -> str:
    """The one consent status (`domain.consent_status`), with revocations read from their signed records."""
    consent = consent_of(row)
    assert consent is not None
    if (rev := binding_revocation(s, voice.id, voice.model_sha256, row)) is not None:
        consent = replace(consent, revoked_at=rev.at, revoked_reason=rev.reason)
    return consent_status(consent, now).value


def consent_details(ws: Workspace, voice_id: str, *, now: datetime) -> dict[str, Any]:
    """Everything `consent show` and the certificate print: record, checks, files, signatures, history."""
    with ws.sessions() as s:
        voice = get_voice(s, voice_id)
        row = current_consent(s, voice_id, verified=False)
        if row is None:
            raise NotFoundError(f"Voice {voice_id!r} has no consent on file.")
        problem = record_problem(s, row)
        keys = {u.name: u for u in s.scalars(select(UserRow))}
        signed = signatures_of(s, row)
        signatures = [
            {"signer": name, "capacity": capacity, "role": keys[name].role if name in keys else None,
             "public_key": keys[name].public_key.hex() if name in keys else None, "valid": valid}
            for name, capacity, valid in signed
        ]
        enrollment = s.get(EnrollmentRow, row.enrollment_id) if row.enrollment_id else None
        enrolled = None
        if enrollment is not None:
            recordings = list(s.scalars(select(RecordingRow).where(RecordingRow.enrollment_id == enrollment.id)
                                        .order_by(RecordingRow.id)))
            script = s.get(ConsentScriptRow, enrollment.script_id)
            enrolled = {
                "id": enrollment.id, "operator": enrollment.operator, "created_at": enrollment.created_at,
                "elapsed_s": enrollment.elapsed_s, "speech_recognition": enrollment.asr,
                "transcript": enrollment.transcript, "challenge": script.challenge if script else None,
                "folder": enrollment.folder, "checks": enrollment.checks.get("checks", []),
                "consent_audio": {"name": enrollment.consent_audio, "sha256": enrollment.consent_audio_sha256},
                "recordings": [{"name": r.name, "sha256": r.sha256, "duration_s": r.duration_s,
                                "sample_rate": r.sample_rate, "similarity": r.similarity, "transcript": r.transcript}
                               for r in recordings],
                "recordings_s": round(sum(r.duration_s for r in recordings), 1),
            }
        history = [{"id": h.id, "kind": h.kind or ConsentKind.PROFILE.value, "created_at": h.created_at,
                    "valid_from": h.valid_from, "valid_until": h.valid_until, "purposes": h.purposes,
                    "channels": h.channels, "languages": h.languages, "policy": h.policy,
                    "record_sha256": h.record_sha256, "revoked_at": h.revoked_at, "revoked_by": h.revoked_by,
                    "revoked_reason": h.revoked_reason, "current": h.id == row.id}
                   for h in consent_history(s, voice_id)]
        return {
            "voice": {"id": voice.id, "name": voice.name, "state": voice.state, "languages": voice.languages,
                      "engine": voice.engine, "model_sha256": voice.model_sha256 or None},
            "organisation": ws.config.organisation,
            "consent": {
                "id": row.id, "kind": row.kind or ConsentKind.PROFILE.value, "status": _status(s, voice, row, now),
                "owner": row.owner, "owner_account": row.owner_account, "organisation": row.organisation,
                "statement": row.statement, "purposes": row.purposes, "channels": row.channels,
                "languages": row.languages, "valid_from": row.valid_from, "valid_until": row.valid_until,
                "policy": row.policy, "approvers": row.approvers, "record_sha256": row.record_sha256,
                "approver_keys": row.approver_keys or {},
                "witness_only": witness_only(signed), "witness_only_note": WITNESS_ONLY_NOTE if witness_only(signed) else "",
                "verified": problem is None, "problem": problem, "created_at": row.created_at,
                "revoked_at": row.revoked_at, "revoked_by": row.revoked_by, "revoked_reason": row.revoked_reason,
                "evidence": json.loads(row.record_json).get("evidence") if row.record_json else None,
            },
            "enrollment": enrolled,
            "signatures": signatures,
            "history": history,
            "generated_at": now,
        }


def write_certificate(ws: Workspace, voice_id: str, out: Path, *, now: datetime) -> Path:
    """Write the one-page HTML consent certificate to `out` (atomically)."""
    from pipeline.consent.certificate import render_certificate

    if out.is_dir():
        out = out / f"consent-{voice_id}.html"
    if not out.parent.is_dir():
        raise InputError(f"{out.parent} is not a folder; create it first.")
    html = render_certificate(consent_details(ws, voice_id, now=now))
    try:
        with atomic_output(out, mode=SHARED_MODE) as tmp:  # for the owner to keep, outside the workspace
            tmp.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise StoreError(f"Could not write {out}: {exc.strerror}; check the folder's permissions.") from exc
    return out


__all__ = ["consent_details", "write_certificate"]
