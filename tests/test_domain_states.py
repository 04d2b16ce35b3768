"""The statement state machine: the table, its messages, and properties over every event sequence."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.domain import TERMINAL, TRANSITIONS, Event, State, can, next_state
from pipeline.errors import TransitionError

HAPPY_PATH = [
    (State.SUBMITTED, Event.REVIEW_STARTED, State.IN_REVIEW),
    (State.IN_REVIEW, Event.TEXT_APPROVED, State.TEXT_APPROVED),
    (State.TEXT_APPROVED, Event.RENDER_CLAIMED, State.RENDERING),
    (State.RENDERING, Event.RENDERED, State.DRAFT_READY),
    (State.DRAFT_READY, Event.AUDIO_APPROVED, State.AUDIO_APPROVED),
    (State.AUDIO_APPROVED, Event.RELEASED, State.RELEASED),
]


@pytest.mark.parametrize(("state", "event", "expected"), HAPPY_PATH)
def test_happy_path_transitions(state: State, event: Event, expected: State) -> None:
    assert next_state(state, event) is expected


@pytest.mark.parametrize("state", sorted(TERMINAL, key=lambda s: s.value))
@pytest.mark.parametrize("event", list(Event))
def test_terminal_states_never_move(state: State, event: Event) -> None:
    assert not can(state, event)
    with pytest.raises(TransitionError):
        next_state(state, event)


@pytest.mark.parametrize("state", [s for s in State if s not in TERMINAL])
def test_consent_revocation_reaches_every_live_state(state: State) -> None:
    assert next_state(state, Event.CONSENT_REVOKED) is State.REVOKED


@pytest.mark.parametrize("state", [State.RELEASED, State.RENDERING, State.AUDIO_APPROVED])
def test_no_revision_once_audio_is_out_of_the_editors_hands(state: State) -> None:
    # A released or in-flight clip must never silently change its words.
    assert not can(state, Event.REVISED)


def test_refusal_says_what_to_do_next() -> None:
    with pytest.raises(TransitionError, match=r"Statement 7 cannot be released now: .*voxgate review approve 7"):
        next_state(State.SUBMITTED, Event.RELEASED, statement_id=7)


def test_every_state_has_a_hint_and_every_event_a_verb() -> None:
    for state in State:
        for event in Event:
            if not can(state, event):
                with pytest.raises(TransitionError) as info:
                    next_state(state, event, statement_id=1)
                assert "Statement 1 cannot be" in str(info.value)


# What must hold before release, in order, since the last revision.
REQUIRED_BEFORE_RELEASE = [Event.TEXT_APPROVED, Event.RENDER_CLAIMED, Event.RENDERED, Event.AUDIO_APPROVED]


@given(st.lists(st.sampled_from(list(Event)), max_size=40))
def test_release_only_after_text_render_audio_since_last_revision(events: list[Event]) -> None:
    """Whatever events arrive, `released` is reached only through every stage, after the last revision."""
    state, accepted = State.SUBMITTED, []
    for event in events:
        if can(state, event):
            state = next_state(state, event)
            accepted.append(event)
            if state is State.RELEASED:
                since = accepted[max((i for i, e in enumerate(accepted) if e is Event.REVISED), default=-1) + 1:]
                it = iter(since)
                assert all(step in it for step in REQUIRED_BEFORE_RELEASE), since
        else:
            with pytest.raises(TransitionError):
                next_state(state, event)


def test_table_only_names_known_states() -> None:
    for (state, event), target in TRANSITIONS.items():
        # None is the one "before" state: a new statement, which can only be submitted.
        assert (state is None) == (event is Event.SUBMITTED)
        assert (state is None or isinstance(state, State)) and isinstance(event, Event) and isinstance(target, State)
        assert state not in TERMINAL


def test_a_new_statement_can_only_be_submitted() -> None:
    assert next_state(None, Event.SUBMITTED) is State.SUBMITTED
    for event in Event:
        if event is not Event.SUBMITTED:
            with pytest.raises(TransitionError, match="can only be submitted"):
                next_state(None, event)
    for state in State:
        with pytest.raises(TransitionError):
            next_state(state, Event.SUBMITTED)


def test_clip_states_move_only_along_their_table() -> None:
    from pipeline.domain import CLIP_TRANSITIONS, ClipEvent, ClipState, next_clip_state

    for state in ClipState:
        for event in ClipEvent:
            if (state, event) in CLIP_TRANSITIONS:
                assert next_clip_state(state, event) is CLIP_TRANSITIONS[(state, event)]
            else:
                with pytest.raises(TransitionError):
                    next_clip_state(state, event)
    # Nothing leaves revoked, and nothing reaches released except a draft.
    assert not any(s is ClipState.REVOKED for s, _ in CLIP_TRANSITIONS)
    assert {s for (s, _), t in CLIP_TRANSITIONS.items() if t is ClipState.RELEASED} == {ClipState.DRAFT}
