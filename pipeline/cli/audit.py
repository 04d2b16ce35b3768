"""`voxgate audit …`: the hash-chained, signed log of every step."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from pipeline.cli.output import HOME_DEFAULT, AsJson, Home, err_console, handles_errors, print_json, print_table, success
from pipeline.services.auditing import audit_log, audit_verify
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
def verify(home: Home = HOME_DEFAULT, as_json: AsJson = False) -> None:
    """Check every event's hash chain and signature; exit 1 at the first event altered, removed or reordered."""
    report = audit_verify(open_workspace(home))
    if as_json:
        print_json({"ok": report.ok, "events": report.events, "problem": report.problem, "first_bad_seq": report.first_bad_seq})
    elif report.ok:
        success(f"Audit log OK: {report.events} events, chain and signatures intact.")
    else:
        err_console.print(f"[bold red]Audit log BROKEN[/bold red]: {report.problem}.", soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)
