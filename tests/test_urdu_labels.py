"""The AI label in the clip's language as well as English: metadata tags and the C2PA assertion (issue 13)."""

from __future__ import annotations

from datetime import UTC, datetime, timezone

from pipeline.provenance.credentials import ClipProvenance
from pipeline.provenance.labels import ClipLabels, ai_notices

NOW = datetime(2026, 3, 12, 10, tzinfo=UTC)


def test_urdu_clip_gets_the_notice_in_urdu_and_english() -> None:
    notices = ai_notices("ur", owner="زینب مثال", organisation="آزاد آواز میڈیا")
    assert set(notices) == {"en", "ur"}
    assert notices["en"].startswith("AI-generated voice")
    assert "مصنوعی ذہانت" in notices["ur"] and "زینب مثال" in notices["ur"]
    assert set(ai_notices("en-GB", owner="Joe", organisation="Org")) == {"en"}


def test_tags_carry_both_labels() -> None:
    notices = ai_notices("ur", owner="زینب مثال", organisation="آزاد آواز میڈیا")
    tags = ClipLabels(clip_id="7", statement_id=3, voice_id="demo-ur", voice_name="Zainab", organisation="آزاد آواز میڈیا",
                      language="ur", ai_notice=notices["en"], created_at=NOW.isoformat(),
                      local_notice=notices["ur"]).as_tags()
    assert tags["LABEL"] == notices["en"] and tags["LABEL_UR"] == notices["ur"]
    assert notices["en"] in tags["comment"] and notices["ur"] in tags["comment"]


def test_content_credentials_assert_the_label_in_both_languages() -> None:
    notices = ai_notices("ur", owner="زینب مثال", organisation="آزاد آواز میڈیا")
    manifest = ClipProvenance(
        clip_id=7, organisation="آزاد آواز میڈیا", voice_id="demo-ur", voice_name="Zainab", consent_id=1,
        consent_sha256="c" * 64, statement_id=3, revision=1, revision_sha256="a" * 64, language="ur", created_at=NOW,
        approvals=(), settings={"ai_label": notices},
    ).manifest()
    ours = next(a["data"] for a in manifest["assertions"] if a["label"].startswith("org.voxgate"))
    assert ours["ai_label"] == notices


def _consent_details(statement: str) -> dict:
    consent = {"id": 1, "kind": "enrollment", "status": "active", "verified": True, "owner": "زینب مثال",
               "owner_account": None, "organisation": "آزاد آواز میڈیا", "statement": statement,
               "purposes": ["public-statement"], "channels": ["social"], "languages": ["ur"],
               "valid_from": NOW, "valid_until": NOW, "policy": "per_statement", "approvers": ["zainab-delegate"],
               "revoked_at": None, "revoked_by": None, "revoked_reason": None, "evidence": {"witness": "ops"},
               "record_sha256": "r" * 64, "problem": None}
    return {"consent": consent, "voice": {"id": "demo-ur", "name": "Zainab", "state": "ready"}, "enrollment": None,
            "generated_at": NOW, "signatures": [{"signer": "ops", "capacity": "witness", "public_key": "k" * 64,
                                                 "valid": True}], "history": []}


def test_consent_certificate_is_in_the_consents_language() -> None:
    from pipeline.consent.certificate import render_certificate

    urdu = render_certificate(_consent_details("میرا نام زینب مثال ہے۔ میری رضامندی ہے…"))
    assert '<html lang="ur" dir="rtl">' in urdu
    for part in ("رضامندی کا سرٹیفکیٹ", "کون، کس کو رضامندی دیتا ہے", "دائرہ", "ہر بیان کی منظوری: zainab-delegate",
                 "✓ کامیاب", "نافذ", "زینب مثال"):
        assert part in urdu, part
    english = render_certificate(_consent_details("I, Joe Example, consent …"))
    assert '<html lang="en" dir="ltr">' in english and "Consent certificate" in english and "✓ pass" in english
