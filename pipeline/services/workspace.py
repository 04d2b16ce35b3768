"""The workspace: one folder holding the database, the file store, the keys and the config.

    <home>/voxgate.toml     configuration
    <home>/voxgate.db       SQLite store (WAL), unless [database] url names a PostgreSQL database
    <home>/blobs/           content-addressed file store, unless [files] url names an object store
    <home>/cache/blobs/     verified local copies of object-store blobs voxgate read (may be deleted)
    <home>/keys/org.key     the organisation's Ed25519 key (signs the audit log)
    <home>/keys/c2pa/       the C2PA signing identity (see pipeline.provenance.credentials)
    <home>/keys/watermark.key  32 random bytes (mode 0600) the payload watermark key derives from
    <home>/voices/<id>/     voice profiles as added
    <home>/audit-head.json  a published copy of the signed audit head (the database keeps its own)

People's private keys are never here: each person signs with their own key
folder (`pipeline.identity.personal`); the workspace keeps public keys only.
Workspaces made before that had `keys/users/*.key`; `voxgate key handover`
hands those to their owners and removes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import secrets
import uuid
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
from pipeline.audit.head import last_seq, write_head_file
from pipeline.domain.model import Role
from pipeline.errors import InputError, NotFoundError, PermissionError_, StoreError, map_exceptions
from pipeline.domain.model import canonical_json
from pipeline.errors import IdentityError
from pipeline.identity.history import people
from pipeline.identity.keys import generate_key, load_key, public_key_of, sign
from pipeline.identity.passkeys import passkey_fingerprint
from pipeline.identity.personal import Keyring, fingerprint
from pipeline.provenance import credentials
from pipeline.settings import CONFIG_FILE, WorkspaceConfig, default_config_text
from pipeline.store.db import check_schema, migrate, normalise_url, open_engine, session_factory, sqlite_url, writer
from pipeline.store.files import PRIVATE_DIR_MODE, PRIVATE_MODE, BlobStore, atomic_output, open_file_store, private_dir
from pipeline.store.models import ApprovalRow, AuditRow, PasskeyRow, UserRow

log = logging.getLogger(__name__)
DATABASE_FILE: Final = "voxgate.db"
_DB_ERRORS = {OperationalError: StoreError, SQLAlchemyError: StoreError}
WATERMARK_SECRET_BYTES: Final = 32
KEYS_DIR: Final = Path("keys")
C2PA_DIR: Final = KEYS_DIR / "c2pa"
WATERMARK_KEY: Final = KEYS_DIR / "watermark.key"
ORG_KEY: Final = KEYS_DIR / "org.key"
#: Files a workspace made before content credentials lacks; `init` adds them.
IDENTITY_FILES: Final = (*(C2PA_DIR / name for name in credentials.IDENTITY_FILES), WATERMARK_KEY)
#: A folder laid out like `<home>/keys` (org.key, watermark.key, c2pa/) that a worker machine reads its
#: secrets from instead, placed there by the operator, each private file 0600.
SECRETS_ENV: Final = "VOXGATE_SECRETS"
SECRET_FILES: Final = (ORG_KEY, WATERMARK_KEY, C2PA_DIR / credentials.SIGNER_KEY)

C2paImport = tuple[Path, Path]
"""An operator's own C2PA identity: (certificate chain PEM, private key PEM)."""


WORKSPACE_CREATED: Final = "voxgate.workspace.created"
WORKSPACE_ID_ASSIGNED: Final = "voxgate.workspace.id_assigned"
ACTION_KIND: Final = "voxgate.action/1"
_ACTORS: Final = "voxgate.actors"  # Session.info key: the people who proved their key in this transaction


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Actor:
    """A person acting now: their registered key unlocked from their own key folder, so they can sign."""

    name: str
    role: str
    public_key: bytes
    key: Ed25519PrivateKey = field(repr=False)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def sign(self, payload: bytes) -> bytes:
        return sign(self.key, payload)

    def signed_by(self, payload: bytes) -> dict[str, str]:
        """What an audit event they cause carries: their signature over the event (`action_payload`)."""
        return {"key": self.fingerprint, "signature": self.sign(payload).hex()}


@dataclass(frozen=True)
class PasskeyProof:
    """A decision signed with a passkey in the portal: the passkey and the approval its assertion is stored with."""

    passkey_id: int
    approval_id: int


@dataclass(frozen=True)
class PasskeyActor:
    """A person acting in the portal, proven by their passkey's assertion over one approval (checked in this
    transaction by `services.passkeys.check_signature`), not by a CLI key.

    A passkey signs only the approval it was asked for, so the audit events the decision causes carry
    that proof: the passkey's fingerprint and the approval whose stored assertion anyone can re-verify
    (`voxgate audit verify`); they are recorded at the approval's own instant.
    """

    name: str
    role: str
    fingerprint: str  # `identity.passkeys.passkey_fingerprint` of the credential's public key
    proof: PasskeyProof

    def signed_by(self, _payload: bytes) -> dict[str, str | int]:
        return {"passkey": self.fingerprint, "approval": self.proof.approval_id}


def action_payload(workspace_id: str, action: str, subject: str, data: dict[str, Any], actor: str,
                   at: datetime) -> bytes:
    """What an actor signs for an audit event: the action, its subject, its data's hash, the workspace and time."""
    return canonical_json({"kind": ACTION_KIND, "workspace": workspace_id, "action": action, "subject": subject,
                           "data_sha256": hashlib.sha256(canonical_json(data)).hexdigest(), "actor": actor,
                           "at": at.isoformat()})


@dataclass
class Workspace:
    home: Path
    config: WorkspaceConfig
    engine: Engine
    sessions: sessionmaker[Session]
    files: BlobStore
    org_key: Ed25519PrivateKey
    writes: sessionmaker[Session]  # sessions that hold the store's write lock (see store.db.open_engine)
    keyring: Keyring = field(default_factory=Keyring.from_env)
    keys_dir: Path | None = None  # the machine's secrets (org, watermark, C2PA); None: `<home>/keys`
    # Writers in one process queue here, in order, instead of spinning on SQLite's busy handler
    # (which is not fair: under 50 concurrent downloads some waited past the busy timeout).
    _write_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def org_public_key(self) -> bytes:
        return public_key_of(self.org_key)

    @property
    def head_path(self) -> Path:
        return self.home / "audit-head.json"

    @property
    def legacy_keys_dir(self) -> Path:
        """Where workspaces made before personal keys kept people's private keys (`voxgate key handover`)."""
        return self.home / "keys" / "users"

    @property
    def id(self) -> str:
        """The workspace's stable random id, as its first audit events fixed it (approvals sign it)."""
        if not hasattr(self, "_id"):
            with self.sessions() as s:
                return self.id_in(s)
        return self._id

    def id_in(self, session: Session) -> str:
        """`id`, read through `session` (inside a write transaction, where a second connection would wait)."""
        if not hasattr(self, "_id"):
            found = workspace_id(session)
            if found is None:
                raise StoreError(f"The workspace at {self.home} has no id yet; run `voxgate init --home {self.home}`.")
            self._id = found
        return self._id

    def voice_dir(self, voice_id: str) -> Path:
        return self.home / "voices" / voice_id

    def secret(self, relative: Path) -> Path:
        """Where this machine keeps one of the workspace's secret files (`ORG_KEY`, `WATERMARK_KEY`, `C2PA_DIR`)."""
        return secret_path(self.home, self.keys_dir, relative)

    @property
    def c2pa_dir(self) -> Path:
        return self.secret(C2PA_DIR)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """One atomic unit of work; on commit, the signed audit head moves forward.

        A transaction that recorded no event (a heartbeat, a render's step) leaves the head, and its
        published file, as they were.
        """
        with self._write_lock, map_exceptions(_DB_ERRORS, "The workspace database refused the change"):
            with self.writes.begin() as session:
                before = last_seq(session)
                yield session
                head = audit.advance(session, self.org_key, self.org_public_key, before)
            if head is not None:  # the published copy; the database's own head is what gates read
                write_head_file(self.head_path, head)

    def record(self, session: Session, action: str, *, actor: str, subject: str | int,
               data: dict[str, Any] | None = None, now: datetime) -> AuditRow:
        """Append an audit event; when `actor` proved their key in this transaction, it carries their signature."""
        data = dict(data or {})
        if (who := session.info.get(_ACTORS, {}).get(actor)) is not None:
            payload = action_payload(self.id_in(session), action, str(subject), data, actor, now)
            data["signed"] = who.signed_by(payload)
        return audit.record(session, self.org_key, action, actor=actor, subject=str(subject), data=data, now=now)

    def person(self, session: Session, name: str | None, *allowed: Role) -> UserRow:
        """A user by name, checked to be active and to hold one of `allowed` roles (admin always may).

        For reading only: whoever changes anything is an `actor`, proven by their key.
        """
        if not name:
            raise PermissionError_("No acting user; pass --as NAME or set VOXGATE_USER.")
        user = session.get(UserRow, name)
        if user is None:
            raise NotFoundError(f"No user named {name!r}; list users with `voxgate user list`.")
        if user.disabled_at is not None or name in people(session).disabled_seq:
            raise PermissionError_(f"{name} was disabled ({user.disabled_reason or 'no reason given'}) and cannot act.")
        roles = {r.value for r in allowed} | {Role.ADMIN.value}
        if allowed and user.role not in roles:
            raise PermissionError_(
                f"{name} is a {user.role}; this needs the role {' or '.join(sorted(roles))}."
            )
        return user

    def actor(self, session: Session, name: str | None, *allowed: Role) -> Actor:
        """The person acting, proven by their own key: `--as` only says whose key to unlock.

        Refused in one line when the key is missing from the key folder, its
        passphrase is wrong, or it is not the person's current registered key.
        Audit events this transaction records for them carry their signature.
        """
        user = self.person(session, name, *allowed)
        try:
            key = self.keyring.key(user.name)
        except IdentityError:
            if (self.legacy_keys_dir / f"{user.name}.key").exists():
                raise IdentityError(
                    f"{user.name}'s private key is still inside the workspace (made by an older voxgate); an admin "
                    f"hands the keys over first: `voxgate key handover --to DIR --home {self.home} --as ADMIN`."
                ) from None
            raise
        public = public_key_of(key)
        current = people(session).current_key(user.name)
        if current is None or public != current.public_key or public != user.public_key:
            registered = fingerprint(current.public_key) if current else "none"
            raise IdentityError(
                f"The key for {user.name} in {self.keyring.folder} ({fingerprint(public)}) is not {user.name}'s "
                f"registered key ({registered}); use {user.name}'s own key folder, or ask an admin to register "
                f"a new key (`voxgate user rotate-key {user.name} --public-key FILE`)."
            )
        who = Actor(user.name, user.role, public, key)
        session.info.setdefault(_ACTORS, {})[user.name] = who
        return who

    def passkey_actor(self, session: Session, name: str | None, proof: PasskeyProof, *allowed: Role) -> PasskeyActor:
        """The person acting in the portal, proven by a passkey decision verified in this transaction (or in the
        decision's own, for the release it triggers): their live passkey, and the approval it signed.

        Audit events this transaction records for them carry that proof in place of a key's signature.
        """
        user = self.person(session, name, *allowed)
        passkey = session.get(PasskeyRow, proof.passkey_id)
        approval = session.get(ApprovalRow, proof.approval_id)
        if passkey is None or passkey.user != user.name or passkey.disabled_at is not None:
            raise PermissionError_(f"{user.name} has no live passkey of that id; sign in again.")
        fp = passkey_fingerprint(passkey.public_key)
        if approval is None or approval.reviewer != user.name or approval.key_fingerprint != fp:
            raise PermissionError_(f"Approval {proof.approval_id} was not signed with {user.name}'s passkey.")
        who = PasskeyActor(user.name, user.role, fp, proof)
        session.info.setdefault(_ACTORS, {})[user.name] = who
        return who


def workspace_id(s: Session) -> str | None:
    """The id the audit log fixed for this workspace (at creation, or when an older one was upgraded)."""
    rows = s.scalars(select(AuditRow).where(AuditRow.action.in_((WORKSPACE_CREATED, WORKSPACE_ID_ASSIGNED)))
                     .order_by(AuditRow.seq))
    for row in rows:
        if isinstance(row.data, dict) and isinstance(row.data.get("workspace_id"), str):
            return row.data["workspace_id"]
    return None


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
                   database_url: str | None = None, files_url: str | None = None,
                   say: Callable[[str], None] = lambda _message: None) -> tuple[Workspace, bool]:
    """Create the workspace at `home`, or open it if it exists. Returns (workspace, created).

    `database_url` puts the store in PostgreSQL (an empty database the
    workspace's migrations fill) instead of the SQLite file in `home`;
    `files_url` (s3://BUCKET/PREFIX) the blobs in an object store.

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
    if database_url:
        normalise_url(database_url)  # refused before anything is created
    if files_url:
        open_file_store(files_url, home)
    _check_home_writable(home)
    try:
        for sub in ("blobs", "keys", "voices"):  # people's keys are never here (their own key folders)
            private_dir(home / sub)
        os.chmod(home, PRIVATE_DIR_MODE)  # also when the folder existed (empty) before
        org_pub = generate_key(home / "keys" / "org.key") if not (home / "keys" / "org.key").exists() else None
        config = default_config_text(organisation, database_url, files_url)
        with atomic_output(home / (CONFIG_FILE + ".part")) as tmp:
            tmp.write_text(config, encoding="utf-8")
        if not database_url:
            _create_database_file(home / DATABASE_FILE)
    except OSError as exc:
        raise StoreError(f"Could not create the workspace at {home}: {exc.strerror}.") from exc
    done = _provide_identity(home, organisation, c2pa, now=now)
    cfg = WorkspaceConfig.from_dict(tomllib.loads(config))
    engine = open_engine(cfg.database_url or sqlite_url(home / DATABASE_FILE))
    with map_exceptions(_DB_ERRORS, "Could not create the workspace database"):
        migrate(engine)
    engine.dispose()
    # The config file appears last: its presence is what marks a finished workspace.
    os.replace(home / (CONFIG_FILE + ".part"), home / CONFIG_FILE)
    ws = open_workspace(home)
    with ws.transaction() as s:
        ws.record(s, WORKSPACE_CREATED, actor="system", subject=organisation,
                  data={"org_public_key": (org_pub or ws.org_public_key).hex(), "workspace_id": str(uuid.uuid4()),
                        **done}, now=now)
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
    path = ws.secret(WATERMARK_KEY)
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"{path} is missing; restore it from a backup (clips marked with it can be traced only "
                         f"with it), or run `voxgate init --home {ws.home}` to make a new one.") from None
    if len(secret) != WATERMARK_SECRET_BYTES:
        raise StoreError(f"{path} holds {len(secret)} bytes, not {WATERMARK_SECRET_BYTES}; restore it from a backup.")
    return secret


def open_workspace(home: Path, keyring: Keyring | None = None) -> Workspace:
    home = home.expanduser()
    if not home.is_dir():
        raise StoreError(f"No workspace at {home}; create one with `voxgate init --home {home}`.")
    cfg = WorkspaceConfig.load(home / CONFIG_FILE)
    _keep_private(home)
    keys_dir = secrets_from_env()
    if keys_dir is not None:
        check_secrets(keys_dir)
    elif missing := [str(path) for path in IDENTITY_FILES if not (home / path).is_file()]:
        raise StoreError(
            f"The workspace at {home} has no {', '.join(missing)}: it predates content credentials and the payload "
            f"watermark. Run `voxgate init --home {home}` to add them (nothing else changes); if these files existed "
            "before, restore them from a backup instead."
        )
    engine = open_engine(cfg.database_url or sqlite_url(home / DATABASE_FILE))
    with map_exceptions(_DB_ERRORS, "Could not open the workspace database"):
        check_schema(engine)
        migrate(engine)  # no-op when current; upgrades a workspace made by an older voxgate
    ws = Workspace(home, cfg, engine, session_factory(engine), open_file_store(cfg.files_url, home),
                   load_key(secret_path(home, keys_dir, ORG_KEY)), session_factory(writer(engine)),
                   keyring or Keyring.from_env(), keys_dir)
    _adopt_file_head(ws)
    _assign_id(ws)
    return ws


def secret_path(home: Path, keys_dir: Path | None, relative: Path) -> Path:
    """`relative` (under `keys/`) in `keys_dir` when the machine has its own secrets folder, else in `home`."""
    return home / relative if keys_dir is None else keys_dir / relative.relative_to(KEYS_DIR)


def secrets_from_env() -> Path | None:
    """The secrets folder `VOXGATE_SECRETS` names; None when unset."""
    raw = os.environ.get(SECRETS_ENV, "").strip()
    return Path(raw).expanduser() if raw else None


def check_secrets(keys_dir: Path) -> None:
    """Refuse a secrets folder that lacks a file or lets another account read a private one."""
    if not keys_dir.is_dir():
        raise StoreError(f"{SECRETS_ENV} names {keys_dir}, which is not a folder; place org.key, watermark.key "
                         "and c2pa/ there, copied from the workspace's keys/ folder.")
    for relative in (ORG_KEY, *IDENTITY_FILES):
        path = secret_path(Path(), keys_dir, relative)
        if not path.is_file():
            raise StoreError(f"{path} is missing; copy the workspace's {relative} there (mode 0600).")
        if relative in SECRET_FILES and path.stat().st_mode & 0o077:
            raise StoreError(f"{path} can be read by other accounts; run `chmod 600 {path}` first.")


def _assign_id(ws: Workspace) -> None:
    """Give a workspace made before workspace ids its own, once, in the audit log (where it cannot silently change)."""
    with ws.sessions() as s:
        if workspace_id(s) is not None or s.scalars(select(AuditRow).limit(1)).first() is None:
            return  # has one, or is being created (the creation event carries it)
    with ws.transaction() as s:
        if workspace_id(s) is None:
            ws.record(s, WORKSPACE_ID_ASSIGNED, actor="system", subject=ws.config.organisation,
                      data={"workspace_id": str(uuid.uuid4())}, now=utcnow())


def _adopt_file_head(ws: Workspace) -> None:
    """Upgrade: a workspace from before migration 0006 kept its signed head only in audit-head.json.

    Its head moves into the database once, and only when that file's signature and the chain agree;
    otherwise the head stays missing and every gate refuses until the operator looks.
    """
    import json

    from pipeline.audit.head import put_head, revocation_items, stored_head, veto_items
    from pipeline.domain.gates import set_digest
    from pipeline.domain.model import canonical_json
    from pipeline.identity.keys import verify

    with ws.sessions() as s:
        if stored_head(s) is not None or not last_seq(s):
            return
    try:
        old = json.loads(ws.head_path.read_text())
        seq, hash_, sig = int(old["seq"]), str(old["hash"]), bytes.fromhex(old["signature"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    if "revocations_sha256" in old or not verify(ws.org_public_key, sig, canonical_json({"seq": seq, "hash": hash_})):
        return
    with ws._write_lock, ws.writes.begin() as s:
        last = s.scalars(select(AuditRow).order_by(AuditRow.seq.desc()).limit(1)).first()
        if last is None or last.seq != seq or last.hash != hash_ or stored_head(s) is not None:
            return
        head = put_head(s, ws.org_key, seq, hash_, set_digest(revocation_items(s)), set_digest(veto_items(s)))
    write_head_file(ws.head_path, head)
