"""The clip state machine, written as data beside the statement's (`pipeline.domain.states`).

A clip's `state` column is a cache for listing: whether a clip may be handed
out or called authentic is decided by `pipeline.domain.gates` from the signed
records. This table says only which moves are allowed at all.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from pipeline.errors import TransitionError


class ClipState(str, enum.Enum):
    RENDERING = "rendering"  # a worker holds the claim; nothing is registered yet
    FAILED = "failed"  # the render stopped; nothing was registered
    DRAFT = "draft"  # rendered and registered, waiting for audio sign-off
    SUPERSEDED = "superseded"  # a revision, a rejection or a request for changes replaced it
    RELEASED = "released"
    REVOKED = "revoked"  # its voice's consent was revoked


class ClipEvent(str, enum.Enum):
    FAILED = "failed"
    REGISTERED = "registered"
    SUPERSEDED = "superseded"
    RELEASED = "released"
    REVOKED = "revoked"


C, CE = ClipState, ClipEvent

CLIP_TRANSITIONS: Final[Mapping[tuple[ClipState, ClipEvent], ClipState]] = {
    (C.RENDERING, CE.FAILED): C.FAILED,
    (C.RENDERING, CE.REGISTERED): C.DRAFT,
    (C.DRAFT, CE.SUPERSEDED): C.SUPERSEDED,
    (C.DRAFT, CE.RELEASED): C.RELEASED,
    (C.DRAFT, CE.REVOKED): C.REVOKED,
    (C.RELEASED, CE.REVOKED): C.REVOKED,
}


def next_clip_state(state: ClipState, event: ClipEvent, *, clip_id: int | str = "?") -> ClipState:
    """The clip's state after `event`, or `TransitionError`."""
    try:
        return CLIP_TRANSITIONS[(state, event)]
    except KeyError:
        raise TransitionError(f"Clip {clip_id} is {state.value}; it cannot be {event.value} now.") from None
