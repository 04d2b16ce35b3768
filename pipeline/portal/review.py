"""The reviewers' pages: register a passkey from an invitation, sign in with it, and decide on a
statement, each decision signed by the passkey over the approval payload (see services.passkeys).

The same review service as the CLI makes every state change, so the same rules hold: the author
cannot approve, the owner's stage needs the owner or a named delegate, audio needs a reviewer.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from pipeline.domain import Decision, Role, State
from pipeline.errors import VoxgateError
from pipeline.portal.security import SESSION_COOKIE, csrf_ok
from pipeline.services import passkeys, review
from pipeline.services.sessions import SESSION_HOURS, session_digest, session_user, start_session
from pipeline.services.workspace import Workspace
from pipeline.store.models import UserRow

log = logging.getLogger(__name__)
REVIEWER_ROLES = tuple(r for r in passkeys.PASSKEY_ROLES if r is not Role.ADMIN)


def word_diff(old: str | None, new: str) -> list[tuple[str, str]]:
    """(kind, words) runs from `old` to `new`: kind is "same", "removed" or "added"."""
    if old is None:
        return [("same", new)]
    a, b = old.split(), new.split()
    runs: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            runs.append(("same", " ".join(a[i1:i2])))
            continue
        if i2 > i1:
            runs.append(("removed", " ".join(a[i1:i2])))
        if j2 > j1:
            runs.append(("added", " ".join(b[j1:j2])))
    return runs


def add_review_routes(app: FastAPI, ws: Workspace, *, page: Callable[..., Response],
                      set_cookie: Callable[..., None], clock: Callable[[], datetime],
                      rp: passkeys.RelyingParty | None) -> None:
    def reviewer(request: Request) -> UserRow | None:
        try:
            return session_user(ws, request.cookies.get(SESSION_COOKIE), now=clock(), roles=REVIEWER_ROLES)
        except VoxgateError:
            return None

    def refused(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def json_body(request: Request) -> dict[str, Any] | JSONResponse:
        """The request's JSON object, after the CSRF token in it matched the cookie."""
        try:
            body = await request.json()
        except ValueError:
            return refused(400, "Send a JSON object.")
        if not isinstance(body, dict):
            return refused(400, "Send a JSON object.")
        if not csrf_ok(request, body.get("csrf")):
            return refused(403, "The page expired; reload it and try again.")
        if not isinstance(body.get("credential", {}), dict):
            return refused(400, "credential must be the browser's PublicKeyCredential as JSON.")
        if rp is None:
            return refused(503, "Passkeys are off: start the portal with --origin (its public address).")
        return body

    async def reviewer_body(request: Request) -> tuple[UserRow, dict[str, Any]] | JSONResponse:
        """The signed-in reviewer and the request's JSON object (CSRF checked), or the refusal to send."""
        user = reviewer(request)
        if user is None:
            return refused(401, "Sign in first.")
        body = await json_body(request)
        return body if isinstance(body, JSONResponse) else (user, body)

    def signed_in(request: Request, user: str, passkey_id: int, location: str) -> JSONResponse:
        response = JSONResponse({"next": location, "user": user})
        set_cookie(request, response, SESSION_COOKIE, start_session(ws, user, passkey_id=passkey_id, now=clock()),
                   max_age=SESSION_HOURS * 3600)
        return response

    @app.get("/invite/{token}")
    def invitation(request: Request, token: str) -> Response:
        try:
            name = passkeys.invitation_user(ws, token, now=clock())
        except VoxgateError as exc:
            return page(request, "error.html", code=403, status=403, message=str(exc), user=None)
        return page(request, "passkey_register.html", user=None, invited=name, token=token)

    @app.post("/passkey/register/options")
    async def register_options(request: Request) -> Response:
        body = await json_body(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            return JSONResponse(passkeys.registration_options(ws, str(body.get("token", "")), rp, now=clock()))
        except VoxgateError as exc:
            return refused(403, str(exc))

    @app.post("/passkey/register")
    async def register(request: Request) -> Response:
        body = await json_body(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            user, passkey_id = passkeys.register(ws, str(body.get("token", "")), body.get("credential") or {}, rp,
                                                 now=clock())
        except VoxgateError as exc:
            return refused(403, str(exc))
        return signed_in(request, user, passkey_id, "/review")

    @app.get("/review/login")
    def review_login(request: Request) -> Response:
        return page(request, "passkey_sign_in.html", user=None)

    @app.post("/passkey/sign-in/options")
    async def sign_in_options(request: Request) -> Response:
        body = await json_body(request)
        if isinstance(body, JSONResponse):
            return body
        options, _ = passkeys.sign_in_options(ws, rp, now=clock())
        return JSONResponse(options)

    @app.post("/passkey/sign-in")
    async def sign_in(request: Request) -> Response:
        body = await json_body(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            user, passkey_id = passkeys.sign_in(ws, body.get("credential") or {}, rp, now=clock())
        except VoxgateError as exc:
            return refused(403, str(exc))
        return signed_in(request, user, passkey_id, "/review")

    @app.get("/review")
    def review_list(request: Request) -> Response:
        user = reviewer(request)
        if user is None:
            return RedirectResponse("/review/login", status_code=303)
        rows = review.pending(ws, actor=user.name)
        return page(request, "review_list.html", user=user.name, statements=rows)

    @app.get("/review/{statement_id}")
    def review_page(request: Request, statement_id: int) -> Response:
        user = reviewer(request)
        if user is None:
            return RedirectResponse("/review/login", status_code=303)
        try:
            details = review.review_details(ws, statement_id)
        except VoxgateError as exc:
            return page(request, "error.html", code=404, status=404, message=str(exc), user=user.name)
        row = details["statement"]
        revisions = sorted(row.revisions, key=lambda r: r.number)
        previous = revisions[-2].text if len(revisions) > 1 else None
        audio = State(row.state) is State.DRAFT_READY and details["draft"] is not None
        return page(request, "review.html", user=user.name, statement=row, text=revisions[-1].text,
                    diff=word_diff(previous, revisions[-1].text), previous_number=revisions[-2].number if previous else None,
                    details=details, audio=audio,
                    open=State(row.state) in (State.SUBMITTED, State.IN_REVIEW, State.DRAFT_READY),
                    own=user.name in {r.author for r in row.revisions})

    @app.get("/review/{statement_id}/draft.wav")
    def draft_audio(request: Request, statement_id: int) -> Response:
        user = reviewer(request)
        if user is None:
            return refused(401, "Sign in first.")
        try:
            details = review.review_details(ws, statement_id)
        except VoxgateError:
            return refused(404, "No draft to play.")
        if State(details["statement"].state) is not State.DRAFT_READY or details["draft_path"] is None:
            return refused(404, "No draft to play.")
        path = ws.files.open_checked(details["draft"].audio_sha256)
        return FileResponse(path, media_type="audio/wav", filename=f"statement-{statement_id}-draft.wav")

    @app.post("/review/{statement_id}/challenge")
    async def challenge(request: Request, statement_id: int) -> Response:
        if isinstance(asked := await reviewer_body(request), JSONResponse):
            return asked
        user, body = asked
        try:
            decision = Decision(str(body.get("decision")))
            payload = review.passkey_payload(ws, statement_id, decision, listened=body.get("listened") is True,
                                             actor=user.name)
            nonce, ids = passkeys.approval_challenge(ws, payload, session=session_digest(
                request.cookies.get(SESSION_COOKIE)), now=clock())
        except ValueError:
            return refused(400, "decision must be approve, reject or request_changes.")
        except VoxgateError as exc:
            return refused(409, str(exc))
        return JSONResponse({"challenge": passkeys.b64url(payload.challenge(nonce)), "rpId": rp.id,
                             "allowCredentials": [{"type": "public-key", "id": i} for i in ids],
                             "userVerification": "required", "timeout": passkeys.CHALLENGE_SECONDS * 1000,
                             "payload": payload.to_bytes().decode()})

    @app.post("/review/{statement_id}/decide")
    async def decide(request: Request, statement_id: int) -> Response:
        if isinstance(asked := await reviewer_body(request), JSONResponse):
            return asked
        user, body = asked
        signed = passkeys.PasskeySignature(body.get("credential") or {}, rp,
                                           session_digest(request.cookies.get(SESSION_COOKIE)) or "")
        try:
            row = review.decide(ws, statement_id, Decision(str(body.get("decision"))),
                                comment=str(body.get("comment", ""))[:2000], actor=user.name, now=clock(),
                                passkey=signed, listened=body.get("listened") is True)
        except ValueError:
            return refused(400, "decision must be approve, reject or request_changes.")
        except VoxgateError as exc:
            log.info("passkey decision refused for %s on statement %s: %s", user.name, statement_id, exc)
            return refused(409, str(exc))
        return JSONResponse({"statement": row.id, "state": row.state})
