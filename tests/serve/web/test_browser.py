"""The page in a real headless Chromium (Debian's, driven by Playwright) against the app served
by waitress on 127.0.0.1: pick a file and drop another, see verdicts, chart, faces, heatmaps,
then the history. Skipped, with the reason, where Chromium or Playwright is missing."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from app_support import blank_video, crop_metadata, face_video, save_tiny_model

CHROMIUM = Path("/usr/bin/chromium")
INSTALL = "apt-get install -y chromium && pip install -r requirements.txt"

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sync_playwright is None,
                       reason=f"playwright is not installed (install: {INSTALL})"),
    pytest.mark.skipif(not CHROMIUM.is_file() and shutil.which("chromium") is None,
                       reason=f"no Chromium at {CHROMIUM} (install: {INSTALL})"),
]
TIMEOUT_MS = 90_000
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-extensions", "--no-first-run",
        "--disable-sync", "--disable-default-apps", "--mute-audio"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import waitress

    from dfpipe.serve.web import create_app

    root = tmp_path_factory.mktemp("browser")
    model = save_tiny_model(root / "fake.h5", bias=4.0, threshold=0.5,
                            crop=crop_metadata("mtcnn", every=3))
    app = create_app({"model": model, "instance": root / "instance"})
    httpd = waitress.create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=httpd.run, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{httpd.effective_port}",
           "face": face_video(root / "face clip.mp4", n_frames=9),
           "blank": blank_video(root / "empty room.mp4")}
    httpd.close()
    app.extensions["dfpipe"].shutdown()
    thread.join(5)


@pytest.fixture(scope="module")
def page(server):
    executable = str(CHROMIUM) if CHROMIUM.is_file() else shutil.which("chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        tab = browser.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        yield tab
        browser.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


def _image_loaded(page, selector: str) -> None:
    page.wait_for_function(
        "sel => { const imgs = [...document.querySelectorAll(sel)];"
        " return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }",
        arg=selector, timeout=TIMEOUT_MS)


def test_pick_a_video_and_read_its_verdict_faces_and_heatmaps(server, page):
    page.goto(server["url"] + "/")
    expect(page.locator("#model-info")).to_contain_text("fake.h5")
    page.set_input_files("#file-input", str(server["face"]))
    card = page.locator("article.job").first
    expect(card.locator(".filename")).to_have_text("face clip.mp4")
    expect(card.locator(".verdict")).to_have_text("FAKE", timeout=TIMEOUT_MS)
    expect(card.locator(".status")).to_have_text("done", timeout=TIMEOUT_MS)
    expect(card.locator(".margin")).to_contain_text("above the threshold")
    expect(card.locator(".chart svg circle")).to_have_count(3)
    expect(card.locator(".faces figure.face")).to_have_count(3)
    _image_loaded(page, "article.job .faces img.crop")
    card.locator(".show-heat").check()
    _image_loaded(page, "article.job .faces img.heat")
    assert card.locator(".faces img.heat").first.is_visible()
    expect(card.locator(".heat-note")).to_contain_text("Red areas")


def test_drop_a_video_without_a_face(server, page):
    page.goto(server["url"] + "/")
    data = list(Path(server["blank"]).read_bytes())
    page.evaluate("""bytes => {
        const dt = new DataTransfer();
        dt.items.add(new File([new Uint8Array(bytes)], 'empty room.mp4', {type: 'video/mp4'}));
        const zone = document.querySelector('#dropzone');
        zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true}));
        zone.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true}));
    }""", data)
    card = page.locator("article.job").first
    expect(card.locator(".filename")).to_have_text("empty room.mp4")
    expect(card.locator(".verdict")).to_have_text("NO FACE FOUND", timeout=TIMEOUT_MS)
    expect(card.locator(".faces-box")).to_be_hidden()


def test_history_lists_past_analyses_and_opens_one(server, page):
    page.goto(server["url"] + "/history")
    rows = page.locator("#history tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="face clip.mp4").locator(".verdict-cell")).to_have_text("FAKE")
    rows.filter(has_text="face clip.mp4").get_by_role("link", name="open").click()
    expect(page.locator("article.job .verdict")).to_have_text("FAKE")
    expect(page.locator("article.job .faces figure.face")).to_have_count(3)
