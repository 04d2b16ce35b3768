"""`voxgate demo`: the whole flow on the embedded demo voice, narrated.

Builds a throwaway workspace with its people and the demo voice, takes two
statements from submission to export, shows the consent gate and the
self-approval rule refusing what they must, and ends with a table of what
was produced, checked from the exported files themselves.

Every person signs with their own passphrase-protected key, kept in a key
folder outside the workspace; the demo plays them all, so it sets one
passphrase in `$VOXGATE_PASSPHRASE` (unless you set one) and runs unattended.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.rule import Rule

from pipeline.cli.output import console, print_table
from pipeline.cli.rendering import render_jobs
from pipeline.domain import Decision
from pipeline.errors import VoxgateError
from pipeline.services import clips, review, statements, users, voices
from pipeline.services.auditing import audit_verify
from pipeline.identity.personal import PASSPHRASE_ENV, Keyring, env_passphrases
from pipeline.services.job_worker import JobWorker
from pipeline.services.render import claimable
from pipeline.services.tools import Tools
from pipeline.services.workspace import init_workspace, utcnow

DEMO_PASSPHRASE = "voxgate demo passphrase"

ORGANISATION = "Free Voice Media (demo)"
PEOPLE = [
    ("ops", "admin"),
    ("sam", "submitter"),
    ("rita", "reviewer"),
    ("ravi", "reviewer"),
    ("joe-delegate", "delegate"),
    ("dana", "distributor"),
]
STATEMENTS = [
    ("public-statement", "social",
     "I am well, and I thank everyone who has written to me. "
     "The charges against me are false, and my lawyers will prove it in court. "
     "Please keep speaking up for a fair and open trial."),
    ("press-release", "messaging",
     "Today my team publishes the full record of the hearing. "
     "Read it, share it, and ask why the court was closed to the public."),
]


def _demo_profile() -> Path:
    for candidate in (Path("voices/demo"), Path(__file__).resolve().parents[2] / "voices" / "demo"):
        if (candidate / "voice.toml").is_file():
            return candidate
    raise VoxgateError("The demo voice profile voices/demo is missing; run the demo from the voxgate repository.")


def _step(text: str) -> None:
    console.print(f"[bold cyan]→[/bold cyan] {text}", highlight=False)


def _refused(what: str, exc: VoxgateError) -> None:
    console.print(f"  [yellow]refused as it must be[/yellow] ({what}): {type(exc).__name__}: {escape(str(exc))}",
                  highlight=False)


def run_demo(home: str | None) -> None:
    started = time.perf_counter()
    root = Path(home) if home else Path(tempfile.mkdtemp(prefix="voxgate-demo-"))
    console.print(Rule("voxgate demo"))
    _step(f"workspace at {root}")
    ws, created = init_workspace(root, ORGANISATION, now=utcnow())
    if not created:
        raise VoxgateError(f"{root} already holds a workspace; the demo needs a fresh one (omit --home).")
    os.environ.setdefault(PASSPHRASE_ENV, DEMO_PASSPHRASE)
    keys = Path(tempfile.mkdtemp(prefix="voxgate-demo-keys-"))
    ws.keyring = Keyring(keys, env_passphrases(prompt=False))
    _step(f"people's own keys at {keys} (encrypted; passphrase from ${PASSPHRASE_ENV}); the workspace gets public keys only")
    for name, role in PEOPLE:
        users.add_user_from_keys(ws, name, role, actor="ops", now=utcnow())
    _step("people: " + ", ".join(f"{n} ({r})" for n, r in PEOPLE))
    voice = voices.add_voice(ws, _demo_profile(), actor="ops", now=utcnow())
    _step(f"voice {voice.id!r} added with its consent (per-statement approval by joe-delegate, bound to joe-delegate's "
          "key); the record is witnessed only, signed by ops and not by the owner, and `voxgate consent show` says so")

    ids = []
    for purpose, channel, text in STATEMENTS:
        row = statements.submit(ws, voice_id="demo", purpose=purpose, channel=channel, language="en", text=text,
                                actor="sam", now=utcnow())
        ids.append(row.id)
        _step(f"sam submitted statement {row.id} ({purpose}, {channel})")
    try:
        statements.submit(ws, voice_id="demo", purpose="advertising", channel="social", language="en",
                          text="Buy our sponsor's product today.", actor="sam", now=utcnow())
    except VoxgateError as exc:
        _refused("consent gate: purpose outside the scope", exc)

    statements.revise(ws, ids[1], STATEMENTS[1][2].replace("Read it, share it,", "Read it and share it,"),
                      actor="ops", now=utcnow())
    _step(f"ops revised statement {ids[1]} (earlier approvals of it no longer count)")
    try:
        review.decide(ws, ids[1], Decision.APPROVE, actor="ops", now=utcnow())
    except VoxgateError as exc:
        _refused("self-approval", exc)

    wrong = Keyring(keys, lambda _name: b"not rita's passphrase")
    try:
        review.decide(_with_keyring(ws, wrong), ids[0], Decision.APPROVE, actor="rita", now=utcnow())
    except VoxgateError as exc:
        _refused("rita's key with the wrong passphrase", exc)
    for sid, reviewer in zip(ids, ("rita", "ravi")):
        review.decide(ws, sid, Decision.APPROVE, comment="text checked against the lawyer's note", actor=reviewer, now=utcnow())
        row = review.decide(ws, sid, Decision.APPROVE, comment="approved for the owner", actor="joe-delegate", now=utcnow())
        _step(f"statement {sid}: text approved by {reviewer} and joe-delegate → {row.state}")

    tools = Tools()
    with JobWorker(ws, tools, queues=("render",)):  # render jobs, run in this process as `voxgate render` does
        _done, failures, _taken = render_jobs(ws, claimable(ws, utcnow()), "rita")
    if failures:
        raise failures[0][1]

    for sid, reviewer in zip(ids, ("ravi", "rita")):
        row = review.decide(ws, sid, Decision.APPROVE, comment="listened: matches the approved text", actor=reviewer,
                            now=utcnow())
        _step(f"statement {sid}: audio approved by {reviewer} → {row.state}")

    out = root / "exports"
    out.mkdir(exist_ok=True)
    produced: dict[int, list[Path]] = {}
    for clip in clips.list_clips(ws):
        produced[clip.statement_id] = [clips.export_clip(ws, clip.id, fmt, out, actor="dana", now=utcnow())
                                       for fmt in ("wav", "mp3", "ogg", "m4a")]
    _step(f"dana exported {sum(map(len, produced.values()))} audio files to {out}, each her own marked copy")
    first = clips.list_clips(ws)[0]
    video = clips.export_clip(ws, first.id, "mp4-square", out, actor="dana", now=utcnow())
    captions = clips.export_clip(ws, first.id, "srt", out, actor="dana", now=utcnow())
    _step(f"dana exported the square video {video.name} and captions {captions.name}")
    _verify_examples(ws, tools, produced[first.statement_id][1], out)

    report = audit_verify(ws)
    _step(f"audit log: {'OK' if report.ok else 'BROKEN: ' + report.problem}, {report.events} events")
    _summary(ws, tools, produced)
    console.print(f"demo finished in {time.perf_counter() - started:.1f} s; workspace kept at {root}")


def _with_keyring(ws: Any, keyring: Keyring) -> Any:
    """The same workspace, unlocking keys with another keyring (someone else at the keyboard)."""
    from dataclasses import replace

    return replace(ws, keyring=keyring)


def _verify_examples(ws: Any, tools: Tools, mp3: Path, out: Path) -> None:
    """What anyone checking a circulating copy would see: the file as released, and a forwarded re-encode."""
    import subprocess

    from pipeline.services.verify import verify_file

    forwarded = out / "forwarded-voice-note.ogg"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(mp3), "-c:a", "libopus", "-b:a", "24k", "-ac", "1",
                    str(forwarded)], check=True)
    for path in (mp3, forwarded):
        verdict = verify_file(ws, path, now=utcnow(), presence=tools.presence_mark()).verdict
        _step(f"anyone verifies {path.name}: {verdict.outcome.value} (clip {verdict.clip_id}) — {verdict.reasons[0]}")
        if verdict.trace is not None:
            _step(f"  the publisher also sees whose copy it is: {verdict.trace.recipient} "
                  f"(delivery {verdict.trace.delivery}, by its {verdict.trace.by})")


def _summary(ws: Any, tools: Tools, produced: dict[int, list[Path]]) -> None:
    """One row per statement, with the figures re-measured from the exported files."""
    from pipeline.audio.loudness import measure
    from pipeline.export.probe import decode, probe

    rows = []
    for row in statements.list_statements(ws):
        files = produced.get(row.id, [])
        if not files:
            rows.append((row.id, row.state, "", "", "", "", "", ""))
            continue
        samples, sr = decode(files[0])
        loud = measure(samples, sr)
        marked = all(tools.presence_mark().detect(*decode(f)) >= 0.5 for f in files)
        labelled = all(probe(f).tags.get("ai_generated") == "true" for f in files)
        rows.append((row.id, row.state, " ".join(f.suffix[1:] for f in files), f"{len(samples) / sr:.1f} s",
                     f"{loud.integrated_lufs:.1f}", f"{loud.true_peak_dbtp:.1f}",
                     "yes" if marked else "NO", "yes" if labelled else "NO"))
    print_table("Demo result (measured on the exported files)",
                ["stmt", "state", "clip files", "duration", "LUFS", "dBTP", "watermark", "AI labels"], rows)
