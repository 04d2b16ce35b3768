"""Move an embedded workspace (SQLite file, blobs folder) to PostgreSQL and/or an S3-compatible object store.

    voxgate migrate --to postgresql://USER@HOST/DB --files s3://BUCKET/PREFIX --home ws

Either part may be given alone. The targets must be empty (no table in the
database, no object under the prefix): a migration never merges into, or
overwrites, another workspace. The source is held still while it is copied
(the store's write lock), so no render or download lands half in the old
place and half in the new:

1. every blob is read from the folder and checked against its name, stored in
   the object store (Content-MD5 and ETag checked by the store), then read
   back from it and hashed again;
2. the schema is created in PostgreSQL by the same migrations, and every row
   of every table copied with the same ids; sequences continue after them;
   row counts are compared, and the audit chain is verified in the new
   database (hashes, signatures, signed head) before anything else changes;
3. voxgate.toml is rewritten to name the new places (the old one is kept as
   voxgate.toml.before-migrate).

Nothing in the workspace changes unless all of it succeeds. The old
voxgate.db and blobs/ are left as they were, for the operator to remove once
satisfied. Stop `voxgate serve` and every worker first: they keep using the
old places until restarted.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from sqlalchemy import MetaData, inspect, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.types import JSON

from pipeline.errors import InputError, StoreError
from pipeline.settings import CONFIG_FILE
from pipeline.store.db import migrate, normalise_url, open_engine, writer
from pipeline.store.files import FileStore, atomic_output, open_file_store

log = logging.getLogger(__name__)
BACKUP_SUFFIX: Final = ".before-migrate"
_BATCH: Final = 500
MIGRATED: Final = "voxgate.workspace.migrated"


@dataclass
class MigrationReport:
    rows: dict[str, int] = field(default_factory=dict)  # table → rows copied
    blobs: int = 0
    blob_bytes: int = 0
    audit_events: int = 0
    database_url: str | None = None
    files_url: str | None = None


def migrate_workspace(home: Path, *, to_database: str | None, to_files: str | None,
                      say: Callable[[str], None] = lambda _m: None) -> MigrationReport:
    """Copy the workspace at `home` to the new database and/or object store, check it, then switch its config."""
    from pipeline.services.workspace import open_workspace, utcnow

    if not to_database and not to_files:
        raise InputError("Say where to move the workspace: --to postgresql://USER@HOST/DB, --files s3://BUCKET/PREFIX, "
                         "or both.")
    if to_database and not normalise_url(to_database).startswith("postgresql"):
        raise InputError("--to takes a PostgreSQL url (postgresql://USER@HOST/DB); the workspace is on SQLite already.")
    ws = open_workspace(home)
    if to_database and ws.config.database_url:
        raise InputError(f"The workspace at {ws.home} already keeps its store in a database server; migrate moves "
                         "only an embedded (SQLite) workspace.")
    if to_files and ws.config.files_url:
        raise InputError(f"The workspace at {ws.home} already keeps its files in {ws.config.files_url}; migrate moves "
                         "only the blobs folder.")
    report = MigrationReport(database_url=to_database, files_url=to_files)
    target_files = open_file_store(to_files, ws.home) if to_files else None
    target_db = open_engine(to_database) if to_database else None
    try:
        if target_files is not None and not target_files.is_empty():
            raise StoreError(f"{to_files} is not empty; migrate fills only an empty bucket prefix (choose another "
                             "prefix, or empty it).")
        if target_db is not None and (tables := inspect(target_db).get_table_names()):
            raise StoreError(f"The database {_safe(to_database)} is not empty ({len(tables)} tables, e.g. "
                             f"{tables[0]}); migrate fills only an empty database (create a new one).")
        # Hold the source still: the write lock (BEGIN IMMEDIATE) for the whole copy.
        with ws._write_lock, writer(ws.engine).connect() as source, source.begin():
            if target_files is not None:
                if not isinstance(ws.files, FileStore):
                    raise StoreError("The workspace's files are not in its blobs folder; nothing to migrate.")
                _copy_blobs(ws.files, target_files, report, say)
            if target_db is not None:
                _copy_rows(source, target_db, report, say)
                report.audit_events = _verify_audit(ws, target_db)
                say(f"audit chain verified in the new database: {report.audit_events} events")
            _rewrite_config(ws.home, to_database, to_files)
    finally:
        if target_db is not None:
            target_db.dispose()
    ws.engine.dispose()
    moved = open_workspace(home)  # the new places, as every later command opens them
    with moved.transaction() as s:
        moved.record(s, MIGRATED, actor="system", subject=moved.config.organisation,
                     data={"database": _safe(to_database) or None, "files": to_files, "rows": sum(report.rows.values()),
                           "blobs": report.blobs}, now=utcnow())
    moved.engine.dispose()
    return report


def _safe(url: str | None) -> str:
    """The url without its password, for messages."""
    return re.sub(r"://([^:@/]+):[^@]*@", r"://\1:***@", url or "")


# --- blobs -----------------------------------------------------------------------


def _copy_blobs(source: FileStore, target, report: MigrationReport, say: Callable[[str], None]) -> None:  # noqa: ANN001
    digests = list(source.digests())
    for n, digest in enumerate(digests, start=1):
        path = source.open_checked(digest)  # sha256 of the local bytes matches the name
        if target.put(path) != digest:
            raise StoreError(f"Blob {digest[:12]}… changed while it was copied; nothing in the workspace changed.")
        target.verify_bytes(digest)  # read back from the store and hashed again
        report.blobs += 1
        report.blob_bytes += path.stat().st_size
        if n % 50 == 0:
            say(f"{n} of {len(digests)} blobs copied")
    say(f"{report.blobs} blobs ({report.blob_bytes / 1e6:.1f} MB) copied to {target.url}, each read back and "
        "checked by sha256")


# --- rows ------------------------------------------------------------------------


def _copy_rows(source: Connection, target: Engine, report: MigrationReport, say: Callable[[str], None]) -> None:
    try:
        migrate(target)  # the same schema, by the same migrations
        theirs = MetaData()
        theirs.reflect(target)
        ours = MetaData()
        ours.reflect(source)
        missing = sorted(set(ours.tables) - set(theirs.tables))
        if missing:
            raise StoreError(f"The new database lacks the tables {', '.join(missing)} after its migrations; "
                             "upgrade voxgate on this machine and try again.")
        with target.begin() as conn:
            for table in theirs.sorted_tables:  # parents before children (foreign keys)
                if table.name == "alembic_version" or table.name not in ours.tables:
                    continue
                for column in table.columns:  # keep SQL NULL as NULL, not JSON 'null'
                    if isinstance(column.type, JSON):
                        column.type.none_as_null = True
                names = [c.name for c in ours.tables[table.name].columns if c.name in table.columns]
                rows = source.execute(select(*(ours.tables[table.name].c[n] for n in names))).mappings()
                count = 0
                while batch := rows.fetchmany(_BATCH):
                    conn.execute(table.insert(), [dict(r) for r in batch])
                    count += len(batch)
                report.rows[table.name] = count
                _continue_sequences(conn, table)
            for name, count in report.rows.items():
                there = conn.execute(text(f'SELECT COUNT(*) FROM "{name}"')).scalar_one()
                if there != count:
                    raise StoreError(f"Table {name}: {count} rows read but {there} in the new database; nothing in "
                                     "the workspace changed.")
    except SQLAlchemyError as exc:
        raise StoreError(f"Copying the store to {_safe(str(target.url))} failed ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200]}); nothing in the workspace changed; drop and recreate "
                         "that database before trying again.") from exc
    say(f"{sum(report.rows.values())} rows in {len(report.rows)} tables copied with their ids")


def _continue_sequences(conn: Connection, table) -> None:  # noqa: ANN001
    """New rows get ids after the copied ones (PostgreSQL's sequences did not see the explicit ids)."""
    if conn.dialect.name != "postgresql":
        return
    for column in table.primary_key.columns:
        seq = conn.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                           {"t": f'"{table.name}"', "c": column.name}).scalar_one_or_none()
        if seq:
            conn.execute(text(f'SELECT setval(:s, COALESCE((SELECT MAX("{column.name}") FROM "{table.name}"), 0) + 1, '
                              "false)"), {"s": seq})


def _verify_audit(ws, target: Engine) -> int:  # noqa: ANN001
    """The audit chain, signatures and signed head, read from the new database."""
    from dataclasses import replace

    from pipeline.services.auditing import audit_verify
    from pipeline.store.db import session_factory, writer

    moved = replace(ws, engine=target, sessions=session_factory(target), writes=session_factory(writer(target)))
    result = audit_verify(moved)
    if not result.ok:
        raise StoreError(f"The audit chain does not verify in the new database ({result.problem}); nothing in the "
                         "workspace changed; drop and recreate that database, run `voxgate audit verify` here, and "
                         "try again.")
    return result.events


# --- config ----------------------------------------------------------------------


def _rewrite_config(home: Path, database_url: str | None, files_url: str | None) -> None:
    """Point voxgate.toml at the new places, keeping every other line; the old file stays beside it."""
    path = home / CONFIG_FILE
    old = path.read_text(encoding="utf-8")
    new = old
    if database_url:
        new = _set_url(new, "database", database_url)
    if files_url:
        new = _set_url(new, "files", files_url)
    from pipeline.settings import WorkspaceConfig
    import tomllib

    WorkspaceConfig.from_dict(tomllib.loads(new), where=str(path))  # refuse to write a config that does not load
    try:
        with atomic_output(home / (CONFIG_FILE + BACKUP_SUFFIX)) as tmp:
            tmp.write_text(old, encoding="utf-8")
        with atomic_output(path) as tmp:
            tmp.write_text(new, encoding="utf-8")
    except OSError as exc:
        raise StoreError(f"Could not rewrite {path}: {exc.strerror}; set [database] url / [files] url by hand.") from exc
    os.chmod(path, 0o600)


def _set_url(config: str, section: str, url: str) -> str:
    """`url = "..."` in `[section]`, replaced in place, or the section added at the end."""
    quoted = '"' + url.replace("\\", "\\\\").replace('"', '\\"') + '"'
    header = re.search(rf"(?m)^\[{section}\]\s*$", config)
    if header is None:
        return config.rstrip("\n") + f"\n\n[{section}]\nurl = {quoted}\n"
    end = re.search(r"(?m)^\[", config[header.end():])
    body_end = header.end() + (end.start() if end else len(config[header.end():]))
    body = config[header.end():body_end]
    line = re.search(r"(?m)^url\s*=.*$", body)
    if line is None:
        body = f"\nurl = {quoted}" + body
    else:
        body = body[:line.start()] + f"url = {quoted}" + body[line.end():]
    return config[:header.end()] + body + config[body_end:]
