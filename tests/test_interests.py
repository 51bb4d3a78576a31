"""A reader's interests in their own words: the CLI, imports and exports, and the papers they
bring, judged by meaning against real papers of several fields."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import json
import mailbox
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from newsletter.audience import csv_format
from newsletter.audience import subscribers as svc
from newsletter.core.app import App
from newsletter.core.config import Settings
from newsletter.core.models import Delivery, DeliveryStatus, Subscriber, Topic
from newsletter.delivery import service as sending
from newsletter.editions.planning import get_or_create_edition, plan_edition
from newsletter.matching import interests
from newsletter.matching.embeddings import MODEL_ID
from newsletter.papers.fetch import store_records
from newsletter.papers.sources import PaperRecord
from tests import factories as f
from tests.factories import dump_database

FIELDS = Path(__file__).parent / "labelled" / "fields"
# A sentence a researcher would write, one per field of the labelled set, and the set's
# topics that make up the field (its labels come from arXiv categories, not from us).
SENTENCES = {
    "condensed matter": (
        "Condensed matter physics: strongly correlated electrons, superconductivity, "
        "magnetism and electronic transport in nanostructures",
        {"correlated-electrons", "stat-mech", "nanoscale", "superconductivity"},
    ),
    "mathematics": (
        "Pure mathematics: number theory, algebraic geometry, combinatorics and analysis of "
        "partial differential equations",
        {"number-theory", "algebraic-geometry", "combinatorics", "probability", "pde"},
    ),
    "physics": (
        "Quantum information and quantum field theory, string theory and quantum gravity",
        {"quantum", "hep-theory"},
    ),
    "information theory": (
        "Information theory: channel capacity, coding and communication over networks",
        {"information-theory"},
    ),
    "statistics": (
        "Statistical methodology: estimation, hypothesis testing, regression and Bayesian "
        "inference",
        {"statistics"},
    ),
    "biology": (
        "Quantitative biology: models of genes, proteins, cells, populations and evolution",
        {"quantitative-biology"},
    ),
}
CONDENSED, CONDENSED_TOPICS = SENTENCES["condensed matter"]
STORED = 160  # the fields set's first papers: both listing parts, every field
ADA = "ada@example.org"


def _fields() -> tuple[list[dict], dict[str, list[str]]]:
    papers = json.loads((FIELDS / "papers.json").read_text(encoding="utf-8"))
    labels = json.loads((FIELDS / "labels.json").read_text(encoding="utf-8"))
    return papers, labels


@pytest.fixture
def topic(app: App) -> None:
    with app.transaction() as s:
        s.add(Topic(slug="ml", name="ML"))


def _stored(app: App, email: str = ADA) -> Subscriber:
    with app.reading() as s:
        found = s.scalar(select(Subscriber).where(Subscriber.email == email))
        s.expunge_all()
        return found


# --- the CLI ------------------------------------------------------------------------------


def test_add_edit_and_clear_interests_from_the_cli(run, app: App, topic: None) -> None:
    added = run(
        "subscribers", "add", ADA, "--confirmed", "--json",
        "--interests", "Spin liquids\r\n in   frustrated\tmagnets",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    data = json.loads(added.stdout)
    # A paragraph typed with line breaks and tabs reads as one line.
    assert (data["topics"], data["interests"]) == ([], "Spin liquids in frustrated magnets")
    first = _stored(app)
    assert first.interests_model == MODEL_ID and len(first.interests_vector) == 2 * 384
    shown = json.loads(run("subscribers", "show", ADA, "--json").stdout)
    listed = json.loads(run("subscribers", "list", "--json").stdout)
    assert shown["interests"] == listed[0]["interests"] == "Spin liquids in frustrated magnets"
    assert "interests:       Spin liquids" in run("subscribers", "show", ADA).stdout

    edited = run("subscribers", "edit", ADA, "--interests", "causal inference for epidemics")
    assert edited.exit_code == 0 and "  interests: causal inference for epidemics" in edited.stdout
    second = _stored(app)
    assert second.interests_vector != first.interests_vector  # embedded again, once

    # Without a topic the interests are all the reader has: they cannot go.
    before = dump_database(app.engine)
    refused = run("subscribers", "edit", ADA, "--interests", "")
    assert refused.exit_code == 2
    assert refused.stderr == (
        "Error: no topics given, and no interests: a subscriber needs one or the other\n"
    )
    assert dump_database(app.engine) == before
    cleared = run("subscribers", "edit", ADA, "--topics", "ml", "--interests", "", "--json")
    assert cleared.exit_code == 0, cleared.output
    assert json.loads(cleared.stdout)["interests"] == ""
    gone = _stored(app)
    assert (gone.interests, gone.interests_model, gone.interests_vector) == ("", None, None)


def test_a_subscriber_needs_a_topic_or_interests(run, app: App, topic: None) -> None:
    before = dump_database(app.engine)
    result = run("subscribers", "add", ADA)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "a subscriber needs one or the other" in result.stderr
    assert dump_database(app.engine) == before


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("spin\x00liquids", "Error: interests contain a control character or an invisible one"),
        ("\x1b[31mred\x1b[0m magnets", "Error: interests contain a control character"),
        ("spin \u202eliquids", "Error: interests contain a control character or an invisible"),
        ("x" * 1001, "Error: interests longer than 1000 characters (1001 given)"),
        ("spin liquids " * 1000, "Error: interests longer than 1000 characters"),
    ],
)
def test_bad_interests_are_one_line_and_change_nothing(
    run, app: App, topic: None, text: str, message: str
) -> None:
    assert run("subscribers", "add", ADA, "--topics", "ml").exit_code == 0
    before = dump_database(app.engine)
    edited = run("subscribers", "edit", ADA, "--interests", text)
    added = run("subscribers", "add", "bo@example.org", "--interests", text)
    for result in (edited, added):
        assert result.exit_code == 2
        assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert dump_database(app.engine) == before


def test_interests_of_a_thousand_characters_are_kept_whole(run, app: App) -> None:
    text = ("frustrated magnets " * 60)[:1000]
    assert run("subscribers", "add", ADA, "--interests", text).exit_code == 0
    assert _stored(app).interests == text.strip()


# --- export and import --------------------------------------------------------------------


def test_json_export_and_import_carry_the_interests(run, app: App, tmp_path: Path) -> None:
    run("subscribers", "add", ADA, "--confirmed", "--interests", "=spin liquids")
    backup = tmp_path / "backup.json"
    assert run("subscribers", "export", "--format", "json", "-o", str(backup)).exit_code == 0
    (record,) = json.loads(backup.read_text(encoding="utf-8"))
    assert record["interests"] == "=spin liquids"
    assert run("subscribers", "remove", ADA, "--yes").exit_code == 0
    imported = run("subscribers", "import", str(backup))
    assert imported.exit_code == 0, imported.output
    restored = _stored(app)
    assert restored.interests == "=spin liquids" and restored.interests_model == MODEL_ID
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{**record, "email": "bo@example.org", "interests": "a\x07b"}]))
    before = dump_database(app.engine)
    refused = run("subscribers", "import", str(bad))
    assert refused.exit_code == 2
    assert refused.stderr == (
        "Error: bad.json, row 1 ('bo@example.org'): interests contain a control character "
        "or an invisible one\n"
    )
    assert dump_database(app.engine) == before


def test_csv_export_and_import_carry_the_interests(
    run, app: App, topic: None, tmp_path: Path
) -> None:
    people = tmp_path / "people.csv"
    people.write_text(
        "email,topics,interests\n"
        "ada@example.org,,\"Spin liquids,\nfrustrated magnets\"\n"
        "bo@example.org,,\n"
        "cy@example.org,,bell\x07s\n"
        "di@example.org,,=1+1 in topology\n",
        encoding="utf-8",
    )
    result = run("subscribers", "import", str(people), "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert (report["new"], report["skipped"]) == (2, 2)
    assert [e["line"] for e in report["errors"]] == [4, 5]
    assert "a subscriber needs one or the other" in report["errors"][0]["reason"]
    assert "control character" in report["errors"][1]["reason"]
    ada = _stored(app)
    assert ada.interests == "Spin liquids, frustrated magnets" and ada.interests_model == MODEL_ID
    exported = run("subscribers", "export").stdout.splitlines()
    assert exported[0] == ",".join(csv_format.CSV_COLUMNS) and exported[0].endswith(",interests")
    assert exported[2].endswith(",'=1+1 in topology")  # a spreadsheet shows it as text
    # An empty cell keeps what a subscriber has; a new text replaces it (embedded anew).
    people.write_text("email,topics,interests\nada@example.org,ml,\ndi@example.org,,knots\n")
    again = json.loads(run("subscribers", "import", str(people), "--json").stdout)
    assert (again["updated"], again["skipped"]) == (2, 0)
    kept = _stored(app)
    assert (kept.interests, kept.interests_vector) == (ada.interests, ada.interests_vector)
    di = _stored(app, "di@example.org")
    assert di.interests == "knots" and di.interests_vector != ada.interests_vector


# --- the papers they bring ----------------------------------------------------------------


def test_a_sentence_per_field_stands_out_that_fields_papers() -> None:
    """Every paper of the labelled set against one sentence per field, as an edition is judged."""
    from benchmarks import matching

    papers, labels = _fields()
    vectors = matching.paper_vectors(matching.load_labelled(FIELDS))
    standings = interests.InterestStandings.from_vectors(range(len(papers)), vectors, vectors)
    for field, (sentence, topics) in SENTENCES.items():
        (embedded,) = interests.embed_interests([sentence])
        close = standings.close(interests.stored_vector(*embedded))
        best = sorted(close, key=lambda i: -close[i])[:10]
        ours = [i for i in close if topics & set(labels[papers[i]["key"]])]
        share = sum(1 for p in papers if topics & set(labels[p["key"]])) / len(papers)
        assert len(close) >= 10, field
        assert sum(1 for i in best if i in ours) >= 7, field  # its ten best, mostly the field's
        assert len(ours) / len(close) > 2 * share, field  # far above the field's share


@pytest.fixture
def neighbours_app(settings: Settings) -> Iterator[App]:
    """An instance that embeds the papers it stores, as `match_neighbours` does by default."""
    application = App(dataclasses.replace(settings, match_neighbours=True))
    application.ensure_schema()
    yield application
    application.close()


def store_fields_papers(app: App, count: int = STORED) -> dict[str, set[str]]:
    """Store the labelled set's first papers as one day's listing; return their labels by id."""
    papers, labels = _fields()
    records = [
        PaperRecord(title=p["title"], abstract=p["abstract"], source="test", arxiv_id=p["key"],
                    url_abs=f"https://arxiv.org/abs/{p['key']}", categories=p["categories"])
        for p in papers[:count]
    ]  # fmt: skip
    assert store_records(app, records, f.DAY).embedded == count
    return {p["key"]: set(labels[p["key"]]) for p in papers[:count]}


def digests(app: App) -> dict[str, email.message.EmailMessage]:
    """Return the digests in the Maildir outbox, by recipient."""
    box = mailbox.Maildir(app.settings.transport.removeprefix("maildir:"), create=True)
    messages = [email.message_from_bytes(bytes(m), policy=email.policy.default) for m in box]
    return {m["To"].addresses[0].addr_spec: m for m in messages if m["List-Unsubscribe"]}


def paper_ids(message: email.message.EmailMessage) -> list[str]:
    """Return the arXiv ids of the digest's papers, in its order."""
    text = message.get_body(("plain",)).get_content()
    return re.findall(r"^   Abstract: https://arxiv\.org/abs/(\S+)$", text, re.MULTILINE)


def test_a_reader_with_only_interests_gets_condensed_matter_papers(neighbours_app: App) -> None:
    app = neighbours_app
    with app.transaction() as s:
        s.add(Topic(slug="number-theory", name="Number theory",
                    keywords=["number theory", "prime numbers"]))  # fmt: skip
    labels = store_fields_papers(app)
    with app.transaction() as s:
        svc.add_subscriber(session=s, email=ADA, interests=CONDENSED, confirmed=True)
        svc.add_subscriber(session=s, email="bo@example.org", topics="number-theory",
                           interests=CONDENSED, confirmed=True)  # fmt: skip
        # Set while the model could not load: embedded when the edition is composed.
        svc.add_subscriber(session=s, email="cy@example.org", interests=CONDENSED,
                           confirmed=True)  # fmt: skip
        s.execute(update(Subscriber).where(Subscriber.email == "cy@example.org")
                  .values(interests_model=None, interests_vector=None))  # fmt: skip
    assert sending.send(app, f.DAY).summary.sent == 3
    sent = digests(app)
    ada = paper_ids(sent[ADA])
    assert len(ada) == 10  # the default number of papers
    assert all(labels[t] & CONDENSED_TOPICS for t in ada), ada
    assert sent[ADA].get_body(("plain",)).get_content().count("close to your interests") == 10
    assert paper_ids(sent["cy@example.org"]) == ada
    preview = sending.build_preview(app, ADA)  # preview and test copies choose the same
    assert [p.url_abs.rsplit("/", 1)[1] for p in preview.papers] == ada
    # With a topic, its papers and the interests' take turns, each saying why.
    bo = paper_ids(sent["bo@example.org"])
    assert all(labels[t] & CONDENSED_TOPICS for t in bo[1::2])
    assert not any(labels[t] & CONDENSED_TOPICS for t in bo[::2])
    assert sent["bo@example.org"].get_body(("plain",)).get_content().count(
        "Why: close to your interests"
    ) == 5


def test_a_reader_with_interests_and_no_topic_is_planned(app: App) -> None:
    with app.transaction() as s:
        ml = f.topic(s, "ml")
        f.paper(s, "Nothing anyone chose")
        svc.add_subscriber(session=s, email=ADA, interests=CONDENSED, confirmed=True)
        f.subscriber(s, "bo@example.org", [ml])
        edition = get_or_create_edition(f.DAY, session=s)
        stats = plan_edition(edition, session=s)
        rows = dict(s.execute(select(Subscriber.email, Delivery.status).join(Delivery)).all())
    assert (stats.pending, stats.skipped) == (1, 1)
    assert rows == {ADA: DeliveryStatus.PENDING, "bo@example.org": DeliveryStatus.SKIPPED}
