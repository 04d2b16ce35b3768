"""Passkeys in real Chromium with a CDP virtual authenticator: register from an invitation, approve,
and the attacks that must be refused (replay onto another statement, an expired nonce or session,
another origin, a disabled person's passkey). Every decision goes through the real portal over HTTP.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli.main import app as cli
from pipeline.domain import ApprovalPayload, Decision, Stage, State
from pipeline.identity.passkeys import PasskeyAssertion, passkey_fingerprint, problems
from pipeline.services import passkeys, review, users
from pipeline.services.auditing import audit_verify
from pipeline.services.workspace import utcnow
from pipeline.store.models import (
    ApprovalRow,
    AuditRow,
    ClipRow,
    PasskeyApprovalRow,
    PasskeyInvitationRow,
    PasskeyRow,
    StatementRow,
)
from portal_fixtures import build_under_review, serving
from ports import free_port
from test_portal_browser import CHROMIUM, FLAGS, PAGE_TIMEOUT_MS, SHOTS, assert_not_blank

pytestmark = pytest.mark.slow
PHONE = {"width": 390, "height": 844}

SIGN = """async ({decision, listened}) => {
  const card = document.getElementById('review');
  const r = await fetch('/review/' + card.dataset.statement + '/challenge', {method: 'POST',
    headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({csrf: card.dataset.csrf, decision, listened})});
  const ask = await r.json();
  if (!r.ok) return {status: r.status, error: ask.error};
  const cred = await navigator.credentials.get({publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(
    {challenge: ask.challenge, rpId: ask.rpId, allowCredentials: ask.allowCredentials, userVerification: 'required'})});
  return {status: 200, credential: cred.toJSON(), challenge: ask.challenge, allow: ask.allowCredentials, rpId: ask.rpId};
}"""

DECIDE = """async ({statement, body}) => {
  const csrf = document.getElementById('review').dataset.csrf;
  const r = await fetch('/review/' + statement + '/decide', {method: 'POST',
    headers: {'Content-Type': 'application/json'}, body: JSON.stringify({...body, csrf})});
  return {status: r.status, body: await r.json()};
}"""


class Clock:
    """The portal's clock: real time plus an offset a test can move forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self):  # noqa: ANN204
        return utcnow() + self.offset


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = build_under_review(tmp_path_factory.mktemp("passkeys"))
    users.add_user_from_keys(w.ws, "lena", "reviewer", actor="ops", now=utcnow())
    return w


@pytest.fixture(scope="module")
def portal(world):
    port = free_port()
    clock = Clock()
    origin = f"http://localhost:{port}"
    with serving(world.ws.home, port=port, origin=origin, clock=clock):
        yield origin, clock


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed; `make setup` installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


def invite(world, name: str, origin: str, by: str = "ops") -> str:
    result = CliRunner().invoke(cli, ["user", "invite", name, "--url", origin, "--home", str(world.ws.home),
                                      "--as", by])
    assert result.exit_code == 0, result.output
    link = result.output.strip()
    assert re.fullmatch(re.escape(origin) + r"/invite/vxi_[\w-]+", link), link
    return link


def enrolled(browser, world, origin: str, name: str, viewport=None, link: str | None = None):  # noqa: ANN201
    """A new tab (a Page) with its own virtual authenticator (user verification on), registered from an invitation."""
    context = browser.new_context(viewport=viewport or {"width": 1100, "height": 900})
    context.set_default_timeout(PAGE_TIMEOUT_MS)  # a page waiting on a busy machine's server is not a failure
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True}})
    page.goto(link or invite(world, name, origin))
    assert page.locator("#invited").inner_text() == name
    page.click("#register-passkey")
    page.wait_for_url(f"{origin}/review")
    return page


def state_of(world, statement_id: int) -> str:
    with world.ws.sessions() as s:
        return s.get(StatementRow, statement_id).state


def approvals_count(world) -> int:
    with world.ws.sessions() as s:
        return s.query(ApprovalRow).count()


def test_a_delegate_registers_from_an_invitation_and_approves_on_a_phone(browser, world, portal) -> None:
    origin, _ = portal
    # The consent binds joe's approval to his own key: he invites himself with it, so it vouches for the passkey.
    page = enrolled(browser, world, origin, "joe-delegate", viewport=PHONE,
                    link=invite(world, "joe-delegate", origin, by="joe-delegate"))
    assert page.locator(f"#pending-{world.revised}").count() == 1
    page.goto(f"{origin}/review/{world.revised}")
    text = page.locator("#text")
    assert text.locator("del").all_inner_texts() and "public" in " ".join(text.locator("ins").all_inner_texts())
    assert "open" in " ".join(text.locator("del").all_inner_texts())
    assert "Still missing" in page.locator("#missing").inner_text()
    page.click("#approve")
    page.wait_for_selector("#result:has-text('Signed: approve')")
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / "review-passkey-phone.png"
    page.screenshot(path=str(shot), full_page=True)
    assert_not_blank(shot)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling

    assert state_of(world, world.revised) == State.IN_REVIEW.value  # the reviewer's text approval still missing
    details = review.review_details(world.ws, world.revised)
    mine = [a for a in details["approvals"] if a["reviewer"] == "joe-delegate" and a["current"]]
    assert [(a["stage"], a["decision"], a["signature_valid"]) for a in mine] == [("owner", "approve", True)]

    # Anyone holding the stored assertion re-verifies it offline, and any change breaks it.
    with world.ws.sessions() as s:
        record = s.query(PasskeyApprovalRow).order_by(PasskeyApprovalRow.id.desc()).first()
        key = s.get(PasskeyRow, record.passkey_id)
        ws_id = world.ws.id_in(s)
        row = s.get(ApprovalRow, record.approval_id)
        event = s.get(AuditRow, row.seq)
    # One approval format: v2, with its revision, its audit event and the passkey as its key.
    assert (row.payload_version, row.revision, row.listened) == (2, 2, False)
    assert row.key_fingerprint == passkey_fingerprint(key.public_key)
    assert event.action == "voxgate.review.approve" and event.actor == "joe-delegate"
    assert event.data["signed"] == {"passkey": row.key_fingerprint, "approval": row.id}  # the passkey signed
    payload = json.loads(record.payload)
    assert payload["statement"] == world.revised and payload["revision"] == 2 and payload["listened"] is False
    expected = ApprovalPayload(ws_id, world.revised, 2, Stage.OWNER, payload["subject_sha256"],
                               "joe-delegate", Decision.APPROVE)
    assertion = PasskeyAssertion(record.payload.encode(), bytes.fromhex(record.nonce), record.authenticator_data,
                                 record.client_data_json, record.signature, key.public_key, key.rp_id, key.origin)
    assert problems(assertion, expected) == []
    assert problems(assertion, ApprovalPayload(ws_id, world.revised, 2, Stage.OWNER,
                                               payload["subject_sha256"], "joe-delegate", Decision.REJECT))
    assert problems(dataclasses.replace(assertion, rp_id="evil.example"), expected)
    assert problems(dataclasses.replace(assertion, origin="http://evil.example"), expected)
    flipped = bytearray(record.authenticator_data)
    flipped[32] &= ~0x04  # clear the user-verified flag
    assert any("verify the user" in p for p in problems(
        PasskeyAssertion(record.payload.encode(), bytes.fromhex(record.nonce), bytes(flipped),
                         record.client_data_json, record.signature, key.public_key, key.rp_id, key.origin), expected))
    page.context.close()


def test_a_reviewer_approves_the_audio_only_after_hearing_it_all(browser, world, portal) -> None:
    origin, _ = portal
    page = enrolled(browser, world, origin, "lena")
    page.goto(f"{origin}/review/{world.audio}")
    approve = page.locator("#approve")
    assert approve.is_disabled()
    # Skipping to the end is not listening: the button stays off.
    page.locator("#draft").evaluate("""el => new Promise(r => { el.muted = true;
        el.addEventListener('ended', r, {once: true});
        const go = () => { el.currentTime = el.duration - 0.2; el.play(); };
        el.readyState >= 1 ? go() : el.addEventListener('loadedmetadata', go, {once: true}); })""")
    assert approve.is_disabled()
    # The whole draft, played through (fast, muted: a test has no ears).
    page.locator("#draft").evaluate("""el => new Promise(r => { el.muted = true; el.playbackRate = 8;
        el.addEventListener('ended', r, {once: true}); el.currentTime = 0; el.play(); })""")
    page.wait_for_function("!document.getElementById('approve').disabled")
    approve.click()
    page.wait_for_selector("#result:has-text('Signed: approve')")
    assert state_of(world, world.audio) == State.RELEASED.value  # the one audio approval the policy asks for
    with world.ws.sessions() as s:
        assert s.get(ClipRow, world.draft_clip).state == "released"
        record = s.query(PasskeyApprovalRow).order_by(PasskeyApprovalRow.id.desc()).first()
    assert json.loads(record.payload)["listened"] is True and json.loads(record.payload)["stage"] == "audio"
    page.context.close()


def test_an_approval_signed_for_one_statement_is_refused_on_another(browser, world, portal) -> None:
    origin, _ = portal
    page = enrolled(browser, world, origin, "rita")
    page.goto(f"{origin}/review/{world.revised}")
    signed = page.evaluate(SIGN, {"decision": "approve", "listened": False})
    assert signed["status"] == 200
    before = approvals_count(world), state_of(world, world.other)
    page.goto(f"{origin}/review/{world.other}")
    # As signed (its nonce was issued for the other statement) ...
    answer = page.evaluate(DECIDE, {"statement": world.other, "body": {"decision": "approve",
                                                                       "credential": signed["credential"]}})
    assert answer["status"] == 409 and "another decision" in answer["body"]["error"]
    # ... and after asking for a fresh challenge for this statement: the signature is over the old one.
    fresh = page.evaluate("""async () => { const card = document.getElementById('review');
        const r = await fetch('/review/' + card.dataset.statement + '/challenge', {method: 'POST',
          headers: {'Content-Type': 'application/json'},
          body: JSON.stringify({csrf: card.dataset.csrf, decision: 'approve', listened: false})});
        return r.status; }""")
    assert fresh == 200
    answer = page.evaluate(DECIDE, {"statement": world.other, "body": {"decision": "approve",
                                                                       "credential": signed["credential"]}})
    assert answer["status"] == 409
    assert (approvals_count(world), state_of(world, world.other)) == before
    page.context.close()


def test_an_expired_nonce_and_an_expired_session_are_refused(browser, world, portal) -> None:
    origin, clock = portal
    page = enrolled(browser, world, origin, "rita")
    page.goto(f"{origin}/review/{world.other}")
    signed = page.evaluate(SIGN, {"decision": "approve", "listened": False})
    before = approvals_count(world)
    try:
        clock.offset = timedelta(seconds=passkeys.CHALLENGE_SECONDS + 1)
        answer = page.evaluate(DECIDE, {"statement": world.other, "body": {"decision": "approve",
                                                                           "credential": signed["credential"]}})
        assert answer["status"] == 409 and "expired" in answer["body"]["error"]
        clock.offset = timedelta(hours=13)  # past the session's 12 hours
        answer = page.evaluate(DECIDE, {"statement": world.other, "body": {"decision": "approve",
                                                                           "credential": signed["credential"]}})
        assert answer["status"] == 401
    finally:
        clock.offset = timedelta()
    assert approvals_count(world) == before and state_of(world, world.other) == State.SUBMITTED.value
    page.context.close()


class Phishing(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = b"<!doctype html><title>looks like the portal</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_signature_made_on_another_origin_is_refused(browser, world, portal) -> None:
    origin, _ = portal
    page = enrolled(browser, world, origin, "rita")
    page.goto(f"{origin}/review/{world.other}")
    ask = page.evaluate("""async () => { const card = document.getElementById('review');
        const r = await fetch('/review/' + card.dataset.statement + '/challenge', {method: 'POST',
          headers: {'Content-Type': 'application/json'},
          body: JSON.stringify({csrf: card.dataset.csrf, decision: 'approve', listened: false})});
        return r.json(); }""")
    evil = ThreadingHTTPServer(("127.0.0.1", 0), Phishing)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        # Same RP id (localhost), another origin: the browser signs, and records where it did.
        page.goto(f"http://localhost:{evil.server_address[1]}/")
        credential = page.evaluate("""async (ask) => (await navigator.credentials.get({publicKey:
            PublicKeyCredential.parseRequestOptionsFromJSON({challenge: ask.challenge, rpId: ask.rpId,
              allowCredentials: ask.allowCredentials, userVerification: 'required'})})).toJSON()""", ask)
    finally:
        evil.shutdown()
        evil.server_close()
    before = approvals_count(world)
    page.goto(f"{origin}/review/{world.other}")
    answer = page.evaluate(DECIDE, {"statement": world.other, "body": {"decision": "approve",
                                                                       "credential": credential}})
    assert answer["status"] == 409 and "origin" in answer["body"]["error"]
    assert approvals_count(world) == before
    page.context.close()


def test_a_disabled_persons_passkey_is_refused(browser, world, portal) -> None:
    origin, _ = portal
    users.add_user_from_keys(world.ws, "leaver", "reviewer", actor="ops", now=utcnow())
    page = enrolled(browser, world, origin, "leaver")
    page.goto(f"{origin}/review/{world.other}")
    signed = page.evaluate(SIGN, {"decision": "approve", "listened": False})
    assert signed["status"] == 200
    result = CliRunner().invoke(cli, ["user", "disable-passkeys", "leaver", "--reason", "left; leaked a draft",
                                      "--home", str(world.ws.home), "--as", "ops"])
    assert result.exit_code == 0, result.output
    before = approvals_count(world)
    answer = page.evaluate(DECIDE, {"statement": world.other, "body": {"decision": "approve",
                                                                       "credential": signed["credential"]}})
    assert answer["status"] in (401, 409)  # the passkey's session ended with it
    assert approvals_count(world) == before
    page.goto(f"{origin}/review/login")
    page.click("#sign-in-passkey")
    page.wait_for_selector("#error:has-text('disabled')")
    page.context.close()


def test_an_invitation_works_once(browser, world, portal) -> None:
    origin, _ = portal
    link = invite(world, "ravi", origin)
    token = link.rsplit("/", 1)[1]
    assert passkeys.invitation_user(world.ws, token, now=utcnow()) == "ravi"
    page = enrolled(browser, world, origin, "ravi", link=link)
    page.goto(link)
    assert "already used" in page.locator("#error").inner_text()
    page.context.close()


def test_invite_refuses_a_distributor_with_one_line(world) -> None:
    result = CliRunner().invoke(cli, ["user", "invite", "dana", "--home", str(world.ws.home), "--as", "ops"])
    assert result.exit_code == 1 and "token" in result.output and "Traceback" not in result.output


def test_passkey_decisions_are_checked_by_the_verifier_and_audit_verify(browser, world, portal) -> None:
    """The passkey is the signer of record: the approval verifies offline by its stored assertion, the events it
    caused name it, `audit verify` re-checks them, and a passkey disabled later leaves the approval standing."""
    origin, _ = portal
    page = enrolled(browser, world, origin, "rita")
    page.goto(f"{origin}/review/{world.revised}")
    page.click("#approve")
    page.wait_for_selector("#result:has-text('Signed: approve')")
    page.context.close()
    assert state_of(world, world.revised) == State.TEXT_APPROVED.value  # with joe's (vouched) owner approval
    with world.ws.sessions() as s:
        row = s.query(ApprovalRow).filter_by(statement_id=world.revised, reviewer="rita").order_by(
            ApprovalRow.id.desc()).first()
        signed = [e.data["signed"] for e in s.query(AuditRow).filter(AuditRow.seq >= row.seq, AuditRow.actor == "rita")]
    assert row.payload_version == 2 and row.key_fingerprint.startswith("passkey:")
    assert len(signed) >= 2 and all(x == {"passkey": row.key_fingerprint, "approval": row.id} for x in signed)
    assert audit_verify(world.ws).ok

    def valid() -> bool:
        mine = [a for a in review.review_details(world.ws, world.revised)["approvals"] if a["reviewer"] == "rita"]
        return mine[-1]["signature_valid"]

    # Any change to the stored assertion breaks the approval and the events that name it.
    with sqlite3.connect(world.ws.home / "voxgate.db") as db:
        original = db.execute("SELECT client_data_json FROM passkey_approvals WHERE approval_id = ?",
                              (row.id,)).fetchone()[0]
        db.execute("UPDATE passkey_approvals SET client_data_json = ? WHERE approval_id = ?",
                   (original.replace(b"webauthn.get", b"webauthn.got"), row.id))
    try:
        assert not valid()
        report = audit_verify(world.ws)
        assert not report.ok and "passkey decision by rita" in report.problem
    finally:
        with sqlite3.connect(world.ws.home / "voxgate.db") as db:
            db.execute("UPDATE passkey_approvals SET client_data_json = ? WHERE approval_id = ?", (original, row.id))
    assert valid()
    # Disabled afterwards (a lost phone): the approval made while it was live still counts; new ones do not.
    passkeys.disable_passkeys(world.ws, "rita", reason="test: lost phone", actor="ops", now=utcnow())
    assert valid() and audit_verify(world.ws).ok


def test_a_passkey_from_an_admins_invitation_does_not_stand_in_for_a_bound_key(browser, world, portal) -> None:
    """An admin could register a passkey under the delegate's name from their own invitation (the swapped-key
    attack, with a passkey): the consent binds the delegate's own key, so such a passkey's approval is refused."""
    origin, _ = portal
    page = enrolled(browser, world, origin, "joe-delegate")  # invited by ops, the admin
    before = approvals_count(world), state_of(world, world.other)
    page.goto(f"{origin}/review/{world.other}")
    signed = page.evaluate(SIGN, {"decision": "approve", "listened": False})
    assert signed["status"] == 200
    answer = page.evaluate(DECIDE, {"statement": world.other, "body": {"decision": "approve",
                                                                       "credential": signed["credential"]}})
    assert answer["status"] == 409 and "user invite joe-delegate --as joe-delegate" in answer["body"]["error"]
    assert (approvals_count(world), state_of(world, world.other)) == before
    page.context.close()


def test_only_an_admin_or_the_person_themselves_invites(world) -> None:
    with world.ws.sessions() as s:
        before = s.query(PasskeyInvitationRow).count()
    result = CliRunner().invoke(cli, ["user", "invite", "rita", "--home", str(world.ws.home), "--as", "ravi"])
    assert result.exit_code == 1 and "admin" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["user", "invite", "ravi", "--home", str(world.ws.home), "--as", "ravi"])
    assert result.exit_code == 0 and "/invite/vxi_" in result.output
    with world.ws.sessions() as s:
        assert s.query(PasskeyInvitationRow).count() == before + 1
