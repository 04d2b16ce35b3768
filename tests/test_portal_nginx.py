"""Behind nginx, a checked download's bytes go from nginx, not through Python (X-Accel-Redirect).

The portal checks the token, the signed release and consent, records the
download in the audit log, and answers with the blob's place in nginx's
internal location for the workspace's blob folder; nginx sends the file.
"""

from __future__ import annotations

import hashlib

import httpx
import pytest
from typer.testing import CliRunner

from nginx import ACCEL_PREFIX, fronting
from pipeline.cli.main import app as cli
from pipeline.errors import InputError
from pipeline.portal.app import checked_accel_prefix
from pipeline.services.auditing import audit_log
from portal_fixtures import build_released, serving


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return build_released(tmp_path_factory.mktemp("nginx"))


@pytest.fixture(scope="module")
def portal(released):
    with serving(released.ws.home, trusted_proxies=("127.0.0.1",), accel_redirect=ACCEL_PREFIX) as url:
        yield url


@pytest.fixture(scope="module")
def proxy(released, portal):
    with fronting(portal, released.ws.home / "blobs") as url:
        yield url


def downloads(ws) -> list:
    return [e for e in audit_log(ws) if e.action == "voxgate.clip.downloaded" and e.actor == "dana"]


@pytest.mark.slow
def test_nginx_sends_the_distributors_checked_copy_after_its_audit_event(released, portal, proxy) -> None:
    auth = {"Authorization": f"Bearer {released.token}"}
    before = len(downloads(released.ws))
    response = httpx.get(f"{proxy}/api/clips/{released.clip_id}/ogg", headers=auth, timeout=120)
    assert response.status_code == 200
    events = downloads(released.ws)
    assert len(events) == before + 1  # recorded before nginx was told which file to send
    digest = events[-1].data["sha256"]
    assert hashlib.sha256(response.content).hexdigest() == digest
    assert response.content == released.ws.files.open_checked(digest).read_bytes()
    assert response.headers["content-type"] == "audio/ogg"
    assert response.headers["content-disposition"] == f'attachment; filename="voxgate-clip-{released.clip_id}.ogg"'
    assert "x-accel-redirect" not in response.headers  # nginx keeps the blob's place to itself

    # What the portal itself answered: no bytes, only the blob's place in nginx's internal location.
    direct = httpx.get(f"{portal}/api/clips/{released.clip_id}/ogg", headers=auth, timeout=120)
    assert direct.status_code == 200 and direct.content == b""
    assert direct.headers["x-accel-redirect"] == f"{ACCEL_PREFIX}{digest[:2]}/{digest[2:]}"


@pytest.mark.slow
def test_the_blob_folder_is_not_reachable_through_nginx_and_a_refused_download_names_no_file(released, proxy) -> None:
    httpx.get(f"{proxy}/api/clips/{released.clip_id}/ogg", timeout=120,
              headers={"Authorization": f"Bearer {released.token}"}).raise_for_status()
    digest = downloads(released.ws)[-1].data["sha256"]  # a blob that is there, and is dana's
    assert httpx.get(f"{proxy}{ACCEL_PREFIX}{digest[:2]}/{digest[2:]}").status_code == 404  # internal only

    before = len(downloads(released.ws))
    forged = httpx.get(f"{proxy}/api/clips/{released.clip_id}/ogg", headers={"Authorization": "Bearer not-a-token"})
    assert forged.status_code == 401 and "x-accel-redirect" not in forged.headers and b"OggS" not in forged.content
    revoked = httpx.get(f"{proxy}/api/clips/{released.revoked_clip_id}/ogg", timeout=120,
                        headers={"Authorization": f"Bearer {released.token}"})  # its voice's consent was withdrawn
    assert revoked.status_code == 410 and b"OggS" not in revoked.content
    assert len(downloads(released.ws)) == before


def test_an_accel_location_must_be_a_plain_path_for_a_local_blob_folder(tmp_path) -> None:
    assert checked_accel_prefix("/_voxgate/blobs/", str(tmp_path)) == "/_voxgate/blobs/"
    for bad in ("blobs", "/blobs", "/a/../blobs/", "/a b/", "http://x/blobs/"):
        with pytest.raises(InputError, match="is not a location path"):
            checked_accel_prefix(bad, str(tmp_path))
    with pytest.raises(InputError, match="presigned links already"):
        checked_accel_prefix("/_voxgate/blobs/", "s3://voxgate/clips")


def test_serve_refuses_a_bad_accel_location_in_one_line(workspace) -> None:
    result = CliRunner().invoke(cli, ["serve", "--accel-redirect", "blobs", "--home", str(workspace.home)])
    assert result.exit_code == 1
    assert "is not a location path" in result.output and "Traceback" not in result.output
