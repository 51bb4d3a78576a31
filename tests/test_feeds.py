"""Journals' feeds: the parser on real RSS 1.0, RSS 2.0, Atom and JSON Feed fixtures, the
fetcher against the local HTTP server, and hostile feeds refused in one line."""

from __future__ import annotations

import json
import re
import tracemalloc
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from newsletter.core.errors import InputError, NoListing, SourceError
from newsletter.papers.fetch import store_records
from newsletter.papers.sources.feeds import (
    MAX_FEED_ITEMS,
    fetch_feed,
    parse_feed,
    split_names,
    strip_markup,
)
from newsletter.papers.sources.http import RetryPolicy, SourceClient, make_http_client
from tests.conftest import FIXTURES
from tests.feed_server import FeedServer, Reply, quick_source_client

FEEDS = FIXTURES / "feeds"
NATURE = (FEEDS / "nature_rss10.rdf").read_bytes()
AAS_NOVA = (FEEDS / "aasnova_rss20.xml").read_bytes()
JOSS = (FEEDS / "joss_atom.xml").read_bytes()
JSON_FEED = (FEEDS / "daringfireball_jsonfeed.json").read_bytes()
NATURE_DAY = date(2024, 8, 14)  # 40 of the 75 items
FAST_RETRY = RetryPolicy(tries=2, backoff=0.01, max_wait=5)
BOMB = (
    b'<?xml version="1.0"?>\n<!DOCTYPE rss [<!ENTITY a "aaaaaaaaaa">'
    b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
    b"<rss><channel><item><title>&c;</title></item></channel></rss>"
)
XXE = (
    b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b"<rss><channel><item><title>&x;</title></item></channel></rss>"
)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as feed:
        yield feed


@pytest.fixture
def client(settings) -> Iterator[SourceClient]:
    with quick_source_client(settings, timeout=2.0) as source_client:
        yield source_client


def _by_title(records, start):
    [record] = [r for r in records if r.title.startswith(start)]
    return record


# --- the real feeds ---------------------------------------------------------------------


def test_nature_rss_1_0_gives_every_item_with_authors_doi_venue_and_date():
    records = parse_feed(NATURE, name="nature.rss")

    assert len(records) == 75
    first = records[0]
    # CDATA markup is stripped; the subscript's text stays in the word.
    assert first.title == (
        "Author Correction: Anti-TIGIT antibody improves PD-L1 blockade through myeloid "
        "and Treg cells"
    )
    assert len(first.authors) == 31
    assert first.authors[:2] == ["Xiangnan Guan", "Ruozhen Hu"]
    assert first.authors[-1] == "Namrata S. Patil"
    assert first.doi == "10.1038/s41586-024-07956-2"
    assert first.venue == "Nature"  # prism:publicationName, not dc:source's citation line
    assert first.published_on == first.listing_date == date(2024, 8, 20)
    assert first.url_abs == "https://www.nature.com/articles/s41586-024-07956-2"
    assert first.source == "feed"
    for record in records:
        assert record.url_abs.endswith(record.doi.split("/", 1)[1])
        assert "<" not in record.title + record.abstract
    # An entity (&#xa0;) decoded and folded to a space, a doubled space collapsed.
    pore = _by_title(records, "Molecular architecture of coronavirus")
    assert pore.title.endswith("double-membrane vesicle pore complex")
    assert _by_title(records, "‘Unacceptable’").authors == ["Alix Soliman"]
    assert _by_title(records, "Government plans often go astray").authors == []
    assert _by_title(records, "Gut microbes").abstract.endswith(
        "as effective at treating infected skin wounds as is the antibiotic of last resort."
    )


def test_a_day_keeps_the_items_published_that_day_listed_on_it():
    records = parse_feed(NATURE, name="nature.rss", day=NATURE_DAY)

    assert len(records) == 40
    assert {r.published_on for r in records} == {r.listing_date for r in records} == {NATURE_DAY}
    with pytest.raises(NoListing, match="no papers listed for 2024-08-13"):
        parse_feed(NATURE, name="nature.rss", day=date(2024, 8, 13))


def test_aas_nova_rss_2_0_with_a_blank_line_before_its_declaration():
    records = parse_feed(AAS_NOVA, name="aasnova")

    assert [r.title for r in records] == [
        "New Observations Suggest a Way for Stars and Planets to Get Out of Alignment",
        "Searching for Molecular Jets from High-Mass Protostars",
        "Could Spinning Soup Start Starquakes and Explain a Magnetar Mystery?",
        "Triage with Random Forests: Machine Learning for Transient Classification",
    ]
    assert [r.authors for r in records] == [
        ["Kerry Hensley"], ["Kerry Hensley"], ["Astrobites"], ["Ben Cassese"]
    ]  # fmt: skip
    assert [r.published_on for r in records] == [
        date(2023, 6, 26), date(2023, 6, 26), date(2023, 6, 20), date(2023, 6, 16)
    ]  # fmt: skip
    assert {r.venue for r in records} == {"AAS Nova"}  # the channel's title
    # A DOI link as the item's link, its tracking suffix cut; posts about a paper have none.
    assert [r.doi for r in records] == [None, "10.3847/1538-4365/aca4c6", None, None]
    first = records[0].abstract
    assert first.startswith("Why do some exoplanets orbit in the same direction")
    assert "<" not in first and "srcset" not in first and "&#" not in first


def test_joss_atom_reads_its_own_author_and_doi_elements():
    [record] = parse_feed(JOSS, name="joss")

    assert record.title.startswith("bayestestR: Describing Effects and their Uncertainty")
    assert record.authors == ["Dominique Makowski", "Mattan S. Ben-Shachar", "Daniel Lüdecke"]
    assert record.doi == "10.21105/joss.01541"
    assert record.venue == "Journal of Open Source Software"
    assert record.published_on == date(2019, 6, 30)
    assert record.url_abs == "https://joss.theoj.org/papers/1d180e6004a0dd1e6b235eb24fe66276"


def test_json_feed_items_with_authors_dates_and_html_stripped():
    records = parse_feed(JSON_FEED, name="df.json")

    assert len(records) == 14
    first = records[0]
    assert first.title == "Square"
    assert first.authors == ["John Gruber"]
    assert first.venue == "Daring Fireball"
    assert first.published_on == date(2020, 2, 16)
    assert first.url_abs == "https://daringfireball.net/linked/2020/02/16/square"
    assert first.abstract.startswith("My thanks to Square for sponsoring this week’s DF RSS.")
    assert all("<" not in r.abstract for r in records)
    sponsor = _by_title(records, "[Sponsor] Square")
    assert sponsor.authors == ["Daring Fireball Department of Commerce"]
    assert sponsor.published_on == date(2020, 2, 10)  # 17:18 at -05:00, the day as written
    assert [r.title for r in parse_feed(JSON_FEED, name="df", day=date(2020, 2, 11))] == [
        "Let’s Get Real About How Important Our Phones Are",
        "21st Century Autocracy",
        "Samsung’s Galaxy Book S Is Thinner, Lighter, Faster Than MacBook Air",
        "What Jonathan Chait Does Like About Bernie Sanders",
        "Today, in Our Headlong Roll Into Banana Republicdom",
    ]


# --- fields in their several forms --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("A. Wallner, J. Feige, L. K. Fifield", ["A. Wallner", "J. Feige", "L. K. Fifield"]),
        (
            "Yanjing Gao, Guangrui Chen, and Jihong Yu",
            ["Yanjing Gao", "Guangrui Chen", "Jihong Yu"],
        ),
        ("Powell, W., Yan, N., Tse, E.", ["Powell, W.", "Yan, N.", "Tse, E."]),
        ("Smith, A.; Jones, B.", ["Smith, A.", "Jones, B."]),
        ("Smith, John", ["Smith, John"]),
        ("Ada Lovelace & Charles Babbage", ["Ada Lovelace", "Charles Babbage"]),
        ("Ana Anderson\nBo Brandt", ["Ana Anderson", "Bo Brandt"]),
    ],
)
def test_author_strings_split_into_names(text, names):
    assert split_names(text) == names


def test_markup_is_stripped_safely():
    html = (
        "<p>First &amp; <i>second</i></p><script>alert('no')</script><style>p{color:red}</style>"
        "<div>third&#8217;s</div><img src=x onerror=alert(1)>"
    )
    assert strip_markup(html) == "First & second third’s"


def _rss_item(fields: str) -> bytes:
    return (
        '<?xml version="1.0"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:prism="http://prismstandard.org/namespaces/basic/2.0/"><channel>'
        f"<title>Channel</title><item><title>A paper</title>{fields}</item></channel></rss>"
    ).encode()


@pytest.mark.parametrize(
    "fields",
    [
        "<dc:identifier>doi:10.1093/icb/icag118</dc:identifier><dc:identifier>pmid:42476553</dc:identifier>",
        "<dc:identifier>pmid:42476553</dc:identifier><dc:identifier>doi:10.1093/icb/icag118</dc:identifier>",
        "<prism:doi>10.1093/icb/icag118</prism:doi>",
        "<guid>https://doi.org/10.1093/icb/icag118</guid>",
        "<link>http://dx.doi.org/10.1093/icb/icag118</link>",
    ],
)
def test_the_doi_is_found_wherever_a_feed_puts_it(fields):
    [record] = parse_feed(_rss_item(fields), name="f")
    assert record.doi == "10.1093/icb/icag118"


def test_a_doi_is_not_taken_from_a_journal_page_link_and_venue_prefers_the_item():
    fields = (
        "<link>https://example.org/articles/10.1234/x</link>"
        "<dc:source>Integrative and comparative biology</dc:source>"
        "<pubDate>Mon, 20 Dec 2021 06:00:00 -0500</pubDate>"
        "<link>javascript:alert(1)</link>"
    )
    [record] = parse_feed(_rss_item(fields), name="f")
    assert record.doi is None
    assert record.venue == "Integrative and comparative biology"
    assert record.published_on == date(2021, 12, 20)


def test_undated_items_are_listed_on_the_day_asked_for_and_untitled_ones_left_out():
    body = _rss_item("<dc:creator>Ada Lovelace</dc:creator>").replace(
        b"</channel>", b"<item><description>a note without a title</description></item></channel>"
    )
    [record] = parse_feed(body, name="f", day=date(2026, 7, 31))
    assert record.published_on is None and record.listing_date == date(2026, 7, 31)
    assert record.authors == ["Ada Lovelace"]


# --- not feeds, and hostile feeds ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (BOMB, "XML entities are not allowed (entity 'a')"),
        (XXE, "XML entities are not allowed (entity 'x')"),
        (b"<!DOCTYPE html>\n<html><head><title>Moved</title></head><body>", "an HTML page"),
        (b"<html><body>", "an HTML page"),
        (b'<?xml version="1.0"?><urlset><url/></urlset>', "XML with a <urlset> root"),
        ((FIXTURES / "hf_daily_papers_5.json").read_bytes(), "a JSON array, not a feed"),
        (b'{"title": "x", "items": []}', "JSON without a JSON Feed version, not a feed"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": {}}', '"items" is not a list'),
        (b"", "the answer is empty"),
        (b"  \n", "the answer is empty"),
        (b"%PDF-1.4 binary", "neither XML nor JSON"),
        (NATURE[: len(NATURE) // 2], "truncated or invalid XML at line"),
        (JSON_FEED[: len(JSON_FEED) // 2], "truncated or invalid JSON"),
    ],
)
def test_what_is_not_a_feed_is_one_line_naming_it(body, message):
    with pytest.raises(InputError) as caught:
        parse_feed(body, name="https://journal.example/feed")
    line = str(caught.value)
    assert line.startswith("https://journal.example/feed: ") and message in line, line
    assert "\n" not in line and "root:" not in line  # never the entity's target


def test_a_feed_of_a_hundred_thousand_items_is_refused_at_the_cap_without_being_built():
    items = b"<item><title>x</title></item>" * 100_000
    body = b'<?xml version="1.0"?><rss version="2.0"><channel>' + items + b"</channel></rss>"
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as caught:
            parse_feed(body, name="big")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(caught.value) == f"big: more than {MAX_FEED_ITEMS:,} items in one feed"
    assert peak < len(body), peak  # the walk stopped at the cap: nothing like the whole tree


def test_a_json_feed_of_too_many_items_is_refused():
    doc = {"version": "https://jsonfeed.org/version/1.1", "items": [{"title": "x"}] * 5_000}
    with pytest.raises(InputError, match=f"more than {MAX_FEED_ITEMS:,} items"):
        parse_feed(json.dumps(doc).encode(), name="big")


def test_long_fields_are_capped():
    fields = (
        f"<description>{'word ' * 200_000}</description><dc:creator>{'A B, ' * 5000}</dc:creator>"
    )
    [record] = parse_feed(_rss_item(fields), name="f")
    assert len(record.abstract) <= 20_000
    assert len(record.authors) == 1  # the same name repeated is one author


# --- through the HTTP server ---------------------------------------------------------------


def test_fetch_feed_reads_the_day_from_the_local_server(server, client):
    server.add("/nature.rss", Reply(body=NATURE, content_type="application/rss+xml"))
    pages: list[int] = []

    records = fetch_feed(
        f"{server.url}/nature.rss", NATURE_DAY, client=client, on_page=pages.append
    )

    assert len(records) == 40 and pages == [40]
    assert all(r.listing_date == NATURE_DAY and r.doi for r in records)
    assert server.requests[0].headers["user-agent"].startswith("daily-papers")


@pytest.mark.parametrize(
    ("path", "body", "kind"),
    [
        ("/aas", AAS_NOVA, "text/xml"),
        ("/joss.atom", JOSS, "application/atom+xml"),
        ("/feed.json", JSON_FEED, "application/feed+json"),
        ("/odd", JSON_FEED, "text/plain"),  # the body says what it is, not the header
    ],
)
def test_fetch_feed_reads_each_format_whatever_its_content_type(server, client, path, body, kind):
    server.add(path, Reply(body=body, content_type=kind))
    assert fetch_feed(server.url + path, None, client=client)


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(body=b"<!doctype html><html><body>Log in</body></html>", content_type="text/html"),
         "an HTML page, not a feed"),
        (Reply(body=BOMB, content_type="application/rss+xml"), "XML entities are not allowed"),
        (Reply(status=404, body=b"gone", content_type="text/plain"), "HTTP 404"),
    ],
)  # fmt: skip
def test_fetch_feed_fails_in_one_line_naming_the_address(server, client, reply, message):
    server.add("/feed", reply)
    with pytest.raises(SourceError) as caught:
        fetch_feed(f"{server.url}/feed", None, client=client)
    line = str(caught.value)
    assert f"{server.url}/feed" in line and message in line and "\n" not in line, line


def test_a_huge_feed_is_refused_by_the_byte_cap_without_growing_memory(server, settings):
    body = b'<?xml version="1.0"?><rss><channel>' + b"<item><title>x</title></item>" * 1_500_000
    server.add("/huge", Reply(body=body, content_type="application/rss+xml", announce_length=False))
    cap = 1024 * 1024
    tracemalloc.start()
    try:
        with SourceClient(make_http_client(settings), retry=FAST_RETRY, max_bytes=cap) as client:
            with pytest.raises(SourceError) as caught:
                fetch_feed(f"{server.url}/huge", None, client=client)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "larger than 1,048,576 bytes (source_max_bytes)" in str(caught.value)
    assert len(body) > 40 * cap and peak < 8 * cap, peak


@pytest.mark.parametrize("url", ["ftp://journal.example/feed", "file:///etc/passwd", "feed"])
def test_only_http_addresses_are_fetched(client, url):
    with pytest.raises(InputError, match=re.escape(f"not an http(s) feed address: {url!r}")):
        fetch_feed(url, None, client=client)


def test_a_fetched_feed_is_stored_once_and_a_second_fetch_adds_nothing(app, server, client):
    server.add("/nature.rss", Reply(body=NATURE, content_type="application/rss+xml"))
    url = f"{server.url}/nature.rss"

    first = store_records(app, fetch_feed(url, NATURE_DAY, client=client), NATURE_DAY)
    again = store_records(app, fetch_feed(url, NATURE_DAY, client=client), NATURE_DAY)

    assert (first.papers, first.new) == (40, 40)
    assert (again.papers, again.new) == (40, 0)
    assert first.listing_dates == [NATURE_DAY]


def test_papers_fetch_reads_a_feed_and_the_configured_feeds_survive_one_failing(run, server):
    server.add("/nature.rss", Reply(body=NATURE, content_type="application/rss+xml"))
    server.add("/broken.rss", Reply(body=b"<html><body>Moved</body></html>",
                                    content_type="text/html"))  # fmt: skip
    day = NATURE_DAY.isoformat()

    one = run("papers", "fetch", "--source", "feed", "--url", f"{server.url}/nature.rss",
              "--date", day, "--json")  # fmt: skip
    assert one.exit_code == 0, one.output
    assert json.loads(one.stdout)["new"] == 40
    rows = json.loads(run("papers", "list", "--date", day, "--json").stdout)
    assert {r["source"] for r in rows} == {"feed"} and {r["venue"] for r in rows} == {"Nature"}
    assert all(r["url_journal"] == r["url_abs"] for r in rows)
    assert sum(1 for r in rows if r["doi"]) == 40

    feeds = f'scheduler_feed_urls = ["{server.url}/broken.rss", "{server.url}/nature.rss"]\n'
    Path("newsletter.toml").write_text(feeds, encoding="utf-8")
    both = run("papers", "fetch", "--source", "feed", "--date", day, "--json")
    assert both.exit_code == 0, both.output
    assert json.loads(both.stdout)["new"] == 0  # nothing is new twice

    Path("newsletter.toml").unlink()
    missing = run("papers", "fetch", "--source", "feed", "--date", day)
    assert missing.exit_code == 2 and "needs --url URL" in missing.stderr, missing.output
