"""`voxgate voice …` and `voxgate consent …`: voice profiles, enrollment and consent."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.text import Text

from pipeline.cli.output import (
    HOME_DEFAULT, AsJson, AsUser, Home, console, handles_errors, print_fields, print_json, print_table, success,
)
from pipeline.errors import InputError
from pipeline.services.voices import add_voice, list_voices, revoke_consent, show_voice
from pipeline.services.workspace import open_workspace, utcnow
from pipeline.store.models import ConsentRow, VoiceRow

app = typer.Typer(help="Voices: add a profile, enroll the owner's consent, list, show.", no_args_is_help=True)
consent_app = typer.Typer(help="Consent records: script, show, certificate, renew, revoke.", no_args_is_help=True)

Values = Annotated[Optional[list[str]], typer.Option(help="Comma-separated, or repeat the option.")]


def _consent_dict(c: ConsentRow | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {
        "owner": c.owner, "organisation": c.organisation, "statement": c.statement, "purposes": c.purposes, "channels": c.channels,
        "languages": c.languages, "valid_from": c.valid_from, "valid_until": c.valid_until, "policy": c.policy,
        "approvers": c.approvers, "record_sha256": c.record_sha256, "revoked_at": c.revoked_at,
        "revoked_by": c.revoked_by, "revoked_reason": c.revoked_reason, "kind": c.kind or "profile",
        "owner_account": c.owner_account,
    }


def _date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InputError(f"{option} {value!r} is not a date; write it as YYYY-MM-DD, e.g. 2027-12-31.") from None


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
    from pipeline.services.announcers import describe

    ws = open_workspace(home)
    v, c = show_voice(ws, voice_id)
    data = _voice_dict(v, c)
    data["announcers"] = {lang: describe(ws, lang, v.id) for lang in v.languages}
    if as_json:
        print_json(data)
        return
    consent = data.pop("consent") or {}
    spoken_by = data.pop("announcers")
    print_fields(f"Voice {v.id}", [(k, ", ".join(x) if isinstance(x, list) else x) for k, x in data.items()]
                 + [(f"disclosure announcer ({lang})", text) for lang, text in spoken_by.items()]
                 + [(f"consent.{k}", ", ".join(x) if isinstance(x, list) else x) for k, x in consent.items()])


@app.command("enroll")
@handles_errors
def enroll(
    voice_id: Annotated[str, typer.Argument(help="Voice id the consent script was printed for.")],
    recordings: Annotated[Path, typer.Option("--recordings", help="Folder of training .wav files with a .txt "
                                             "beside each, or an LJSpeech metadata.csv.")],
    consent_audio: Annotated[Path, typer.Option("--consent-audio", help="The owner reading the consent script.")],
    confirmed_by_operator: Annotated[bool, typer.Option(
        "--confirmed-by-operator", help="For a language no recogniser covers (bundled or in voxgate.toml "
        "[recognisers]): you listened, and the owner "
        "read the script as printed.")] = False,
    script: Annotated[Optional[int], typer.Option(help="Consent script id (default: the newest pending one).")] = None,
    home: Home = HOME_DEFAULT,
    as_user: AsUser = None,
) -> None:
    """Enroll the owner's spoken consent and training recordings: speech, speaker and audio checks, signed record."""
    from pipeline.services.enrollment import enroll as enroll_

    r = enroll_(open_workspace(home), voice_id, recordings, consent_audio, actor=as_user, now=utcnow(),
                confirmed_by_operator=confirmed_by_operator, script_id=script)
    print_table(f"Enrollment checks for {voice_id}", ["check", "result", "figure", "needs"],
                [(c.name, "pass" if c.passed else "FAIL", c.detail or c.figure, c.limit) for c in r.checks])
    success(f"Enrolled voice {r.voice_id} ({r.voice_state}{', new' if r.created_voice else ''}): consent record "
            f"{r.consent_id}, sha256 {r.record_sha256[:12]}…, signed by {', '.join(r.signers)}; {r.recordings} "
            f"recordings ({r.recordings_s:.0f} s) in {r.elapsed_s:.1f} s.")


@consent_app.command("script")
@handles_errors
def script(
    voice_id: Annotated[str, typer.Argument(help="Voice id to enroll (new, or an existing voice).")],
    owner: Annotated[str, typer.Option(help="The owner's full name, as they will say it.")],
    org: Annotated[str, typer.Option(help="The organisation, exactly as this workspace is named.")],
    valid_until: Annotated[str, typer.Option("--valid-until", help="Last day the consent holds (YYYY-MM-DD).")],
    purposes: Values = None,
    channels: Values = None,
    languages: Values = None,
    policy: Annotated[str, typer.Option(help="blanket, or per_statement (the owner or a delegate approves each "
                                              "statement).")] = "blanket",
    delegates: Values = None,
    owner_account: Annotated[Optional[str], typer.Option("--owner-account", help="The owner's own user (role "
                                                         "owner): approves, and signs the record.")] = None,
    language: Annotated[Optional[str], typer.Option(help="Language of the script (default: en if consented, else "
                                                         "the first).")] = None,
    home: Home = HOME_DEFAULT,
    as_user: AsUser = None,
    as_json: AsJson = False,
) -> None:
    """Print the consent script the owner must read aloud, ending with a fresh challenge phrase."""
    from pipeline.services.consent_scripts import create_script

    row = create_script(open_workspace(home), voice_id, owner=owner, organisation=org, purposes=purposes or [],
                        channels=channels or [], languages=languages or [], valid_until=_date(valid_until, "--valid-until"),
                        policy=policy, delegates=delegates or [], owner_account=owner_account, language=language,
                        actor=as_user, now=utcnow())
    if as_json:
        print_json({"script": row.id, "voice": row.voice_id, "language": row.language, "text": row.text,
                    "challenge": row.challenge, "valid_until": row.valid_until})
        return
    console.print(Text(row.text), soft_wrap=True)
    success(f"Consent script {row.id} for voice {voice_id} (challenge: {row.challenge}). Record the owner reading it, "
            f"then `voxgate voice enroll {voice_id} --recordings DIR --consent-audio FILE`.")


@consent_app.command("show")
@handles_errors
def show_consent(voice_id: str, home: Home = HOME_DEFAULT, as_json: AsJson = False) -> None:
    """Show a voice's consent record, its checks, files and signatures, and its history."""
    from pipeline.services.consent_certificate import consent_details

    d = consent_details(open_workspace(home), voice_id, now=utcnow())
    if as_json:
        print_json(d)
        return
    c, e = d["consent"], d["enrollment"]
    flat = lambda x: ", ".join(map(str, x)) if isinstance(x, list) else x  # noqa: E731
    print_fields(f"Consent for voice {voice_id}: {c['status']}" + ("" if c["verified"] else " (DOES NOT VERIFY)"), [
        (k, flat(c[k])) for k in ("id", "kind", "owner", "owner_account", "organisation", "statement", "purposes",
                                  "channels", "languages", "valid_from", "valid_until", "policy", "approvers",
                                  "record_sha256", "revoked_at", "revoked_by", "revoked_reason", "problem")
        if c[k] not in (None, [])]
        + [("approver keys", ", ".join(f"{n} {fp}" for n, fp in sorted(c["approver_keys"].items())) or
            "none bound (a record from before keys were bound)")]
        + ([("WITNESSED ONLY", c["witness_only_note"])] if c["witness_only"] else []))
    if e:
        print_table(f"Checks (enrollment {e['id']} by {e['operator']}, {e['speech_recognition']})",
                    ["check", "result", "figure", "needs"],
                    [(x["name"], "pass" if x["passed"] else "FAIL", x["detail"] or x["figure"], x["limit"])
                     for x in e["checks"]])
        print_table("Files", ["file", "sha256"], [("consent audio: " + e["consent_audio"]["name"],
                                                   e["consent_audio"]["sha256"])]
                    + [(r["name"], r["sha256"]) for r in e["recordings"]])
    print_table("Signatures", ["signer", "capacity", "verifies"],
                [(x["signer"], x["capacity"], "yes" if x["valid"] else "NO") for x in d["signatures"]])
    if len(d["history"]) > 1:
        print_table("History", ["record", "kind", "created", "valid until", "revoked"],
                    [(h["id"], h["kind"], h["created_at"], h["valid_until"], h["revoked_at"]) for h in d["history"]])


@consent_app.command("certificate")
@handles_errors
def certificate(
    voice_id: str,
    out: Annotated[Path, typer.Option("--out", help="HTML file to write (or a folder).")],
    home: Home = HOME_DEFAULT,
) -> None:
    """Write a one-page HTML consent certificate: scope, checks and signatures."""
    from pipeline.services.consent_certificate import write_certificate

    path = write_certificate(open_workspace(home), voice_id, out, now=utcnow())
    success(f"Wrote the consent certificate for {voice_id} to {path}.")


@consent_app.command("renew")
@handles_errors
def renew(
    voice_id: str,
    purposes: Values = None,
    channels: Values = None,
    languages: Values = None,
    valid_until: Annotated[Optional[str], typer.Option("--valid-until", help="New last day (YYYY-MM-DD).")] = None,
    policy: Annotated[Optional[str], typer.Option(help="blanket or per_statement.")] = None,
    delegates: Values = None,
    home: Home = HOME_DEFAULT,
    as_user: AsUser = None,
) -> None:
    """Renew a consent with a new signed record: narrow it (owner, delegate, admin) or widen it (the owner only)."""
    from pipeline.services.consent_renewal import renew_consent

    row, widened, narrowed = renew_consent(
        open_workspace(home), voice_id, purposes=purposes, channels=channels, languages=languages,
        valid_until=_date(valid_until, "--valid-until"), policy=policy, delegates=delegates, actor=as_user,
        now=utcnow())
    changes = "; ".join([*(f"widened {w}" for w in widened), *(f"narrowed {n}" for n in narrowed)])
    success(f"Consent for {voice_id} renewed as record {row.id} (sha256 {row.record_sha256[:12]}…): {changes}.")


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
