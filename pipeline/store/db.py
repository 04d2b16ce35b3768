"""Opening the database: SQLite in WAL mode by default, any SQLAlchemy URL otherwise.

The schema is created and upgraded by Alembic (`migrate`), never by
`create_all`, so a workspace made by an older version upgrades in place.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.orm import Session, sessionmaker

from pipeline.errors import StoreError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")


WRITES: Final = "voxgate_writes"
"""Execution option marking a connection that will write: it takes the store's write lock up front."""
WRITE_LOCK_KEY: Final = 0x766F7867  # "voxg": the one PostgreSQL advisory lock every writer takes

_SCHEMES: Final = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg",
                   "postgresql+psycopg": "postgresql+psycopg"}


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def normalise_url(url: str) -> str:
    """`url` with the driver voxgate ships (psycopg 3 for PostgreSQL); anything else is refused."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in _SCHEMES:
        raise StoreError(f"database url {url.split('@')[-1]!r} is neither sqlite:///PATH nor "
                         "postgresql://USER@HOST/DBNAME; fix [database] url in voxgate.toml.")
    return f"{_SCHEMES[scheme]}://{rest}"


def open_engine(url: str) -> Engine:
    """An engine for `url`: SQLite (WAL, foreign keys, busy timeout) or PostgreSQL.

    Reads open ordinary transactions (deferred on SQLite: a reader never waits
    for a writer). Writers — connections from `writer(engine)` — take the
    store's one write lock when their transaction begins: `BEGIN IMMEDIATE`
    on SQLite, a transaction-scoped advisory lock on PostgreSQL. Every write
    appends to the hash-chained audit log, so writes are serialised anyway;
    taking the lock first (rather than at the append) means two workers can
    never both read "text_approved" and both claim the same render, nor
    deadlock between a row lock and the audit head.
    """
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn) -> None:  # type: ignore[no-untyped-def]
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITES) else "BEGIN")

    else:
        engine = create_engine(url, pool_pre_ping=True)

        @event.listens_for(engine, "begin")
        def _begin(conn) -> None:  # type: ignore[no-untyped-def]
            if conn.get_execution_options().get(WRITES):
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")

    return engine


def writer(engine: Engine) -> Engine:
    """The same engine (and pool), for transactions that write: see `open_engine`."""
    return engine.execution_options(**{WRITES: True})


def lock_for_append(session: Session) -> None:
    """Hold the write lock before reading the audit head (re-entrant; a no-op where the transaction has it)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})"))


def head_revision() -> str:
    """The newest migration's revision: by this project's convention, the number its file name starts with."""
    return sorted(p.name for p in (MIGRATIONS / "versions").glob("[0-9]*.py"))[-1].split("_", 1)[0]


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration.

    A schema already at the head is found by one query, without importing
    Alembic (a third of a second of every command's start).
    """
    if is_initialised(engine):
        with engine.connect() as conn:
            if conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head_revision():
                return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with writer(engine).begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def is_initialised(engine: Engine) -> bool:
    return inspect(engine).has_table("alembic_version")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def check_schema(engine: Engine) -> None:
    if not is_initialised(engine):
        raise StoreError("The workspace database has no schema; run `voxgate init` first.")
