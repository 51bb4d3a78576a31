"""The digest HTML in a real browser: phone and desktop screenshots, no sideways scroll."""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
import os
from datetime import date
from pathlib import Path

import pytest

from newsletter.content.digest import DigestPaper, EditionInfo, Recipient
from newsletter.content.rendering import make_renderer
from newsletter.core.config import Settings

CHROMIUM = Path("/usr/bin/chromium")
FIXTURES = Path(__file__).parent / "fixtures"
# Keep Chromium off the network: tests may only talk to 127.0.0.1.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
WIDTHS = (375, 600)

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed")


def digest_html(settings: Settings) -> str:
    data = json.loads((FIXTURES / "hf_daily_papers_30.json").read_text(encoding="utf-8"))[:3]
    papers = [
        DigestPaper(
            paper_id=number,
            title=item["paper"]["title"],
            authors=tuple(a["name"] for a in item["paper"]["authors"]),
            abstract=item["paper"]["summary"],
            url_abs=f"https://arxiv.org/abs/{item['paper']['id']}",
            url_pdf=f"https://arxiv.org/pdf/{item['paper']['id']}",
            url_code=item["paper"].get("githubRepo"),
            upvotes=item["paper"].get("upvotes"),
            topics=("Alignment", "LLMs"),
            summary=item["paper"].get("ai_summary"),
            url_discussion=f"https://huggingface.co/papers/{item['paper']['id']}",
        )
        for number, item in enumerate(data, start=1)
    ]
    # A worst case for narrow screens: an unbreakable title and a long URL-like word.
    papers.append(
        DigestPaper(
            paper_id=99,
            title="Supercalifragilisticexpialidociousnessfulnessdomainadaptationtransformers",
            authors=("A. Author",),
            abstract="See https://example.org/" + "very-long-path-segment-" * 6 + " for code.",
            url_abs="https://arxiv.org/abs/2501.00001",
            url_pdf=None,
            url_code=None,
            upvotes=None,
            topics=("Reinforcement Learning from Human Feedback",),
        )
    )
    recipient = Recipient(1, "ann.lee@example.org", "Ann Lee", ("Alignment", "LLMs", "Agents"))
    return make_renderer(settings).render(EditionInfo(date(2025, 11, 27)), papers, recipient).html


def test_digest_fits_phone_and_desktop(settings: Settings, tmp_path: Path) -> None:
    html = digest_html(settings)
    shots = Path(os.environ.get("NEWSLETTER_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            measured = {}
            for width in WIDTHS:
                page = browser.new_page(viewport={"width": width, "height": 900})
                page.set_content(html, wait_until="load")
                measured[width] = page.evaluate(
                    "[document.documentElement.scrollWidth,"
                    " document.querySelector('table.card').getBoundingClientRect().width]"
                )
                page.screenshot(path=str(shots / f"digest-{width}.png"), full_page=True)
                page.close()
        finally:
            browser.close()
    print(f"screenshots in {shots}")
    scroll_375, card_375 = measured[375]
    assert scroll_375 <= 375, "the digest scrolls sideways on a 375 px phone"
    assert card_375 == 375  # the card fills the phone screen edge to edge
    scroll_600, card_600 = measured[600]
    assert scroll_600 <= 600
    assert card_600 <= 600
    for width in WIDTHS:
        assert (shots / f"digest-{width}.png").stat().st_size > 10_000
    assert html.count('class="tldr"') == 3  # the cards under test carry a TL;DR


def test_the_demo_digest_shows_the_full_card_at_phone_and_desktop_widths(run, settings, tmp_path):
    assert run("demo", "--date", "2026-11-27").exit_code == 0
    box = mailbox.Maildir(settings.transport.removeprefix("maildir:"), create=False)
    ada = next(m for m in box if "ada@example.org" in m["To"])
    message = email.message_from_bytes(ada.as_bytes(), policy=email.policy.default)
    html = message.get_body(("html",)).get_content()
    shots = Path(os.environ.get("NEWSLETTER_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for width in WIDTHS:
                page = browser.new_page(viewport={"width": width, "height": 900})
                page.set_content(html, wait_until="load")
                first = page.locator("td.title").first.locator("xpath=ancestor::table[1]")
                card = first.inner_text()
                buttons = [b.strip() for b in first.locator("a.button").all_inner_texts()]
                scroll = page.evaluate("document.documentElement.scrollWidth")
                page.screenshot(path=str(shots / f"demo-{width}.png"), full_page=False)
                page.close()
                # The first card as a reader sees it: votes, authors, why, TL;DR, every link.
                assert scroll <= width
                assert "▲" in card and "Jundong Xu" in card and "Why:" in card, card
                assert "TL;DR" in card
                assert buttons == ["Abstract", "PDF", "Code", "Discussion"], buttons
                assert "More like this" in card and "Less like this" in card
        finally:
            browser.close()
