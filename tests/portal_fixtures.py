"""A workspace with one released and one revoked clip, and the portal served on loopback by a real uvicorn."""

from __future__ import annotations

import socket
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

TEXT = "We ask for an open trial, and we thank everyone who stood with us."


@dataclass
class Released:
    ws: Workspace
    clip_id: int
    revoked_clip_id: int
    token: str


def build_released(root: Path, database_url: str | None = None) -> Released:
    ws, _ = init_workspace(root / "ws", ORG, now=utcnow(), database_url=database_url)
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(home: Path, **options: Any) -> Iterator[str]:
    """Run the portal in a real uvicorn server on a free loopback port; yield its base URL."""
    import uvicorn

    from pipeline.portal.app import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(home, **options), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the portal did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
