"""`voxgate audit …`: the hash-chained, signed log of every step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from pipeline.cli.output import HOME_DEFAULT, AsJson, Home, err_console, handles_errors, print_json, print_table, success
from pipeline.services.auditing import audit_head, audit_log, audit_verify
from pipeline.services.workspace import open_workspace

app = typer.Typer(help="The audit log: show and verify.", no_args_is_help=True)


@app.command("log")
@handles_errors
def log(
    limit: Annotated[int, typer.Option(help="Newest N events (0: all).")] = 50,
    subject: Annotated[Optional[str], typer.Option(help="Only events about this subject (statement id, voice, …).")] = None,
    home: Home = HOME_DEFAULT,
    as_json: AsJson = False,
) -> None:
    """Show audit events, oldest first."""
    rows = audit_log(open_workspace(home), limit=limit or None, subject=subject)
    if as_json:
        print_json([{"seq": r.seq, "at": r.at, "actor": r.actor, "action": r.action, "subject": r.subject,
                     "data": r.data, "prev_hash": r.prev_hash, "hash": r.hash, "signature": r.signature} for r in rows])
        return
    print_table("Audit log", ["seq", "at", "actor", "action", "subject", "data", "hash"], [
        (r.seq, f"{r.at:%Y-%m-%d %H:%M:%S}", r.actor, r.action, r.subject,
         json.dumps(r.data, ensure_ascii=False)[:80], r.hash[:12]) for r in rows])


@app.command("verify")
@handles_errors
def verify(
    head: Annotated[Optional[Path], typer.Option(help="A copy of the signed head kept outside the workspace "
                                                      "(from `voxgate audit head`); the chain must extend it.")] = None,
    replay: Annotated[bool, typer.Option("--replay", help="Also recompute every state the gates depend on from the "
                                                          "events and signed records, and list each row that "
                                                          "disagrees.")] = False,
    home: Home = HOME_DEFAULT,
    as_json: AsJson = False,
) -> None:
    """Check every event's hash chain and signature and the signed head; exit 1 at the first problem."""
    report = audit_verify(open_workspace(home), head_file=head, replay=replay)
    if as_json:
        print_json({"ok": report.ok, "events": report.events, "problem": report.problem,
                    "first_bad_seq": report.first_bad_seq, "disagreements": list(report.disagreements)})
    elif report.ok:
        success(f"Audit log OK: {report.events} events, chain, signatures and signed head intact"
                + (", every row agrees with the records." if replay else "."))
    else:
        err_console.print(f"[bold red]Audit log BROKEN[/bold red]: {report.problem}.", soft_wrap=True)
        for line in report.disagreements:
            err_console.print(f"  {line}", soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


@app.command("head")
@handles_errors
def head(home: Home = HOME_DEFAULT) -> None:
    """Print the signed audit head (JSON) to publish outside the workspace; check it later with `verify --head`."""
    print(json.dumps(audit_head(open_workspace(home)).as_dict(), indent=2))
