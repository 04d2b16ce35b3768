"""Consent gate and approval counting: each refusal, and a property over random approval sets."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.domain import (
    Approval,
    ApprovalPolicyKind,
    Consent,
    Decision,
    ReviewPolicy,
    Scope,
    Stage,
    State,
    Statement,
    approval_payload,
    check_consent,
    check_may_review,
    requirement,
    tally,
)
from pipeline.errors import ApprovalError, ConsentError
from pipeline.identity.keys import public_key_of, verify

NOW = datetime(2027, 6, 1, 12, tzinfo=timezone.utc)
KEYS = {name: Ed25519PrivateKey.generate() for name in ("sam", "rita", "ravi", "ria", "joe", "mallory")}
PUBLIC = {name: public_key_of(k) for name, k in KEYS.items()}
H1, H2 = "a" * 64, "b" * 64


def consent(**over) -> Consent:
    base = dict(voice_id="demo", owner="Joe", organisation="Org",
                scope=Scope(frozenset({"public-statement"}), frozenset({"social"}), frozenset({"en"})),
                valid_from=NOW - timedelta(days=30), valid_until=NOW + timedelta(days=30),
                policy=ApprovalPolicyKind.PER_STATEMENT, approvers=frozenset({"joe"}))
    return Consent(**{**base, **over})


def statement(**over) -> Statement:
    base = dict(id=1, voice_id="demo", language="en", purpose="public-statement", channel="social", submitter="sam",
                state=State.IN_REVIEW, revision=1, revision_hash=H1, authors=frozenset({"sam"}))
    return Statement(**{**base, **over})


def signed(reviewer: str, stage: Stage, subject: str = H1, decision: Decision = Decision.APPROVE,
           signer: str | None = None) -> Approval:
    payload = approval_payload(1, stage, subject, reviewer, decision)
    return Approval(1, stage, subject, reviewer, decision, KEYS[signer or reviewer].sign(payload))


def verifier(a: Approval) -> bool:
    return verify(PUBLIC[a.reviewer], a.signature, approval_payload(a.statement_id, a.stage, a.subject_hash, a.reviewer, a.decision))


def test_consent_inside_scope_and_window_passes() -> None:
    check_consent(consent(), statement(), NOW)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"revoked_at": NOW - timedelta(seconds=1), "revoked_reason": "owner withdrew"}, "revoked"),
        ({"valid_until": NOW}, "expired"),  # the window is half-open: the end instant is outside
        ({"valid_from": NOW + timedelta(days=1)}, "not valid until"),
    ],
)
def test_consent_refused_outside_its_life(change: dict, message: str) -> None:
    with pytest.raises(ConsentError, match=message):
        check_consent(consent(**change), statement(), NOW)


@pytest.mark.parametrize(
    ("field", "value"), [("purpose", "advertising"), ("channel", "tv"), ("language", "ur")]
)
def test_consent_refused_outside_scope(field: str, value: str) -> None:
    with pytest.raises(ConsentError, match=f"The {field} '{value}'"):
        check_consent(consent(), statement(**{field: value}), NOW)


def test_no_consent_on_file_is_refused() -> None:
    with pytest.raises(ConsentError, match="no consent on file"):
        check_consent(None, statement(), NOW)


def _tally(approvals, stage=Stage.TEXT, subject=H1, policy=ReviewPolicy(), c=None, st_=None):
    st_ = st_ or statement()
    return tally(approvals, statement=st_, stage=stage, subject_hash=subject,
                 req=requirement(stage, policy, c or consent()), verify=verifier)


def test_text_needs_reviewer_and_owner_under_per_statement_policy() -> None:
    assert not _tally([signed("rita", Stage.TEXT)]).complete
    assert "owner" in _tally([signed("rita", Stage.TEXT)]).missing()
    assert _tally([signed("rita", Stage.TEXT), signed("joe", Stage.OWNER)]).complete


def test_blanket_policy_needs_no_owner_approval() -> None:
    assert _tally([signed("rita", Stage.TEXT)], c=consent(policy=ApprovalPolicyKind.BLANKET)).complete


@pytest.mark.parametrize(
    "bad",
    [
        signed("ravi", Stage.TEXT, signer="mallory"),  # forged: signed with someone else's key
        signed("ravi", Stage.TEXT, subject=H2),  # stale: signs an earlier revision
        signed("sam", Stage.TEXT),  # the author approving their own statement
        signed("ravi", Stage.TEXT, decision=Decision.REQUEST_CHANGES),  # not an approval
        signed("ravi", Stage.AUDIO),  # the wrong stage
    ],
    ids=["forged", "stale", "self", "not-approve", "wrong-stage"],
)
def test_invalid_approvals_count_as_none(bad: Approval) -> None:
    t = _tally([signed("joe", Stage.OWNER), bad])
    assert not t.complete and not t.reviewers


def test_owner_approval_from_someone_not_named_does_not_count() -> None:
    assert not _tally([signed("rita", Stage.TEXT), signed("ravi", Stage.OWNER)]).complete


def test_two_reviewers_policy_needs_two_distinct_people() -> None:
    policy = ReviewPolicy(text_reviewers=2)
    same_twice = [signed("rita", Stage.TEXT), signed("rita", Stage.TEXT), signed("joe", Stage.OWNER)]
    assert not _tally(same_twice, policy=policy).complete
    assert _tally([*same_twice, signed("ravi", Stage.TEXT)], policy=policy).complete


def test_author_cannot_review_and_nobody_decides_twice() -> None:
    with pytest.raises(ApprovalError, match="submitted or revised"):
        check_may_review(statement(), "sam", Stage.TEXT, [], H1)
    with pytest.raises(ApprovalError, match="already recorded"):
        check_may_review(statement(), "rita", Stage.TEXT, [signed("rita", Stage.TEXT)], H1)
    check_may_review(statement(), "rita", Stage.TEXT, [signed("rita", Stage.TEXT, subject=H2)], H1)


approval_strategy = st.builds(
    signed,
    reviewer=st.sampled_from(sorted(KEYS)),
    stage=st.sampled_from(list(Stage)),
    subject=st.sampled_from([H1, H2]),
    decision=st.sampled_from(list(Decision)),
    signer=st.one_of(st.none(), st.sampled_from(sorted(KEYS))),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(approval_strategy, max_size=10), st.integers(1, 3), st.sampled_from(list(ApprovalPolicyKind)))
def test_complete_only_with_enough_valid_current_non_author_approvals(approvals, needed, kind) -> None:
    c = consent(policy=kind)
    t = _tally(approvals, policy=ReviewPolicy(text_reviewers=needed), c=c)
    valid = [a for a in approvals if a.decision is Decision.APPROVE and a.subject_hash == H1
             and a.reviewer != "sam" and verifier(a)]
    reviewers = {a.reviewer for a in valid if a.stage is Stage.TEXT}
    owners = {a.reviewer for a in valid if a.stage is Stage.OWNER and a.reviewer in c.approvers}
    # A signed rejection or request for changes of this very text vetoes it (deleting one must not revive it).
    vetoed = any(a.decision is not Decision.APPROVE and a.subject_hash == H1 and a.stage is not Stage.AUDIO
                 and a.reviewer != "sam" and verifier(a) for a in approvals)
    expected = not vetoed and len(reviewers) >= needed and (kind is ApprovalPolicyKind.BLANKET or bool(owners))
    assert t.complete is expected


def test_audio_approval_counts_without_listening_where_a_recogniser_checked_the_words() -> None:
    req = requirement(Stage.AUDIO, ReviewPolicy(), consent(), recogniser_covers=True)
    t = tally([signed("rita", Stage.AUDIO)], statement=statement(), stage=Stage.AUDIO, subject_hash=H1, req=req,
              verify=verifier)
    assert t.complete


def test_audio_approval_counts_only_with_listened_where_no_recogniser_covers_the_language() -> None:
    # issue 13: nothing compared an Urdu draft with its text, so the reviewer's ears are the check
    req = requirement(Stage.AUDIO, ReviewPolicy(), consent(), recogniser_covers=False)
    unheard = signed("rita", Stage.AUDIO)
    heard = Approval(**{**unheard.__dict__, "listened": True})
    kw = dict(statement=statement(language="ur"), stage=Stage.AUDIO, subject_hash=H1, req=req, verify=verifier)
    t = tally([unheard], **kw)
    assert not t.complete and "listened to the whole draft" in t.missing()
    assert tally([heard], **kw).complete
    # text stages never need it
    assert requirement(Stage.TEXT, ReviewPolicy(), consent(), recogniser_covers=False).must_listen is False


def test_a_remembered_verification_never_vouches_for_other_bytes() -> None:
    """Verifications are remembered for the exact bytes verified; any other byte is verified afresh."""
    key = Ed25519PrivateKey.generate()
    public, message = public_key_of(key), b"release clip 7"
    signature = key.sign(message)
    assert verify(public, signature, message) and verify(public, signature, message)  # the second: remembered
    assert not verify(public, signature, b"release clip 8")  # another payload
    assert not verify(public, bytes([signature[0] ^ 1]) + signature[1:], message)  # another signature
    assert not verify(public_key_of(Ed25519PrivateKey.generate()), signature, message)  # another key
    assert not verify(public, signature, b"release clip 8")  # remembered as false, not flipped
    assert verify(public, signature, message)
