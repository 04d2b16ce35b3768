"""The consent script and its challenge phrase, and the pure rules around consent terms: no I/O here."""

from __future__ import annotations

import random
from datetime import date, datetime, timezone

import pytest

from pipeline.consent.checks import date_forms, find_date, name_heard, sound_skeleton
from pipeline.consent.script import (
    CHALLENGE_WORDS,
    SCRIPT_LANGUAGES,
    challenge_phrase,
    consent_script,
    delegates_of,
    required_names,
)
from pipeline.domain import ApprovalPolicyKind, Consent, Scope, check_voice_renders, compare_scope
from pipeline.errors import ConsentError, EngineError, InputError
from pipeline.quality.wer import normalise_words

UTC = timezone.utc


def terms(**changes) -> Consent:
    base = dict(voice_id="joe", owner="Joe Example", organisation="Free Voice Media",
                scope=Scope(frozenset({"public-statement", "press-release"}), frozenset({"social"}), frozenset({"en"})),
                valid_from=datetime(2026, 1, 1, tzinfo=UTC), valid_until=datetime(2030, 12, 31, 23, 59, tzinfo=UTC),
                policy=ApprovalPolicyKind.PER_STATEMENT, approvers=frozenset({"joe", "joe-delegate"}),
                owner_account="joe")
    return Consent(**{**base, **changes})


def test_script_names_owner_organisation_scope_end_date_and_ends_with_the_challenge() -> None:
    text = consent_script(terms(), ("sailor", "toaster", "whistle", "market"))
    assert text.startswith("My name is Joe Example. I consent to Free Voice Media publishing statements")
    for part in ("approved by me or by my delegate joe delegate", "press release and public statement",
                 "The channel is social.", "The language is English.", "until December 31, 2030."):
        assert part in text, part
    assert text.endswith("My challenge words are: sailor, toaster, whistle, market.")


def test_blanket_script_says_statements_are_not_approved_one_by_one() -> None:
    text = consent_script(terms(policy=ApprovalPolicyKind.BLANKET, approvers=frozenset()), ("apple",))
    assert "within the scope below, without approving each one" in text and "delegate" not in text


def test_the_owners_own_account_is_not_named_as_a_delegate() -> None:
    assert delegates_of(terms()) == ["joe-delegate"]
    assert required_names(terms()) == ["Joe Example"]  # delegates are account handles, counted in the WER only


def test_renewal_text_has_no_challenge() -> None:
    text = consent_script(terms(), None)
    assert "challenge" not in text and text.endswith("This renews my earlier consent for this voice on these terms.")


def test_urdu_script_keeps_the_scope_and_the_challenge() -> None:
    words = challenge_phrase(random.Random(1), "ur")
    text = consent_script(terms(scope=Scope(frozenset({"public-statement"}), frozenset({"social"}),
                                            frozenset({"ur"}))), words, "ur")
    assert "Joe Example" in text and "31 دسمبر 2030" in text and "اردو" in text
    assert all(w in text for w in words)


def test_a_language_without_a_template_is_refused() -> None:
    with pytest.raises(InputError, match="no consent script template for language 'fr'"):
        consent_script(terms(), ("apple",), "fr")


@pytest.mark.parametrize("language", sorted(SCRIPT_LANGUAGES))
def test_challenge_words_are_distinct_in_sound_group_and_first_letter(language: str) -> None:
    groups = CHALLENGE_WORDS[language]
    group_of = {w: g for g, ws in groups.items() for w in ws}
    rng = random.Random(42)
    phrases = {challenge_phrase(rng, language) for _ in range(300)}
    assert len(phrases) == 300  # about 10^7 possible phrases: no repeats in a few hundred draws
    for words in phrases:
        assert len({group_of[w] for w in words}) == len(words) == 4
        assert len({w[0] for w in words}) == 4


def test_english_challenge_words_survive_wer_normalisation_unchanged() -> None:
    # A word that normalises differently (a digit, an apostrophe, a hyphen) could never be "heard".
    for words in CHALLENGE_WORDS["en"].values():
        for w in words:
            assert normalise_words(w) == [w]


def test_challenge_words_do_not_collide_with_how_dates_are_said() -> None:
    # "thousand" once was a challenge word; it would be read as part of the year.
    spoken = {w for form in date_forms(date(2030, 12, 31)) for w in form}
    assert not spoken & {w for ws in CHALLENGE_WORDS["en"].values() for w in ws}


@pytest.mark.parametrize(
    "heard",
    ["until december 31 2030", "until december thirty first twenty thirty", "until the 31st of december 2030",
     "until 31 december 2030", "until december the thirty first two thousand and thirty"],
)
def test_every_way_of_saying_the_end_date_counts(heard: str) -> None:
    assert find_date(normalise_words(heard), date(2030, 12, 31)) is not None


@pytest.mark.parametrize(
    "heard",
    ["until december 30 2030", "until november 31 2030",
     "until december 31 2031"],  # "two thousand and thirty" is the start of "two thousand and thirty one"
)
def test_a_different_date_does_not_count(heard: str) -> None:
    assert find_date(normalise_words(heard), date(2030, 12, 31)) is None


@pytest.mark.parametrize(
    ("heard", "name", "found"),
    [
        ("my name is daniel ockifer", "Daniel Okafor", True),  # the recogniser's own spelling of a name
        ("consent to just as media team", "Justice Media Team", True),  # split differently
        ("hi im raincon consent", "Imran Khan", True),  # "I, Imran Khan" run together
        ("my name is maria lopez", "Joe Example", False),  # someone else's name
        ("my name is anna smith", "Sarah Mitchell", False),
    ],
)
def test_names_match_by_letters_or_by_sound(heard: str, name: str, found: bool) -> None:
    assert name_heard(normalise_words(heard), name, 0.8) is found


def test_sound_skeleton_keeps_consonants() -> None:
    assert sound_skeleton("Okafor") == sound_skeleton("Ockifer") == "kfr"


# --- consent terms: renewal and readiness -------------------------------------------


def test_narrowing_is_not_an_extension() -> None:
    old = terms()
    new = terms(scope=Scope(frozenset({"press-release"}), frozenset({"social"}), frozenset({"en"})),
                valid_until=datetime(2029, 12, 31, tzinfo=UTC))
    change = compare_scope(old, new)
    assert not change.extends and change.narrowed == ("purposes - public-statement", "valid until 2029-12-31 (was 2030-12-31)")


@pytest.mark.parametrize(
    ("changes", "widened"),
    [
        ({"scope": Scope(frozenset({"public-statement", "press-release", "advertising"}), frozenset({"social"}),
                         frozenset({"en"}))}, "purposes + advertising"),
        ({"valid_until": datetime(2031, 6, 30, tzinfo=UTC)}, "valid until 2031-06-30"),
        ({"policy": ApprovalPolicyKind.BLANKET}, "policy per_statement → blanket"),
        ({"approvers": frozenset({"joe", "joe-delegate", "ann"})}, "approvers + ann"),  # one more person may approve
    ],
)
def test_widening_is_an_extension(changes, widened: str) -> None:
    change = compare_scope(terms(), terms(**changes))
    assert change.extends and change.widened[0].startswith(widened)


def test_a_renewal_cannot_change_the_owner() -> None:
    with pytest.raises(InputError, match="cannot change the owner"):
        compare_scope(terms(), terms(owner="Someone Else"))


def test_only_a_ready_voice_renders() -> None:
    check_voice_renders("joe", "ready")
    with pytest.raises(EngineError, match="is enrolled, not ready: it has no usable model yet"):
        check_voice_renders("joe", "enrolled")
    with pytest.raises(EngineError, match="is trained, not ready"):
        check_voice_renders("joe", "trained")
    with pytest.raises(ConsentError, match="revoked"):
        check_voice_renders("joe", "revoked")
