"""Digest rendering: templates, escaping, placeholders, the inlining cache, operator overrides."""

from __future__ import annotations

import dataclasses
import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import jinja2
import pytest

from newsletter.content.css import inline_css
from newsletter.content.digest import DigestPaper, EditionInfo, Recipient
from newsletter.content.rendering import DigestRenderer, make_renderer
from newsletter.content.templating import authors_short, make_jinja_env, safe_url, shorten
from newsletter.core import tokens
from newsletter.core.config import Settings
from newsletter.core.resources import shipped_dir

FIXTURES = Path(__file__).parent / "fixtures"
EDITION = EditionInfo(date(2025, 11, 27))
ANN = Recipient(1, "ann@example.org", "Ann", ("Alignment", "LLMs", "Robotics"))


def sample_papers(topics: tuple[str, ...] = ("Alignment", "LLMs")) -> list[DigestPaper]:
    """Return the papers of the Hugging Face fixture as a subscriber would see them."""
    data = json.loads((FIXTURES / "hf_daily_papers_3.json").read_text(encoding="utf-8"))
    papers = []
    for number, item in enumerate(data, start=1):
        paper = item["paper"]
        papers.append(
            DigestPaper(
                paper_id=number,
                title=paper["title"],
                authors=tuple(author["name"] for author in paper["authors"]),
                abstract=paper["summary"],
                url_abs=f"https://arxiv.org/abs/{paper['id']}",
                url_pdf=f"https://arxiv.org/pdf/{paper['id']}",
                url_code=paper.get("githubRepo"),
                upvotes=paper.get("upvotes"),
                topics=topics,
            )
        )
    return papers


def hostile_paper() -> DigestPaper:
    return DigestPaper(
        paper_id=666,
        title='<script>alert("t")</script> Attention & <b>Friends</b>',
        authors=("<img src=x onerror=alert(1)>", "Bob"),
        abstract="We show </td></table><a href='javascript:alert(2)'>click</a> works.",
        url_abs="javascript:alert(3)",
        url_pdf="data:text/html;base64,PHNjcmlwdD4=",
        url_code="https://github.com/example/safe?x=1&y=2",
        upvotes=7,
        topics=("<i>RL</i>",),
    )


def test_digest_has_papers_links_and_footer(settings: Settings) -> None:
    papers = sample_papers()
    digest = make_renderer(settings).render(EDITION, papers, ANN)
    assert digest.subject.startswith("Your daily papers — Nov 27: Constitutional Midtraining")
    assert digest.subject.endswith("(+2 more)")
    # Compare with whitespace collapsed: the text part wraps long lines.
    for part in (" ".join(digest.html.split()), " ".join(digest.text.split())):
        for paper in papers:
            assert paper.title in part
        assert "▲ 3" in part
        assert "Desiree Cho, Cameron Tice, Bernie Hogan et al." in part
        assert "You receive this because you follow: Alignment, LLMs, Robotics" in part
        assert tokens.unsubscribe_url(settings, 1, "none") in part
        assert tokens.manage_url(settings, 1, "none") in part
        assert "https://news.example.test/archive/2025-11-27" in part
        assert "1 Test Street, Testville" in part
        assert "Hi Ann," in part
    assert f'href="{papers[0].url_abs}"' in digest.html
    assert 'href="https://github.com/desBugger/constitutional-mt"' in digest.html
    assert digest.html.count(">Code</a>") == 2  # the third paper has no code
    assert 'class="tag"' in digest.html and ">Alignment</span>" in digest.html
    unsubscribe = re.escape(tokens.unsubscribe_url(settings, 1, "none"))
    assert re.search(f'<a href="{unsubscribe}"[^>]*>Unsubscribe</a>', digest.html)


def test_html_is_email_safe(settings: Settings) -> None:
    html = make_renderer(settings).render(EDITION, sample_papers(), ANN).html
    assert 'role="presentation"' in html
    assert "<script" not in html.lower()
    assert "<link" not in html.lower() and "<img" not in html.lower()
    # premailer moved the rules inline and kept only the media queries in <style>.
    assert 'class="title" style=' in html
    assert "font-size:19px" in html
    assert "@media only screen and (max-width: 620px)" in html
    style_block = html.split("<style>", 1)[1].split("</style>", 1)[0]
    assert style_block.lstrip().startswith("@media")
    assert "!important" in style_block
    assert 'class="preheader" style="display:none' in html


def test_paper_content_is_escaped_and_unsafe_urls_dropped(settings: Settings) -> None:
    digest = make_renderer(settings).render(EDITION, [hostile_paper()], ANN)
    html = digest.html
    assert "<script" not in html
    assert '&lt;script&gt;alert("t")&lt;/script&gt; Attention &amp; &lt;b&gt;Friends' in html
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;/td&gt;&lt;/table&gt;&lt;a href=" in html
    assert "&lt;i&gt;RL&lt;/i&gt;" in html
    for part in (html, digest.text):
        assert "javascript:alert(3)" not in part
        assert "data:text/html" not in part
    assert 'href="https://github.com/example/safe?x=1&amp;y=2"' in html
    assert ">Abstract</a>" not in html and ">PDF</a>" not in html
    # The unlinked title is still shown.
    assert "Attention &amp; &lt;b&gt;Friends&lt;/b&gt;</td>" in html
    # Plain text is not HTML: it shows the characters as they are.
    assert '<script>alert("t")</script> Attention & <b>Friends</b>' in digest.text


def test_recipient_values_are_substituted_and_escaped(settings: Settings) -> None:
    renderer = make_renderer(settings)
    bob = Recipient(2, "bob+x@example.org", "<b>Ann & Bob</b>", ("Q&A <tag>",))
    digest = renderer.render(EDITION, sample_papers(), bob)
    assert "Hi &lt;b&gt;Ann &amp; Bob&lt;/b&gt;," in digest.html
    assert "<b>Ann" not in digest.html
    assert "follow: Q&amp;A &lt;tag&gt;." in digest.html
    assert "Hi <b>Ann & Bob</b>," in digest.text
    assert "follow: Q&A <tag>." in digest.text
    assert "bob+x@example.org" in digest.html
    for part in (digest.html, digest.text, digest.subject):
        assert renderer._split_re.search(part) is None
        assert "dpn" not in part


def test_text_part_wraps_without_breaking_urls(settings: Settings) -> None:
    url = "https://example.org/" + "long-path-segment-" * 6
    paper = dataclasses.replace(sample_papers()[0], abstract=f"Code at {url} and more words " * 3)
    text = make_renderer(settings).render(EDITION, [paper], ANN).text
    assert url in text
    body = text.split("\n-- \n", 1)[0]
    # Only lines that hold a link longer than a line may pass 78 characters.
    long_lines = [line for line in body.splitlines() if len(line) > 78]
    assert all(url in line or "/feedback/" in line for line in long_lines)
    assert f"\n   {url}" in text  # moved whole onto its own indented line


def test_recipient_values_lose_line_breaks(settings: Settings) -> None:
    eve = Recipient(3, "eve@example.org", "Eve\r\nBcc: all@example.org", ("A\nB",))
    digest = make_renderer(settings).render(EDITION, sample_papers(), eve)
    assert "Hi Eve Bcc: all@example.org," in digest.text
    assert "follow: A B." in digest.text


def test_recipient_without_name_is_greeted(settings: Settings) -> None:
    anon = Recipient(4, "anon@example.org", "", ())
    digest = make_renderer(settings).render(EDITION, sample_papers(), anon)
    assert "Hello, here are 3 new papers" in digest.text
    assert "follow: no topics yet." in digest.text


def test_css_is_inlined_once_per_skeleton_and_fragment(settings: Settings) -> None:
    renderer = make_renderer(settings)
    papers = sample_papers()
    recipients = [Recipient(i, f"r{i}@example.org", f"Reader {i}", ("LLMs",)) for i in range(25)]
    digests = [renderer.render(EDITION, papers, r) for r in recipients]
    assert renderer.stats.inlines == 1
    assert renderer.stats.hits == 24
    assert len({d.html for d in digests}) == 25  # each has its own name and links
    assert tokens.unsubscribe_url(settings, 24, "none") in digests[24].html
    renderer.render(EDITION, papers[:2], ANN)  # two papers: a new skeleton
    renderer.render(EDITION, sample_papers(topics=("LLMs",)), ANN)  # new tags: new fragments
    renderer.render(EditionInfo(date(2025, 11, 28)), papers, ANN)  # another day
    assert renderer.stats.inlines == 4
    renderer.render(EDITION, papers[:2], recipients[3])
    # Known papers in a new order: only the preheader (the first titles) is new.
    renderer.render(EDITION, [papers[1], papers[0], papers[2]], ANN)
    assert renderer.stats.inlines == 5


def test_warm_inlines_many_digests_in_few_runs(settings: Settings) -> None:
    renderer = make_renderer(settings)
    papers = sample_papers()
    tags = [("A",), ("B",), ("A", "B"), ("C",), ("B", "C")]
    bodies = [
        [dataclasses.replace(p, topics=t) for p in papers[:count]]
        for t in tags
        for count in (1, 2, 3)
    ]
    renderer.warm(EDITION, bodies)
    assert renderer.stats.inlines == 3  # one run per skeleton (one, two or three papers)
    digests = [renderer.render(EDITION, body, ANN) for body in bodies]
    assert renderer.stats.inlines == 3
    assert renderer.stats.hits == len(bodies)
    assert len({d.html for d in digests}) == len(bodies)


@pytest.mark.parametrize(
    "body",
    [
        lambda: sample_papers(),
        lambda: sample_papers()[1:2],
        lambda: [hostile_paper(), *sample_papers(topics=("Q&A", 'it\'s "quoted"'))],
        lambda: [dataclasses.replace(p, abstract="", url_abs=None) for p in sample_papers()],
    ],
)
def test_composed_html_equals_inlining_the_whole_document(settings: Settings, body) -> None:
    """Fragments inlined apart, in shared runs, give the very bytes of a whole-document run."""
    renderer = make_renderer(settings)
    renderer.warm(EDITION, [sample_papers()[:2], body()])  # share runs with another digest
    composed = renderer.render(EDITION, body(), ANN).html
    assert renderer.stats.inlines <= 2
    draft = renderer._draft("digest", EDITION, tuple(body()))
    whole = renderer._split(inline_css(renderer._whole(draft.html)))
    assert composed == whole.fill(renderer._slot_values(ANN, html=True)).join()
    assert "<!--" + renderer._token not in composed


def test_templates_without_fragments_are_inlined_whole(settings: Settings, tmp_path: Path) -> None:
    custom = tmp_path / "custom" / "email"
    custom.mkdir(parents=True)
    digest = (shipped_dir("templates") / "email" / "digest.html").read_text(encoding="utf-8")
    # Each macro called in place: no fragment to share.
    plain = re.sub(r'fragment\("\w+", (\w+), ', r"\1(", digest)
    assert "fragment(" not in plain.split("#}", 1)[1]
    (custom / "digest.html").write_text(plain, encoding="utf-8")
    overridden = dataclasses.replace(settings, templates_dir=str(tmp_path / "custom"))
    renderer = make_renderer(overridden)
    for count in (1, 2, 3, 3):
        html = renderer.render(EDITION, sample_papers()[:count], ANN).html
        assert html.count('class="title" style=') == count
    assert renderer.stats.inlines == 3  # one per distinct digest, as nothing is shared
    assert html == make_renderer(settings).render(EDITION, sample_papers(), ANN).html


def test_body_cache_is_bounded(settings: Settings) -> None:
    base = make_renderer(settings)
    renderer = DigestRenderer(settings, base.html_env, base.text_env, cache_size=2)
    papers = sample_papers()
    for count in (1, 2, 3):
        renderer.render(EDITION, papers[:count], ANN)
    renderer.render(EDITION, papers[:3], ANN)  # still cached
    assert (renderer.stats.misses, renderer.stats.hits) == (3, 1)
    renderer.render(EDITION, papers[:1], ANN)  # evicted as the least recently used
    assert (renderer.stats.misses, renderer.stats.hits) == (4, 1)
    assert len(renderer._cache) == 2
    assert renderer.stats.inlines == 3  # its parts were still cached: no new premailer run


def test_shared_parts_are_bounded_by_bytes(settings: Settings) -> None:
    renderer = make_renderer(settings)
    renderer._parts.max_bytes = 60_000
    for topic in "ABCDEFGHIJ":
        renderer.render(EDITION, sample_papers(topics=(topic,)), ANN)
    assert renderer._parts.bytes <= 60_000
    assert 0 < len(renderer._parts) < 20
    html = renderer.render(EDITION, sample_papers(topics=("A",)), ANN).html
    assert ">A</span>" in html and html.count('class="title" style=') == 3


def test_renderer_can_be_shared_between_threads(settings: Settings) -> None:
    base = make_renderer(settings)
    # A tiny cache forces evictions while other threads read it.
    renderer = DigestRenderer(settings, base.html_env, base.text_env, cache_size=2)
    papers = sample_papers()
    bodies = [papers[:1], papers[:2], papers[:3], papers[1:]]

    def work(number: int) -> list[str]:
        reader = Recipient(number, f"r{number}@example.org", f"Reader {number}", ())
        return [renderer.render(EDITION, bodies[i % 4], reader).text for i in range(40)]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(work, range(8)))
    assert all(f"Hi Reader {n}," in text for n, texts in enumerate(results) for text in texts)
    assert renderer.stats.hits + renderer.stats.misses == 8 * 40
    assert len(renderer._cache) <= 2


def test_placeholders_survive_inlining_inside_attributes(settings: Settings) -> None:
    calls: list[str] = []

    def spy(html: str) -> str:
        calls.append(html)
        from newsletter.content.css import inline_css

        return inline_css(html)

    base = make_renderer(settings)
    renderer = DigestRenderer(settings, base.html_env, base.text_env, inline=spy)
    digest = renderer.render(EDITION, sample_papers(), ANN)
    assert len(calls) == 1
    assert renderer._placeholders.unsubscribe_url in calls[0]
    assert f'href="{tokens.manage_url(settings, 1, "none")}"' in digest.html


def test_subject_is_one_trimmed_line(settings: Settings) -> None:
    long_title = "Breaking\r\nBcc: everyone@example.org " + "very long words " * 20
    paper = dataclasses.replace(sample_papers()[0], title=long_title)
    subject = make_renderer(settings).render(EDITION, [paper], ANN).subject
    assert "\r" not in subject and "\n" not in subject
    assert subject.startswith("Your daily papers — Nov 27: Breaking Bcc: everyone@example.org very")
    assert len(subject) <= 100
    assert subject.endswith("…")


def test_empty_note(settings: Settings) -> None:
    renderer = make_renderer(settings)
    note = renderer.render_empty(EDITION, ANN)
    assert note.subject == "Your daily papers — Nov 27: nothing new on your topics"
    assert "No new papers matched your topics" in note.text
    assert "No new papers matched your topics (Alignment, LLMs, Robotics)" in note.html
    assert tokens.unsubscribe_url(settings, 1, "none") in note.html
    with pytest.raises(ValueError, match="render_empty"):
        renderer.render(EDITION, [], ANN)


def test_operator_templates_win(settings: Settings, tmp_path: Path) -> None:
    custom = tmp_path / "custom" / "email"
    custom.mkdir(parents=True)
    (custom / "digest.subject.txt").write_text(
        "Lab digest: {{ papers|length }} papers\n", encoding="utf-8"
    )
    (custom / "digest.txt").write_text(
        "{{ recipient.greeting }} {{ papers[0].title }}\n{{ recipient.unsubscribe_url }}\n",
        encoding="utf-8",
    )
    overridden = dataclasses.replace(settings, templates_dir=str(tmp_path / "custom"))
    digest = make_renderer(overridden).render(EDITION, sample_papers(), ANN)
    assert digest.subject == "Lab digest: 3 papers"
    assert digest.text == (
        "Hi Ann, Constitutional Midtraining: Content Presence Drives Alignment Gains\n"
        f"{tokens.unsubscribe_url(settings, 1, 'none')}\n"
    )
    assert "Thursday, 27 November 2025" in digest.html  # the shipped HTML still serves


def test_environments(settings: Settings) -> None:
    assert (shipped_dir("templates") / "email" / "digest.html").is_file()
    html_env = make_jinja_env(settings, "html")
    text_env = make_jinja_env(settings, "text")
    assert html_env.from_string("{{ v }}").render(v="<b>") == "&lt;b&gt;"
    assert text_env.from_string("{{ v }}").render(v="<b>") == "<b>"
    with pytest.raises(jinja2.UndefinedError):
        text_env.from_string("{{ missing }}").render()
    with pytest.raises(ValueError):
        make_jinja_env(settings, "pdf")  # type: ignore[arg-type]


def test_authors_short() -> None:
    assert authors_short(("A", "B")) == "A, B"
    assert authors_short(("A", "B", "C", "D")) == "A, B, C, D"
    assert authors_short(("A", "B", "C", "D", "E")) == "A, B, C et al."
    assert authors_short(("A\n", " ", "B")) == "A, B"


def test_shorten_cuts_at_a_word_within_the_limit() -> None:
    short = "A short abstract."
    assert shorten(short) == short
    text = "word " * 100
    trimmed = shorten(text)
    assert trimmed.endswith("word…")
    assert 300 < len(trimmed) <= 350
    assert shorten("x" * 400) == "x" * 349 + "…"
    assert shorten("Line one.\n\nLine two.") == "Line one. Line two."
    assert shorten("Scaling laws, revisited. And more", 26) == "Scaling laws, revisited…"
    assert shorten("a" * 30 + " b", 20) == "a" * 19 + "…"  # no boundary near: cut the word


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://arxiv.org/abs/1", "https://arxiv.org/abs/1"),
        ("HTTP://example.org/x", "HTTP://example.org/x"),
        ("javascript:alert(1)", None),
        ("JavaScript:alert(1)", None),
        ("data:text/html,hi", None),
        ("//evil.example/x", None),
        ("https://", None),
        ("https://exa mple.org", None),
        ("https://example.org/\r\nx", None),
        ("", None),
        (None, None),
    ],
)
def test_safe_url(url: str | None, expected: str | None) -> None:
    assert safe_url(url) == expected


def test_inlining_with_remembered_rules_equals_premailer(settings: Settings) -> None:
    """Rules read once per stylesheet inline as premailer does when it reads them every time."""
    import logging

    from premailer import Premailer

    renderer = make_renderer(settings)
    documents = [  # as rendered, before inlining: the whole stylesheet in <style>
        renderer._whole(renderer._draft("digest", EDITION, tuple(papers)).html)
        for papers in (sample_papers(), [hostile_paper()], sample_papers()[1:])
    ]
    assert all(".paper-last {" in html for html in documents)
    for html in documents * 2:  # the second round reads every stylesheet from the cache
        fresh = Premailer(
            html, keep_style_tags=False, strip_important=False, remove_classes=False,
            disable_validation=True, allow_network=False, cache_css_parsing=False,
            cssutils_logging_level=logging.CRITICAL,
        ).transform(pretty_print=False)  # fmt: skip
        assert inline_css(html) == (fresh if fresh.endswith("\n") else fresh + "\n")


def test_titles_line_is_the_titles_mapped_and_joined(settings: Settings) -> None:
    papers = [
        hostile_paper(),
        dataclasses.replace(hostile_paper(), title=" Two\n lines "),
        *sample_papers(),
    ]
    for kind in ("html", "text"):
        env = make_jinja_env(settings, kind)  # type: ignore[arg-type]
        fast = env.from_string('{{ papers|titles_line(" · ")|truncate(140) }}')
        slow = env.from_string(
            '{{ papers|map(attribute="title")|map("one_line")|join(" · ")|truncate(140) }}'
        )
        for count in range(len(papers) + 1):
            assert fast.render(papers=papers[:count]) == slow.render(papers=papers[:count])
