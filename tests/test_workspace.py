"""The workspace: what `init` creates, users' keys, the SQLite store's mode, the file store."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.errors import StoreError
from pipeline.hashing import sha256_file
from pipeline.store.files import FileStore

runner = CliRunner()
BOTH_DATABASES = True
MIGRATION_HEAD = sorted(p.name for p in (Path(__file__).parents[1] / "pipeline/store/migrations/versions").glob("0*.py"))[-1][:4]


def test_init_creates_store_config_keys(tmp_path) -> None:
    home = tmp_path / "ws"
    result = runner.invoke(app, ["init", "--home", str(home), "--org", "Free Voice Media"])
    assert result.exit_code == 0, result.output
    assert (home / "voxgate.toml").read_text().count('name = "Free Voice Media"') == 1
    assert (home / "blobs").is_dir() and (home / "voices").is_dir()
    assert stat.S_IMODE((home / "keys" / "org.key").stat().st_mode) == 0o600
    con = sqlite3.connect(home / "voxgate.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT version_num FROM alembic_version").fetchone()[0] == MIGRATION_HEAD


def test_a_workspace_made_by_an_older_voxgate_is_upgraded_when_opened(tmp_path) -> None:
    """`open_workspace` skips Alembic when the schema is at the head it computes from the file names, so that
    name must be Alembic's own head, and an older schema must still be upgraded."""
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine

    from pipeline.services.workspace import open_workspace
    from pipeline.store.db import MIGRATIONS, head_revision

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert head_revision() == ScriptDirectory.from_config(cfg).get_current_head() == MIGRATION_HEAD
    home = tmp_path / "ws"
    assert runner.invoke(app, ["init", "--home", str(home), "--org", "Free Voice Media"]).exit_code == 0
    with create_engine(f"sqlite:///{home / 'voxgate.db'}").begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0010")  # before migration 0011's clips.step and worker heartbeats
    con = sqlite3.connect(home / "voxgate.db")
    assert con.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "0010"
    open_workspace(home)
    assert con.execute("SELECT version_num FROM alembic_version").fetchone()[0] == MIGRATION_HEAD
    assert "step" in {row[1] for row in con.execute("PRAGMA table_info(clips)")}


def test_init_with_a_database_url_keeps_the_store_in_postgresql(tmp_path, pg_cluster) -> None:
    from sqlalchemy import create_engine, text

    url = pg_cluster.new_database()
    home = tmp_path / "ws"
    result = runner.invoke(app, ["init", "--home", str(home), "--org", "Free Voice Media", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert not (home / "voxgate.db").exists() and f'url = "{url}"' in (home / "voxgate.toml").read_text()
    engine = create_engine(url)
    with engine.connect() as con:
        assert con.execute(text("SELECT version_num FROM alembic_version")).scalar() == MIGRATION_HEAD
        assert con.execute(text("SELECT action FROM audit_events")).scalars().all() == ["voxgate.workspace.created"]
    engine.dispose()
    assert runner.invoke(app, ["audit", "verify", "--home", str(home)]).exit_code == 0


@pytest.mark.parametrize("url", ["mysql://db/voxgate", "voxgate.db"])
def test_init_refuses_a_database_it_cannot_use(tmp_path, url) -> None:
    result = runner.invoke(app, ["init", "--home", str(tmp_path / "ws"), "--database-url", url])
    assert result.exit_code == 1 and "neither sqlite:///PATH nor postgresql://" in result.stderr
    assert "\n" not in result.stderr.strip() and not (tmp_path / "ws").exists()


def test_voxgate_home_environment_variable_is_the_default(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VOXGATE_HOME", str(tmp_path / "from-env"))
    assert runner.invoke(app, ["init"]).exit_code == 0
    assert (tmp_path / "from-env" / "voxgate.toml").exists()


def test_people_keys_stay_in_their_key_folder_and_only_public_keys_are_listed(workspace) -> None:
    key = workspace.keyring.folder / "rita.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(workspace.keyring.folder.stat().st_mode) == 0o700
    assert key.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    private = [p for p in workspace.home.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()
               and p.parent.name not in ("keys", "c2pa")]  # only the organisation's own keys may be there
    assert private == []
    result = runner.invoke(app, ["user", "list", "--json", "--home", str(workspace.home)])
    users = {u["name"]: u for u in json.loads(result.stdout)}
    assert users["rita"]["role"] == "reviewer" and len(users["rita"]["public_key"]) == 64
    assert users["rita"]["fingerprint"].startswith("SHA256:")


def test_first_user_must_be_admin(tmp_path) -> None:
    home = tmp_path / "ws"
    runner.invoke(app, ["init", "--home", str(home)])
    result = runner.invoke(app, ["user", "add", "sam", "--role", "submitter", "--from-keys", "--home", str(home)])
    assert result.exit_code == 1 and "first user of a workspace must be an admin" in result.stderr


@pytest.mark.parametrize("name", ["Sam", "../etc", "a b", ""])
def test_user_names_are_checked(workspace, name) -> None:
    result = runner.invoke(app, ["user", "add", name, "--role", "reviewer", "--from-keys", "--home", str(workspace.home),
                                 "--as", "ops"])
    assert result.exit_code == 1 and "not a valid user name" in result.stderr


def test_file_store_detects_a_changed_blob(tmp_path) -> None:
    store = FileStore(tmp_path / "blobs")
    src = tmp_path / "a.bin"
    src.write_bytes(b"clip bytes")
    digest = store.put(src)
    assert store.put(src) == digest  # same content, same name, stored once
    store.path(digest).write_bytes(b"clip bytez")
    with pytest.raises(StoreError, match="no longer matches its checksum"):
        store.open_checked(digest)


def test_a_blob_checked_once_is_not_read_again_until_its_file_changes(tmp_path, monkeypatch) -> None:
    """An insider who rewrites a checked blob in place, same size and modification time, is still caught."""
    import os
    import time

    from pipeline.store import files

    hashed = []
    monkeypatch.setattr(files, "sha256_file", lambda path: hashed.append(path) or sha256_file(path))
    store = FileStore(tmp_path / "blobs", settled_s=0.1)
    src = tmp_path / "a.bin"
    src.write_bytes(b"clip bytes")
    digest = store.put(src)
    hashed.clear()
    store.open_checked(digest)
    assert len(hashed) == 1  # just written: hashed at every check while it settles
    time.sleep(0.2)  # settled: a later change moves the file's change time past the one remembered
    store.open_checked(digest)
    store.open_checked(digest)
    assert len(hashed) == 2  # read once more after settling, then remembered
    blob = store.path(digest)
    before = blob.stat()
    blob.write_bytes(b"clip bytez")
    os.utime(blob, ns=(before.st_atime_ns, before.st_mtime_ns))  # the modification time put back
    with pytest.raises(StoreError, match="no longer matches its checksum"):
        store.open_checked(digest)


@pytest.mark.parametrize("cmd", [["voice", "list"], ["voice", "show", "demo"], ["statements", "list"],
                                 ["clips", "list"], ["audit", "log"]])
def test_listings_and_show_print_json(workspace, cmd) -> None:
    result = runner.invoke(app, [*cmd, "--json", "--home", str(workspace.home)])
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)


def test_voice_show_lists_the_consent_record(workspace) -> None:
    result = runner.invoke(app, ["voice", "show", "demo", "--json", "--home", str(workspace.home)])
    consent = json.loads(result.stdout)["consent"]
    assert consent["policy"] == "per_statement" and consent["approvers"] == ["joe-delegate"]
    assert consent["statement"].startswith("I, Joe Example, consent") and len(consent["record_sha256"]) == 64


def test_a_worker_machine_reads_its_secrets_from_its_own_folder_and_refuses_loose_ones(tmp_path, monkeypatch) -> None:
    """Issue 12: a worker gets the organisation, watermark and C2PA keys from a folder the operator placed
    (`VOXGATE_SECRETS`, each private file 0600), not from the shared workspace folder; people's keys never."""
    import shutil

    from pipeline.services.workspace import SECRETS_ENV, init_workspace, open_workspace, utcnow, watermark_secret

    ws, _ = init_workspace(tmp_path / "ws", "Org", now=utcnow())
    secret = watermark_secret(ws)
    shutil.move(ws.home / "keys", tmp_path / "secrets")  # the worker's copy of the workspace has no keys/
    monkeypatch.setenv(SECRETS_ENV, str(tmp_path / "secrets"))
    worker = open_workspace(ws.home)
    assert watermark_secret(worker) == secret and worker.c2pa_dir == tmp_path / "secrets" / "c2pa"
    assert worker.org_public_key == ws.org_public_key
    assert CliRunner().invoke(app, ["audit", "verify", "--home", str(ws.home)]).exit_code == 0

    (tmp_path / "secrets" / "watermark.key").chmod(0o644)
    result = CliRunner().invoke(app, ["audit", "verify", "--home", str(ws.home)])
    assert result.exit_code == 1 and "chmod 600" in result.output and "Traceback" not in result.output
    (tmp_path / "secrets" / "watermark.key").chmod(0o600)
    (tmp_path / "secrets" / "c2pa" / "signer.key").unlink()
    result = CliRunner().invoke(app, ["audit", "verify", "--home", str(ws.home)])
    assert result.exit_code == 1 and "is missing" in result.output
    monkeypatch.setenv(SECRETS_ENV, str(tmp_path / "nowhere"))
    result = CliRunner().invoke(app, ["audit", "verify", "--home", str(ws.home)])
    assert result.exit_code == 1 and "not a folder" in result.output
