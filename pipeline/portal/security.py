"""Web hardening for the portal: security headers, CSRF tokens, a rate limiter and an upload size limit.

Kept apart from the routes so each rule can be read (and tested) on its own.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import defaultdict, deque
from typing import Any, Final

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse

CSRF_COOKIE: Final = "vx_csrf"
SESSION_COOKIE: Final = "vx_session"

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; font-src 'self'; img-src 'self'; "
        "media-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


class SecurityHeaders:
    """`SECURITY_HEADERS` on every response, and `Cache-Control: no-store` on all but the stylesheet.

    A plain ASGI middleware: it adds to the response's head as it passes and leaves the body alone
    (no task and no buffering per request, which measurably slowed every download).
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = scope["path"] == "/static/style.css"

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if not cacheable:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(request: Request, submitted: str | None) -> bool:
    """Double-submit check: the form's token must equal the cookie's, compared in constant time."""
    cookie = request.cookies.get(CSRF_COOKIE)
    return bool(cookie and submitted and hmac.compare_digest(cookie, submitted))


class RateLimiter:
    """At most `limit` events per `window_s` for each key (a client address), in memory.

    A sliding window: simple, exact, and enough for one portal process on loopback or
    behind a reverse proxy that passes the client address.
    """

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self._events: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def allow(self, key: str, now: float | None = None) -> bool:
        """Record one event for `key`; False (and nothing recorded) when the limit is already reached."""
        if self.exceeded(key, now):
            return False
        with self._lock:
            self._events[key].append(time.monotonic() if now is None else now)
        return True

    def exceeded(self, key: str, now: float | None = None) -> bool:
        """Whether `key` has used up its events in the current window (records nothing)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            events = self._events[key]
            while events and events[0] <= now - self.window_s:
                events.popleft()
            return len(events) >= self.limit


class UploadLimit:
    """Refuse an upload to `paths` before its body is read: 411 without a length, 413 over `max_bytes`.

    A plain ASGI middleware, so nothing of the body is received (let alone written to disk) when the
    declared length is too large; the handler still counts what arrives against the same cap.
    """

    def __init__(self, app: Any, *, paths: tuple[str, ...], max_bytes: int) -> None:
        self.app, self.paths, self.max_bytes = app, paths, max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths:
            headers = dict(scope["headers"])
            length = headers.get(b"content-length", b"").decode("latin-1")
            problem = None
            if not length.isdigit():
                problem = 411, "Send the file with a Content-Length header."
            elif int(length) > self.max_bytes:
                problem = 413, f"The file is larger than {self.max_bytes >> 20} MB."
            if problem is not None:
                code, message = problem
                response = (JSONResponse({"error": message}, status_code=code) if scope["path"].startswith("/api/")
                            else PlainTextResponse(message, status_code=code))
                response.headers["Connection"] = "close"  # do not wait for the rest of the body
                for name, value in SECURITY_HEADERS.items():
                    response.headers.setdefault(name, value)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
