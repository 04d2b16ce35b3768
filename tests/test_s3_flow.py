"""The whole path on an object store: render → release → export → portal download → verify, blobs in SeaweedFS.

The workspace's `[files] url` names a bucket of the session's SeaweedFS; the
portal hands ready copies over as short-lived presigned links, only after the
token, consent and audit checks.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit

import httpx
import pytest
from typer.testing import CliRunner

from pipeline.cli.main import app as cli
from pipeline.services.auditing import audit_log, audit_verify
from pipeline.services.deliveries import deliveries_of
from pipeline.services.tokens import issue_token, revoke_tokens
from pipeline.services.users import add_user_from_keys
from pipeline.services.verify import verify_file
from pipeline.services.workspace import utcnow
from pipeline.store.s3 import S3FileStore
from portal_fixtures import build_released, serving

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def released(tmp_path_factory, object_store):
    url = f"s3://{object_store.new_bucket()}/ws"
    return build_released(tmp_path_factory.mktemp("s3-portal"), None, url)


@pytest.fixture(scope="module")
def base_url(released):
    with serving(released.ws.home) as url:
        yield url


def signed_in(base_url: str, token: str) -> httpx.Client:
    client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=120)
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
    assert client.post("/login", data={"token": token, "csrf": csrf}).status_code == 303
    return client


def downloads(ws, who: str) -> list:
    return [e for e in audit_log(ws) if e.action == "voxgate.clip.downloaded" and e.actor == who]


def test_the_render_stores_every_file_in_the_bucket_and_nothing_in_the_workspace(released, object_store) -> None:
    store = released.ws.files
    assert isinstance(store, S3FileStore)
    with released.ws.sessions() as s:
        from pipeline.store.models import ClipFileRow

        registered = {f.sha256 for f in s.query(ClipFileRow)}
    assert registered and registered <= set(store.digests())
    for digest in registered:
        store.check(digest)
    assert not any((released.ws.home / "blobs").iterdir())  # the folder init made stays empty


def test_a_download_is_a_short_lived_link_to_the_exact_bytes_after_the_audit_event(base_url, released,
                                                                                  object_store) -> None:
    client = signed_in(base_url, released.token)
    before = len(downloads(released.ws, "dana"))
    response = client.get(f"/clips/{released.clip_id}/download/mp3")
    assert response.status_code == 307 and response.headers["cache-control"] == "no-store"
    link = response.headers["location"]
    assert link.startswith(object_store.endpoint) and "X-Amz-Signature=" in link and "X-Amz-Expires=60" in link
    events = downloads(released.ws, "dana")
    assert len(events) == before + 1  # recorded before the link was handed out
    digest = events[-1].data["sha256"]
    assert urlsplit(link).path.endswith(f"/{digest[:2]}/{digest[2:]}")
    body = httpx.get(link)  # straight from the object store, not through the portal
    assert body.status_code == 200 and hashlib.sha256(body.content).hexdigest() == digest
    assert body.headers["content-type"] == "audio/mpeg"
    assert f"voxgate-clip-{released.clip_id}.mp3" in body.headers["content-disposition"]
    (delivery,) = deliveries_of(released.ws, released.clip_id)
    assert delivery.recipient == "dana" and digest in {f.sha256 for f in delivery.files}


def test_the_downloaded_copy_verifies_as_the_distributors_own(base_url, released, tmp_path) -> None:
    client = signed_in(base_url, released.token)
    link = client.get(f"/clips/{released.clip_id}/download/wav").headers["location"]
    copy = tmp_path / "copy.wav"
    copy.write_bytes(httpx.get(link).content)
    report = verify_file(released.ws, copy, now=utcnow(), actor="ops")
    assert report.verdict.outcome.value == "AUTHENTIC" and report.verdict.clip_id == released.clip_id


def test_no_link_for_a_revoked_clip_or_a_revoked_token(base_url, released) -> None:
    client = signed_in(base_url, released.token)
    refused = client.get(f"/clips/{released.revoked_clip_id}/download/ogg")  # consent withdrawn
    assert refused.status_code == 410 and "location" not in refused.headers and "X-Amz" not in refused.text
    add_user_from_keys(released.ws, "dora", "distributor", actor="ops", now=utcnow())
    auth = {"Authorization": f"Bearer {issue_token(released.ws, 'dora', actor='ops', now=utcnow())}"}
    first = httpx.get(f"{base_url}/api/clips/{released.clip_id}/ogg", headers=auth, timeout=120)  # makes her copy
    assert first.status_code == 307
    revoke_tokens(released.ws, "dora", reason="leak traced to this account", actor="ops", now=utcnow())
    after = httpx.get(f"{base_url}/api/clips/{released.clip_id}/ogg", headers=auth, timeout=120)
    assert after.status_code == 401 and "location" not in after.headers and "X-Amz" not in after.text
    assert len(downloads(released.ws, "dora")) == 1


def test_pull_follows_the_link_without_sending_the_token_on(base_url, released, tmp_path) -> None:
    result = CliRunner().invoke(cli, ["pull", "--url", base_url, "--token", released.token, "--out", str(tmp_path),
                                      "--format", "ogg"])
    assert result.exit_code == 0, result.output
    pulled = tmp_path / f"voxgate-clip-{released.clip_id}.ogg"
    event = downloads(released.ws, "dana")[-1]
    assert event.data["format"] == "ogg" and hashlib.sha256(pulled.read_bytes()).hexdigest() == event.data["sha256"]
    assert (tmp_path / f"voxgate-clip-{released.clip_id}.ogg.c2pa").stat().st_size > 100


def test_clips_export_and_verify_read_through_the_object_store(released, tmp_path) -> None:
    home = str(released.ws.home)
    result = CliRunner().invoke(cli, ["clips", "export", str(released.clip_id), "--format", "m4a", "--out",
                                      str(tmp_path), "--home", home, "--as", "dana"])
    assert result.exit_code == 0, result.output
    exported = tmp_path / f"voxgate-clip-{released.clip_id}.m4a"
    checked = CliRunner().invoke(cli, ["verify", str(exported), "--home", home, "--as", "ops"])
    assert checked.exit_code == 0, checked.output
    assert "AUTHENTIC" in checked.output
    assert audit_verify(released.ws).ok


def test_a_copy_changed_in_the_bucket_is_refused_not_linked(base_url, released, object_store) -> None:
    """Someone overwrites a person's stored copy in the bucket: the portal refuses it and audits nothing."""
    add_user_from_keys(released.ws, "dave", "distributor", actor="ops", now=utcnow())
    client = signed_in(base_url, issue_token(released.ws, "dave", actor="ops", now=utcnow()))
    assert client.get(f"/clips/{released.clip_id}/download/mp3").status_code == 307
    digest = downloads(released.ws, "dave")[-1].data["sha256"]
    store = released.ws.files
    s3 = object_store.client()
    head = s3.head_object(Bucket=store.where.bucket, Key=store.where.key(digest))
    s3.put_object(Bucket=store.where.bucket, Key=store.where.key(digest), Body=b"\xff\xfb" + b"\0" * 998,
                  Metadata=head["Metadata"])
    refused = client.get(f"/clips/{released.clip_id}/download/mp3")
    assert refused.status_code == 503 and "location" not in refused.headers
    assert len(downloads(released.ws, "dave")) == 1  # the refused hand-over is not recorded
