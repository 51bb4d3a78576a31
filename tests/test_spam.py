"""SpamAssassin scores a real digest as clean, and a careless message worse."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pytest

from newsletter.content.digest import DigestPaper, EditionInfo, Recipient
from newsletter.content.mime import build_message_data, make_message_id
from newsletter.content.rendering import make_renderer
from newsletter.core import tokens
from newsletter.core.config import Settings, load_settings

SPAMASSASSIN = shutil.which("spamassassin") or "/usr/bin/spamassassin"
FIXTURES = Path(__file__).parent / "fixtures"
ANN = Recipient(1, "ann@example.org", "Ann Lee", ("Alignment", "LLMs", "Agents"))

pytestmark = pytest.mark.skipif(
    not Path(SPAMASSASSIN).exists(), reason="spamassassin is not installed (apt: spamassassin)"
)


def fixture_papers() -> list[DigestPaper]:
    data = json.loads((FIXTURES / "hf_daily_papers_3.json").read_text(encoding="utf-8"))
    return [
        DigestPaper(
            paper_id=number,
            title=item["paper"]["title"],
            authors=tuple(a["name"] for a in item["paper"]["authors"]),
            abstract=item["paper"]["summary"],
            url_abs=f"https://arxiv.org/abs/{item['paper']['id']}",
            url_pdf=f"https://arxiv.org/pdf/{item['paper']['id']}",
            url_code=item["paper"].get("githubRepo"),
            upvotes=item["paper"].get("upvotes"),
            topics=("LLMs",),
        )
        for number, item in enumerate(data, start=1)
    ]


def digest_bytes(settings: Settings) -> bytes:
    rendered = make_renderer(settings).render(
        EditionInfo(date(2025, 11, 27)), fixture_papers(), ANN
    )
    data, _dot_free = build_message_data(
        rendered,
        recipient=ANN,
        settings=settings,
        message_id=make_message_id(settings),
        list_unsubscribe_url=tokens.unsubscribe_url(settings, ANN.subscriber_id, "none"),
        list_unsubscribe_mailto="mailto:unsubscribe@news.example.test",
    )
    return data


def spam_score(message: bytes, home: Path) -> tuple[float, str]:
    """Run SpamAssassin locally (no network tests) and return the score and the rules hit."""
    home.mkdir(exist_ok=True)
    result = subprocess.run(
        [SPAMASSASSIN, "-L", "-t"],
        input=message,
        capture_output=True,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},  # keeps its user_prefs in tmp
        timeout=120,
        check=False,
    )
    output = result.stdout.decode("utf-8", "replace")
    match = re.search(
        r"^X-Spam-Status: \w+, score=(-?[\d.]+).*?tests=(.*?)autolearn", output, re.M | re.S
    )
    assert match, f"no X-Spam-Status in spamassassin output: {result.stderr[-500:]!r}"
    return float(match.group(1)), " ".join(match.group(2).split())


@pytest.fixture(scope="module")
def good_message(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, float, str]:
    """Score the digest once for the module: SpamAssassin takes seconds to start."""
    folder = tmp_path_factory.mktemp("spam")
    settings = load_settings(
        env={},
        var_dir=str(folder / "var"),
        secret_key="test-secret-key-of-at-least-32-bytes",
        base_url="https://news.example.test",
        from_address="Daily Papers <papers@news.example.test>",
        postal_address="1 Test Street, Testville",
    )
    message = digest_bytes(settings)
    return (message, *spam_score(message, folder / "home"))


def test_digest_scores_clean(good_message: tuple[bytes, float, str]) -> None:
    _, score, rules = good_message
    print(f"SpamAssassin score {score}: {rules}")
    assert score <= 0.5, rules


def test_message_without_date_and_message_id_scores_worse(
    good_message: tuple[bytes, float, str], tmp_path: Path
) -> None:
    good, good_score, _ = good_message
    naive = re.sub(rb"^(Date|Message-ID): [^\r]*\r\n", b"", good, flags=re.M)
    assert naive != good and b"\r\nDate: " not in naive
    naive_score, rules = spam_score(naive, tmp_path / "home")
    assert "MISSING_DATE" in rules and "MISSING_MID" in rules
    assert naive_score > good_score + 1.0
