"""The statement state machine, written as data.

A table of allowed transitions plus `next_state`, which returns the new state
or raises `TransitionError`. Nothing here touches a database, a file or the
clock: services look up the current state, ask this module, then persist.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from pipeline.errors import TransitionError


class State(str, enum.Enum):
    SUBMITTED = "submitted"
    IN_REVIEW = "in_review"
    TEXT_APPROVED = "text_approved"
    RENDERING = "rendering"
    DRAFT_READY = "draft_ready"
    AUDIO_APPROVED = "audio_approved"
    RELEASED = "released"
    CHANGES_REQUESTED = "changes_requested"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    REVOKED = "revoked"


class Event(str, enum.Enum):
    SUBMITTED = "submitted"  # a new statement: the only event with no state before it
    REVIEW_STARTED = "review_started"  # a text approval was recorded, more are needed
    TEXT_APPROVED = "text_approved"  # the text stage's policy is now satisfied
    CHANGES_REQUESTED = "changes_requested"
    REJECTED = "rejected"
    REVISED = "revised"  # a new revision voids every earlier approval
    WITHDRAWN = "withdrawn"
    RENDER_CLAIMED = "render_claimed"  # a worker took the render job
    RENDER_FAILED = "render_failed"  # back to the queue; nothing was registered
    RENDERED = "rendered"
    AUDIO_REVIEWED = "audio_reviewed"  # an audio approval was recorded, more are needed
    AUDIO_APPROVED = "audio_approved"
    RELEASED = "released"
    CONSENT_REVOKED = "consent_revoked"


S, E = State, Event

#: Terminal states: nothing moves a statement out of them.
TERMINAL: Final = frozenset({S.REJECTED, S.WITHDRAWN, S.REVOKED})

#: Editable states: the submitter may still revise the text.
_REVISABLE = (S.SUBMITTED, S.IN_REVIEW, S.CHANGES_REQUESTED, S.TEXT_APPROVED, S.DRAFT_READY)
_LIVE = tuple(s for s in S if s not in TERMINAL)

#: `(None, SUBMITTED)`: a statement's first state. Every other key starts from a state.
TRANSITIONS: Final[Mapping[tuple[State | None, Event], State]] = {
    (None, E.SUBMITTED): S.SUBMITTED,
    (S.SUBMITTED, E.REVIEW_STARTED): S.IN_REVIEW,
    (S.IN_REVIEW, E.REVIEW_STARTED): S.IN_REVIEW,
    (S.SUBMITTED, E.TEXT_APPROVED): S.TEXT_APPROVED,
    (S.IN_REVIEW, E.TEXT_APPROVED): S.TEXT_APPROVED,
    (S.SUBMITTED, E.CHANGES_REQUESTED): S.CHANGES_REQUESTED,
    (S.IN_REVIEW, E.CHANGES_REQUESTED): S.CHANGES_REQUESTED,
    (S.DRAFT_READY, E.CHANGES_REQUESTED): S.CHANGES_REQUESTED,
    (S.SUBMITTED, E.REJECTED): S.REJECTED,
    (S.IN_REVIEW, E.REJECTED): S.REJECTED,
    (S.DRAFT_READY, E.REJECTED): S.REJECTED,
    **{(s, E.REVISED): S.SUBMITTED for s in _REVISABLE},
    **{(s, E.WITHDRAWN): S.WITHDRAWN for s in _LIVE if s is not S.RELEASED},
    (S.TEXT_APPROVED, E.RENDER_CLAIMED): S.RENDERING,
    (S.RENDERING, E.RENDER_FAILED): S.TEXT_APPROVED,
    (S.RENDERING, E.RENDERED): S.DRAFT_READY,
    (S.DRAFT_READY, E.AUDIO_REVIEWED): S.DRAFT_READY,
    (S.DRAFT_READY, E.AUDIO_APPROVED): S.AUDIO_APPROVED,
    (S.AUDIO_APPROVED, E.RELEASED): S.RELEASED,
    **{(s, E.CONSENT_REVOKED): S.REVOKED for s in _LIVE},
}

#: What to tell an operator who tries an event in a state that does not allow it.
_HINTS: Final[Mapping[State, str]] = {
    S.SUBMITTED: "it is waiting for text review (`voxgate review approve {id}`)",
    S.IN_REVIEW: "its text review is still open (`voxgate review show {id}`)",
    S.TEXT_APPROVED: "its text is approved and waiting to be rendered (`voxgate render {id}`)",
    S.RENDERING: "it is being rendered right now; wait for the render to finish",
    S.DRAFT_READY: "its rendered draft is waiting for audio sign-off (`voxgate review approve {id}`)",
    S.AUDIO_APPROVED: "its audio is approved and waiting for release (`voxgate release {id}`)",
    S.RELEASED: "it is already released",
    S.CHANGES_REQUESTED: "changes were requested; revise it first (`voxgate revise {id} FILE`)",
    S.REJECTED: "it was rejected; submit a new statement instead",
    S.WITHDRAWN: "it was withdrawn; submit a new statement instead",
    S.REVOKED: "the voice's consent was revoked; it can never be rendered or released",
}


_VERBS: Final[Mapping[Event, str]] = {
    E.SUBMITTED: "submitted",
    E.REVIEW_STARTED: "reviewed",
    E.TEXT_APPROVED: "approved",
    E.CHANGES_REQUESTED: "sent back for changes",
    E.REJECTED: "rejected",
    E.REVISED: "revised",
    E.WITHDRAWN: "withdrawn",
    E.RENDER_CLAIMED: "rendered",
    E.RENDER_FAILED: "returned to the render queue",
    E.RENDERED: "marked rendered",
    E.AUDIO_REVIEWED: "audio-reviewed",
    E.AUDIO_APPROVED: "audio-approved",
    E.RELEASED: "released",
    E.CONSENT_REVOKED: "revoked",
}


def can(state: State | None, event: Event) -> bool:
    """Whether `event` is allowed in `state`."""
    return (state, event) in TRANSITIONS


def next_state(state: State | None, event: Event, *, statement_id: int | str = "?") -> State:
    """The state after `event` (`state` None: a new statement), or `TransitionError` saying what to do instead."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        if state is None:
            raise TransitionError(f"A new statement can only be submitted, not {_VERBS[event]}.") from None
        hint = _HINTS[state].format(id=statement_id)
        raise TransitionError(
            f"Statement {statement_id} cannot be {_VERBS[event]} now: {hint}."
        ) from None
