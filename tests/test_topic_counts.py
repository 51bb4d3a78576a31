"""One count of a topic's matched papers everywhere, the papers with why, and the unmatched.

Real papers of the labelled sets, stored as ingest stores them, some of them listed before the
window of days every count is over: `topics list`, `topics check` (text and --json) and the
report of `topics edit` name the same number, `topics check --papers` lists those papers with
the signal and evidence that placed each, and `topics check --unmatched` the papers no topic
took.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsletter.core.app import App
from newsletter.core.config import Settings
from newsletter.core.models import Paper, PaperTopic, Topic
from newsletter.matching.text import WORD, stem
from newsletter.matching.topics import parse_topics_toml
from newsletter.papers.fetch import store_records
from newsletter.papers.sources import PaperRecord

LABELLED = Path(__file__).resolve().parent / "labelled"
DAY = date(2026, 11, 27)
BEFORE = date(2026, 10, 1)  # more than 30 days before DAY: outside the window
RECENT = 95  # the first papers of the machine-learning set are DAY's; the other 10 BEFORE's
ARXIV_ID = re.compile(r"\d{4}\.\d{4,5}")


def _records(folder: Path) -> list[PaperRecord]:
    papers = json.loads((folder / "papers.json").read_text(encoding="utf-8"))
    return [
        PaperRecord(
            title=p["title"], abstract=p["abstract"], source="test", categories=p["categories"],
            arxiv_id=p["key"] if ARXIV_ID.fullmatch(p["key"]) else None,
        )
        for p in papers
    ]  # fmt: skip


def _topics(folder: Path, slugs: set[str] | None = None) -> list[Topic]:
    specs = parse_topics_toml((folder / "topics.toml").read_text(encoding="utf-8"))
    return [
        Topic(slug=s.slug, name=s.name, description=s.description, keywords=list(s.keywords),
              categories=list(s.categories))
        for s in specs
        if slugs is None or s.slug in slugs
    ]  # fmt: skip


@pytest.fixture
def ml_app(settings: Settings, run) -> Iterator[App]:
    """The machine-learning set's papers and topics, matched by meaning as ingest matches."""
    application = App(dataclasses.replace(settings, match_neighbours=True))
    application.ensure_schema()
    with application.transaction() as s:
        s.add_all(_topics(LABELLED))
    records = _records(LABELLED)
    store_records(application, records[RECENT:], BEFORE)
    store_records(application, records[:RECENT], DAY)
    run.env["NEWSLETTER_MATCH_NEIGHBOURS"] = "true"
    yield application
    application.close()


def _stored(app: App, slug: str) -> int:
    """Every stored match of the topic, of any day."""
    with app.reading() as s:
        query = select(func.count()).select_from(PaperTopic).join(Topic).where(Topic.slug == slug)
        return s.scalar(query) or 0


def _json(run, *args: str):
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_list_check_and_edit_count_the_same_papers_placed_by_every_signal(ml_app, run):
    edited = run("topics", "edit", "computer-vision", "--categories", "cs.CV,cs.LG")
    assert edited.exit_code == 0, edited.output
    said = re.fullmatch(
        r"updated topic computer-vision: it matches (\d+) papers of the last 30 days\n",
        edited.stdout,
    )
    assert said, edited.stdout
    matched = int(said.group(1))
    [check] = _json(run, "topics", "check", "computer-vision")
    listed = {t["slug"]: t for t in _json(run, "topics", "list")}["computer-vision"]
    text = run("topics", "check", "computer-vision").output
    assert check["matched"] == listed["papers"] == matched
    assert f"computer-vision: {matched} of {RECENT} papers of the last 30 days" in text
    table = run("topics", "list").output
    assert re.search(rf"^computer-vision +0 subscribers +{matched} papers ", table, re.M)
    # Papers placed by their neighbours and by a category count as the keywords' do...
    placed = check["placed_by"]
    assert placed["neighbours"] >= 1 and placed["category"] >= 1 and placed["keywords"] >= 1
    assert sum(placed.values()) == matched
    # ... and the topic's matches listed before the window count nowhere.
    assert _stored(ml_app, "computer-vision") > matched
    again = run("topics", "edit", "computer-vision", "--categories", "cs.CV,cs.LG")
    unchanged = f"topic computer-vision unchanged: it matches {matched} papers of the last 30 days"
    assert again.stdout == unchanged + "\n"


def test_check_papers_lists_each_matched_paper_with_the_signal_and_evidence(ml_app, run):
    run("topics", "edit", "computer-vision", "--categories", "cs.CV,cs.LG")
    [check] = _json(run, "topics", "check", "computer-vision", "--papers")
    papers = check["matched_papers"]
    assert len(papers) == check["matched"]
    assert {p["listing_date"] for p in papers} == {DAY.isoformat()}
    with ml_app.reading() as s:
        stored = dict(
            s.execute(
                select(PaperTopic.paper_id, PaperTopic.evidence)
                .join(Topic).join(Paper, Paper.id == PaperTopic.paper_id)
                .where(Topic.slug == "computer-vision", Paper.listing_date == DAY)
            ).all()
        )  # fmt: skip
    assert {p["paper_id"]: p["evidence"] for p in papers} == stored
    by_signal: dict[str, list[dict]] = {}
    for p in papers:
        by_signal.setdefault(p["placed_by"], []).append(p)
    assert {s: len(ps) for s, ps in by_signal.items()} == {
        s: n for s, n in check["placed_by"].items() if n
    }
    # The line each card says why with, from the evidence that placed the paper.
    for p in by_signal["category"]:
        assert p["why"] in {"listed in cs.CV", "listed in cs.LG"} or p["why"].startswith(
            ("title mentions", "abstract mentions")
        )
        assert any(e.startswith("category: ") for e in p["evidence"])
    for p in by_signal["neighbours"]:
        assert p["evidence"][-1].startswith("neighbours: ")
        assert p["score"] < 1.0
    for p in by_signal["keywords"]:
        assert p["score"] >= 1.0 and p["why"]
    text = run("topics", "check", "computer-vision", "--papers").output
    assert "  matched papers, newest first:\n" in text
    neighbour = by_signal["neighbours"][0]
    ref = neighbour["arxiv_id"] or f"(paper {neighbour['paper_id']})"
    assert f"    {ref}  {DAY}  neighbours  " in text
    assert f"evidence: {'; '.join(neighbour['evidence'])}\n" in text
    keyworded = by_signal["keywords"][0]
    assert f'card says "{keyworded["why"]}"; evidence: ' in text
    # Without --papers the check lists none.
    assert "matched_papers" not in _json(run, "topics", "check", "computer-vision")[0]
    assert "matched papers" not in run("topics", "check", "computer-vision").output


@pytest.fixture
def maths_app(app: App) -> App:
    """The science faculty's papers, with topics for a few fields of mathematics only."""
    with app.transaction() as s:
        s.add_all(_topics(LABELLED / "fields", {"number-theory", "combinatorics", "pde"}))
    store_records(app, _records(LABELLED / "fields"), DAY)
    return app


def test_check_unmatched_lists_the_papers_no_topic_took_and_what_they_share(maths_app, run):
    found = _json(run, "topics", "check", "--unmatched")
    with maths_app.reading() as s:
        taken = set(s.scalars(select(PaperTopic.paper_id)))
        every = {
            pid: (t, a) for pid, t, a in s.execute(select(Paper.id, Paper.title, Paper.abstract))
        }
    assert taken and found["papers"] == len(every)
    unmatched = {p["paper_id"] for p in found["unmatched"]}
    assert unmatched == set(every) - taken
    for paper in found["unmatched"]:
        title, abstract = every[paper["paper_id"]]
        assert paper["title"] == title
        assert 0 < len(paper["terms"]) <= 5
        # Each term is the paper's own (in the form the window writes it most often).
        own = {stem(w) for w in WORD.findall(f"{title} {abstract}")}
        assert all({stem(w) for w in WORD.findall(t)} <= own for t in paper["terms"]), paper
    josephson = next(p for p in found["unmatched"] if "Intrinsic Josephson" in p["title"])
    assert "josephson junctions" in josephson["terms"]
    # Physics has no topic here: its subject and its categories set many papers apart.
    categories = {c["category"]: c for c in found["categories"]}
    assert categories["cond-mat.supr-con"]["unmatched"] >= 10
    terms = {t["term"]: t for t in found["terms"]}
    assert "spin" in terms and terms["spin"]["unmatched"] >= 10
    assert all(2 <= t["unmatched"] <= t["listed"] for t in found["terms"])
    text = run("topics", "check", "--unmatched").output
    share = len(unmatched) / len(every)
    assert text.startswith(
        f"{len(unmatched)} of {len(every)} papers of the last 30 days matched no topic "
        f"({share:.0%})\n"
    )
    assert f"  spin: in {terms['spin']['unmatched']} unmatched papers, " in text
    supr = categories["cond-mat.supr-con"]
    assert f"  cond-mat.supr-con: {supr['unmatched']} unmatched papers, {supr['listed']} of all" \
        in text  # fmt: skip
    assert f"      {', '.join(josephson['terms'])}\n" in text
    assert text.count("\n      ") == 50  # the newest fifty; --json lists them all
    assert f"... and {len(unmatched) - 50} more papers: --json lists them all" in text


def test_a_topic_for_a_shared_term_takes_its_papers_out_of_the_unmatched(maths_app, run):
    before = _json(run, "topics", "check", "--unmatched")
    assert "spin" in {t["term"] for t in before["terms"]}
    added = run("topics", "add", "spin", "--name", "Spin physics", "--keywords", "spin")
    assert added.exit_code == 0, added.output
    [spin] = _json(run, "topics", "check", "spin", "--papers")
    taken = {p["paper_id"] for p in spin["matched_papers"]}
    after = _json(run, "topics", "check", "--unmatched")
    ids = {p["paper_id"] for p in before["unmatched"]}
    assert len(taken & ids) >= 10
    assert {p["paper_id"] for p in after["unmatched"]} == ids - taken


def test_unmatched_with_a_topic_or_papers_is_one_line_and_exit_2(maths_app, run) -> None:
    for args in (("pde", "--unmatched"), ("--unmatched", "--papers")):
        result = run("topics", "check", *args)
        assert result.exit_code == 2, result.output
        assert result.stderr.strip() == (
            "Error: --unmatched lists the papers of no topic: give no SLUG or --papers"
        )


def test_every_count_is_singular_for_one(run, tmp_path) -> None:
    path = tmp_path / "one.json"
    paper = {
        "title": "Heating the corona by Alfven waves",
        "abstract": "We model how waves heat the solar corona above active regions.",
        "listing_date": DAY.isoformat(),
    }
    path.write_text(json.dumps([paper]), encoding="utf-8")
    assert run("papers", "import", str(path)).exit_code == 0
    added = run("topics", "add", "sun", "--name", "The Sun", "--keywords", "corona")
    assert added.stdout == "added topic sun: it matches 1 paper of the last 30 days\n"
    text = run("topics", "check", "sun", "--days", "1").output
    assert "sun: 1 of 1 paper of the last 1 day (100%)\n" in text
    assert "  corona: 1 paper (100%)\n" in text
    assert re.search(r"^sun +0 subscribers +1 paper +The Sun$", run("topics", "list").output, re.M)
    matched = run("topics", "match")
    assert "matched 1 paper against 1 topic: 1 match (replacing 1)" in matched.output
    assert "1 papers" not in added.output + text + matched.output
