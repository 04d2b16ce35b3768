"""The portal in a real headless Chromium (Debian's), driven by Playwright: sign in, play, download, screenshot."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from portal_fixtures import build_released, serving

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[1] / "test-output" / "screenshots"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return build_released(tmp_path_factory.mktemp("browser"))


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed; `make setup` installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


#: How long a page waits for an element or a navigation: a verify form's answer waits for the check itself,
#: which the portal bounds at 90 s, and on a small machine running other tests beside it took over 30 s.
PAGE_TIMEOUT_MS = 120_000


def new_page(browser, **options):  # noqa: ANN001, ANN201
    page = browser.new_page(**options)
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    return page


def assert_not_blank(path: Path) -> None:
    pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    assert pixels.std() > 10, f"{path} looks blank"


def test_sign_in_play_and_download(browser, released, tmp_path) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with serving(released.ws.home) as url:
        page = new_page(browser, accept_downloads=True)
        page.goto(f"{url}/login")
        page.fill("#token", released.token)
        page.click("#signin")
        page.wait_for_url(f"{url}/clips")
        card = page.locator(f"#clip-{released.clip_id}")
        assert "AI-generated voice" in card.inner_text()
        assert page.locator(f"#clip-{released.revoked_clip_id}").count() == 0

        # Play: the browser fetches and decodes the Ogg Opus stream, then plays it.
        duration = card.locator("audio").evaluate(
            """el => new Promise((resolve, reject) => {
                   el.addEventListener('loadedmetadata', () => resolve(el.duration));
                   el.addEventListener('error', () => reject(el.error && el.error.message));
                   el.load();
               })""")
        assert duration > 3
        played = card.locator("audio").evaluate(
            "el => el.play().then(() => new Promise(r => setTimeout(() => r(el.currentTime), 600)))")
        assert played > 0.1

        with page.expect_download() as info:
            card.locator("a.download", has_text="mp3").click()
        download = info.value
        saved = tmp_path / download.suggested_filename
        download.save_as(saved)
        assert saved.name == f"voxgate-clip-{released.clip_id}.mp3" and saved.stat().st_size > 10_000

        shot = SHOTS / "portal-clips.png"
        page.screenshot(path=str(shot), full_page=True)
        assert_not_blank(shot)


def test_wrong_token_shows_the_error(browser, released) -> None:
    with serving(released.ws.home) as url:
        page = new_page(browser)
        page.goto(f"{url}/login")
        page.fill("#token", "vxg_not-a-real-token")
        page.click("#signin")
        assert "Unknown or revoked" in page.locator("#error").inner_text()
        shot = SHOTS / "portal-login-error.png"
        page.screenshot(path=str(shot))
        assert_not_blank(shot)


def test_public_verify_page_gives_the_verdict_for_an_upload(browser, released, tmp_path, private_tempdir) -> None:
    from pipeline.services import clips

    from pipeline.services.workspace import utcnow

    authentic = clips.export_clip(released.ws, released.clip_id, "mp3", tmp_path, actor="dana", now=utcnow())
    not_audio = tmp_path / "notes.mp3"
    not_audio.write_text("this is text named like audio")
    with serving(released.ws.home) as url:
        page = new_page(browser)
        page.goto(f"{url}/verify")  # no sign-in: the page is public
        page.set_input_files("#file", str(authentic))
        page.click("#check")
        assert page.locator("#result .verdict").inner_text() == "AUTHENTIC"
        assert "We ask for an open trial" in page.locator("#result").inner_text()
        shot = SHOTS / "portal-verify-authentic.png"
        page.screenshot(path=str(shot), full_page=True)
        assert_not_blank(shot)

        page.goto(f"{url}/verify")
        page.set_input_files("#file", str(not_audio))
        page.click("#check")
        assert "not an audio file" in page.locator("#error").inner_text()
    leftovers = list(private_tempdir.glob("voxgate-verify-*"))
    assert not leftovers, f"uploads must not outlive the request: {leftovers}"


def test_public_verify_page_draws_which_seconds_are_genuine(browser, released, tmp_path) -> None:
    """A forgery built on 2 s of a copy: ALTERED, a timeline bar of genuine / not found / silent, no clip text."""
    import subprocess

    from pipeline.services import clips
    from pipeline.services.workspace import utcnow

    copy = clips.export_clip(released.ws, released.clip_id, "mp3", tmp_path, actor="dana", now=utcnow())
    fake = tmp_path / "fake.wav"
    subprocess.run(["espeak-ng", "-w", str(fake), "The trial is over and we accept the verdict of the court. "
                    "We ask our supporters to stop sharing messages and to go home quietly now."], check=True)
    forged = tmp_path / "forged.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(copy), "-stream_loop", "-1", "-i", str(fake),
                    "-filter_complex", "[0]atrim=0:2,aresample=48000,aformat=channel_layouts=mono,asetpts=N/SR/TB[a];"
                    "[1]atrim=0:12,aresample=48000,aformat=channel_layouts=mono,asetpts=N/SR/TB[b];"
                    "[a][b]concat=n=2:v=0:a=1", str(forged)], check=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with serving(released.ws.home) as url:
        page = new_page(browser)
        page.goto(f"{url}/verify")
        page.set_input_files("#file", str(forged))
        page.click("#check")
        assert page.locator("#result .verdict").inner_text() == "ALTERED"
        bar = page.locator("#timeline")
        assert bar.locator(".sec.genuine").count() >= 1 and bar.locator(".sec.absent").count() >= 10
        first = bar.locator(".sec").first.evaluate("el => getComputedStyle(el).backgroundColor")
        last = bar.locator(".sec.absent").last.evaluate("el => getComputedStyle(el).backgroundColor")
        assert first == "rgb(27, 127, 59)" and last == "rgb(179, 38, 30)"  # the stylesheet's colours drew it
        text = page.locator("#result").inner_text()
        assert "forgery built on a real clip" in text and "We ask for an open trial" not in text
        assert "dana" not in text.lower()
        shot = SHOTS / "portal-verify-altered.png"
        page.screenshot(path=str(shot), full_page=True)
        assert_not_blank(shot)


def test_public_verify_page_in_urdu_gives_every_reason_in_urdu(browser, released, tmp_path) -> None:
    """Issue 13: an Urdu reader sees each reason of a DERIVED, ALTERED and UNKNOWN verdict in Urdu, none in English.

    The same files through `/api/verify` still carry the English `reasons` scripts rely on.
    """
    import re
    import subprocess

    import httpx

    from pipeline.i18n import t
    from pipeline.services import clips
    from pipeline.services.workspace import utcnow

    copy = clips.export_clip(released.ws, released.clip_id, "mp3", tmp_path, actor="dana", now=utcnow())
    derived = tmp_path / "forwarded.ogg"  # what a messaging app makes of it: re-encoded, every second the clip
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(copy), "-c:a", "libopus", "-b:a", "24k", str(derived)],
                   check=True)
    fake = tmp_path / "fake.wav"
    subprocess.run(["espeak-ng", "-w", str(fake), "The trial is over and we accept the verdict of the court. "
                    "We ask our supporters to stop sharing messages and to go home quietly now."], check=True)
    altered = tmp_path / "forged.mp3"  # 2 s of the copy, then other speech
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(copy), "-stream_loop", "-1", "-i", str(fake),
                    "-filter_complex", "[0]atrim=0:2,aresample=48000,aformat=channel_layouts=mono,asetpts=N/SR/TB[a];"
                    "[1]atrim=0:12,aresample=48000,aformat=channel_layouts=mono,asetpts=N/SR/TB[b];"
                    "[a][b]concat=n=2:v=0:a=1", str(altered)], check=True)
    unknown = tmp_path / "stranger.wav"  # speech that is not ours
    subprocess.run(["espeak-ng", "-v", "ur", "-w", str(unknown), "یہ ایک جعلی پیغام ہے۔ ہم اپنے ساتھیوں سے کہتے ہیں کہ وہ گھر چلے جائیں اور پیغامات آگے نہ بھیجیں۔"],
                   check=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with serving(released.ws.home) as url:
        for path, verdict in ((derived, "DERIVED"), (altered, "ALTERED"), (unknown, "UNKNOWN")):
            api = httpx.post(f"{url}/api/verify", content=path.read_bytes(), timeout=180).json()
            assert api["verdict"] == verdict, api
            english = api["reasons"]
            assert len(api["reason_keys"]) == len(english) >= 1 and all(re.search("[a-z]{3}", r) for r in english)
            page = new_page(browser, viewport={"width": 390, "height": 844}, locale="ur-PK")
            page.goto(f"{url}/verify?lang=ur")
            page.set_input_files("#file", str(path))
            page.click("#check")
            shown = page.locator("#result .verdict")
            assert shown.get_attribute("data-verdict") == verdict and shown.inner_text() == t("ur", f"verdict.{verdict}")
            rows = page.locator("#result tr.reason")
            assert rows.count() == len(english)
            for i in range(rows.count()):
                assert rows.nth(i).locator("th").inner_text() == t("ur", "detail.reason", n=i + 1)
                cell = rows.nth(i).locator("td").inner_text()
                assert re.search("[\u0600-\u06ff]", cell) and not re.search("[A-Za-z]{2,}", cell), cell
            text = page.locator("#result").inner_text()
            for reason in english:
                assert reason not in text, reason
            assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scroll on a phone
            shot = SHOTS / f"verify-ur-{verdict.lower()}-phone.png"
            page.screenshot(path=str(shot), full_page=True)
            assert_not_blank(shot)
            page.close()
