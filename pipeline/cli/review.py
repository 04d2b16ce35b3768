"""`voxgate review …`: signed decisions on text drafts and rendered audio."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pipeline.cli.output import (
    HOME_DEFAULT, AsJson, AsUser, Home, console, handles_errors, print_fields, print_json, print_table, success,
)
from pipeline.cli.statements import statement_dict
from pipeline.domain import Decision
from pipeline.services import review as svc
from pipeline.services.workspace import open_workspace, utcnow

app = typer.Typer(help="Review statements: text first, then the rendered audio.", no_args_is_help=True)

Comment = Annotated[str, typer.Option(help="A note for the submitter (recorded and signed).")]
Revision = Annotated[Optional[int], typer.Option(help="The revision you read; refused if the text has changed since.")]


@app.command("list")
@handles_errors
def list_(home: Home = HOME_DEFAULT, as_user: AsUser = None, as_json: AsJson = False) -> None:
    """Statements waiting for a decision you may give."""
    rows = svc.pending(open_workspace(home), actor=as_user)
    if as_json:
        print_json([statement_dict(r) for r in rows])
        return
    print_table("Waiting for review", ["id", "state", "voice", "purpose", "channel", "submitter", "rev"],
                [(r.id, r.state, r.voice_id, r.purpose, r.channel, r.submitter, r.revision) for r in rows])


@app.command("show")
@handles_errors
def show(
    statement_id: int,
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Copy the rendered draft into this folder as draft-<id>.wav, to play it.")] = None,
    home: Home = HOME_DEFAULT,
    as_json: AsJson = False,
) -> None:
    """The text (or draft audio) under review, the approvals so far and what is missing."""
    ws = open_workspace(home)
    d = svc.review_details(ws, statement_id)
    row, clip = d["statement"], d["draft"]
    copied = svc.copy_draft(ws, statement_id, out) if out is not None else None
    if as_json:
        print_json({**statement_dict(row, full=True), "stage": d["stage"], "missing": d["missing"],
                    "draft": None if clip is None else {"clip": clip.id, "audio_sha256": clip.audio_sha256,
                                                        "path": d["draft_path"], "copy": copied,
                                                        "figures": clip.figures},
                    "approvals": d["approvals"]})
        return
    fields = [("state", row.state), ("stage", d["stage"]), ("revision", row.revision),
              ("still needed", d["missing"] or "nothing")]
    if clip is not None and d["draft_path"]:
        listen = copied or f"{d['draft_path']} (WAV; `--out DIR` copies it as draft-{row.id}.wav)"
        fields += [("draft clip", clip.id), ("listen", listen), ("audio sha256", clip.audio_sha256),
                   *((f"figure {k}", v) for k, v in clip.figures.items())]
    print_fields(f"Review of statement {row.id}", fields)
    console.print(row.revisions[-1].text, markup=False, highlight=False)
    if d["approvals"]:
        print_table("Decisions", ["stage", "rev", "reviewer", "decision", "signature", "current", "comment"],
                    [(a["stage"], a["revision"] or "v1", a["reviewer"], a["decision"],
                      "valid" if a["signature_valid"] else "INVALID", "yes" if a["current"] else "stale", a["comment"])
                     for a in d["approvals"]])


def _decide(decision: Decision, statement_id: int, comment: str, revision: int | None, home, as_user,  # noqa: ANN001
            listened: bool = False) -> None:
    row = svc.decide(open_workspace(home), statement_id, decision, comment=comment, revision=revision,
                     listened=listened, actor=as_user, now=utcnow())
    success(f"Statement {row.id}: {decision.value} recorded and signed; it is now {row.state}.")


@app.command("approve")
@handles_errors
def approve(statement_id: int, comment: Comment = "", revision: Revision = None,
            listened: Annotated[bool, typer.Option(
                "--listened", help="Audio stage: you heard the whole draft (signed with your decision).")] = False,
            home: Home = HOME_DEFAULT, as_user: AsUser = None) -> None:
    """Approve the text (or, for a rendered draft, the audio); signed with your key."""
    _decide(Decision.APPROVE, statement_id, comment, revision, home, as_user, listened)


@app.command("reject")
@handles_errors
def reject(statement_id: int, comment: Comment = "", revision: Revision = None,
           home: Home = HOME_DEFAULT, as_user: AsUser = None) -> None:
    """Reject the statement for good."""
    _decide(Decision.REJECT, statement_id, comment, revision, home, as_user)


@app.command("request-changes")
@handles_errors
def request_changes(statement_id: int, comment: Comment = "", revision: Revision = None,
                    home: Home = HOME_DEFAULT, as_user: AsUser = None) -> None:
    """Send the statement back to its submitter for a revision."""
    _decide(Decision.REQUEST_CHANGES, statement_id, comment, revision, home, as_user)
