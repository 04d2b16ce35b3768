"""The distributors' portal over real HTTP on loopback: sign-in, listing, downloads, and its defences."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from conftest import store_dump
from pipeline.cli.main import app as cli
from pipeline.portal.security import RateLimiter
from pipeline.services.verify_pool import PoolLimits
from pipeline.provenance.credentials import CredentialStatus
from pipeline.services.auditing import audit_log, audit_verify
from pipeline.services.verify import verify_file
from pipeline.services.deliveries import deliveries_of
from pipeline.services.tokens import issue_token
from pipeline.services.workspace import utcnow
from portal_fixtures import build_released, serving

pytestmark = pytest.mark.slow
BOTH_DATABASES = True


@pytest.fixture(scope="module")
def released(tmp_path_factory, module_database_url):
    return build_released(tmp_path_factory.mktemp("portal"), module_database_url)


@pytest.fixture(scope="module")
def base_url(released):
    with serving(released.ws.home) as url:
        yield url


def signed_in(base_url: str, token: str) -> httpx.Client:
    client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=120)  # a first video takes seconds
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    response = client.post("/login", data={"token": token, "csrf": csrf})
    assert response.status_code == 303 and response.headers["location"] == "/clips"
    return client


def test_pages_carry_security_headers(base_url) -> None:
    response = httpx.get(f"{base_url}/login")
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "httponly" in response.headers["set-cookie"].lower() and "samesite=strict" in response.headers["set-cookie"].lower()


def test_sign_in_lists_released_clips_but_not_revoked_ones(base_url, released) -> None:
    client = signed_in(base_url, released.token)
    page = client.get("/clips").text
    assert f'id="clip-{released.clip_id}"' in page and "AI-generated voice" in page
    assert f'id="clip-{released.revoked_clip_id}"' not in page
    assert "We ask for an open trial" in page


def test_a_download_is_the_distributors_own_registered_copy_and_is_audited(base_url, released) -> None:
    client = signed_in(base_url, released.token)
    response = client.get(f"/clips/{released.clip_id}/download/mp3")
    assert response.status_code == 200 and response.headers["content-type"] == "audio/mpeg"
    assert f"voxgate-clip-{released.clip_id}.mp3" in response.headers["content-disposition"]
    (delivery,) = deliveries_of(released.ws, released.clip_id)
    assert delivery.recipient == "dana"
    digest = next(f.sha256 for f in delivery.files if f.format == "mp3")
    assert response.content == released.ws.files.path(digest).read_bytes()
    assert client.get(f"/clips/{released.clip_id}/download/mp3").content == response.content  # made once
    events = [e for e in audit_log(released.ws) if e.action == "voxgate.clip.downloaded"]
    assert events and events[-1].actor == "dana" and events[-1].data["format"] == "mp3"
    assert events[-1].data["delivery"] == delivery.id and events[-1].data["sha256"] == digest


def test_downloads_arriving_together_share_one_commit_and_none_returns_before_its_event(released) -> None:
    """Issue 12: download events are committed in groups, and no download is answered before its event is."""
    from functools import partial

    from sqlalchemy import event

    from pipeline.services.clips import open_download, record_hand_overs
    from pipeline.services.group_commit import GroupCommit

    ws = released.ws
    open_download(ws, released.clip_id, "ogg", actor="dana", now=utcnow())  # dana's copy exists

    def downloads() -> int:
        return sum(e.action == "voxgate.clip.downloaded" for e in audit_log(ws))

    before, group, lock = downloads(), GroupCommit(partial(record_hand_overs, ws)), threading.Lock()
    commits: list[str] = []
    answered: list[tuple[int, int]] = []  # (how many had been answered, events committed then)

    def note_commit(_session) -> None:
        commits.append(threading.current_thread().name)

    def download() -> None:
        open_download(ws, released.clip_id, "ogg", actor="dana", now=utcnow(), group=group)
        with lock:
            answered.append((len(answered) + 1, downloads() - before))

    event.listen(ws.writes, "after_commit", note_commit)
    try:
        threads = [threading.Thread(target=download, name=f"download-{i}") for i in range(10)]
        with ws.transaction():  # holds the store's write lock: the first download's commit waits for it
            threads[0].start()
            for thread in threads[1:]:
                thread.start()
            deadline = time.monotonic() + 60
            while group.queued() < 9:
                assert time.monotonic() < deadline, "the downloads never queued behind the held commit"
                time.sleep(0.01)
        for thread in threads:
            thread.join(60)
    finally:
        event.remove(ws.writes, "after_commit", note_commit)
    assert len(answered) == 10 and downloads() - before == 10
    assert all(committed >= rank for rank, committed in answered)
    assert len([c for c in commits if c.startswith("download-")]) == 2  # the first alone, then the nine queued
    assert audit_verify(ws).ok


def test_videos_and_captions_download_in_every_listed_format(base_url, released) -> None:
    client = signed_in(base_url, released.token)
    page = client.get("/clips").text
    for fmt in ("m4a", "mp4-square", "mp4-vertical", "srt", "vtt"):
        assert f"/clips/{released.clip_id}/download/{fmt}" in page
    video = client.get(f"/clips/{released.clip_id}/download/mp4-vertical")
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert f"voxgate-clip-{released.clip_id}.vertical.mp4" in video.headers["content-disposition"]
    captions = client.get(f"/clips/{released.clip_id}/download/vtt")
    assert captions.status_code == 200 and captions.text.startswith("WEBVTT")


def test_the_public_verify_page_names_neither_distributor_nor_reviewers(base_url, released) -> None:
    client = signed_in(base_url, released.token)
    copy = client.get(f"/clips/{released.clip_id}/download/wav").content
    public = httpx.Client(base_url=base_url, timeout=300)
    csrf = re.search(r'action="/verify\?[^"]*csrf=([^"&]+)"', public.get("/verify").text).group(1)
    page = public.post(f"/verify?csrf={csrf}", files={"file": ("clip.wav", copy, "audio/wav")})
    assert page.status_code == 200 and "AUTHENTIC" in page.text and "personal copy" in page.text
    assert "audio (approve, signature valid)" in page.text
    for person in ("dana", "rita", "ravi", "joe-delegate"):  # neither the distributor nor the publisher's reviewers
        assert person not in page.text.lower()


def test_revoked_clip_answers_410_with_the_reason(base_url, released) -> None:
    client = signed_in(base_url, released.token)
    response = client.get(f"/clips/{released.revoked_clip_id}/download/ogg")
    assert response.status_code == 410 and "revoked" in response.text


@pytest.mark.parametrize("path", [
    "/clips/1/download/..%2F..%2Fvoxgate.toml",
    "/clips/1/download/%2e%2e%2fkeys%2forg.key",
    "/clips/1/download/wav%00",
    "/static/..%2Fapp.py",
    "/static/../../voxgate.toml",
    "/clips/..%2F..%2Fkeys/download/wav",
])
def test_path_traversal_never_reaches_the_filesystem(base_url, released, path) -> None:
    client = signed_in(base_url, released.token)
    response = client.get(path)
    assert response.status_code in (404, 422)
    assert b"PRIVATE KEY" not in response.content and b"[organisation]" not in response.content


def test_downloads_need_a_session(base_url, released) -> None:
    response = httpx.get(f"{base_url}/clips/{released.clip_id}/download/wav")
    assert response.status_code == 401
    assert httpx.get(f"{base_url}/clips", follow_redirects=False).status_code == 303


def test_wrong_and_expired_tokens_are_refused(base_url, released) -> None:
    client = httpx.Client(base_url=base_url)
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
    wrong = client.post("/login", data={"token": "vxg_" + "x" * 43, "csrf": csrf})
    assert wrong.status_code == 401 and "Unknown or revoked" in wrong.text
    expired = issue_token(released.ws, "dana", days=1, actor="ops", now=utcnow() - timedelta(days=2))
    response = client.post("/login", data={"token": expired, "csrf": csrf})
    assert response.status_code == 401 and "expired" in response.text


def test_revoked_tokens_stop_working_at_once(base_url, released) -> None:
    from pipeline.services.tokens import revoke_tokens
    from pipeline.services.users import add_user_from_keys

    add_user_from_keys(released.ws, "dora", "distributor", actor="ops", now=utcnow())
    issue_token(released.ws, "dora", actor="ops", now=utcnow())
    token = issue_token(released.ws, "dora", actor="ops", now=utcnow())
    auth = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{base_url}/api/clips", headers=auth).status_code == 200
    assert revoke_tokens(released.ws, "dora", reason="leak traced to this account", actor="ops", now=utcnow()) == 2
    refused = httpx.get(f"{base_url}/api/clips", headers=auth)
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]
    event = audit_log(released.ws)[-1]
    assert (event.action, event.subject, event.data["tokens"]) == ("voxgate.token.revoked", "dora", 2)


def test_sign_in_without_the_csrf_token_is_refused(base_url, released) -> None:
    client = httpx.Client(base_url=base_url)
    client.get("/login")  # the csrf cookie is set, but the form field is missing
    response = client.post("/login", data={"token": released.token})
    assert response.status_code == 403


def test_tokens_are_stored_hashed(released) -> None:
    dump = store_dump(released.ws.home)
    assert released.token not in dump and released.token[4:] not in dump


def test_sign_in_is_rate_limited(released) -> None:
    with serving(released.ws.home) as url:  # a fresh server: its own limiter
        client = httpx.Client(base_url=url)
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
        codes = [client.post("/login", data={"token": "vxg_nope", "csrf": csrf}).status_code for _ in range(12)]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]


def test_rate_limiter_window_slides() -> None:
    limiter = RateLimiter(2, 60)
    assert limiter.allow("a", 0) and limiter.allow("a", 1) and not limiter.allow("a", 2)
    assert limiter.allow("b", 2)  # per client
    assert limiter.allow("a", 61)  # the first event left the window


def test_api_and_pull_with_a_bearer_token(base_url, released, tmp_path) -> None:
    listing = httpx.get(f"{base_url}/api/clips", headers={"Authorization": f"Bearer {released.token}"})
    assert listing.status_code == 200 and [c["id"] for c in listing.json()] == [released.clip_id]
    assert httpx.get(f"{base_url}/api/clips", headers={"Authorization": "Bearer vxg_bad"}).status_code == 401
    result = CliRunner().invoke(cli, ["pull", "--url", base_url, "--token", released.token, "--out", str(tmp_path),
                                      "--format", "ogg", "--since", "2000-01-01"])
    assert result.exit_code == 0, result.output
    pulled = tmp_path / f"voxgate-clip-{released.clip_id}.ogg"
    assert pulled.stat().st_size > 1000
    # The Ogg comes with its content credentials beside it, signed by the workspace over these very bytes.
    report = verify_file(released.ws, pulled, now=utcnow())
    assert report.credentials.sidecar and report.credentials.status is CredentialStatus.TRUSTED
    refused = CliRunner().invoke(cli, ["pull", "--url", base_url, "--token", "vxg_bad", "--out", str(tmp_path)])
    assert refused.exit_code == 1 and "refused the token" in refused.stderr


# --- the verify service under hostile uploads (issue 11) ----------------------------------------


def raw_post(base_url: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """Send a request by hand (so a Content-Length can lie about what follows); the status line back."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": host, **headers}.items())
        sock.sendall(f"POST {path} HTTP/1.1\r\n{head}\r\n".encode() + body)
        return sock.recv(4096).split(b"\r\n", 1)[0]


@pytest.mark.parametrize("path", ["/api/verify", "/verify"])
def test_a_600_mb_upload_is_refused_before_its_body_is_read(base_url, path, private_tempdir) -> None:
    status = raw_post(base_url, path, {"Content-Length": str(600 << 20), "Content-Type": "audio/mpeg"}, b"ID3" + b"\0" * 1000)
    assert status.startswith(b"HTTP/1.1 413"), status
    assert not list(private_tempdir.iterdir())  # nothing of it was written anywhere
    # A body without a declared length is refused too: the cap must be known before reading.
    status = raw_post(base_url, path, {"Transfer-Encoding": "chunked"}, b"3\r\nID3\r\n0\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 411"), status


def test_the_api_gives_the_same_verdict_object_as_the_cli_without_names(base_url, released, tmp_path) -> None:
    client = signed_in(base_url, released.token)
    copy = client.get(f"/clips/{released.clip_id}/download/mp3").content
    answer = httpx.post(f"{base_url}/api/verify", content=copy, timeout=300)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["version"] == 2 and data["verdict"] == "AUTHENTIC" and data["exit_code"] == 0
    assert data["traced_to"] == {"traceable": True, "of": "the file"} and data["evidence"]["payload"] is None
    assert "dana" not in answer.text and "rita" not in answer.text
    # Re-encoded, the copy is traced by its payload mark, which names dana's delivery: the public answer does not.
    (tmp_path / "copy.mp3").write_bytes(copy)
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "copy.mp3"), "-c:a", "libopus", "-b:a", "24k",
                    str(tmp_path / "copy.ogg")], check=True)
    answer = httpx.post(f"{base_url}/api/verify", content=(tmp_path / "copy.ogg").read_bytes(), timeout=300)
    data = answer.json()
    assert data["verdict"] == "DERIVED" and data["evidence"]["payload"] == {
        "clip": released.clip_id, "delivery": None, "confidence": data["evidence"]["payload"]["confidence"]}
    assert data["traced_to"] == {"traceable": True, "of": "the file"}, data["traced_to"]
    assert "dana" not in answer.text and "rita" not in answer.text
    assert httpx.post(f"{base_url}/api/verify", content=b"not audio at all, just text", timeout=60).status_code == 415


@pytest.fixture(scope="module")
def twenty_minutes(tmp_path_factory) -> Path:
    """20 minutes of 6 kbps Opus (about 1 MB): cheap to send, costly to decode whole."""
    path = tmp_path_factory.mktemp("long") / "long.ogg"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "anoisesrc=d=1200:c=pink:a=0.1:r=16000",
                    "-c:a", "libopus", "-b:a", "6k", "-application", "voip", str(path)], check=True)
    return path


def test_a_long_upload_is_checked_only_up_to_the_cap_while_distributors_are_served(released, twenty_minutes) -> None:
    # The cap, not the clock, must decide: a loaded machine may take longer than the default 90 s per check.
    with serving(released.ws.home, pool_limits=PoolLimits(max_audio_s=60, timeout_s=600)) as url:
        auth = {"Authorization": f"Bearer {released.token}"}
        httpx.get(f"{url}/api/clips/{released.clip_id}/wav", headers=auth, timeout=300).raise_for_status()  # made once
        result: dict = {}
        check = threading.Thread(target=lambda: result.update(
            r=httpx.post(f"{url}/api/verify", content=twenty_minutes.read_bytes(), timeout=300)))
        check.start()
        served_meanwhile = 0
        while check.is_alive():
            response = httpx.get(f"{url}/api/clips/{released.clip_id}/wav", headers=auth, timeout=30)
            assert response.status_code == 200
            served_meanwhile += check.is_alive()
        check.join()
        assert served_meanwhile >= 1  # the distributor was answered while the check ran
        answer = result["r"]
        assert answer.status_code == 200, answer.text
        assert answer.json()["notes"]["decoded"] == "only the first 1 minutes of 20 were checked"
        assert answer.json()["verdict"] == "UNKNOWN"


@pytest.mark.parametrize("limits, message", [
    (PoolLimits(max_rss_bytes=120 << 20), "needed more than 120 MB"),
    (PoolLimits(timeout_s=0.5), "took longer than 0 s"),
])
def test_a_check_past_its_memory_or_time_bound_is_stopped_and_the_portal_answers(released, twenty_minutes, limits,
                                                                                message) -> None:
    with serving(released.ws.home, pool_limits=limits) as url:
        answer = httpx.post(f"{url}/api/verify", content=twenty_minutes.read_bytes(), timeout=300)
        assert answer.status_code == 413 and message in answer.json()["error"], answer.text
        assert httpx.get(f"{url}/verify", timeout=30).status_code == 200


def test_public_checks_are_counted_in_the_audit_log_in_batches(released, twenty_minutes) -> None:
    before = len(audit_log(released.ws))
    with serving(released.ws.home, pool_limits=PoolLimits(max_audio_s=5)) as url:
        for _ in range(3):
            assert httpx.post(f"{url}/api/verify", content=twenty_minutes.read_bytes(), timeout=300).status_code == 200
    events = audit_log(released.ws)[before:]
    assert [e.action for e in events] == ["voxgate.verify.counted"], [e.action for e in events]
    assert events[0].data["checks"] == 3 and events[0].data["verdicts"] == {"UNKNOWN": 3}
