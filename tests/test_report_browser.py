"""The HTML reports open offline in a real headless Chromium: they render, every image loads, and
the console shows no error. Run with `make test-browser` (installs Chromium and Playwright)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from segdoctor.cli import main
from tests.helpers import write_disc_dataset

pytestmark = pytest.mark.browser

TINY = [
    "--epochs", "2", "--lr", "0.01", "--patch-size", "32", "--batch-size", "4",
    "--set", "model.depth=2", "--set", "model.base_filters=4", "--set", "train.verbose=0",
]  # fmt: skip


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("Chromium not found: run `make test-browser`, which installs it")


def _open(page_path: Path, screenshot: Path) -> dict:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=_chromium(),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
        page.goto(page_path.resolve().as_uri())
        page.wait_for_load_state("load")
        info = page.evaluate(
            """() => ({
                title: document.title,
                h1: document.querySelector('h1') ? document.querySelector('h1').innerText : '',
                images: Array.from(document.images).map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0})),
                text: document.body.innerText.length,
                external: Array.from(document.querySelectorAll('[src],[href]'))
                    .map(e => e.getAttribute('src') || e.getAttribute('href'))
                    .filter(u => !u.startsWith('data:') && !u.startsWith('#')),
            })"""
        )
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    info["errors"] = errors
    return info


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    data = write_disc_dataset(root / "data", n=8)
    out = root / "run"
    assert main(["train", str(data), "--out", str(out), *TINY]) == 0
    return data, out


def test_training_report_renders_offline_with_every_image(run):
    _, out = run
    info = _open(out / "report.html", out / "report_screenshot.png")
    assert info["errors"] == []
    assert info["h1"].startswith("segdoctor run")
    assert len(info["images"]) >= 3
    assert all(img["ok"] for img in info["images"]), info["images"]
    assert info["external"] == []  # self-contained: nothing to fetch


def test_diagnosis_report_renders_offline(run, tmp_path):
    data, out = run
    html = tmp_path / "diagnosis.html"
    main(["diagnose", str(data), "--history", str(out / "history.csv"), "--html", str(html)])
    info = _open(html, tmp_path / "diagnosis.png")
    assert info["errors"] == []
    assert info["text"] > 100
    assert all(img["ok"] for img in info["images"])
    assert info["external"] == []
