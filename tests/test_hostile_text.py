"""Hostile text: right-to-left and mixed scripts, emoji, combining marks, NUL, invalid UTF-8."""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
from email.header import decode_header, make_header
from xml.etree import ElementTree

import pytest
from sqlalchemy import select

from newsletter.core.models import Paper, Subscriber, Topic
from newsletter.web import create_app
from tests import factories as f
from tests.factories import dump_database

# Invisible format characters (bidirectional overrides, zero-width spaces) are refused in
# names: see test_invisible_characters.py. The joiners that spellings need are not.
NAMES = [
    "שלום עולם Ada",  # right to left, then left to right
    "Zoë 👩\u200d🔬 Δοκιμή 测试",  # emoji with a joiner, Greek, Chinese
    "Mehr\u200cnaz می\u200cخواهم",  # the zero-width non-joiner of Persian spelling
    "e\u0301\u0301\u0301 Combining",  # stacked combining accents
]


@pytest.mark.parametrize("name", NAMES)
def test_names_and_titles_in_any_script_reach_the_reader_unchanged(run, app, settings, name):
    with app.transaction() as s:
        t = f.topic(s, "llm")
        f.paper(s, f"{name}: a paper", topics={t: 2.0})
    added = run("subscribers", "add", "ada@example.org", "--name", name, "--topics", "llm",
                "--confirmed")  # fmt: skip
    assert added.exit_code == 0, added.output

    assert run("send", "--date", f.DAY.isoformat()).exit_code == 0

    [raw] = [bytes(m) for m in mailbox.Maildir(settings.transport.removeprefix("maildir:"))]
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]  # Maildir keeps LF line ends
    assert head.isascii()  # every non-ASCII header value is RFC 2047 encoded
    to = [h for h in head.replace(b"\n ", b" ").split(b"\n") if h.startswith(b"To: ")][0]
    assert str(make_header(decode_header(to[4:].decode()))) == f"{name} <ada@example.org>"
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert name in str(message["Subject"])
    assert name in message.get_body(("plain",)).get_content()


@pytest.mark.parametrize("field", ["title", "abstract", "authors"])
def test_nul_bytes_in_a_paper_file_never_reach_the_database(run, app, tmp_path, field):
    paper = {"title": "A paper", "abstract": "Text.", "authors": ["Ada"], "arxiv_id": "2611.00001"}
    paper[field] = ["Ada\x00Lovelace"] if field == "authors" else f"Bad\x00{field}"
    path = tmp_path / "nul.json"
    path.write_text(json.dumps([paper]), encoding="utf-8")

    result = run("papers", "import", str(path), "--date", f.DAY.isoformat())

    assert result.exit_code in (0, 2), result.output  # cleaned, or refused in one line
    with app.sessions() as s:
        for p in s.scalars(select(Paper)):
            assert "\x00" not in p.title + p.abstract + "".join(p.authors)


@pytest.mark.parametrize(
    ("command", "data"),
    [
        (["papers", "import"], b'[{"title": "caf\xe9"}]'),
        (["subscribers", "import"], b"email,name,topics\nada@example.org,Caf\xe9,llm\n"),
        (["topics", "import"], b'[[topic]]\nslug = "x"\nname = "Caf\xe9"\n'),
    ],
)
def test_invalid_utf8_is_one_line_and_changes_nothing(run, app, tmp_path, command, data):
    path = tmp_path / "latin1.txt"
    path.write_bytes(data)
    before = dump_database(app.engine)

    result = run(*command, str(path))

    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1
    assert "UTF-8" in result.stderr or "utf-8" in result.stderr or "TOML" in result.stderr
    assert dump_database(app.engine) == before


def test_nul_in_a_csv_row_is_reported_by_line(run, app, tmp_path):
    with app.transaction() as s:
        f.topic(s, "llm")
    path = tmp_path / "nul.csv"
    path.write_bytes(b"email,name,topics\nada@example.org,Ada\x00X,llm\nbob@example.org,Bob,llm\n")

    result = run("subscribers", "import", str(path), "--json")

    assert result.exit_code == 1 and '"line": 2' in result.stdout


# What XML 1.0 cannot hold: noncharacters and a lone surrogate, then C0 controls (which
# topic names refuse outright, as they do line breaks).
NONCHARACTERS = "\ufffe\uffff\ud800"
NOT_XML = NONCHARACTERS + "\x01\x1b"


def test_characters_xml_cannot_hold_are_dropped_from_every_stored_text(run, app, tmp_path):
    added = run(
        "topics", "add", "llm", "--name", f"Language{NONCHARACTERS} models",
        "--description", f"About{NOT_XML} LLMs", "--keywords", f"language model{NOT_XML}",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    paper = {
        "title": f"A language model{NOT_XML}", "abstract": f"Text{NOT_XML}.",
        "authors": [f"Ada{NOT_XML}"], "summary": f"Short{NOT_XML}", "arxiv_id": "2611.00001",
        "url_code": f"https://github.com/x/y{NOT_XML}",
    }  # fmt: skip
    path = tmp_path / "papers.json"
    path.write_text(json.dumps([paper]), encoding="utf-8")  # the surrogate is written \ud800
    assert run("papers", "import", str(path), "--date", f.DAY.isoformat()).exit_code == 0
    name = f"Ada{NONCHARACTERS}"  # control characters in a name are refused, not dropped
    subscriber = run("subscribers", "add", "ada@example.org", "--name", name, "--topics", "llm")
    assert subscriber.exit_code == 0, subscriber.output

    with app.sessions() as s:
        topic, paper, reader = (s.scalar(select(m)) for m in (Topic, Paper, Subscriber))
        texts = [topic.name, topic.description, *topic.keywords, reader.name, paper.title,
                 paper.abstract, paper.summary, paper.url_code, *paper.authors]  # fmt: skip
    assert texts == [
        "Language models", "About LLMs", "language model", "Ada", "A language model",
        "Text.", "Short", "https://github.com/x/y", "Ada",
    ]  # fmt: skip


def test_the_atom_feed_stays_well_formed_with_any_topic_name(run, app):
    name = "Language\ufffe\uffff models"  # valid Unicode text, yet not XML
    assert run("topics", "add", "llm", "--name", name, "--keywords", "llm").exit_code == 0
    with app.transaction() as s:
        llm = s.scalar(select(Topic))
        f.paper(s, "Scaling laws for tiny models", topics={llm: 2.0})
        f.subscriber(s, "ada@example.org", [llm])
    assert run("plan", "--date", f.DAY.isoformat()).exit_code == 0
    client = create_app(app.settings, app=app).test_client()

    response = client.get("/archive.atom")

    assert response.status_code == 200
    feed = ElementTree.fromstring(response.get_data())
    summaries = [e.text for e in feed.iter("{http://www.w3.org/2005/Atom}summary")]
    assert summaries == ["1 paper on Language models."]


def test_the_columns_drop_what_xml_cannot_hold_on_any_write_path(app):
    """Rows written straight through the models, past every validation, are cleaned too."""
    with app.transaction() as s:
        s.add(Topic(slug="x", name=f"X{NOT_XML}\x00", keywords=[f"k{NOT_XML}\x00"]))
        s.add(Paper(title=f"Title{NOT_XML}\x00", title_key="title", listing_date=f.DAY,
                    authors=[f"Ada{NOT_XML}"], source="test"))  # fmt: skip
    with app.sessions() as s:
        topic, paper = s.scalar(select(Topic)), s.scalar(select(Paper))
        assert (topic.name, topic.keywords) == ("X", ["k"])
        assert (paper.title, paper.authors) == ("Title", ["Ada"])
