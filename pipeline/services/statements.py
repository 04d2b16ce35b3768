"""Statements: submit, revise, withdraw, list and show."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.domain import (
    ClipEvent,
    ClipState,
    Event,
    Role,
    State,
    Statement,
    check_consent,
    next_clip_state,
    next_state,
    text_hash,
)
from pipeline.errors import InputError, NotFoundError, PermissionError_
from pipeline.services.voices import get_voice, signed_consent
from pipeline.services.workspace import Workspace
from pipeline.store.models import ClipRow, RevisionRow, StatementRow
from pipeline.synth.text import canonical_text, refuse_forbidden_chars, refuse_unspeakable


def decode_text(data: bytes, source: str) -> str:
    """Statement text from raw bytes: strict UTF-8 (a BOM is tolerated), or a clear refusal."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{source} is not UTF-8 text (invalid byte at position {exc.start}); save it as UTF-8 and try again."
        ) from None


def validate_text(text: str, max_chars: int, language: str = "", names: dict[str, str] | None = None) -> str:
    """The canonical text (what is hashed and approved), or `InputError` for empty, over-long,
    deceptive or unspeakable text."""
    cleaned = canonical_text(text, language)
    if not cleaned.strip():
        raise InputError("The statement text is empty; write the words to be spoken in the file.")
    if len(cleaned) > max_chars:
        raise InputError(
            f"The statement has {len(cleaned):,} characters, over the limit of {max_chars:,}; "
            "split it into several statements or raise [statements] max_chars in voxgate.toml."
        )
    refuse_forbidden_chars(cleaned)
    refuse_unspeakable(cleaned, language, names=names)
    return cleaned


def to_domain(row: StatementRow) -> Statement:
    rev = row.revisions[-1]
    return Statement(
        id=row.id, voice_id=row.voice_id, language=row.language, purpose=row.purpose, channel=row.channel,
        submitter=row.submitter, state=State(row.state), revision=rev.number, revision_hash=rev.sha256,
        authors=frozenset(r.author for r in row.revisions),
    )


def get_statement(s: Session, statement_id: int) -> StatementRow:
    row = s.get(StatementRow, statement_id)
    if row is None:
        raise NotFoundError(f"No statement {statement_id}; list statements with `voxgate statements list`.")
    return row


def transition(ws: Workspace, s: Session, row: StatementRow, event: Event, *, actor: str, now: datetime,
               data: dict | None = None) -> None:
    """Move `row` by `event` (the state machine decides) and record it in the audit log.

    The one way a statement's state changes; a new row (state None) can only be `SUBMITTED`.
    """
    before = row.state
    row.state = next_state(State(before) if before is not None else None, event, statement_id=row.id).value
    row.updated_at = now
    ws.record(s, f"voxgate.statement.{event.value}", actor=actor, subject=row.id,
              data={"from": before, "to": row.state, "revision": row.revision, **(data or {})}, now=now)


def clip_transition(ws: Workspace, s: Session, clip: ClipRow, event: ClipEvent, *, actor: str, now: datetime,
                    data: dict | None = None) -> None:
    """Move a clip by `event` (its own state machine decides) and record it: the one way a clip's state changes.

    The column is a cache for listing; gates read the signed records (`services.gates`).
    """
    before = clip.state
    clip.state = next_clip_state(ClipState(before), event, clip_id=clip.id).value
    if event is ClipEvent.RELEASED:
        clip.released_at = now
    elif event is ClipEvent.REVOKED:
        clip.revoked_at = now
    ws.record(s, f"voxgate.clip.{event.value}", actor=actor, subject=clip.id,
              data={"from": before, "to": clip.state, "statement": clip.statement_id, **(data or {})}, now=now)


def supersede_drafts(ws: Workspace, s: Session, statement_id: int, *, actor: str, now: datetime) -> None:
    """A revision, rejection, request for changes or withdrawal replaces the statement's draft clip."""
    for clip in s.scalars(select(ClipRow).where(ClipRow.statement_id == statement_id,
                                                ClipRow.state == ClipState.DRAFT.value)):
        clip_transition(ws, s, clip, ClipEvent.SUPERSEDED, actor=actor, now=now)


def submit(ws: Workspace, *, voice_id: str, purpose: str, channel: str, language: str, text: str,
           actor: str | None, now: datetime) -> StatementRow:
    text = validate_text(text, ws.config.max_chars, language, ws.config.urdu_names)
    with ws.transaction() as s:
        who = ws.actor(s, actor, Role.SUBMITTER)
        voice = get_voice(s, voice_id)
        if language not in voice.languages:
            raise InputError(f"Voice {voice_id!r} speaks {', '.join(voice.languages)}, not {language!r}.")
        state = next_state(None, Event.SUBMITTED)
        row = StatementRow(voice_id=voice_id, language=language, purpose=purpose.strip(), channel=channel.strip(),
                           submitter=who.name, state=state.value, revision=1, created_at=now, updated_at=now)
        s.add(row)
        s.flush()
        rev = RevisionRow(statement_id=row.id, number=1, text=text, sha256=text_hash(text), author=who.name, created_at=now)
        s.add(rev)
        s.flush()
        s.refresh(row)
        # The consent gate runs first at submission, so an out-of-scope request is refused before review.
        check_consent(signed_consent(s, ws, voice_id), to_domain(row), now)
        row.state = None  # type: ignore[assignment]  # born through the one audited transition
        transition(ws, s, row, Event.SUBMITTED, actor=who.name, now=now,
                   data={"voice": voice_id, "purpose": row.purpose, "channel": row.channel, "language": language,
                         "text_sha256": rev.sha256})
    return row


def revise(ws: Workspace, statement_id: int, text: str, *, actor: str | None, now: datetime) -> StatementRow:
    """A new revision: earlier approvals no longer match its hash, so they stop counting."""
    with ws.transaction() as s:
        who = ws.actor(s, actor, Role.SUBMITTER)
        row = get_statement(s, statement_id)
        text = validate_text(text, ws.config.max_chars, row.language, ws.config.urdu_names)
        if text_hash(text) == row.revisions[-1].sha256:
            raise InputError(f"The text is identical to revision {row.revision}; nothing to revise.")
        transition(ws, s, row, Event.REVISED, actor=who.name, now=now, data={"text_sha256": text_hash(text)})
        row.revision += 1
        s.add(RevisionRow(statement_id=row.id, number=row.revision, text=text, sha256=text_hash(text),
                          author=who.name, created_at=now))
        supersede_drafts(ws, s, row.id, actor=who.name, now=now)
        s.flush()
        s.refresh(row)
    return row


def withdraw(ws: Workspace, statement_id: int, *, actor: str | None, now: datetime) -> StatementRow:
    with ws.transaction() as s:
        who = ws.actor(s, actor, Role.SUBMITTER)
        row = get_statement(s, statement_id)
        if who.role != Role.ADMIN.value and who.name not in {r.author for r in row.revisions}:
            raise PermissionError_(f"Only an author of statement {statement_id} or an admin can withdraw it.")
        transition(ws, s, row, Event.WITHDRAWN, actor=who.name, now=now)
        supersede_drafts(ws, s, row.id, actor=who.name, now=now)
    return row


def list_statements(ws: Workspace, *, state: str | None = None) -> list[StatementRow]:
    with ws.sessions() as s:
        q = select(StatementRow).order_by(StatementRow.id)
        if state:
            try:
                State(state)
            except ValueError:
                raise InputError(f"Unknown state {state!r}; choose one of {', '.join(x.value for x in State)}.") from None
            q = q.where(StatementRow.state == state)
        return list(s.scalars(q))


def show_statement(ws: Workspace, statement_id: int) -> StatementRow:
    with ws.sessions() as s:
        return get_statement(s, statement_id)
