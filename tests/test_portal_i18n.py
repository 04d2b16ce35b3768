"""The portal and the public verify page in Urdu and English: one catalogue, RTL, Nastaliq, CSP intact (issue 13)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import ORG
from portal_fixtures import serving

from pipeline.i18n import LANGUAGES, catalogue, choose_language, direction, t

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[1] / "test-output" / "screenshots"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.mark.parametrize(
    ("query", "cookie", "accept", "chosen"),
    [
        (None, None, None, "en"),
        (None, None, "ur-PK,ur;q=0.9,en;q=0.8", "ur"),  # a phone set to Urdu
        (None, None, "en-GB,en;q=0.9,ur;q=0.5", "en"),
        (None, None, "fr-FR,ur;q=0.4", "ur"),  # the best language we speak
        (None, None, "ur;q=0", "en"),  # q=0 means "not this"
        (None, "ur", "en", "ur"),  # the switch, remembered in a cookie, beats the browser
        ("en", "ur", "ur", "en"),  # ?lang= beats everything
        ("xx", None, None, "en"),  # unknown: ignored
    ],
)
def test_choose_language(query, cookie, accept, chosen) -> None:
    assert choose_language(query, cookie, accept) == chosen


def test_one_catalogue_with_the_same_keys_in_every_language() -> None:
    keys = {lang: set(catalogue(lang)) for lang in LANGUAGES}
    assert keys["en"] == keys["ur"]
    for key in keys["en"]:  # same placeholders on both sides
        assert set(re.findall(r"{(\w+)}", t("en", key))) == set(re.findall(r"{(\w+)}", catalogue("ur")[key])), key
    assert direction("ur") == "rtl" and direction("en") == "ltr"
    assert t("ur", "no.such.key") == "no.such.key"


@pytest.fixture(scope="module")
def bare_workspace(tmp_path_factory):
    from pipeline.services.workspace import init_workspace, utcnow

    ws, _ = init_workspace(tmp_path_factory.mktemp("i18n") / "ws", ORG, now=utcnow())
    return ws


def test_pages_speak_urdu_by_accept_language_switch_and_cookie(bare_workspace) -> None:
    with serving(bare_workspace.home) as url:
        with httpx.Client(base_url=url) as client:
            page = client.get("/verify", headers={"Accept-Language": "ur-PK,ur;q=0.9"})
            assert '<html lang="ur" dir="rtl">' in page.text and "کیا یہ کلپ اصلی ہے؟" in page.text
            assert "font-src 'self'" in page.headers["content-security-policy"]
            english = client.get("/verify?lang=en", headers={"Accept-Language": "ur"})
            assert '<html lang="en" dir="ltr">' in english.text and "Is this clip authentic?" in english.text
            assert client.cookies.get("lang") == "en"  # the switch is remembered
            assert 'lang="en"' in client.get("/verify", headers={"Accept-Language": "ur"}).text
            font = client.get("/fonts/nastaliq.ttf")
            assert font.status_code == 200 and font.headers["content-type"] == "font/ttf" and len(font.content) > 100_000


@pytest.mark.slow
def test_verify_page_in_both_languages_on_desktop_and_phone(bare_workspace, tmp_path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed; `make setup` installs it")
    import soundfile as sf
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from pipeline.synth.espeak import EspeakEngine, EspeakVoice

    engine = EspeakEngine(EspeakVoice("ur"))
    engine.load()
    stranger = tmp_path / "forwarded.wav"  # a clip that is not ours: the verdict is UNKNOWN
    sf.write(stranger, np.concatenate(engine.synthesize(["یہ ایک جعلی پیغام ہے۔"])), engine.sample_rate)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with serving(bare_workspace.home) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        for lang in LANGUAGES:
            for name, size in (("desktop", {"width": 1280, "height": 900}), ("phone", {"width": 390, "height": 844})):
                page = browser.new_page(viewport=size, locale="ur-PK" if lang == "ur" else "en-GB")
                refused: list[str] = []
                page.on("console", lambda m, seen=refused: seen.append(m.text) if "Content Security Policy" in m.text else None)
                page.goto(f"{url}/verify?lang={lang}")
                assert page.evaluate("document.documentElement.lang") == lang
                assert page.evaluate("document.documentElement.dir") == direction(lang)
                page.set_input_files("#file", str(stranger))
                page.click("#check")
                verdict = page.locator("#result .verdict")
                assert verdict.get_attribute("data-verdict") == "UNKNOWN"
                assert verdict.inner_text() == t(lang, "verdict.UNKNOWN")
                assert t(lang, "verdict.UNKNOWN.summary") in page.locator("#result").inner_text()
                if lang == "ur":
                    page.evaluate("document.fonts.ready")
                    assert page.evaluate("document.fonts.check('16px \"Noto Nastaliq Urdu\"', 'اردو')")
                    family = page.locator("h1").evaluate("el => getComputedStyle(el).fontFamily")
                    assert "Nastaliq" in family
                assert page.evaluate("document.documentElement.scrollWidth") <= size["width"]  # no sideways scroll
                assert not refused, refused
                shot = SHOTS / f"verify-{lang}-{name}.png"
                page.screenshot(path=str(shot), full_page=True)
                assert np.asarray(Image.open(shot).convert("L"), dtype=np.float32).std() > 10
                page.close()
        browser.close()
    assert json.dumps(t("ur", "verdict.UNKNOWN"), ensure_ascii=False) != '"UNKNOWN"'


def test_a_released_clips_details_on_the_urdu_verify_page_are_urdu() -> None:
    """Every value the page writes itself (not the clip's own names and text) is in the reader's language."""
    import re

    from pipeline.portal.app import page_result

    report = {"verdict": "AUTHENTIC", "reasons": ["its exact bytes are a registered file of clip 4"], "notes": {},
              "clip": {"clip_id": 4, "state": "released", "voice_name": "Demo", "owner": "Imran", "text": None,
                       "approvals": [{"stage": "text", "decision": "approve", "signature_valid": True},
                                     {"stage": "audio", "decision": "approve", "signature_valid": False}],
                       "released_at": "2026-12-02", "revoked_at": None}}
    english = dict(page_result(report, "Free Voice Media", "en")["details"])
    assert english["voice"] == "Demo, consent of Imran" and english["statement"] == "(not released)"
    assert english["approvals"] == "text (approve, signature valid), audio (approve, signature INVALID)"
    urdu = dict(page_result(report, "Free Voice Media", "ur")["details"])
    for label in ("voice", "statement", "approvals", "state"):
        left = re.sub(r"Demo|Imran", "", str(urdu[label]))
        assert not re.search(r"[A-Za-z]", left), (label, urdu[label])
        assert re.search(r"[\u0600-\u06FF]", left), (label, urdu[label])
