"""`voxgate voice …` and `voxgate consent …`: voice profiles and their consent."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.cli.output import (
    HOME_DEFAULT, AsJson, AsUser, Home, handles_errors, print_fields, print_json, print_table, success,
)
from pipeline.services.voices import add_voice, list_voices, revoke_consent, show_voice
from pipeline.services.workspace import open_workspace, utcnow
from pipeline.store.models import ConsentRow, VoiceRow

app = typer.Typer(help="Voice profiles: add, list, show.", no_args_is_help=True)
consent_app = typer.Typer(help="Consent records: revoke.", no_args_is_help=True)


def _consent_dict(c: ConsentRow | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {
        "owner": c.owner, "organisation": c.organisation, "statement": c.statement, "purposes": c.purposes, "channels": c.channels,
        "languages": c.languages, "valid_from": c.valid_from, "valid_until": c.valid_until, "policy": c.policy,
        "approvers": c.approvers, "record_sha256": c.record_sha256, "revoked_at": c.revoked_at,
        "revoked_by": c.revoked_by, "revoked_reason": c.revoked_reason,
    }


def _voice_dict(v: VoiceRow, c: ConsentRow | None) -> dict[str, Any]:
    return {"id": v.id, "name": v.name, "languages": v.languages, "engine": v.engine, "model": v.model_ref,
            "model_sha256": v.model_sha256, "state": v.state, "consent": _consent_dict(c)}


@app.command("add")
@handles_errors
def add(
    path: Annotated[Path, typer.Argument(help="Profile folder holding voice.toml.")],
    home: Home = HOME_DEFAULT,
    as_user: AsUser = None,
) -> None:
    """Add a voice profile and its consent record (checks the model's sha256)."""
    voice = add_voice(open_workspace(home), path, actor=as_user, now=utcnow())
    success(f"Added voice {voice.id} ({voice.name}), engine {voice.engine}, model sha256 {voice.model_sha256[:12]}….")


@app.command("list")
@handles_errors
def list_(home: Home = HOME_DEFAULT, as_json: AsJson = False) -> None:
    """List voices with their consent scope and validity."""
    voices = list_voices(open_workspace(home))
    if as_json:
        print_json([_voice_dict(v, c) for v, c in voices])
        return
    print_table("Voices", ["id", "name", "engine", "state", "consent", "valid until", "purposes"], [
        (v.id, v.name, v.engine, v.state, "revoked" if c and c.revoked_at else (c.policy if c else "none"),
         f"{c.valid_until:%Y-%m-%d}" if c else "", ", ".join(c.purposes) if c else "")
        for v, c in voices])


@app.command("show")
@handles_errors
def show(voice_id: str, home: Home = HOME_DEFAULT, as_json: AsJson = False) -> None:
    """Show a voice, its model and its consent record."""
    v, c = show_voice(open_workspace(home), voice_id)
    data = _voice_dict(v, c)
    if as_json:
        print_json(data)
        return
    consent = data.pop("consent") or {}
    print_fields(f"Voice {v.id}", [(k, ", ".join(x) if isinstance(x, list) else x) for k, x in data.items()]
                 + [(f"consent.{k}", ", ".join(x) if isinstance(x, list) else x) for k, x in consent.items()])


@consent_app.command("revoke")
@handles_errors
def revoke(
    voice_id: str,
    reason: Annotated[str, typer.Option(help="Why consent is revoked (recorded in the audit log).")],
    home: Home = HOME_DEFAULT,
    as_user: AsUser = None,
) -> None:
    """Revoke a voice's consent now and for good (owner, named delegate or admin)."""
    counts = revoke_consent(open_workspace(home), voice_id, reason, actor=as_user, now=utcnow())
    success(f"Consent for {voice_id} revoked: {counts['statements']} statements and {counts['clips']} released clips revoked.")
