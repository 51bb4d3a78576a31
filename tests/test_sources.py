"""Parsers: every real fixture, format detection, and malformed input of each kind."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest

from newsletter.core.errors import InputError, NoListing
from newsletter.papers.sources.arxiv import parse_arxiv_atom, parse_arxiv_rss
from newsletter.papers.sources.common import normalise_title, split_arxiv_id
from newsletter.papers.sources.files import detect_format, parse_paper_bytes, read_paper_file
from newsletter.papers.sources.hf import parse_hf_json
from newsletter.papers.sources.jsonfile import parse_json_papers
from newsletter.papers.sources.seedtext import parse_seed_text
from tests.conftest import FIXTURES, REPO

SEED_PAGE = REPO / "seeds" / "hf-daily-papers-page.txt"
BILLION_LAUGHS = (
    '<!DOCTYPE feed [<!ENTITY lol "lol">'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
)
EXTERNAL_ENTITY = '<!DOCTYPE feed [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'


def read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def with_doctype(data: bytes, doctype: str, use: str) -> bytes:
    """Insert a DOCTYPE after the XML declaration and reference its entity in the first title."""
    text = data.decode()
    decl_end = text.index("?>") + 2
    text = text[:decl_end] + doctype + text[decl_end:]
    return re.sub(r"<title>", f"<title>{use}", text, count=1).encode()


def test_seed_page_has_fifty_papers_with_first_and_last_titles():
    records = parse_seed_text(SEED_PAGE.read_bytes(), name="page.txt")
    assert len(records) == 50
    assert records[0].title == (
        "Forecasting Trajectory and Behavior of Road-Agents Using Spectral Clustering "
        "in Graph-LSTMs"
    )
    assert records[-1].title == (
        "Effectiveness of Data Augmentation for Parameter Efficient Tuning with Limited Data"
    )
    assert records[0].abstract.startswith("We present a novel approach for traffic forecasting")
    assert all(r.arxiv_id is None and r.abstract and r.listing_date is None for r in records)


def test_seed_page_agrees_with_the_benchmark_json():
    bench = Path("/work/shared/bench/seed_papers.json")
    if not bench.is_file():
        pytest.skip("benchmark seed file not present")
    from_json = parse_json_papers(bench.read_bytes(), name="seed_papers.json")
    from_text = parse_seed_text(SEED_PAGE.read_bytes(), name="page.txt")
    assert [normalise_title(r.title) for r in from_json] == [
        normalise_title(r.title) for r in from_text
    ]


def test_hf_thirty_with_ai_fields():
    records = parse_hf_json(read("hf_daily_papers_30.json"), name="hf.json")
    assert len(records) == 30
    first = records[0]
    assert first.arxiv_id == "2606.00467"
    assert first.authors == ["Etienne Casanova", "Rafal Kocielnik", "R. Michael Alvarez"]
    assert first.listing_date == date(2026, 6, 12)  # submittedOnDailyAt, not publishedAt
    assert first.published_on == date(2026, 5, 30)
    assert first.upvotes == 0
    assert first.url_abs == "https://arxiv.org/abs/2606.00467"
    assert first.url_pdf == "https://arxiv.org/pdf/2606.00467"
    assert "zero-shot annotation" in first.keywords
    assert first.summary.startswith("Large language models exhibit limited ability")
    msa = next(r for r in records if r.arxiv_id == "2606.13392")
    assert (msa.title, msa.upvotes) == ("MiniMax Sparse Attention", 103)
    assert msa.url_code == "https://github.com/MiniMax-AI/MSA"


@pytest.mark.parametrize(
    ("name", "count", "first_id", "listing"),
    [
        ("hf_daily_papers_3.json", 3, "2607.26654", date(2026, 8, 3)),
        ("hf_daily_papers_5.json", 5, "2607.23193", date(2026, 7, 31)),
    ],
)
def test_hf_without_ai_fields(name, count, first_id, listing):
    records = parse_hf_json(read(name), name=name)
    assert len(records) == count
    assert records[0].arxiv_id == first_id
    assert {r.listing_date for r in records} == {listing}
    assert all(r.keywords == [] and r.summary is None for r in records)
    assert all(r.authors and r.abstract and "\n" not in r.title for r in records)


def test_hf_title_line_breaks_collapse_and_date_override():
    data = json.loads(read("hf_daily_papers_5.json"))
    data[0]["paper"]["title"] = "OmniScope:\n  Modality-Decoupled\tToken Compression"
    del data[0]["paper"]["githubRepo"], data[0]["paper"]["upvotes"]
    records = parse_hf_json(json.dumps(data).encode(), name="x", listing_date=date(2026, 1, 2))
    assert records[0].title == "OmniScope: Modality-Decoupled Token Compression"
    assert records[0].url_code is None and records[0].upvotes is None
    assert {r.listing_date for r in records} == {date(2026, 1, 2)}


def test_arxiv_atom_new_backend():
    records = parse_arxiv_atom(read("arxiv_api_2026.xml"), name="a.xml")
    assert len(records) == 10
    assert [r.arxiv_id for r in records[:3]] == ["2202.12139", "2405.13786", "2005.14124"]
    first = records[0]
    assert first.authors == ["Mohit Kumar Ahuja", "Arnaud Gotlieb", "Helge Spieker"]
    assert first.categories == ["cs.SE", "cs.LG"]
    assert first.url_pdf == "https://arxiv.org/pdf/2202.12139"
    assert first.published_on == first.listing_date == date(2022, 2, 24)
    perils = next(r for r in records if r.arxiv_id == "2302.03287")  # was v3, has &amp;
    assert perils.title == "ChatGPT and Software Testing Education: Promises & Perils"


def test_arxiv_atom_id_list_query():
    (record,) = parse_arxiv_atom(read("arxiv_api_2026_idlist.xml"), name="a.xml")
    assert record.arxiv_id == "1605.08386"
    assert record.categories == ["math.CO", "math.ST"]
    assert record.authors == ["Caprice Stanley", "Tobias Windisch"]


def test_arxiv_atom_legacy_backend_whitespace_and_http_ids():
    records = parse_arxiv_atom(read("arxiv_api_legacy.xml"), name="a.xml")
    assert [r.arxiv_id for r in records] == ["2510.14968", "2510.14827"]
    rdd = records[0]
    assert rdd.title == (
        "RDD: Retrieval-Based Demonstration Decomposer for Planner Alignment in Long-Horizon Tasks"
    )
    assert rdd.abstract.startswith("To tackle long-horizon tasks, recent hierarchical")
    assert "\n" not in rdd.abstract and "  " not in rdd.abstract
    assert rdd.categories[0] == "cs.RO" and rdd.categories.count("cs.RO") == 1
    assert rdd.categories == ["cs.RO", "cs.AI", "cs.CV", "cs.LG", "cs.SY", "eess.SY"]
    assert rdd.url_abs == "https://arxiv.org/abs/2510.14968"


def test_arxiv_rss_skips_replacements_by_default():
    records = parse_arxiv_rss(read("arxiv_rss.xml"), name="r.xml")
    assert [r.arxiv_id for r in records] == ["2609.26811", "2609.26820", "2205.06398"]
    assert {r.listing_date for r in records} == {date(2026, 9, 24)}
    second = records[1]
    assert second.authors == ["Naser Mansour", "Sidahmed Benabderrahmane", "Ameer Rahwan"]
    assert second.categories == ["cs.LG", "cs.AI"]
    assert second.abstract.startswith("Physiological time series such as")
    assert not second.abstract.startswith("arXiv:")
    everything = parse_arxiv_rss(read("arxiv_rss.xml"), name="r.xml", include_replacements=True)
    assert "2009.13987" in [r.arxiv_id for r in everything]


@pytest.mark.parametrize(
    ("path", "fmt", "count"),
    [
        (FIXTURES / "hf_daily_papers_3.json", "hf-json", 3),
        (FIXTURES / "hf_daily_papers_5.json", "hf-json", 5),
        (FIXTURES / "hf_daily_papers_30.json", "hf-json", 30),
        (FIXTURES / "arxiv_api_2026.xml", "arxiv-atom", 10),
        (FIXTURES / "arxiv_api_2026_idlist.xml", "arxiv-atom", 1),
        (FIXTURES / "arxiv_api_legacy.xml", "arxiv-atom", 2),
        (FIXTURES / "arxiv_rss.xml", "arxiv-rss", 3),
        (SEED_PAGE, "seed-text", 50),
    ],
)
def test_auto_detects_each_fixture_by_content(path, fmt, count, tmp_path):
    renamed = tmp_path / "listing.dat"  # no telling extension
    renamed.write_bytes(path.read_bytes())
    assert detect_format(renamed.read_bytes(), "listing.dat") == fmt
    assert len(read_paper_file(renamed)) == count


def test_json_round_trip_fields_and_output_only_keys():
    doc = [
        {
            "id": 7,
            "title": "A  Paper",
            "source": "hf",
            "arxiv_id": "2606.00001v3",
            "listing_date": "2026-06-12",
            "published_on": "2026-06-10",
            "upvotes": 4,
            "keywords": ["x"],
            "topics": [{"slug": "llm", "score": 1.2, "evidence": []}],
        }
    ]
    (record,) = parse_json_papers(json.dumps(doc).encode(), name="p.json")
    assert (record.title, record.arxiv_id, record.upvotes) == ("A Paper", "2606.00001", 4)
    assert (record.listing_date, record.published_on) == (date(2026, 6, 12), date(2026, 6, 10))


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ('[{"abstract": "x"}]', "p.json: item 1: 'title' is required"),
        ('[{"title": "x", "colour": 1}]', "p.json: item 1: unknown field 'colour'"),
        ('[{"title": "x", "listing_date": "friday"}]', "'listing_date' must be a date"),
        ('{"title": "x"}', "expected a JSON array of papers, got a JSON object"),
        ('[{"title": "x"},\n {"title": ', "truncated or invalid JSON at line 2 column"),
    ],
)
def test_json_errors_name_file_and_item(doc, message):
    with pytest.raises(InputError, match=re.escape(message)):
        parse_json_papers(doc.encode(), name="p.json")


# (fixture, wrong format to force, words the error must contain)
WRONG_FORMATS = [
    ("hf_daily_papers_5.json", "arxiv-atom", "invalid XML at line 1"),
    ("hf_daily_papers_5.json", "json", "this is hf-json"),
    ("hf_daily_papers_5.json", "seed-text", "looks like JSON or XML"),
    ("arxiv_api_2026.xml", "arxiv-rss", "expected an RSS"),
    ("arxiv_api_legacy.xml", "hf-json", "invalid JSON at line 1 column 1"),
    ("arxiv_rss.xml", "arxiv-atom", "expected an Atom <feed> root, found <rss>"),
]


@pytest.mark.parametrize(("name", "fmt", "words"), WRONG_FORMATS)
def test_wrong_format_given_explicitly(name, fmt, words):
    with pytest.raises(InputError, match=re.escape(words)):
        parse_paper_bytes(read(name), name=name, fmt=fmt)


@pytest.mark.parametrize(
    "name",
    ["hf_daily_papers_30.json", "arxiv_api_2026.xml", "arxiv_api_legacy.xml", "arxiv_rss.xml"],
)
def test_truncated_documents_are_rejected(name):
    data = read(name)
    with pytest.raises(InputError, match=rf"^{re.escape(name)}: truncated or invalid"):
        parse_paper_bytes(data[: len(data) // 2], name=name)


def test_truncated_seed_page_names_the_line():
    text = SEED_PAGE.read_text(encoding="utf-8")
    cut = text[: text.rindex("\n\n")]  # drop the last abstract
    with pytest.raises(InputError, match=r"page.txt: line 207: title .* has no abstract"):
        parse_seed_text(cut.encode(), name="page.txt")


@pytest.mark.parametrize(
    "name",
    ["arxiv_api_2026.xml", "arxiv_api_legacy.xml", "arxiv_api_2026_idlist.xml", "arxiv_rss.xml"],
)
@pytest.mark.parametrize(
    ("doctype", "use"), [(BILLION_LAUGHS, "&lol3;"), (EXTERNAL_ENTITY, "&xxe;")]
)
def test_entity_bombs_and_external_entities_are_refused(name, doctype, use):
    data = with_doctype(read(name), doctype, use)
    with pytest.raises(InputError, match=rf"{re.escape(name)}: XML entities are not allowed"):
        parse_paper_bytes(data, name=name)


@pytest.mark.parametrize("data", [b"", b"  \n\n "])
@pytest.mark.parametrize("fmt", ["auto", "seed-text", "json", "hf-json", "arxiv-atom", "arxiv-rss"])
def test_empty_file_is_an_input_error(data, fmt):
    with pytest.raises(InputError, match="x.dat: file is empty"):
        parse_paper_bytes(data, name="x.dat", fmt=fmt)


def test_empty_feeds_are_no_listing():
    rss = re.sub(rb"<item>.*?</item>", b"", read("arxiv_rss.xml"), flags=re.S)
    with pytest.raises(NoListing, match=r"no papers listed for 2026-09-24 \(weekend or holiday\)"):
        parse_paper_bytes(rss, name="rss.xml")
    atom = re.sub(rb"<entry>.*?</entry>", b"", read("arxiv_api_2026.xml"), flags=re.S)
    with pytest.raises(NoListing):
        parse_paper_bytes(atom, name="atom.xml")
    for fmt in ("hf-json", "json"):
        with pytest.raises(NoListing, match="hf.json: no papers listed for 2026-11-28"):
            parse_paper_bytes(b"[]", name="hf.json", fmt=fmt, listing_date=date(2026, 11, 28))
    header_only = SEED_PAGE.read_bytes()[:120].rsplit(b"\n\n", 1)[0]
    with pytest.raises(NoListing):
        parse_seed_text(header_only, name="page.txt")


def test_binary_file_is_rejected():
    with pytest.raises(InputError, match="not UTF-8 text"):
        parse_paper_bytes(b"\xff\xfe\x00garbage", name="x.bin")


def test_unknown_xml_root_is_rejected():
    with pytest.raises(InputError, match="unknown XML document <html>"):
        parse_paper_bytes(b"<html><body>Rate limited</body></html>", name="x.xml")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Graph-LSTMs: A Study", "graph lstms a study"),
        ("  RDD: Retrieval-Based\n  Decomposer ", "RDD Retrieval Based Decomposer"),
        ("Σ-Mem: Memory", "σ-mem:   MEMORY"),
        ("ﬁne-tuning", "fine tuning"),  # NFKC folds the ligature
    ],
)
def test_normalise_title_equates_variants(a, b):
    assert normalise_title(a) == normalise_title(b)


def test_normalise_title_keeps_different_titles_apart():
    assert normalise_title("Para-Thinker") != normalise_title("Para Thinker v2")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://arxiv.org/abs/2202.12139v2", ("2202.12139", "v2")),
        ("https://arxiv.org/abs/2609.26811", ("2609.26811", None)),
        ("oai:arXiv.org:2609.26811v1", ("2609.26811", "v1")),
        ("http://arxiv.org/abs/hep-th/9901001v3", ("hep-th/9901001", "v3")),
    ],
)
def test_split_arxiv_id(value, expected):
    assert split_arxiv_id(value) == expected
