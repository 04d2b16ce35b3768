"""Insider attacks on the portal and on `verify`, over real HTTP against a real uvicorn (issue 10, part 3).

- The session cookie was the raw bearer token, without Secure, and logout left it valid.
- uvicorn trusted X-Forwarded-For from loopback, so the sign-in rate limit was bypassed.
- A distributor could tell a draft clip from a missing one by the 404's wording.
- A leaked premaster read UNKNOWN in `verify`: its hash was not known.
"""

from __future__ import annotations

import re
import sqlite3
from http.cookies import SimpleCookie

import httpx
import pytest

from pipeline.portal.app import create_app
from pipeline.portal.security import CSRF_COOKIE, SESSION_COOKIE
from pipeline.services.tokens import revoke_tokens
from pipeline.services.verify import verify_file
from pipeline.services.workspace import utcnow
from pipeline.verify.verdict import Outcome
from portal_fixtures import build_under_review, serving
from ports import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_under_review(tmp_path_factory.mktemp("insider-portal"))


@pytest.fixture(scope="module")
def base_url(world):
    with serving(world.ws.home) as url:
        yield url


def csrf_of(client: httpx.Client, path: str = "/login") -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get(path).text).group(1)


def sign_in(base_url: str, token: str, **headers: str) -> tuple[httpx.Client, httpx.Response]:
    client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=60, headers=headers)
    csrf = csrf_of(client)
    client.cookies.set(CSRF_COOKIE, csrf)  # sent back as a browser would, also when the cookie is Secure
    response = client.post("/login", data={"token": token, "csrf": csrf})
    return client, response


def session_cookie(response: httpx.Response) -> SimpleCookie:
    for header in response.headers.get_list("set-cookie"):
        cookie = SimpleCookie(header)
        if SESSION_COOKIE in cookie:
            return cookie
    raise AssertionError("no session cookie was set")


def test_the_session_cookie_is_a_server_side_id_not_the_token(base_url, world) -> None:
    client, response = sign_in(base_url, world.token)
    morsel = session_cookie(response)[SESSION_COOKIE]
    assert response.status_code == 303
    assert world.token not in morsel.value and world.token not in response.headers.get("set-cookie", "")
    assert morsel["httponly"] and morsel["samesite"].lower() == "strict"
    assert not morsel["secure"]  # plain http on loopback: a Secure cookie would never come back
    con = sqlite3.connect(world.ws.home / "voxgate.db")
    stored = {row[0] for row in con.execute("SELECT id_sha256 FROM portal_sessions")}
    con.close()
    assert morsel.value not in stored and len(stored) >= 1  # only its hash is kept


def test_logout_ends_the_session_so_a_copied_cookie_stops_working(base_url, world) -> None:
    client, _ = sign_in(base_url, world.token)
    copied = client.cookies.get(SESSION_COOKIE)
    assert client.get("/clips").status_code == 200
    page = client.get("/clips").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    assert client.post("/logout", data={"csrf": csrf}).status_code == 303
    thief = httpx.Client(base_url=base_url, follow_redirects=False, cookies={SESSION_COOKIE: copied})
    response = thief.get("/clips")
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert thief.get(f"/clips/{world.released_clip}/download/mp3").status_code == 401


def test_revoking_the_token_ends_its_sessions(tmp_path_factory, world) -> None:
    from pipeline.services.tokens import issue_token

    token = issue_token(world.ws, "dana", actor="ops", now=utcnow())
    with serving(world.ws.home) as url:
        client, _ = sign_in(url, token)
        assert client.get("/clips").status_code == 200
        revoke_tokens(world.ws, "dana", reason="test: a leak traced to dana", actor="ops", now=utcnow())
        assert client.get("/clips").status_code == 303
    world.token = issue_token(world.ws, "dana", actor="ops", now=utcnow())  # for the tests that follow


@pytest.mark.parametrize("how", ["--https", "a trusted TLS proxy"])
def test_the_cookie_is_secure_when_served_over_https(world, how) -> None:
    options = {"https": True} if how == "--https" else {"trusted_proxies": ("127.0.0.1",)}
    with serving(world.ws.home, **options) as url:
        client, response = sign_in(url, world.token, **({"x-forwarded-proto": "https"} if how != "--https" else {}))
        assert response.status_code == 303
        morsel = session_cookie(response)[SESSION_COOKIE]
        assert morsel["secure"] and morsel["httponly"] and morsel["samesite"].lower() == "strict"


def failed_sign_ins(url: str, n: int, forwarded: bool) -> list[int]:
    """`n` wrong tokens from loopback, each claiming another client address when `forwarded`."""
    codes = []
    for i in range(n):
        headers = {"x-forwarded-for": f"203.0.113.{i + 1}"} if forwarded else {}
        client = httpx.Client(base_url=url, follow_redirects=False, timeout=30, headers=headers)
        codes.append(client.post("/login", data={"token": "vxg_wrong", "csrf": csrf_of(client)}).status_code)
    return codes


def test_forwarded_for_from_loopback_cannot_bypass_the_sign_in_limit(world) -> None:
    with serving(world.ws.home) as url:  # as `voxgate serve` runs it: no proxy trusted
        codes = failed_sign_ins(url, 11, forwarded=True)
    assert codes[:10] == [401] * 10 and codes[10] == 429


def test_uvicorn_defaults_would_let_forwarded_for_bypass_the_limit(world) -> None:
    """Why `voxgate serve` sets forwarded_allow_ips itself: uvicorn's defaults believe loopback."""
    import threading
    import time

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(world.ws.home), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        codes = failed_sign_ins(f"http://127.0.0.1:{port}", 11, forwarded=True)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert codes == [401] * 11  # each "client" got its own budget


def test_a_trusted_proxy_limits_each_forwarded_client(world) -> None:
    with serving(world.ws.home, trusted_proxies=("127.0.0.1",)) as url:
        assert failed_sign_ins(url, 11, forwarded=True) == [401] * 11  # eleven different clients behind the proxy
        assert failed_sign_ins(url, 11, forwarded=False)[-1] == 429  # and the proxy itself is still limited


def test_a_draft_and_a_missing_clip_answer_alike(base_url, world) -> None:
    client, _ = sign_in(base_url, world.token)
    bearer = {"Authorization": f"Bearer {world.token}"}
    for fmt in ("mp3", "wav", "ogg.c2pa"):
        draft = httpx.get(f"{base_url}/api/clips/{world.draft_clip}/{fmt}", headers=bearer, timeout=60)
        missing = httpx.get(f"{base_url}/api/clips/999999/{fmt}", headers=bearer, timeout=60)
        assert (draft.status_code, draft.text) == (missing.status_code, missing.text) and draft.status_code == 404
        draft = client.get(f"/clips/{world.draft_clip}/download/{fmt}")
        missing = client.get(f"/clips/999999/download/{fmt}")
        assert (draft.status_code, draft.text) == (missing.status_code, missing.text)
    assert "draft" not in draft.text


def test_a_leaked_premaster_reads_unreleased(world) -> None:
    with world.ws.sessions() as s:
        from pipeline.store.models import ClipRow

        premaster = s.get(ClipRow, world.released_clip).premaster_sha256
    report = verify_file(world.ws, world.ws.files.path(premaster), now=utcnow())
    assert report.verdict.outcome is Outcome.UNRELEASED, report.verdict.reasons
    assert report.verdict.clip_id == world.released_clip
    assert any("premaster" in r for r in report.verdict.reasons)


def test_serve_refuses_a_trusted_proxy_that_is_not_an_address(tmp_path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli.main import app as cli

    result = CliRunner().invoke(cli, ["serve", "--home", str(tmp_path / "none"), "--trusted-proxy", "proxy.local"])
    assert result.exit_code == 1 and "not an IP address" in result.output and "Traceback" not in result.output
