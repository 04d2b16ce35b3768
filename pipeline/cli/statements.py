"""`voxgate submit`, `revise`, `withdraw` and `voxgate statements list|show`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from pipeline.cli.output import (
    HOME_DEFAULT, AsJson, AsUser, Home, console, handles_errors, print_fields, print_json, print_table, success,
)
from pipeline.errors import InputError
from pipeline.services import statements as svc
from pipeline.services.workspace import open_workspace, utcnow
from pipeline.store.models import StatementRow

app = typer.Typer(help="Statements: list and show.", no_args_is_help=True)

TextFile = Annotated[str, typer.Argument(help="UTF-8 text file with the statement, or - for standard input.")]


def read_text(source: str) -> str:
    if source == "-":
        return svc.decode_text(sys.stdin.buffer.read(), "standard input")
    path = Path(source)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"No file {source}; give a UTF-8 text file or - for standard input.") from None
    except (IsADirectoryError, PermissionError) as exc:
        raise InputError(f"Cannot read {source}: {exc.strerror}.") from None
    return svc.decode_text(data, source)


def statement_dict(row: StatementRow, *, full: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": row.id, "state": row.state, "voice": row.voice_id, "language": row.language, "purpose": row.purpose,
        "channel": row.channel, "submitter": row.submitter, "revision": row.revision,
        "revision_sha256": row.revisions[-1].sha256, "updated_at": row.updated_at,
    }
    if full:
        data["text"] = row.revisions[-1].text
        data["revisions"] = [{"number": r.number, "author": r.author, "sha256": r.sha256, "created_at": r.created_at}
                             for r in row.revisions]
    return data


def submit(
    file: TextFile,
    voice: Annotated[str, typer.Option(help="Voice id.")],
    purpose: Annotated[str, typer.Option(help="Purpose, inside the voice's consent scope.")],
    channel: Annotated[str, typer.Option(help="Channel, inside the voice's consent scope.")],
    lang: Annotated[str, typer.Option(help="Language of the text.")] = "en",
    home: Home = HOME_DEFAULT,
    as_user: AsUser = None,
) -> None:
    """Submit a statement for review; prints its id."""
    text = read_text(file)
    row = svc.submit(open_workspace(home), voice_id=voice, purpose=purpose, channel=channel, language=lang,
                     text=text, actor=as_user, now=utcnow())
    console.out(str(row.id))


def revise(statement_id: int, file: TextFile, home: Home = HOME_DEFAULT, as_user: AsUser = None) -> None:
    """Replace a statement's text with a new revision (earlier approvals stop counting)."""
    row = svc.revise(open_workspace(home), statement_id, read_text(file), actor=as_user, now=utcnow())
    success(f"Statement {row.id} is at revision {row.revision}; it needs review again.")


def withdraw(statement_id: int, home: Home = HOME_DEFAULT, as_user: AsUser = None) -> None:
    """Withdraw a statement for good."""
    row = svc.withdraw(open_workspace(home), statement_id, actor=as_user, now=utcnow())
    success(f"Statement {row.id} withdrawn.")


@app.command("list")
@handles_errors
def list_(
    state: Annotated[Optional[str], typer.Option(help="Only statements in this state.")] = None,
    home: Home = HOME_DEFAULT,
    as_json: AsJson = False,
) -> None:
    """List statements with their state."""
    rows = svc.list_statements(open_workspace(home), state=state)
    if as_json:
        print_json([statement_dict(r) for r in rows])
        return
    print_table("Statements", ["id", "state", "voice", "lang", "purpose", "channel", "submitter", "rev", "updated"],
                [(r.id, r.state, r.voice_id, r.language, r.purpose, r.channel, r.submitter, r.revision,
                  f"{r.updated_at:%Y-%m-%d %H:%M}") for r in rows])


@app.command("show")
@handles_errors
def show(statement_id: int, home: Home = HOME_DEFAULT, as_json: AsJson = False) -> None:
    """Show a statement, its current text and its revisions."""
    data = statement_dict(svc.show_statement(open_workspace(home), statement_id), full=True)
    if as_json:
        print_json(data)
        return
    revs = data.pop("revisions")
    print_fields(f"Statement {statement_id}", list(data.items()) + [
        (f"revision {r['number']}", f"{r['author']} · {r['sha256'][:12]}… · {r['created_at']:%Y-%m-%d %H:%M}") for r in revs])
