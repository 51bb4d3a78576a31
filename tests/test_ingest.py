"""Ingest: idempotent upserts keyed by arXiv id or title, on SQLite and on real PostgreSQL."""

from __future__ import annotations

from datetime import date

from sqlalchemy import event, func, select

from newsletter.core.app import App
from newsletter.core.models import Paper
from newsletter.papers.ingest import ingest_records, merge_records
from newsletter.papers.sources import PaperRecord
from newsletter.papers.sources.files import read_paper_file
from tests.conftest import FIXTURES, REPO

SEED_PAGE = REPO / "seeds" / "hf-daily-papers-page.txt"
DAY = date(2026, 11, 27)


def rec(title: str, **kwargs) -> PaperRecord:
    kwargs.setdefault("source", "test")
    return PaperRecord(title=title, **kwargs)


def count(app: App) -> int:
    with app.transaction() as session:
        return session.scalar(select(func.count()).select_from(Paper))


def ingest(app: App, records, listing_date=DAY):
    with app.transaction() as session:
        return ingest_records(records, session=session, listing_date=listing_date)


def paper_by_title(app: App, title: str) -> Paper:
    with app.transaction() as session:
        return session.scalars(select(Paper).where(Paper.title == title)).one()


def test_seed_page_inserts_fifty_then_changes_nothing(app):
    records = read_paper_file(SEED_PAGE)
    first = ingest(app, records)
    assert (first.inserted, first.updated, first.unchanged) == (50, 0, 0)
    assert len(set(first.paper_ids)) == 50 and first.listing_dates == [DAY]
    stamps = _updated_at(app)
    again = ingest(app, read_paper_file(SEED_PAGE))
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 50)
    assert sorted(again.paper_ids) == sorted(first.paper_ids)
    assert _updated_at(app) == stamps  # no updated_at bump on a no-op import
    assert count(app) == 50


def _updated_at(app: App) -> dict[int, object]:
    with app.transaction() as session:
        return dict(session.execute(select(Paper.id, Paper.updated_at)).all())


def test_every_fixture_twice_is_idempotent(app):
    files = sorted(FIXTURES.glob("*.json")) + sorted(FIXTURES.glob("*.xml"))
    records = [r for path in files for r in read_paper_file(path)]
    first = ingest(app, records)
    assert first.inserted == 3 + 5 + 30 + 10 + 1 + 2 + 3
    again = ingest(app, records)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, first.inserted)


def test_title_only_paper_merges_with_the_same_title_with_an_id(app):
    ingest(app, [rec("Graph-LSTMs for Traffic", abstract="A.")], listing_date=DAY)
    stats = ingest(
        app,
        [
            rec(
                "Graph LSTMs  for traffic",
                arxiv_id="2601.00001",
                url_code="https://github.com/x/y",
                upvotes=5,
                keywords=["traffic"],
                listing_date=date(2026, 11, 30),
            )
        ],
    )
    assert (stats.inserted, stats.updated) == (0, 1)
    paper = paper_by_title(app, "Graph-LSTMs for Traffic")
    assert paper.arxiv_id == "2601.00001"
    assert paper.url_code == "https://github.com/x/y" and paper.upvotes == 5
    assert paper.listing_date == DAY  # keeps the day it was first listed
    assert count(app) == 1


def test_later_import_fills_missing_fields_and_takes_newest_upvotes(app):
    ingest(app, [rec("P", arxiv_id="2601.00002", upvotes=3, keywords=["a"])])
    stats = ingest(app, [rec("P", arxiv_id="2601.00002", upvotes=9, keywords=["b", "a"])])
    assert stats.updated == 1
    paper = paper_by_title(app, "P")
    assert (paper.upvotes, paper.keywords) == (9, ["a", "b"])
    assert paper.updated_at >= paper.created_at
    # A source without upvotes does not erase them.
    assert ingest(app, [rec("P", arxiv_id="2601.00002")]).unchanged == 1
    assert paper_by_title(app, "P").upvotes == 9


def test_same_title_different_arxiv_ids_are_two_papers(app):
    stats = ingest(
        app, [rec("Attention", arxiv_id="1706.03762"), rec("Attention", arxiv_id="2601.1")]
    )
    assert stats.inserted == 2
    assert ingest(app, [rec("Attention", arxiv_id="2601.1")]).unchanged == 1


def test_repeats_in_one_batch_fold_into_one_paper():
    merged = merge_records(
        [
            rec("Paper X", listing_date=date(2026, 1, 3)),
            rec("Paper X", arxiv_id="2601.3", upvotes=1, listing_date=date(2026, 1, 2)),
            rec("paper x!", arxiv_id="2601.3", upvotes=4, categories=["cs.LG"]),
        ]
    )
    assert len(merged) == 1
    (paper,) = merged
    assert (paper.arxiv_id, paper.upvotes, paper.categories) == ("2601.3", 4, ["cs.LG"])
    assert paper.listing_date == date(2026, 1, 2)


def test_records_without_date_get_the_default(app):
    stats = ingest(app, [rec("Dated", listing_date=date(2026, 1, 5)), rec("Undated")])
    assert stats.listing_dates == [date(2026, 1, 5), DAY]


def test_thousands_of_papers_use_few_queries(app):
    records = [rec(f"Paper number {i}", arxiv_id=f"2601.{i:05d}") for i in range(3000)]
    statements: list[str] = []

    def listen(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    with app.transaction() as session:
        event.listen(app.engine, "before_cursor_execute", listen)
        try:
            stats = ingest_records(records, session=session, listing_date=DAY)
        finally:
            event.remove(app.engine, "before_cursor_execute", listen)
    assert stats.inserted == 3000
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) <= 3000 // 500 + 1  # chunked lookups, not one per paper


def test_postgres_ingest_is_idempotent_and_merges(pg_app):
    files = [SEED_PAGE, *sorted(FIXTURES.glob("*.json")), *sorted(FIXTURES.glob("*.xml"))]
    records = [r for path in files for r in read_paper_file(path)]
    first = ingest(pg_app, records)
    assert first.inserted == 50 + 54
    again = ingest(pg_app, records)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 104)
    ingest(pg_app, [rec("Only a title", abstract="x")])
    stats = ingest(pg_app, [rec("ONLY a title.", arxiv_id="2601.77777", upvotes=2)])
    assert (stats.inserted, stats.updated) == (0, 1)
    assert count(pg_app) == 105
