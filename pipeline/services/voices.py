"""Voice profiles and their consent records.

A profile is a folder with a `voice.toml`: the voice's name and languages,
its model reference (engine, path, sha256) and the consent record (owner,
organisation, scope, validity window, approval policy). Adding it checks the
model's checksum and the consent, copies the profile into the workspace and
stores both as rows; the admin who adds it signs the record as witness.
(`voxgate voice enroll`, in `pipeline.services.enrollment`, is the proven path:
the owner's spoken consent, checked.)

Every consent record written since migration 0003 carries its canonical JSON
(`record_json`, whose sha256 is `record_sha256`) and Ed25519 signatures over
it. `current_consent` checks both before the consent gate may rely on a record.
Since migration 0005 the record binds each approver it names to their key
fingerprint (`approver_keys`): an owner-stage approval counts only when signed
by that key, so swapping a key under a name does not make an approver. A
record signed by its witness alone (a profile added by an admin) says so:
`witness_only`.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline import audit
from pipeline.domain import (
    TERMINAL,
    ClipEvent,
    ClipState,
    Revocation,
    ApprovalPolicyKind,
    Consent,
    ConsentKind,
    Event,
    Role,
    Scope,
    SignerCapacity,
    State,
    VoiceState,
    consent_payload,
    may_revoke,
    revocation_for,
)
from pipeline.errors import ConsentError, EngineError, InputError, NotFoundError, PermissionError_
from pipeline.identity.history import people
from pipeline.identity.keys import sign, verify
from pipeline.services.workspace import Actor, Workspace
from pipeline.store.files import atomic_copy, private_dir
from pipeline.store.models import (
    ClipRow,
    ConsentRow,
    ConsentSignatureRow,
    RevocationRow,
    StatementRow,
    UserRow,
    VoiceRow,
)
from pipeline.synth.base import ModelRef

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
PACKAGE_PREFIX = "package:"


def resolve_ref(ref: str, base: Path) -> Path:
    """A model path from a profile: `package:<pkg>/<file>` (an installed package's data) or a path relative to `base`."""
    if ref.startswith(PACKAGE_PREFIX):
        pkg, _, rest = ref[len(PACKAGE_PREFIX):].partition("/")
        try:
            return Path(str(resources.files(pkg) / rest))
        except ModuleNotFoundError:
            raise InputError(f"Model reference {ref!r} names package {pkg!r}, which is not installed; run `make setup`.") from None
    path = Path(ref)
    return path if path.is_absolute() else (base / path).resolve()


@dataclass(frozen=True)
class VoiceProfile:
    id: str
    name: str
    languages: tuple[str, ...]
    engine: str
    model_ref: str
    config_ref: str | None
    model_sha256: str
    consent: Consent
    raw_sha256: str


def _as_utc(value: Any, field: str, end_of_day: bool) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, date):
        return datetime.combine(value, time.max if end_of_day else time.min, timezone.utc)
    raise InputError(f"consent.{field} must be a TOML date such as 2027-12-31, not {value!r}.")


def _str_list(raw: dict[str, Any], key: str, where: str) -> frozenset[str]:
    value = raw.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise InputError(f"{where}.{key} must be a non-empty list of strings.")
    return frozenset(value)


def parse_profile(folder: Path) -> VoiceProfile:
    """Read and check `folder/voice.toml`; no store access."""
    path = folder / "voice.toml"
    try:
        data = path.read_bytes()
        raw = tomllib.loads(data.decode("utf-8"))
    except FileNotFoundError:
        raise InputError(f"{folder} has no voice.toml; a voice profile is a folder with a voice.toml in it.") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path} is not valid UTF-8 TOML: {exc}.") from exc
    try:
        vid, name, model, c = raw["id"], raw["name"], raw["model"], raw["consent"]
        engine, model_ref, sha = model["engine"], model["path"], model["sha256"]
        owner, org = c["owner"], c["organisation"]
        valid_from, valid_until = c["valid_from"], c["valid_until"]
    except (KeyError, TypeError) as exc:
        raise InputError(f"{path} is missing the setting {exc}; see voices/demo/voice.toml for a full example.") from None
    if not isinstance(vid, str) or not _ID.match(vid):
        raise InputError(f"{path}: id {vid!r} must be lower-case letters, digits, '_' or '-'.")
    languages = _str_list(raw, "languages", "voice")
    policy_raw = c.get("policy", "blanket")
    try:
        policy = ApprovalPolicyKind(policy_raw)
    except ValueError:
        raise InputError(f"{path}: consent.policy must be 'blanket' or 'per_statement', not {policy_raw!r}.") from None
    approvers = frozenset(c.get("approvers", []))
    if policy is ApprovalPolicyKind.PER_STATEMENT and not approvers:
        raise InputError(f"{path}: a per_statement policy needs consent.approvers (the owner's or delegates' user names).")
    consent = Consent(
        voice_id=vid,
        owner=str(owner),
        organisation=str(org),
        scope=Scope(_str_list(c, "purposes", "consent"), _str_list(c, "channels", "consent"), _str_list(c, "languages", "consent")),
        valid_from=_as_utc(valid_from, "valid_from", end_of_day=False),
        valid_until=_as_utc(valid_until, "valid_until", end_of_day=True),
        policy=policy,
        approvers=approvers,
        statement=" ".join(str(c.get("statement", "")).split()),
    )
    if not consent.statement:
        raise InputError(f"{path}: consent.statement must hold the exact words the owner consented with.")
    if consent.valid_until <= consent.valid_from:
        raise InputError(f"{path}: consent.valid_until must be after consent.valid_from.")
    if not consent.scope.languages <= languages:
        raise InputError(f"{path}: the consent covers languages the voice does not speak ({', '.join(sorted(consent.scope.languages - languages))}).")
    return VoiceProfile(vid, str(name), tuple(sorted(languages)), str(engine), str(model_ref), model.get("config"),
                        str(sha).lower(), consent, hashlib.sha256(data).hexdigest())


def model_ref(voice: VoiceRow, ws: Workspace) -> ModelRef:
    """The model a voice speaks with; `EngineError` for an enrolled voice that has none yet."""
    if not voice.model_sha256 or voice.state == VoiceState.ENROLLED.value:
        raise EngineError(
            f"Voice {voice.id!r} is {voice.state}, not ready: its consent and recordings are enrolled but it has no "
            f"usable model yet. Train it first (`voxgate voice train {voice.id}`), then render."
        )
    base = ws.voice_dir(voice.id)
    config = resolve_ref(voice.config_ref, base) if voice.config_ref else None
    return ModelRef(voice.engine, resolve_ref(voice.model_ref, base), config, voice.model_sha256)


def consent_to_dict(c: Consent) -> dict[str, Any]:
    return {
        "voice": c.voice_id, "owner": c.owner, "organisation": c.organisation,
        "purposes": sorted(c.scope.purposes), "channels": sorted(c.scope.channels),
        "languages": sorted(c.scope.languages), "valid_from": c.valid_from.isoformat(),
        "valid_until": c.valid_until.isoformat(), "policy": c.policy.value, "approvers": sorted(c.approvers),
        "statement": c.statement, "owner_account": c.owner_account,
        # Only records that bind keys carry the field, so records from before 0005 read back unchanged.
        **({"approver_keys": dict(c.approver_keys)} if c.approver_keys else {}),
    }


def bind_approver_keys(s: Session, c: Consent) -> Consent:
    """`c` with each approver bound to a key fingerprint: kept where already bound, else their current key."""
    bound = dict(c.approver_keys)
    held = people(s)
    for name in sorted(c.approvers):
        if name not in bound and (key := held.current_key(name)) is not None:
            bound[name] = key.fingerprint
    return replace(c, approver_keys=tuple(sorted((n, fp) for n, fp in bound.items() if n in c.approvers)))


def consent_record(c: Consent, kind: ConsentKind, evidence: dict[str, Any]) -> bytes:
    """The canonical bytes of a consent record: the terms, how they were given, and the proof they rest on."""
    return consent_payload({"source": kind.value, "consent": consent_to_dict(c), "evidence": evidence})


def add_consent_row(ws: Workspace, s: Session, c: Consent, kind: ConsentKind, evidence: dict[str, Any], *,
                    signers: list[tuple[Actor, SignerCapacity]], now: datetime, enrollment_id: int | None = None,
                    supersedes_id: int | None = None) -> ConsentRow:
    """Store a consent record (approvers bound to their keys) signed by each of `signers` with their own key."""
    c = bind_approver_keys(s, c)
    payload = consent_record(c, kind, evidence)
    row = ConsentRow(voice_id=c.voice_id, owner=c.owner, organisation=c.organisation, statement=c.statement,
                     purposes=sorted(c.scope.purposes), channels=sorted(c.scope.channels),
                     languages=sorted(c.scope.languages), valid_from=c.valid_from, valid_until=c.valid_until,
                     policy=c.policy.value, approvers=sorted(c.approvers), record_sha256=hashlib.sha256(payload).hexdigest(),
                     created_at=now, kind=kind.value, owner_account=c.owner_account, enrollment_id=enrollment_id,
                     supersedes_id=supersedes_id, record_json=payload.decode("utf-8"),
                     approver_keys=dict(c.approver_keys) or None)
    s.add(row)
    s.flush()
    for who, capacity in signers:
        s.add(ConsentSignatureRow(consent_id=row.id, signer=who.name, capacity=capacity.value,
                                  signature=who.sign(payload), created_at=now))
    s.flush()
    return row


def record_problem(s: Session, row: ConsentRow) -> str | None:
    """Why a stored consent record cannot be relied on, or None when its record and signatures hold.

    A row without its signed record is invalid (fail closed): its columns are only a copy of the record.
    """
    if row.record_json is None:
        return "it has no signed record (the row's columns alone prove nothing)"
    payload = row.record_json.encode("utf-8")
    if hashlib.sha256(payload).hexdigest() != row.record_sha256:
        return "its record does not match its sha256"
    try:
        terms = json.loads(payload)["consent"]
    except (ValueError, KeyError, TypeError):
        return "its record is not readable"
    if terms != consent_to_dict(consent_of(row)):  # type: ignore[arg-type]
        return "its stored terms differ from the signed record"
    signatures = signatures_of(s, row)
    if not signatures:
        return "it carries no signature"
    if bad := [f"{signer} ({capacity})" for signer, capacity, valid in signatures if not valid]:
        return f"the signature of {', '.join(bad)} does not verify"
    return None


def signatures_of(s: Session, row: ConsentRow) -> list[tuple[str, str, bool]]:
    """(signer, capacity, verifies) for each signature on the record, checked against the keys the signer has held."""
    out = []
    held = people(s)
    rows = s.scalars(select(ConsentSignatureRow).where(ConsentSignatureRow.consent_id == row.id)
                     .order_by(ConsentSignatureRow.id))
    for sig in rows:
        keys = held.keys.get(sig.signer, ())
        ok = row.record_json is not None and any(
            verify(k.public_key, sig.signature, row.record_json.encode("utf-8")) for k in keys)
        out.append((sig.signer, sig.capacity, ok))
    return out


def witness_only(signatures: list[tuple[str, str, bool]]) -> bool:
    """True when nobody but a witness (the admin who added or enrolled it) signed the record: not the owner."""
    return all(capacity == SignerCapacity.WITNESS.value for _, capacity, _ in signatures)


WITNESS_ONLY_NOTE = ("signed only by the admin who added it as witness, not by the owner: the owner's consent rests "
                     "on the admin's word (enroll the voice with the owner's spoken consent to change that)")


def add_voice(ws: Workspace, folder: Path, *, actor: str | None, now: datetime) -> VoiceRow:
    """Register the profile in `folder` with its consent; refuse a model whose sha256 differs."""
    from pipeline.synth.base import verify_model

    profile = parse_profile(folder)
    c = profile.consent
    if c.organisation != ws.config.organisation:
        raise InputError(
            f"The consent names the organisation {c.organisation!r}, but this workspace belongs to "
            f"{ws.config.organisation!r}; a voice can only be used by the organisation its owner consented to."
        )
    model_path = resolve_ref(profile.model_ref, folder)
    config_path = resolve_ref(profile.config_ref, folder) if profile.config_ref else None
    verify_model(ModelRef(profile.engine, model_path, config_path, profile.model_sha256))
    dest = ws.voice_dir(profile.id)
    with ws.transaction() as s:
        who = ws.actor(s, actor, Role.ADMIN)
        if s.get(VoiceRow, profile.id) is not None:
            raise InputError(f"A voice with id {profile.id!r} already exists; give the new profile another id.")
        rev = revocation_for(revocations(s), voice_id=profile.id, model_sha256=profile.model_sha256, consent=c,
                             consent_kind=ConsentKind.PROFILE, consent_created_at=now)
        if rev is not None:
            raise ConsentError(
                f"The owner revoked consent for this model on {rev.at:%Y-%m-%d} (voice {rev.voice_id!r}: {rev.reason}); "
                "it cannot be added again under any id. Only the owner's new spoken consent brings it back "
                "(`voxgate consent script …`, then `voxgate voice enroll`)."
            )
        for name in sorted(c.approvers):
            user = s.get(UserRow, name)
            if user is None or user.role not in (Role.OWNER.value, Role.DELEGATE.value):
                raise InputError(f"Consent approver {name!r} must be a user with the owner or delegate role; add them first.")
        # Relative paths are pinned to where the profile came from, so the copy keeps working.
        mref = profile.model_ref if profile.model_ref.startswith(PACKAGE_PREFIX) else str(model_path)
        cref = None if profile.config_ref is None else (
            profile.config_ref if profile.config_ref.startswith(PACKAGE_PREFIX) else str(config_path))
        voice = VoiceRow(id=profile.id, name=profile.name, languages=list(profile.languages), engine=profile.engine,
                         model_ref=mref, config_ref=cref, model_sha256=profile.model_sha256,
                         state=VoiceState.READY.value, profile_sha256=profile.raw_sha256, created_at=now)
        s.add(voice)
        s.flush()
        evidence = {"profile_sha256": profile.raw_sha256, "model_sha256": profile.model_sha256}
        row = add_consent_row(ws, s, c, ConsentKind.PROFILE, evidence, signers=[(who, SignerCapacity.WITNESS)],
                              now=now)
        ws.record(s, "voxgate.voice.added", actor=who.name, subject=profile.id,
                  data={"model_sha256": profile.model_sha256, "profile_sha256": profile.raw_sha256}, now=now)
        ws.record(s, "voxgate.consent.recorded", actor=who.name, subject=profile.id,
                  data={"consent_sha256": row.record_sha256, "witness": who.name, **consent_to_dict(c)}, now=now)
        private_dir(dest)
        atomic_copy(folder / "voice.toml", dest / "voice.toml")
    return voice


def get_voice(s: Session, voice_id: str) -> VoiceRow:
    voice = s.get(VoiceRow, voice_id)
    if voice is None:
        raise NotFoundError(f"No voice {voice_id!r}; list voices with `voxgate voice list`.")
    return voice


def current_consent(s: Session, voice_id: str, *, verified: bool = True) -> ConsentRow | None:
    """The voice's newest consent record (earlier ones are history).

    With `verified` (the default, and what every gate uses) a record whose
    signatures or terms do not verify raises `ConsentError`: it counts as none.
    """
    row = s.scalars(select(ConsentRow).where(ConsentRow.voice_id == voice_id)
                    .order_by(ConsentRow.id.desc()).limit(1)).first()
    if row is not None and verified and (problem := record_problem(s, row)) is not None:
        raise ConsentError(
            f"The consent record for voice {voice_id!r} does not verify: {problem}. It counts as no consent; "
            f"check the workspace for tampering and enroll the voice again."
        )
    return row


def consent_history(s: Session, voice_id: str) -> list[ConsentRow]:
    """Every consent record of the voice, oldest first: nothing is ever deleted."""
    return list(s.scalars(select(ConsentRow).where(ConsentRow.voice_id == voice_id).order_by(ConsentRow.id)))


def consent_of(row: ConsentRow | None) -> Consent | None:
    if row is None:
        return None
    return Consent(
        voice_id=row.voice_id, owner=row.owner, organisation=row.organisation,
        scope=Scope(frozenset(row.purposes), frozenset(row.channels), frozenset(row.languages)),
        valid_from=row.valid_from, valid_until=row.valid_until, policy=ApprovalPolicyKind(row.policy),
        approvers=frozenset(row.approvers), revoked_at=row.revoked_at, revoked_reason=row.revoked_reason,
        statement=row.statement, owner_account=row.owner_account,
        approver_keys=tuple(sorted((str(n), str(fp)) for n, fp in (row.approver_keys or {}).items())),
    )


def list_voices(ws: Workspace) -> list[tuple[VoiceRow, ConsentRow | None]]:
    with ws.sessions() as s:
        return [(v, current_consent(s, v.id, verified=False)) for v in s.scalars(select(VoiceRow).order_by(VoiceRow.id))]


def show_voice(ws: Workspace, voice_id: str) -> tuple[VoiceRow, ConsentRow | None]:
    with ws.sessions() as s:
        voice = get_voice(s, voice_id)
        return voice, current_consent(s, voice_id, verified=False)


def revocations(s: Session) -> list[Revocation]:
    """Every revocation record, oldest first. One that cannot be read still revokes its voice and model."""
    out = []
    for r in s.scalars(select(RevocationRow).order_by(RevocationRow.id)):
        try:
            raw = json.loads(r.record_json)
            out.append(Revocation(raw["voice"], raw["owner"], raw["model_sha256"], raw["consent_sha256"],
                                  raw["reason"], raw["revoker"], datetime.fromisoformat(raw["at"])))
        except (TypeError, ValueError, KeyError):
            out.append(Revocation(r.voice_id, r.owner, r.model_sha256, "", "(unreadable revocation record)",
                                  r.revoker, r.created_at))
    return out


def binding_revocation(s: Session, voice_id: str, model_sha256: str, row: ConsentRow | None,
                       known: list[Revocation] | None = None) -> Revocation | None:
    """The revocation that binds the voice's model under consent record `row`, or None (`domain.revocation_for`)."""
    return revocation_for(known if known is not None else revocations(s), voice_id=voice_id,
                          model_sha256=model_sha256 or "", consent=consent_of(row),
                          consent_kind=ConsentKind(row.kind) if row is not None and row.kind else None,
                          consent_created_at=row.created_at if row is not None else None)


def signed_consent(s: Session, ws: Workspace, voice_id: str) -> Consent | None:
    """The voice's consent as the signed records say, for every gate.

    The record must verify (a row without its signed record is invalid); the
    revocation records decide whether it is revoked (the `revoked_at` column can
    only add a revocation, never lift one); and the revocation and veto sets
    must match what the signed audit head commits to.
    """
    audit.require_commitments(s, ws.org_public_key)
    row = current_consent(s, voice_id)
    if row is None:
        return None
    consent = consent_of(row)
    assert consent is not None
    voice = get_voice(s, voice_id)
    if (rev := binding_revocation(s, voice.id, voice.model_sha256, row)) is not None:
        return replace(consent, revoked_at=rev.at, revoked_reason=rev.reason)
    return consent


def revoke_consent(ws: Workspace, voice_id: str, reason: str, *, actor: str | None, now: datetime) -> dict[str, int]:
    """Revoke at once and for good, as a signed record bound to the owner and the model hash.

    Live statements are revoked and released clips marked revoked (caches for listing: the
    revocation record is what every gate reads). Only a new enrollment lifts it.
    """
    from pipeline.services.statements import clip_transition, transition

    if not reason.strip():
        raise InputError("Give a reason for the revocation with --reason.")
    with ws.transaction() as s:
        who = ws.actor(s, actor, Role.OWNER, Role.DELEGATE)
        voice = get_voice(s, voice_id)
        row = current_consent(s, voice_id, verified=False)  # revoking must work even on a record that fails checks
        if row is None:
            raise NotFoundError(f"Voice {voice_id!r} has no consent on file.")
        if (earlier := binding_revocation(s, voice.id, voice.model_sha256, row)) is not None:
            raise InputError(f"Consent for voice {voice_id!r} was already revoked on {earlier.at:%Y-%m-%d}.")
        if not may_revoke(Role(who.role), who.name, consent_of(row)):  # type: ignore[arg-type]
            raise PermissionError_(f"{who.name} is not the owner or a named delegate of voice {voice_id!r}.")
        record = Revocation(voice_id, row.owner, voice.model_sha256 or "", row.record_sha256, reason.strip(),
                            who.name, now)
        payload = record.to_bytes()
        revocation = RevocationRow(voice_id=voice_id, owner=row.owner, model_sha256=record.model_sha256,
                                   record_json=payload.decode("utf-8"), record_sha256=hashlib.sha256(payload).hexdigest(),
                                   org_signature=sign(ws.org_key, payload), revoker=who.name,
                                   revoker_signature=who.sign(payload),
                                   created_at=now)
        s.add(revocation)
        row.revoked_at, row.revoked_by, row.revoked_reason = now, who.name, reason.strip()  # cache for listing
        voice.state = VoiceState.REVOKED.value
        moved = 0
        for st in s.scalars(select(StatementRow).where(StatementRow.voice_id == voice_id)).all():
            if State(st.state) not in TERMINAL:
                transition(ws, s, st, Event.CONSENT_REVOKED, actor=who.name, now=now)
                moved += 1
        clips = s.scalars(select(ClipRow).where(ClipRow.voice_id == voice_id,
                                                ClipRow.state == ClipState.RELEASED.value)).all()
        for clip in clips:
            clip_transition(ws, s, clip, ClipEvent.REVOKED, actor=who.name, now=now)
        s.flush()
        ws.record(s, audit.head.REVOKED_ACTION, actor=who.name, subject=voice_id,
                  data={"reason": reason.strip(), "statements_revoked": moved, "clips_revoked": len(clips),
                        "revocation_sha256": revocation.record_sha256, "owner": row.owner,
                        "model_sha256": record.model_sha256, "consent_sha256": row.record_sha256}, now=now)
    return {"statements": moved, "clips": len(clips)}
