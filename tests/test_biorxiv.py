"""bioRxiv and medRxiv: the parser on real API answers, the fetcher against a local server."""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Iterator
from datetime import date

import pytest
from sqlalchemy import select

from newsletter.core.errors import InputError, NoListing, SourceError
from newsletter.core.models import Paper
from newsletter.papers.ingest import ABSTRACT_MAX, ingest_records
from newsletter.papers.sources.biorxiv import (
    fetch_biorxiv,
    parse_biorxiv_json,
    split_authors,
    strip_markup,
)
from newsletter.papers.sources.http import RetryPolicy, SourceClient, make_http_client
from tests.conftest import FIXTURES
from tests.feed_server import FeedServer, Reply, Request, quick_source_client

BIORXIV = FIXTURES / "biorxiv" / "biorxiv_details.json"
MEDRXIV = FIXTURES / "biorxiv" / "medrxiv_details.json"
DAY = date(2020, 1, 8)
PAGE = "/details/biorxiv/2020-01-08/2020-01-08"
FAST_RETRY = RetryPolicy(tries=2, backoff=0.01, max_wait=5)
# What bioRxiv's markup looks like when it is left in: O_LI, C_ST_ABS, [&ge;], <i>.
LEFTOVER = re.compile(r"[OC]_[A-Z]{2,}|&#?\w+;|</?\w+>")


def _parse(path=BIORXIV, server="biorxiv", **kwargs):
    return parse_biorxiv_json(path.read_bytes(), name=path.name, server=server, **kwargs)


def _by_doi(records):
    return {r.doi: r for r in records}


def test_biorxiv_rows_become_one_record_per_preprint_at_its_latest_version():
    rows = json.loads(BIORXIV.read_bytes())["collection"]
    records = _parse(listing_date=DAY)
    assert (len(rows), len(records)) == (50, 40)
    assert len({r.doi for r in records}) == 40 and {r.doi for r in records} == {
        row["doi"] for row in rows
    }
    first = records[0]
    assert first.title.startswith("Characterization of cell-to-cell variation")
    assert (first.doi, first.source, first.venue) == ("10.1101/001768", "biorxiv", "bioRxiv")
    assert first.url_abs == "https://www.biorxiv.org/content/10.1101/001768"
    assert first.url_pdf == "https://www.biorxiv.org/content/10.1101/001768v2.full.pdf"
    assert first.authors[:2] == ["L. Durrieu", "A. Bush"] and len(first.authors) == 9
    assert first.categories == ["systems-biology"] and first.arxiv_id is None
    # The row says where it was published: the card links the journal version.
    assert first.url_journal == "https://doi.org/10.1016/j.isci.2022.105906"
    assert sum(1 for r in records if r.url_journal is None) > 0  # "NA": not yet published
    assert (first.published_on, first.listing_date) == (date(2022, 6, 24), DAY)
    papers = _by_doi(records)
    # v10 outranks v9 (numbers, not strings); the later version's title and date win.
    assert papers["10.1101/067736"].url_pdf.endswith("067736v10.full.pdf")
    assert papers["10.1101/067736"].published_on == date(2021, 5, 3)
    assert papers["10.1101/058511"].title.startswith("Cardiorespiratory physiological")
    assert papers["10.1101/008326"].published_on == date(2021, 10, 1)


def test_biorxiv_subjects_are_category_codes():
    counts = collections.Counter(c for r in _parse() for c in r.categories)
    assert counts["neuroscience"] == 9  # ten rows, one preprint of them in two versions
    assert counts["scientific-communication-and-education"] == 1
    assert counts["bioinformatics"] == 7 and counts["genetics"] == 5
    assert sum(counts.values()) == 40


def test_names_are_composed_and_markup_is_stripped():
    papers = _by_doi(_parse())
    assert "M. K. Sjöberg-Herrera" in papers["10.1101/043794"].authors  # "Sjo\u0308berg", NFC
    assert "J. Von Kügelgen" in papers["10.1101/078998"].authors
    assert papers["10.1101/066688"].abstract.startswith("ABSTRACTWhen emerging pathogens")
    highlights = papers["10.1101/081661"].abstract
    assert "Highlights General connection" in highlights and "C_LI" not in highlights
    assert not [r.doi for r in papers.values() if LEFTOVER.search(r.title + r.abstract)]


def test_medrxiv_rows_collapse_versions_and_decode_symbols():
    records = _parse(MEDRXIV, "medrxiv")
    assert len(records) == 49
    papers = _by_doi(records)
    twice = papers["10.1101/2019.12.26.19015917"]
    assert twice.published_on == date(2020, 1, 3) and twice.url_pdf.endswith("v2.full.pdf")
    assert twice.listing_date == date(2020, 1, 3)  # no listing date given: the posting day
    ehr = papers["10.1101/2019.12.28.19015628"]
    assert "blood pressure of ≥ 140/90 mmHg" in ehr.abstract
    assert ehr.url_abs == "https://www.medrxiv.org/content/10.1101/2019.12.28.19015628"
    assert {r.venue for r in records} == {"medRxiv"} and {r.source for r in records} == {"medrxiv"}
    counts = collections.Counter(c for r in records for c in r.categories)
    assert counts["epidemiology"] == 11 and counts["infectious-diseases"] == 1
    assert counts["psychiatry-and-clinical-psychology"] == 4
    assert not [r.doi for r in records if LEFTOVER.search(r.title + r.abstract)]


def test_author_strings_and_markup_of_every_shape():
    assert split_authors("Kotte, A.-K.; GARBH-Ini,  ; Hu, W.; Plato") == [
        "A.-K. Kotte", "GARBH-Ini", "W. Hu", "Plato"
    ]  # fmt: skip
    assert split_authors(None) == [] and split_authors(["Hu, W."]) == []
    assert strip_markup("The <i>Drosophila</i> m<sup>2</sup> p < 0.05 and q > 1") == (
        "The Drosophila m2 p < 0.05 and q > 1"
    )
    assert strip_markup("O_ST_ABSWhat is newC_ST_ABSO_LIOneC_LI [&ge;]3 &amp;") == (
        "What is new One ≥3 &"
    )


def test_fields_are_capped_as_storing_caps_them():
    doc = json.loads(BIORXIV.read_bytes())
    doc["collection"][0]["abstract"] = "word " * 100_000
    (record, *_) = parse_biorxiv_json(json.dumps(doc).encode(), name="x", server="biorxiv")
    assert len(record.abstract) <= ABSTRACT_MAX and record.abstract.endswith("…")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>sorry</html>", "x: truncated or invalid JSON at line 1 column 1"),
        (b"[]", "x: expected a JSON object with a 'collection' list"),
        (b'{"collection": {"doi": "10.1101/1"}}', "expected a JSON object with a 'collection'"),
        (b'{"messages": ["ok"], "collection": []}', "x: 'messages' is not a list of objects"),
        (b'{"messages": [{"status": "Server not recognized"}]}', "answered 'Server not"),
        (b'{"collection": [7]}', "x: item 1: not an object"),
        (b'{"collection": [{"doi": "not-a-doi", "title": "T"}]}', "x: item 1: no DOI"),
        (b'{"collection": [{"doi": "10.1101/1", "title": " "}]}', "x: item 1: the preprint"),
        (b'{"collection": [' + b"{}," * 10_000 + b"{}]}", "10,001 papers in one document"),
    ],
)
def test_a_document_that_is_not_a_details_answer_is_refused_in_one_line(body, message):
    with pytest.raises(InputError, match=re.escape(message)) as caught:
        parse_biorxiv_json(body, name="x", server="biorxiv")
    assert "\n" not in str(caught.value)


def test_no_posts_is_no_listing():
    with pytest.raises(NoListing, match="no papers listed for 2020-01-08"):
        parse_biorxiv_json(
            b'{"messages":[{"status":"no posts found"}],"collection":[]}',
            name="x", server="biorxiv", listing_date=DAY,
        )  # fmt: skip


# --- the fetcher, against a real HTTP server on 127.0.0.1 ---------------------------------


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as feed:
        yield feed


@pytest.fixture
def client(settings) -> Iterator[SourceClient]:
    with quick_source_client(settings, timeout=0.5) as source_client:
        yield source_client


def _fetch(feed: FeedServer, client: SourceClient, **kwargs):
    kwargs.setdefault("server", "biorxiv")
    return fetch_biorxiv(DAY, base_url=feed.url, client=client, spacing=0, **kwargs)


def _with_total(path, total: int) -> Reply:
    """The real answer, its messages saying the interval holds `total` rows."""
    doc = json.loads(path.read_bytes())
    doc["messages"][0]["total"] = str(total)
    return Reply(body=json.dumps(doc).encode())


def test_pages_follow_the_cursor_until_the_total(server, client, settings):
    # Both pages are the real answer; its 50 rows, then the same 50: versions and repeats fold.
    server.add(f"{PAGE}/0", _with_total(BIORXIV, 100))
    server.add(f"{PAGE}/50", _with_total(BIORXIV, 100))
    seen: list[tuple[int, int | None]] = []
    records = _fetch(server, client, on_page=lambda rows, total: seen.append((rows, total)))
    assert [r.path for r in server.requests] == [f"{PAGE}/0", f"{PAGE}/50"]
    assert seen == [(50, 100), (100, 100)]
    assert len(records) == 40 and len({r.doi for r in records}) == 40
    assert {r.listing_date for r in records} == {DAY}
    assert server.requests[0].headers["user-agent"] == settings.user_agent
    assert server.requests[0].param("category") is None


def test_a_server_that_pages_forever_is_stopped_at_the_page_cap(server, client):
    for cursor in (0, 50, 100):  # the real total (152,918 rows) would take 3,000 pages
        server.add(f"{PAGE}/{cursor}", Reply.file(BIORXIV))
    records = _fetch(server, client, max_pages=2)
    assert len(server.requests) == 2 and len(records) == 40


def test_more_rows_than_a_day_holds_are_refused(server, client):
    rows = [{"doi": f"10.1101/{n:06d}", "title": f"Preprint {n}"} for n in range(4000)]
    body = json.dumps({"messages": [{"status": "ok", "total": "900000"}], "collection": rows})
    for cursor in (0, 4000, 8000):
        server.add(f"{PAGE}/{cursor}", Reply(body=body.encode()))
    with pytest.raises(SourceError, match=f"{PAGE}/8000: more than 10,000 rows for one day"):
        _fetch(server, client)
    assert len(server.requests) == 3


def test_an_answer_without_a_total_is_one_page(server, client):
    doc = json.loads(MEDRXIV.read_bytes())
    del doc["messages"][0]["total"]
    server.add("/details/medrxiv/2020-01-08/2020-01-08/0", Reply(body=json.dumps(doc).encode()))
    records = _fetch(server, client, server="medRxiv")
    assert len(server.requests) == 1 and len(records) == 49


def test_one_category_is_asked_of_the_api_and_checked_here(server, client):
    server.add(f"{PAGE}/0", _with_total(BIORXIV, 50))  # the real answer holds every subject
    records = _fetch(server, client, categories=["Neuroscience"])
    assert server.requests[0].param("category") == "neuroscience"
    assert len(records) == 9 and {c for r in records for c in r.categories} == {"neuroscience"}


def test_several_categories_are_filtered_here(server, client):
    server.add(f"{PAGE}/0", _with_total(BIORXIV, 50))
    records = _fetch(server, client, categories=["neuroscience", "Systems Biology", "genetics"])
    assert server.requests[0].param("category") is None
    assert collections.Counter(c for r in records for c in r.categories) == {
        "neuroscience": 9, "genetics": 5, "systems-biology": 2
    }  # fmt: skip


def test_a_multiword_category_is_spelled_the_apis_way(server, client):
    server.add("/details/medrxiv/2020-01-08/2020-01-08/0", _with_total(MEDRXIV, 50))
    records = _fetch(server, client, server="medrxiv", categories=["infectious diseases"])
    assert server.requests[0].param("category") == "infectious_diseases"
    assert [r.doi for r in records] == ["10.1101/2019.12.28.19015941"]


@pytest.mark.parametrize(
    ("server_name", "categories", "message"),
    [
        ("arxiv", (), "not a preprint server: 'arxiv' (expected biorxiv or medrxiv)"),
        ("biorxiv", ("neurosciense",), "not a bioRxiv subject: 'neurosciense' (did you mean "
                                       "neuroscience?)"),
        ("medrxiv", ("neuroscience",), "not a medRxiv subject: 'neuroscience'"),
        ("biorxiv", ("cs.LG",), "not a bioRxiv subject: 'cs.LG'"),
    ],
)  # fmt: skip
def test_a_bad_server_or_subject_is_refused_before_asking(
    server, client, server_name, categories, message
):
    with pytest.raises(InputError, match=re.escape(message)):
        _fetch(server, client, server=server_name, categories=categories)
    assert server.requests == []


def test_a_day_without_preprints_is_no_listing(server, client):
    server.add(f"{PAGE}/0", Reply(body=b'{"messages":[{"status":"no posts found"}]}'))
    with pytest.raises(NoListing, match="2020-01-08"):
        _fetch(server, client)
    assert len(server.requests) == 1


def _huge(request: Request) -> Reply:
    return Reply(body=b'{"collection": ["' + b"x" * 4096 + b'"]}')


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(body=b"<html>Service unavailable</html>"), "truncated or invalid JSON"),
        (Reply(body=b"<html>oops</html>", content_type="text/html"), "got text/html"),
        (Reply(body=b"[1, 2, 3]"), "expected a JSON object with a 'collection' list"),
        (Reply(body=b'{"collection": [{"title": "No DOI"}]}'), "item 1: no DOI"),
        (Reply(body=b"x" * 4096), "the answer is larger than 2,048 bytes"),
    ],
)
def test_a_hostile_answer_is_refused_in_one_line_naming_the_url(settings, server, reply, message):
    server.add(f"{PAGE}/0", reply)
    with SourceClient(make_http_client(settings), retry=FAST_RETRY, max_bytes=2048) as small:
        with pytest.raises(SourceError) as caught:
            _fetch(server, small)
    text = str(caught.value)
    assert message in text and f"{PAGE}/0" in text and "\n" not in text
    assert len(server.requests) == 1  # a bad document is not retried


def test_fetched_preprints_are_stored_as_papers(app, server, client):
    server.add("/details/medrxiv/2020-01-08/2020-01-08/0", _with_total(MEDRXIV, 50))
    with app.transaction() as session:
        stats = ingest_records(_fetch(server, client, server="medrxiv"), session=session)
        stored = session.scalar(select(Paper).where(Paper.url_abs.endswith("2019.12.28.19015941")))
        assert stats.inserted == 49 and stored is not None
        assert (stored.source, stored.categories) == ("medrxiv", ["infectious-diseases"])
        assert stored.listing_date == DAY and stored.authors[0] == "H. M. Akala"


def test_papers_fetch_takes_a_days_preprints_of_a_subject_and_a_topic_takes_them(run, server):
    server.add(f"{PAGE}/0", _with_total(BIORXIV, 50))
    topic = run("topics", "add", "neuro", "--name", "Neuroscience",
                "--categories", "neuroscience", "--whole-categories")  # fmt: skip
    assert topic.exit_code == 0, topic.output

    fetched = run("papers", "fetch", "--source", "biorxiv", "--url", server.url,
                  "--date", DAY.isoformat(), "--category", "neuroscience", "--json")  # fmt: skip
    again = run("papers", "fetch", "--source", "biorxiv", "--url", server.url,
                "--date", DAY.isoformat(), "--category", "neuroscience", "--json")  # fmt: skip

    assert fetched.exit_code == 0, fetched.output
    assert json.loads(fetched.stdout)["new"] == 9 and json.loads(again.stdout)["new"] == 0
    rows = json.loads(run("papers", "list", "--date", DAY.isoformat(), "--json").stdout)
    assert len(rows) == 9 and {r["source"] for r in rows} == {"biorxiv"}
    assert all(r["doi"].startswith("10.1101/") and r["venue"] == "bioRxiv" for r in rows)
    assert all([t["slug"] for t in r["topics"]] == ["neuro"] for r in rows)
    unknown = run("papers", "fetch", "--source", "biorxiv", "--url", server.url,
                  "--date", DAY.isoformat(), "--category", "neurosciense")  # fmt: skip
    assert unknown.exit_code == 2 and unknown.stderr.count("\n") == 1, unknown.output
