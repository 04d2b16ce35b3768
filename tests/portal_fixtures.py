"""A workspace with one released and one revoked clip, and the portal served on loopback by a real uvicorn."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import DEMO_VOICE, ORG, PEOPLE, own_model_profile
from pipeline.domain import Decision
from pipeline.services import review, statements, users, voices
from pipeline.services.render import render_statement
from pipeline.services.tools import Tools
from pipeline.services.tokens import issue_token
from pipeline.services.workspace import Workspace, init_workspace, utcnow
from ports import free_port

TEXT = "We ask for an open trial, and we thank everyone who stood with us."


@dataclass
class Released:
    ws: Workspace
    clip_id: int
    revoked_clip_id: int
    token: str


def build_released(root: Path, database_url: str | None = None, files_url: str | None = None) -> Released:
    ws, _ = init_workspace(root / "ws", ORG, now=utcnow(), database_url=database_url, files_url=files_url)
    for name, role in PEOPLE.items():
        users.add_user_from_keys(ws, name, role, actor="ops", now=utcnow())
    voices.add_voice(ws, DEMO_VOICE, actor="ops", now=utcnow())
    voices.add_voice(ws, own_model_profile(root, "second"), actor="ops", now=utcnow())
    tools = Tools()
    ids = []
    for voice in ("demo", "second"):
        sid = statements.submit(ws, voice_id=voice, purpose="public-statement", channel="social", language="en",
                                text=TEXT, actor="sam", now=utcnow()).id
        review.decide(ws, sid, Decision.APPROVE, actor="rita", now=utcnow())
        review.decide(ws, sid, Decision.APPROVE, actor="joe-delegate", now=utcnow())
        ids.append(render_statement(ws, sid, tools, actor="rita", now=utcnow()).clip_id)
        review.decide(ws, sid, Decision.APPROVE, actor="ravi", now=utcnow())
    voices.revoke_consent(ws, "second", "the owner withdrew consent", actor="joe-delegate", now=utcnow())
    token = issue_token(ws, "dana", actor="ops", now=utcnow())
    return Released(ws, ids[0], ids[1], token)


@contextmanager
def serving(home: Path, *, host: str = "127.0.0.1", trusted_proxies: tuple[str, ...] = (), port: int | None = None,
            **app_options: Any) -> Iterator[str]:
    """Run the portal in a real uvicorn server, configured as `voxgate serve` does, on a free port; yield its URL."""
    import uvicorn

    from pipeline.portal.app import create_app
    from pipeline.portal.server import server_config

    port = port or free_port()
    server = uvicorn.Server(server_config(create_app(home, **app_options), host=host, port=port,
                                          trusted_proxies=trusted_proxies))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the portal did not start")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class UnderReview:
    """Statements at every stage a passkey reviewer meets, beside one released clip."""

    ws: Workspace
    released_clip: int  # released, with a premaster in the store
    draft_clip: int  # statement `audio` is draft_ready with this draft
    audio: int  # draft_ready: audio sign-off by a reviewer
    revised: int  # submitted at revision 2 (changes requested on revision 1)
    other: int  # submitted, untouched: the target of a replayed approval
    token: str  # dana's distributor token


REVISION_1 = "We ask for an open trial, and we thank everyone who stood with us."
REVISION_2 = "We ask for a public trial, and we thank everyone who stood with us today."


def build_under_review(root: Path) -> UnderReview:
    ws, _ = init_workspace(root / "ws", ORG, now=utcnow())
    for name, role in PEOPLE.items():
        users.add_user_from_keys(ws, name, role, actor="ops", now=utcnow())
    voices.add_voice(ws, DEMO_VOICE, actor="ops", now=utcnow())
    tools = Tools()

    def submit(text: str) -> int:
        return statements.submit(ws, voice_id="demo", purpose="public-statement", channel="social", language="en",
                                 text=text, actor="sam", now=utcnow()).id

    def to_draft(sid: int) -> int:
        review.decide(ws, sid, Decision.APPROVE, actor="rita", now=utcnow())
        review.decide(ws, sid, Decision.APPROVE, actor="joe-delegate", now=utcnow())
        return render_statement(ws, sid, tools, actor="rita", now=utcnow()).clip_id

    released = submit(TEXT)
    released_clip = to_draft(released)
    review.decide(ws, released, Decision.APPROVE, actor="ravi", now=utcnow())
    audio = submit("We will speak again after the hearing on Monday.")
    draft = to_draft(audio)
    revised = submit(REVISION_1)
    review.decide(ws, revised, Decision.REQUEST_CHANGES, comment="say public", actor="rita", now=utcnow())
    statements.revise(ws, revised, REVISION_2, actor="sam", now=utcnow())
    other = submit("Thank you for standing with us this week.")
    token = issue_token(ws, "dana", actor="ops", now=utcnow())
    return UnderReview(ws, released_clip, draft, audio, revised, other, token)
