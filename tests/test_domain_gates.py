"""The gates in the pure domain core: consent status, revocations bound to the model, a clip's standing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pipeline.domain import (
    ClipEvidence,
    ClipState,
    ConsentKind,
    ConsentStatus,
    Revocation,
    clip_standing,
    consent_status,
    revocation_for,
    set_digest,
)
from test_domain_policy import NOW, consent

MODEL, OTHER = "m" * 64, "o" * 64


@pytest.mark.parametrize(("changes", "expected"), [
    ({}, ConsentStatus.ACTIVE),
    ({"revoked_at": NOW - timedelta(seconds=1)}, ConsentStatus.REVOKED),
    # A revocation dated in the future is not in force yet; main's two readings disagreed on this one.
    ({"revoked_at": NOW + timedelta(days=1)}, ConsentStatus.ACTIVE),
    ({"valid_until": NOW}, ConsentStatus.EXPIRED),
    ({"valid_from": NOW + timedelta(seconds=1)}, ConsentStatus.NOT_YET_VALID),
])
def test_consent_status_has_one_reading(changes, expected) -> None:
    assert consent_status(consent(**changes), NOW) is expected


def revocation(**over) -> Revocation:
    base = dict(voice_id="demo", owner="Joe", model_sha256=MODEL, consent_sha256="c" * 64, reason="withdrawn",
                revoker="joe", at=NOW - timedelta(days=1))
    return Revocation(**{**base, **over})


def binds(voice_id: str, model: str, kind: ConsentKind, created_delta: timedelta) -> bool:
    return revocation_for([revocation()], voice_id=voice_id, model_sha256=model, consent=consent(voice_id=voice_id),
                          consent_kind=kind, consent_created_at=NOW - timedelta(days=1) + created_delta) is not None


def test_a_revocation_binds_the_model_under_any_id_and_only_a_later_enrollment_lifts_it() -> None:
    assert binds("demo", MODEL, ConsentKind.PROFILE, timedelta(days=-5))
    assert binds("demo-again", MODEL, ConsentKind.PROFILE, timedelta(days=1))  # same model, new id, admin's consent
    assert binds("demo-again", MODEL, ConsentKind.ENROLLMENT, timedelta(days=1))  # an enrollment of ANOTHER voice id
    assert binds("demo", OTHER, ConsentKind.RENEWAL, timedelta(days=1))  # the revoked voice id, whatever its model
    assert binds("demo", MODEL, ConsentKind.ENROLLMENT, timedelta(days=-1))  # enrolled before the revocation
    assert not binds("demo", MODEL, ConsentKind.ENROLLMENT, timedelta(days=1))  # the owner enrolled again
    assert not binds("other", OTHER, ConsentKind.PROFILE, timedelta(days=1))


def test_a_revocation_record_is_canonical_bytes() -> None:
    r = revocation()
    assert r.to_bytes() == revocation().to_bytes() and b'"model_sha256":"' + MODEL.encode() in r.to_bytes()
    assert r.to_bytes() != revocation(owner="Somebody Else").to_bytes()


def test_the_set_digest_ignores_order_and_duplicates_but_not_a_missing_item() -> None:
    assert set_digest(["b", "a", "a"]) == set_digest(["a", "b"])
    assert set_digest(["a"]) != set_digest(["a", "b"]) != set_digest([])


def evidence(**over) -> ClipEvidence:
    base = dict(clip_id=7, claimed=ClipState.RELEASED, text_complete=True, audio_complete=True, revoked=False,
                consent_problem=None)
    return ClipEvidence(**{**base, **over})


@pytest.mark.parametrize(("changes", "state"), [
    ({}, ClipState.RELEASED),
    ({"audio_complete": False}, ClipState.DRAFT),  # a draft marked released by hand
    ({"text_complete": False}, ClipState.DRAFT),
    ({"consent_problem": "it has no signed record"}, ClipState.DRAFT),
    ({"revoked": True}, ClipState.REVOKED),  # the column says released, a revocation record says otherwise
    ({"claimed": ClipState.REVOKED}, ClipState.REVOKED),  # the column can only make things worse
    ({"claimed": ClipState.DRAFT}, ClipState.DRAFT),  # complete records never promote a draft
    ({"claimed": ClipState.SUPERSEDED}, ClipState.SUPERSEDED),
])
def test_a_clip_stands_only_as_the_signed_records_allow(changes, state) -> None:
    found = clip_standing(evidence(**changes))
    assert found.state is state and found.released is (state is ClipState.RELEASED)
    if state is ClipState.DRAFT and changes.get("claimed") is None:
        assert "marked released" in found.reason
