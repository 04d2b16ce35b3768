"""The workspace: one folder holding the database, the file store, the keys and the config.

    <home>/voxgate.toml     configuration
    <home>/voxgate.db       SQLite store (WAL), unless [database] url says otherwise
    <home>/blobs/           content-addressed file store
    <home>/keys/org.key     the organisation's Ed25519 key (signs the audit log)
    <home>/keys/users/      one Ed25519 key per user (signs approvals)
    <home>/keys/c2pa/       the C2PA signing identity (see pipeline.provenance.credentials)
    <home>/keys/watermark.key  32 random bytes (mode 0600) the payload watermark key derives from
    <home>/voices/<id>/     voice profiles as added
    <home>/audit-head.json  the signed head of the audit log
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import secrets
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from pipeline import audit
from pipeline.domain.model import Role
from pipeline.errors import InputError, NotFoundError, PermissionError_, StoreError, map_exceptions
from pipeline.identity.keys import generate_key, load_key, public_key_of
from pipeline.provenance import credentials
from pipeline.settings import CONFIG_FILE, WorkspaceConfig, default_config_text
from pipeline.store.db import check_schema, migrate, open_engine, session_factory, sqlite_url
from pipeline.store.files import PRIVATE_DIR_MODE, PRIVATE_MODE, FileStore, atomic_output, private_dir
from pipeline.store.models import AuditRow, UserRow

log = logging.getLogger(__name__)
DATABASE_FILE: Final = "voxgate.db"
_DB_ERRORS = {OperationalError: StoreError, SQLAlchemyError: StoreError}
WATERMARK_SECRET_BYTES: Final = 32
C2PA_DIR: Final = Path("keys") / "c2pa"
WATERMARK_KEY: Final = Path("keys") / "watermark.key"
#: Files a workspace made before content credentials lacks; `init` adds them.
IDENTITY_FILES: Final = (*(C2PA_DIR / name for name in credentials.IDENTITY_FILES), WATERMARK_KEY)

C2paImport = tuple[Path, Path]
"""An operator's own C2PA identity: (certificate chain PEM, private key PEM)."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Workspace:
    home: Path
    config: WorkspaceConfig
    engine: Engine
    sessions: sessionmaker[Session]
    files: FileStore
    org_key: Ed25519PrivateKey
    # Writers in one process queue here, in order, instead of spinning on SQLite's busy handler
    # (which is not fair: under 50 concurrent downloads some waited past the busy timeout).
    _write_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def org_public_key(self) -> bytes:
        return public_key_of(self.org_key)

    @property
    def head_path(self) -> Path:
        return self.home / "audit-head.json"

    def user_key_path(self, name: str) -> Path:
        return self.home / "keys" / "users" / f"{name}.key"

    def voice_dir(self, voice_id: str) -> Path:
        return self.home / "voices" / voice_id

    @property
    def c2pa_dir(self) -> Path:
        return self.home / C2PA_DIR

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """One atomic unit of work; on commit, the signed audit head moves forward."""
        with self._write_lock, map_exceptions(_DB_ERRORS, "The workspace database refused the change"):
            with self.sessions.begin() as session:
                yield session
                last = session.scalars(select(AuditRow).order_by(AuditRow.seq.desc()).limit(1)).first()
                head = (last.seq, last.hash) if last else None
            if head:
                audit.write_head(self.head_path, self.org_key, *head)

    def record(self, session: Session, action: str, *, actor: str, subject: str | int,
               data: dict[str, Any] | None = None, now: datetime) -> None:
        audit.record(session, self.org_key, action, actor=actor, subject=str(subject), data=data, now=now)

    def actor(self, session: Session, name: str | None, *allowed: Role) -> UserRow:
        """The acting user, checked to hold one of `allowed` roles (admin always may)."""
        if not name:
            raise PermissionError_("No acting user; pass --as NAME or set VOXGATE_USER.")
        user = session.get(UserRow, name)
        if user is None:
            raise NotFoundError(f"No user named {name!r}; list users with `voxgate user list`.")
        roles = {r.value for r in allowed} | {Role.ADMIN.value}
        if allowed and user.role not in roles:
            raise PermissionError_(
                f"{name} is a {user.role}; this needs the role {' or '.join(sorted(roles))}."
            )
        return user


def _check_home_writable(home: Path) -> None:
    parent = home if home.exists() else home.parent
    if not parent.exists():
        raise StoreError(f"{parent} does not exist; create it or choose another --home.")
    if not parent.is_dir():
        raise StoreError(f"{parent} is not a folder; choose another --home.")
    try:  # a real write, not os.access: root passes every permission check, yet some places refuse it
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise StoreError(f"{parent} is not writable ({exc.strerror}); choose another --home or fix its permissions.") from None


def init_workspace(home: Path, organisation: str, *, now: datetime, c2pa: C2paImport | None = None,
                   say: Callable[[str], None] = lambda _message: None) -> tuple[Workspace, bool]:
    """Create the workspace at `home`, or open it if it exists. Returns (workspace, created).

    An existing workspace gets only its missing identity files (content
    credentials, watermark secret); with `c2pa`, the operator's own chain
    replaces the signing identity. Nothing else changes. `say` hears what was added.
    """
    home = home.expanduser()
    if (home / CONFIG_FILE).exists():
        organisation = WorkspaceConfig.load(home / CONFIG_FILE).organisation
        done = _provide_identity(home, organisation, c2pa, now=now)
        ws = open_workspace(home)
        if done:
            with ws.transaction() as s:
                ws.record(s, "voxgate.workspace.identity_added", actor="system", subject=organisation, data=done,
                          now=now)
        for what in done.values():
            say(what)
        return ws, False
    if not organisation.strip():
        raise StoreError("The organisation name is empty; pass --org NAME.")
    _check_home_writable(home)
    try:
        for sub in ("blobs", "keys/users", "voices"):
            private_dir(home / sub)
        os.chmod(home, PRIVATE_DIR_MODE)  # also when the folder existed (empty) before
        org_pub = generate_key(home / "keys" / "org.key") if not (home / "keys" / "org.key").exists() else None
        config = default_config_text(organisation)
        with atomic_output(home / (CONFIG_FILE + ".part")) as tmp:
            tmp.write_text(config, encoding="utf-8")
        _create_database_file(home / DATABASE_FILE)
    except OSError as exc:
        raise StoreError(f"Could not create the workspace at {home}: {exc.strerror}.") from exc
    done = _provide_identity(home, organisation, c2pa, now=now)
    cfg = WorkspaceConfig.from_dict(tomllib.loads(config))
    engine = open_engine(cfg.database_url or sqlite_url(home / DATABASE_FILE))
    with map_exceptions(_DB_ERRORS, "Could not create the workspace database"):
        migrate(engine)
    # The config file appears last: its presence is what marks a finished workspace.
    os.replace(home / (CONFIG_FILE + ".part"), home / CONFIG_FILE)
    ws = open_workspace(home)
    with ws.transaction() as s:
        ws.record(s, "voxgate.workspace.created", actor="system", subject=organisation,
                  data={"org_public_key": (org_pub or ws.org_public_key).hex(), **done}, now=now)
    return ws, True


def _create_database_file(path: Path) -> None:
    """An empty SQLite file with mode 0600: SQLite gives its -wal and -shm files the database's mode."""
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE))
    os.chmod(path, PRIVATE_MODE)


def _keep_private(home: Path) -> None:
    """Close a workspace made by an older voxgate (0755 folders, 0644 files) to other accounts.

    The home folder at 0700 is what keeps others out of everything inside; the database and
    its journal files are tightened too, as they may be copied elsewhere with their mode.
    """
    try:
        if home.stat().st_mode & 0o077:
            os.chmod(home, PRIVATE_DIR_MODE)
            log.warning("%s was readable by other accounts; it is now 0700.", home)
        for name in (DATABASE_FILE, DATABASE_FILE + "-wal", DATABASE_FILE + "-shm", CONFIG_FILE):
            if (path := home / name).exists() and path.stat().st_mode & 0o077:
                os.chmod(path, PRIVATE_MODE)
    except PermissionError:  # another account's workspace, opened read-only: leave it as its owner keeps it
        pass


def _provide_identity(home: Path, organisation: str, c2pa: C2paImport | None, *, now: datetime) -> dict[str, str]:
    """Import the operator's C2PA chain, or create whatever identity file is missing; say what was done.

    Created once and never replaced behind the operator's back: clips are
    verified with these files for as long as they circulate.
    """
    done: dict[str, str] = {}
    folder = home / C2PA_DIR
    if c2pa is not None:
        chain, key = (_read_pem(path) for path in c2pa)
        done["c2pa"] = f"imported the C2PA signing identity {credentials.import_identity(folder, chain, key, now=now)}"
    elif not folder.exists():
        done["c2pa"] = f"created the C2PA signing identity {credentials.create_identity(folder, organisation, now=now)}"
    elif missing := [name for name in credentials.IDENTITY_FILES if not (folder / name).is_file()]:
        raise StoreError(
            f"{folder} is incomplete (no {', '.join(missing)}); restore it from a backup, or move it aside and run "
            "`voxgate init` again for a new identity (clips signed with the old one will then read as untrusted)."
        )
    if not (home / WATERMARK_KEY).exists():
        _create_secret(home / WATERMARK_KEY)
        done["watermark"] = f"created the watermark secret {WATERMARK_KEY}"
    return done


def _read_pem(path: Path) -> bytes:
    try:
        return path.expanduser().read_bytes()
    except OSError as exc:
        raise InputError(f"Could not read {path}: {exc.strerror}.") from None


def _create_secret(path: Path) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise StoreError(f"Could not create {path}: {exc.strerror}.") from None
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(WATERMARK_SECRET_BYTES))
        f.flush()
        os.fsync(f.fileno())


def watermark_secret(ws: Workspace) -> bytes:
    """The workspace's watermark secret: the payload mark derives its key from it (`payload.derive_key`)."""
    path = ws.home / WATERMARK_KEY
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"{path} is missing; restore it from a backup (clips marked with it can be traced only "
                         f"with it), or run `voxgate init --home {ws.home}` to make a new one.") from None
    if len(secret) != WATERMARK_SECRET_BYTES:
        raise StoreError(f"{path} holds {len(secret)} bytes, not {WATERMARK_SECRET_BYTES}; restore it from a backup.")
    return secret


def open_workspace(home: Path) -> Workspace:
    home = home.expanduser()
    if not home.is_dir():
        raise StoreError(f"No workspace at {home}; create one with `voxgate init --home {home}`.")
    cfg = WorkspaceConfig.load(home / CONFIG_FILE)
    _keep_private(home)
    if missing := [str(path) for path in IDENTITY_FILES if not (home / path).is_file()]:
        raise StoreError(
            f"The workspace at {home} has no {', '.join(missing)}: it predates content credentials and the payload "
            f"watermark. Run `voxgate init --home {home}` to add them (nothing else changes); if these files existed "
            "before, restore them from a backup instead."
        )
    engine = open_engine(cfg.database_url or sqlite_url(home / DATABASE_FILE))
    with map_exceptions(_DB_ERRORS, "Could not open the workspace database"):
        check_schema(engine)
        migrate(engine)  # no-op when current; upgrades a workspace made by an older voxgate
    return Workspace(home, cfg, engine, session_factory(engine), FileStore(home / "blobs"),
                     load_key(home / "keys" / "org.key"))
