"""The distributors' portal and the public verify page: server-rendered, no front-end build.

Distributors sign in with a token from `voxgate user token NAME`, see released
clips with their text, voice and labels, play and download them (each
download lands in the audit log under their name). Revoked clips vanish from
the list and their downloads answer 410 with the reason. `/verify` (a page)
and `POST /api/verify` (JSON) are public: an upload is refused by its declared
size before it is read, checked in a worker process (`services.verify_pool`)
from a temporary folder, and deleted with the request.
"""

from __future__ import annotations

import asyncio
import logging
import re
import tempfile
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Final

from fastapi import FastAPI, Form, Request
from starlette.datastructures import UploadFile as StarletteUpload
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from pipeline.i18n import COOKIE as LANG_COOKIE
from pipeline.i18n import LANGUAGE_NAMES, LANGUAGES, choose_language, direction, has, t
from pipeline.errors import ConsentError, InputError, NotFoundError, PermissionError_, StoreError, VoxgateError
from pipeline.portal.security import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    RateLimiter,
    SecurityHeaders,
    UploadLimit,
    csrf_ok,
    new_csrf_token,
)
from pipeline.provenance.credentials import SIDECAR_SUFFIX
from pipeline.services import clips as clip_service
from pipeline.services.gates import released_standing
from pipeline.services.group_commit import GroupCommit
from pipeline.services.tools import Tools
from pipeline.domain import Role
from pipeline.portal.review import add_review_routes
from pipeline.services.passkeys import RelyingParty
from pipeline.services.sessions import SESSION_HOURS, end_session, session_user, start_session
from pipeline.services.tokens import authenticate
from pipeline.services.verify_pool import CheckCounter, JobRefused, PoolBusy, PoolLimits, VerifyPool
from pipeline.services.workspace import Workspace, open_workspace, utcnow
from pipeline.store.models import ClipRow, StatementRow, UserRow, VoiceRow

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
MAX_UPLOAD_BYTES: Final = 50 * 1024 * 1024
SIGN_IN_LIMIT: Final = (10, 60.0)  # failed sign-ins per client per minute
VERIFY_LIMIT: Final = (20, 60.0)
NOT_AVAILABLE: Final = "No released clip with that number in that format; see the list of clips."
DOWNLOAD_FORMATS: Final = tuple(clip_service.EXTENSIONS)  # videos and captions are made on first request
#: The Ogg's content credentials: Ogg cannot embed a C2PA manifest, so it travels as a sidecar file.
OGG_CREDENTIALS: Final = "ogg" + SIDECAR_SUFFIX
NASTALIQ_FONTS: Final = (Path("/usr/share/fonts/truetype/noto/NotoNastaliqUrdu-Regular.ttf"),
                         Path("/usr/share/fonts/opentype/noto/NotoNastaliqUrdu-Regular.ttf"))

# Leading bytes of the containers we accept; the name and the declared type count for nothing.
_MAGIC: Final = ((0, b"RIFF", 8, b"WAVE"), (0, b"OggS", None, None), (0, b"ID3", None, None),
                 (0, b"fLaC", None, None), (4, b"ftyp", None, None))


def sniff_audio(head: bytes) -> bool:
    """Whether `head` starts like a WAV, Ogg, MP3, FLAC or MP4/M4A file."""
    for off, magic, off2, magic2 in _MAGIC:
        if head[off:off + len(magic)] == magic and (off2 is None or head[off2:off2 + len(magic2)] == magic2):
            return True
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0  # an MPEG audio frame sync


def create_app(home: Path, pool_limits: PoolLimits | None = None, *, https: bool = False,
               origin: str | None = None, clock: Callable[[], datetime] = utcnow,
               accel_redirect: str | None = None) -> FastAPI:
    """The portal for the workspace at `home`.

    `https`: a TLS proxy in front serves it (cookies get Secure). `origin`: the address people
    open it at (e.g. https://review.example.org), which passkeys are bound to; without it the
    reviewers' passkey pages are off. `clock` gives the time for sessions and nonces. `pool_limits`:
    the bounds of the public checks' worker processes. `accel_redirect`: the internal location of a
    reverse proxy in front (nginx) that serves the workspace's blob folder; a checked download then
    names the file there (`X-Accel-Redirect`) and the proxy sends the bytes.
    """
    ws = open_workspace(home)
    accel = checked_accel_prefix(accel_redirect, ws.files.url) if accel_redirect else None
    rp = RelyingParty(origin.rstrip("/"), ws.config.organisation) if origin else None
    app = FastAPI(title="voxgate portal", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(UploadLimit, paths=("/verify", "/api/verify"), max_bytes=MAX_UPLOAD_BYTES)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    sign_in_limit, verify_limit = RateLimiter(*SIGN_IN_LIMIT), RateLimiter(*VERIFY_LIMIT)
    tools = Tools()  # the watermark model, loaded on the first personal copy and kept
    pool, counter = VerifyPool(home, pool_limits), CheckCounter()
    downloads = GroupCommit(partial(clip_service.record_hand_overs, ws))  # several downloads, one commit

    def page(request: Request, name: str, code: int = 200, **context: Any) -> HTMLResponse:
        csrf = request.cookies.get(CSRF_COOKIE) or new_csrf_token()
        lang = page_language(request)
        response = templates.TemplateResponse(request, name, {"organisation": ws.config.organisation, "csrf": csrf,
                                                               **language_context(lang), **context}, status_code=code)
        set_cookie(request, response, CSRF_COOKIE, csrf)
        if request.query_params.get("lang") == lang:  # a switch: remembered for the next pages
            response.set_cookie(LANG_COOKIE, lang, samesite="lax", max_age=365 * 86400)
        return response

    def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int | None = None) -> None:
        """HttpOnly and SameSite=Strict always; Secure whenever the portal is reached over HTTPS."""
        secure = https or request.url.scheme == "https"
        response.set_cookie(name, value, httponly=True, samesite="strict", secure=secure, max_age=max_age)

    @app.get("/fonts/nastaliq.ttf")
    def nastaliq_font() -> Response:
        font = nastaliq_font_path()
        if font is None:
            return Response(status_code=404)
        return FileResponse(font, media_type="font/ttf", headers={"Cache-Control": "public, max-age=86400"})

    def current_user(request: Request, roles: tuple[Role, ...] = (Role.DISTRIBUTOR,)) -> UserRow | None:
        try:
            return session_user(ws, request.cookies.get(SESSION_COOKIE), now=clock(), roles=roles)
        except PermissionError_:
            return None

    def client(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def error_page(request: Request, status: int, message: str) -> HTMLResponse:
        return page(request, "error.html", code=status, status=status, message=message, user=None)

    @app.get("/")
    def index(request: Request) -> Response:
        return RedirectResponse("/clips" if current_user(request) else "/login", status_code=303)

    @app.get("/login")
    def login_form(request: Request) -> Response:
        return page(request, "login.html", user=None)

    @app.post("/login")
    def login(request: Request, token: str = Form(""), csrf: str = Form("")) -> Response:
        if sign_in_limit.exceeded(client(request)):  # only failed attempts are counted, below
            return page(request, "login.html", code=429, user=None, error="Too many failed attempts; wait a minute.")
        if not csrf_ok(request, csrf):
            return page(request, "login.html", code=403, user=None, error="The form expired; reload and try again.")
        try:
            user = authenticate(ws, token.strip(), now=clock())
        except PermissionError_ as exc:
            sign_in_limit.allow(client(request))
            return page(request, "login.html", code=401, user=None, error=str(exc))
        session = start_session(ws, user.name, token=token.strip(), now=clock())
        response = RedirectResponse("/clips", status_code=303)
        set_cookie(request, response, SESSION_COOKIE, session, max_age=SESSION_HOURS * 3600)
        set_cookie(request, response, CSRF_COOKIE, new_csrf_token())  # rotate on sign-in
        log.info("portal sign-in: %s", user.name)
        return response

    @app.post("/logout")
    def logout(request: Request, csrf: str = Form("")) -> Response:
        if not csrf_ok(request, csrf):
            return error_page(request, 403, "The form expired; reload and try again.")
        end_session(ws, request.cookies.get(SESSION_COOKIE), now=clock())  # the old cookie stops working
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict", secure=https or request.url.scheme == "https")
        return response

    @app.get("/clips")
    def clip_list(request: Request) -> Response:
        user = current_user(request)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        return page(request, "clips.html", user=user.name, clips=released_clips(ws))

    @app.get("/clips/{clip_id}/download/{fmt}")
    def download(request: Request, clip_id: int, fmt: str) -> Response:
        user = current_user(request)
        if user is None:
            return error_page(request, 401, "Sign in first.")
        return serve_file(request, user, clip_id, fmt)

    def serve_file(request: Request, user: UserRow, clip_id: int, fmt: str) -> Response:
        if fmt not in (*DOWNLOAD_FORMATS, OGG_CREDENTIALS):  # never a path: a fixed list of names
            return error_page(request, 404, f"No format {fmt!r}.")
        credentials = fmt == OGG_CREDENTIALS
        try:
            handover = clip_service.open_download(ws, clip_id, "ogg" if credentials else fmt, actor=user.name,
                                                  now=clock(), tools=tools, group=downloads)
        except ConsentError as exc:
            return error_page(request, 410, str(exc))
        except (NotFoundError, InputError):
            # One answer for a draft, a discarded take and a clip that does not exist: a distributor
            # must not learn which numbers are drafts waiting for release.
            return error_page(request, 404, NOT_AVAILABLE)
        except StoreError as exc:  # a stored copy missing or damaged: refused, never served
            log.error("download of clip %s (%s) refused: %s", clip_id, fmt, exc)
            return error_page(request, 503, "This file cannot be handed out right now; the publisher has been told.")
        if credentials:  # the same audited hand-over of the person's Ogg copy; its manifest, not its audio
            if handover.sidecar_sha256 is None:
                return error_page(request, 404, NOT_AVAILABLE)
            return stored_file(ws, handover.sidecar_sha256, filename=handover.name + SIDECAR_SUFFIX,
                               media_type="application/c2pa", accel=accel)
        return stored_file(ws, handover.sha256, filename=handover.name, media_type=_MIME[fmt], accel=accel)

    @app.get("/api/clips")
    def api_clips(request: Request, since: str | None = None) -> Response:
        user = bearer_user(request)
        if isinstance(user, Response):
            return user
        items = released_clips(ws)
        if since:
            items = [c for c in items if c["released_at"] >= since]
        return JSONResponse(items)

    @app.get("/api/clips/{clip_id}/{fmt}")
    def api_download(request: Request, clip_id: int, fmt: str) -> Response:
        user = bearer_user(request)
        if isinstance(user, Response):
            return user
        return serve_file(request, user, clip_id, fmt)

    def bearer_user(request: Request) -> UserRow | Response:
        """The token's user, or the response to send: 401, or 429 after too many failures from one client."""
        scheme, _, raw = request.headers.get("authorization", "").partition(" ")
        if sign_in_limit.exceeded(client(request)):
            return JSONResponse({"error": "too many failed attempts; wait a minute"}, status_code=429)
        try:
            if scheme.lower() != "bearer":
                raise PermissionError_("Send the token as `Authorization: Bearer <token>`.")
            return authenticate(ws, raw.strip(), now=clock())
        except PermissionError_ as exc:
            sign_in_limit.allow(client(request))  # a failed bearer counts like a failed sign-in
            return JSONResponse({"error": str(exc)}, status_code=401)

    @app.get("/verify")
    def verify_form(request: Request) -> Response:
        user = current_user(request)
        return page(request, "verify.html", user=user.name if user else None)

    @app.post("/verify")
    async def verify_upload(request: Request, csrf: str = "") -> Response:
        """The public page's check; the form's CSRF token rides in its URL, so it is checked before the body."""
        user = current_user(request)
        name = user.name if user else None

        def refuse(code: int, error: str) -> Response:
            return page(request, "verify.html", code=code, user=name, error=error)

        if not verify_limit.allow(client(request)):
            return refuse(429, "Too many checks; wait a minute.")
        if not csrf_ok(request, csrf):
            return refuse(403, "The form expired; reload and try again.")
        with tempfile.TemporaryDirectory(prefix="voxgate-verify-") as tmp:
            dest = Path(tmp) / "upload"  # our name, never the client's
            form = await request.form(max_files=1, max_fields=4)
            upload = form.get("file")
            if not isinstance(upload, StarletteUpload):
                return refuse(400, "Choose an audio file to check.")
            if (problem := await _save_capped(upload, dest)) is not None:
                return refuse(*problem)
            try:
                result = await run_check(dest)
            except VoxgateError as exc:
                return refuse(_status_of(exc), str(exc))
        return page(request, "verify.html", user=name,
                    result=page_result(result, ws.config.organisation, page_language(request)))

    @app.post("/api/verify")
    async def api_verify(request: Request) -> Response:
        """The same check for scripts: the file as the raw request body; the verdict object as JSON."""
        if not verify_limit.allow(client(request)):
            return JSONResponse({"error": "too many checks; wait a minute"}, status_code=429)
        with tempfile.TemporaryDirectory(prefix="voxgate-verify-") as tmp:
            dest = Path(tmp) / "upload"
            if (problem := await _save_capped(request.stream(), dest)) is not None:
                return JSONResponse({"error": problem[1]}, status_code=problem[0])
            try:
                result = await run_check(dest)
            except VoxgateError as exc:
                return JSONResponse({"error": str(exc)}, status_code=_status_of(exc))
        return JSONResponse(result)

    async def run_check(path: Path) -> dict[str, Any]:
        """Verify in the pool (never on the event loop) and count the check for the audit log."""
        result = await pool.check(path)
        if counter.add(result["verdict"], utcnow()):
            await asyncio.to_thread(counter.flush, ws, utcnow())
        return result

    def close_pool() -> None:
        pool.close()
        counter.flush(ws, utcnow())

    app.router.on_startup.append(pool.start)  # workers load their models before the first upload
    app.router.on_shutdown.append(close_pool)

    add_review_routes(app, ws, page=page, set_cookie=set_cookie, clock=clock, rp=rp)
    app.state.workspace = ws
    app.state.tools = tools
    return app


def stored_file(ws: Workspace, digest: str, *, filename: str, media_type: str, accel: str | None = None) -> Response:
    """Hand over a blob the service has just checked and audited, without passing its bytes through here where
    the store can serve them: from an object store, a redirect to a presigned link that works for a minute;
    from a local folder behind nginx (`accel`, its internal location for the folder), an `X-Accel-Redirect`
    naming the blob there; else the file itself.

    Call it only after the token, consent and audit checks: the link is as good as the file.
    """
    link = ws.files.link(digest, filename=filename, media_type=media_type)
    if link is not None:
        return RedirectResponse(link, status_code=307, headers={"Cache-Control": "no-store"})
    if accel is not None:
        blob = ws.files.path(digest).relative_to(Path(ws.files.url)).as_posix()
        return Response(media_type=media_type, headers={
            "X-Accel-Redirect": accel + blob, "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="{filename}"'})  # our own names: voxgate-clip-7.ogg
    return FileResponse(ws.files.path(digest), filename=filename, media_type=media_type)


_ACCEL_PREFIX: Final = re.compile(r"^/(?:(?!\.\.?/)[A-Za-z0-9._~-]+/)+$")  # path segments, none of them . or ..


def checked_accel_prefix(prefix: str, files_url: str) -> str:
    """An nginx internal location for the blob folder, as `--accel-redirect` takes it (e.g. /_voxgate/blobs/)."""
    if not _ACCEL_PREFIX.match(prefix):
        raise InputError(f"--accel-redirect {prefix!r} is not a location path like /_voxgate/blobs/ "
                         "(starting and ending with /, letters, digits, . _ ~ - only).")
    if "://" in files_url:
        raise InputError(f"--accel-redirect serves blobs from a local folder; this workspace keeps them in "
                         f"{files_url}, whose downloads are redirected to presigned links already.")
    return prefix


_MIME: Final = {"wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg", "m4a": "audio/mp4",
                 "mp4-square": "video/mp4", "mp4-vertical": "video/mp4", "mp4-landscape": "video/mp4",
                 "srt": "application/x-subrip", "vtt": "text/vtt"}


def page_language(request: Request) -> str:
    """The page language: `?lang=`, then the `lang` cookie, then Accept-Language (pipeline.i18n)."""
    return choose_language(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE),
                           request.headers.get("accept-language"))


def language_context(lang: str) -> dict[str, Any]:
    """What every template needs to speak `lang`: `t(key, **kw)`, `lang`, `dir` and the switch's targets."""
    return {"lang": lang, "dir": direction(lang), "t": lambda key, **kw: t(lang, key, **kw), "has": lambda key: has(lang, key),
            "languages": [(code, LANGUAGE_NAMES[code]) for code in LANGUAGES if code != lang]}


def nastaliq_font_path() -> Path | None:
    """Noto Nastaliq Urdu as installed by setup (fonts-noto-core), served from this server, never a CDN."""
    return next((p for p in NASTALIQ_FONTS if p.is_file()), None)


def released_clips(ws: Workspace) -> list[dict[str, Any]]:
    """Released clips with what a distributor needs to see; revoked ones are left out."""
    with ws.sessions() as s:
        rows = s.scalars(select(ClipRow).where(ClipRow.state == "released").order_by(ClipRow.id.desc()))
        out = []
        for c in rows:
            if not released_standing(s, ws, c):  # the column is a claim; the signed records decide
                continue
            st = s.get(StatementRow, c.statement_id)
            rev = next(r for r in st.revisions if r.number == c.revision)
            out.append({
                "id": c.id, "statement": st.id, "voice": s.get(VoiceRow, c.voice_id).name, "language": st.language,
                "purpose": st.purpose, "channel": st.channel, "text": rev.text,
                "released_at": c.released_at.isoformat(timespec="seconds"),
                "duration": c.figures.get("duration_s"), "notice": c.labels.get("comment", ""),
                "formats": [*DOWNLOAD_FORMATS, OGG_CREDENTIALS],
            })
        return out


async def _save_capped(source: Any, dest: Path) -> tuple[int, str] | None:
    """Stream an upload (a form's file or the raw body) to `dest`, stopping at the cap; the refusal, if any.

    `UploadLimit` already refused a body whose declared length is too large, before it was read;
    this counts what actually arrives, in case a client lied.
    """
    size = 0
    with dest.open("wb") as out:
        chunks = source if not hasattr(source, "read") else _read_chunks(source)
        async for chunk in chunks:
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                return 413, f"The file is larger than {MAX_UPLOAD_BYTES >> 20} MB."
            out.write(chunk)
    with dest.open("rb") as f:
        if not sniff_audio(f.read(16)):
            return 415, "That is not an audio file we can read (WAV, MP3, Ogg, FLAC, MP4/M4A)."
    return None


async def _read_chunks(upload: Any) -> Any:
    while chunk := await upload.read(1 << 20):
        yield chunk


def _status_of(exc: VoxgateError) -> int:
    return {PoolBusy: 503, JobRefused: 413}.get(type(exc), 422)


_SUMMARY: Final = {
    "AUTHENTIC": "This is an authentic, released clip.",
    "DERIVED": "This derives from a released clip: re-encoded or cut, and most of it is the clip, in order.",
    "ALTERED": "Only part of this comes from a released clip; the rest does not. Treat it as a forgery built on a "
               "real clip: the clip's text and approvals do not vouch for it.",
    "REVOKED": "This names a clip whose voice's consent was revoked: do not share it.",
    "UNRELEASED": "This names a clip that was never released (a leaked draft).",
    "UNKNOWN": "No mark of ours was found: this is not a clip we published.",
}


def page_reasons(report: dict[str, Any], lang: str) -> list[str]:
    """The verdict's reasons in `lang`, from their message keys (the English lines where a report has none)."""
    from pipeline.i18n.messages import Message

    keyed = report.get("reason_keys")
    if not keyed:
        return list(report["reasons"])
    return [Message.from_dict(raw).text(lang) for raw in keyed]


def page_result(report: dict[str, Any], organisation: str, lang: str = "en") -> dict[str, Any]:
    """The public verdict object (`VerifyReport.as_dict(public=True)`) shaped for the page, its reasons in `lang`."""
    verdict, clip = report["verdict"], report["clip"]
    details: list[tuple[str, Any]] = [(f"reason {i + 1}", r) for i, r in enumerate(page_reasons(report, lang))]
    state = None if clip is None else t(lang, f"clip_state.{clip['state']}")
    if clip is not None and verdict == "ALTERED":  # the clip is only the source of a fragment
        details += [("genuine fragment from clip", clip["clip_id"]), ("its state", state),
                    ("its voice", clip["voice_name"])]
    elif clip is not None:
        details += [("clip", clip["clip_id"]), ("state", state),
                    ("voice", t(lang, "detail.voice_of", voice=clip["voice_name"], owner=clip["owner"])),
                    ("statement", clip["text"] if clip["text"] is not None else t(lang, "detail.not_released")),
                    # Stages, not names: the public must not learn who works for the publisher.
                    ("approvals", t(lang, "detail.list_separator").join(
                        t(lang, "detail.approval", stage=t(lang, f"stage.{a['stage']}"),
                          decision=t(lang, f"decision.{a['decision']}"),
                          signature=t(lang, "detail.signature_valid" if a["signature_valid"]
                                      else "detail.signature_invalid"))
                        for a in clip["approvals"])),
                    ("released", clip["released_at"] or ""), ("revoked", clip["revoked_at"] or "")]
        if clip["text"] is not None:
            details.append(("labels", f"{t(lang, 'clips.ai_label')}, {organisation}"))
    details += [("note (decoded)", v) for k, v in report["notes"].items() if k == "decoded"]
    timeline = report.get("timeline")
    return {"verdict": verdict, "summary": _SUMMARY[verdict], "details": details, "timeline": timeline}
