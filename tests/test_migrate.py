"""`voxgate migrate`: an embedded workspace (SQLite, blobs folder) moved to PostgreSQL and SeaweedFS, checked."""

from __future__ import annotations

import tomllib

import pytest
from typer.testing import CliRunner

from conftest import DEMO_VOICE, store_dump, store_snapshot
from pipeline.cli.main import app as cli
from pipeline.domain import Decision
from pipeline.services import review, statements
from pipeline.services.auditing import audit_log
from pipeline.services.tokens import issue_token
from pipeline.services.workspace import open_workspace, utcnow
from pipeline.store.files import FileStore
from pipeline.store.s3 import S3FileStore


@pytest.fixture
def embedded(workspace, tmp_path):
    """The shared fixture's workspace with statements at several stages, a token, and blobs in its folder."""
    ws = workspace
    for text in ("We ask for a fair and public trial.", "Thank you for standing with us."):
        sid = statements.submit(ws, voice_id="demo", purpose="public-statement", channel="social", language="en",
                                text=text, actor="sam", now=utcnow()).id
    review.decide(ws, sid, Decision.APPROVE, actor="rita", now=utcnow())
    issue_token(ws, "dana", actor="ops", now=utcnow())
    for path in (DEMO_VOICE / "voice.toml", DEMO_VOICE / "README.md"):
        if path.exists():
            ws.files.put(path)
    (tmp_path / "big.bin").write_bytes(bytes(range(256)) * 8000)
    ws.files.put(tmp_path / "big.bin")
    ws.engine.dispose()
    return ws


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def tables(home) -> dict[str, str]:
    """Every table's rows as text (SQLite or PostgreSQL alike), by table name."""
    return dict(line.split(": ", 1) for line in store_dump(home).splitlines())


def test_migrate_moves_every_row_and_blob_and_the_audit_chain_stays_valid(embedded, pg_cluster, bucket_url) -> None:
    home = embedded.home
    blobs = sorted(embedded.files.digests())
    events = len(audit_log(embedded))
    before = tables(home)
    with embedded.sessions() as s:
        from pipeline.store.models import StatementRow

        ids = sorted(r.id for r in s.query(StatementRow))
    database = pg_cluster.new_database()
    result = run("migrate", "--to", database, "--files", bucket_url, "--home", str(home))
    assert result.exit_code == 0, result.output
    assert "audit chain verified" in result.output and f"{len(blobs)} blobs" in result.output

    config = tomllib.loads((home / "voxgate.toml").read_text())
    assert config["database"]["url"] == database and config["files"]["url"] == bucket_url
    assert "url = \"\"" in (home / "voxgate.toml.before-migrate").read_text()
    ws = open_workspace(home)
    assert isinstance(ws.files, S3FileStore) and ws.engine.dialect.name == "postgresql"
    assert sorted(ws.files.digests()) == blobs
    for digest in blobs:
        ws.files.check(digest)
        ws.files.verify_bytes(digest)
    after = tables(home)
    assert set(after) == set(before)
    for name in before:  # row for row, the same values; the log only gains the migration's own event
        if name not in ("audit_events", "audit_head"):
            assert after[name] == before[name], name
    log = audit_log(ws)
    assert len(log) == events + 1 and log[-1].action == "voxgate.workspace.migrated"
    with ws.sessions() as s:
        from pipeline.store.models import StatementRow

        assert sorted(r.id for r in s.query(StatementRow)) == ids  # the same ids
    assert run("audit", "verify", "--replay", "--home", str(home)).exit_code == 0
    # The moved workspace goes on: the next statement takes the next id, and the chain still verifies.
    sid = statements.submit(ws, voice_id="demo", purpose="public-statement", channel="social", language="en",
                            text="We will speak again on Monday.", actor="sam", now=utcnow()).id
    assert sid == max(ids) + 1
    verified = run("audit", "verify", "--home", str(home))
    assert verified.exit_code == 0, verified.output
    ws.engine.dispose()


def test_migrate_files_only_keeps_the_sqlite_store(embedded, bucket_url) -> None:
    home = embedded.home
    blobs = sorted(embedded.files.digests())
    result = run("migrate", "--files", bucket_url, "--home", str(home))
    assert result.exit_code == 0, result.output
    ws = open_workspace(home)
    assert ws.engine.dialect.name == "sqlite" and sorted(ws.files.digests()) == blobs
    assert sorted(FileStore(home / "blobs").digests()) == blobs  # the old folder is left as it was
    assert run("audit", "verify", "--home", str(home)).exit_code == 0
    ws.engine.dispose()


def test_migrate_refuses_a_bucket_prefix_that_is_not_empty(embedded, bucket_url, object_store) -> None:
    bucket, prefix = bucket_url[len("s3://"):].split("/", 1)
    object_store.client().put_object(Bucket=bucket, Key=f"{prefix}/someone-elses", Body=b"x")
    before = store_snapshot(embedded.home), (embedded.home / "voxgate.toml").read_text()
    result = run("migrate", "--files", bucket_url, "--home", str(embedded.home))
    assert result.exit_code == 1 and "is not empty" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert (store_snapshot(embedded.home), (embedded.home / "voxgate.toml").read_text()) == before


def test_migrate_refuses_a_database_that_is_not_empty(embedded, pg_cluster, bucket_url) -> None:
    import psycopg

    database = pg_cluster.new_database()
    with psycopg.connect(database.replace("postgresql+psycopg", "postgresql"), autocommit=True) as con:
        con.execute("CREATE TABLE other_app (id integer)")
    before = store_snapshot(embedded.home), (embedded.home / "voxgate.toml").read_text()
    result = run("migrate", "--to", database, "--files", bucket_url, "--home", str(embedded.home))
    assert result.exit_code == 1 and "is not empty" in result.output and "other_app" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert (store_snapshot(embedded.home), (embedded.home / "voxgate.toml").read_text()) == before
    assert S3FileStore(bucket_url, embedded.home / "cache").is_empty()  # checked before anything was copied


@pytest.mark.parametrize("args, message", [
    ((), "Say where to move"),
    (("--to", "sqlite:///elsewhere.db"), "PostgreSQL url"),
    (("--files", "https://bucket/x"), "s3://BUCKET/PREFIX"),
])
def test_migrate_refuses_bad_targets_in_one_line(embedded, args, message) -> None:
    result = run("migrate", *args, "--home", str(embedded.home))
    assert result.exit_code == 1 and message in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_migrated_workspace_serves_its_released_clip_from_the_object_store(tmp_path, pg_cluster,
                                                                            object_store) -> None:
    """Render and release on one machine (SQLite, blobs folder), migrate, then download through the new places."""
    import hashlib
    import re

    import httpx

    from pipeline.services.clips import open_download
    from pipeline.services.verify import verify_file
    from portal_fixtures import build_released, serving

    released = build_released(tmp_path)
    before = open_download(released.ws, released.clip_id, "mp3", actor="dana", now=utcnow()).sha256
    released.ws.engine.dispose()
    home = released.ws.home
    result = run("migrate", "--to", pg_cluster.new_database(), "--files",
                 f"s3://{object_store.new_bucket()}/moved", "--home", str(home))
    assert result.exit_code == 0, result.output
    ws = open_workspace(home)
    with serving(home) as base:
        client = httpx.Client(base_url=base, follow_redirects=False, timeout=300)
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
        assert client.post("/login", data={"token": released.token, "csrf": csrf}).status_code == 303
        again = client.get(f"/clips/{released.clip_id}/download/mp3")  # the copy made before the move
        assert again.status_code == 307
        assert hashlib.sha256(httpx.get(again.headers["location"]).content).hexdigest() == before
        fresh = client.get(f"/clips/{released.clip_id}/download/wav")  # made now, from the moved premaster
        assert fresh.status_code == 307
        copy = tmp_path / "copy.wav"
        copy.write_bytes(httpx.get(fresh.headers["location"]).content)
    assert verify_file(ws, copy, now=utcnow(), actor="ops").verdict.outcome.value == "AUTHENTIC"
    assert run("audit", "verify", "--home", str(home)).exit_code == 0
    ws.engine.dispose()
