"""One paper per work, wherever it comes from: arXiv, a preprint server, a journal, Hugging Face."""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
from pathlib import Path

from sqlalchemy import func, select

from newsletter.core.models import Paper
from newsletter.papers.ingest import ingest_records
from newsletter.papers.sources import PaperRecord
from tests import factories as f
from tests.factories import dump_database

FIXTURES = Path(__file__).parent / "fixtures"
TITLE = "Nematic order in a kagome superconductor"
PRB = "https://journals.aps.org/prb/abstract/10.1103/PhysRevB.110.L180501"


def _import(run, tmp_path: Path, name: str, rows: list[dict]) -> dict:
    path = tmp_path / name
    path.write_text(json.dumps(rows), encoding="utf-8")
    result = run("papers", "import", str(path), "--date", "2026-12-04", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _papers(run) -> list[dict]:
    return json.loads(run("papers", "list", "--date", "2026-12-04", "--json").stdout)


def test_the_same_work_from_arxiv_a_journal_and_hugging_face_is_one_paper(run, tmp_path):
    arxiv = {"title": TITLE, "source": "arxiv", "arxiv_id": "2412.01234",
             "authors": ["Jane Q. Doe", "R. Roe"], "doi": "10.48550/arXiv.2412.01234",
             "url_abs": "https://arxiv.org/abs/2412.01234"}  # fmt: skip
    journal = {"title": TITLE.upper(), "source": "feed", "authors": ["Doe, J.", "Roe, R."],
               "doi": "https://doi.org/10.1103/PhysRevB.110.L180501",
               "venue": "Physical Review B",
               "url_journal": PRB}  # fmt: skip
    hf = {"title": TITLE, "source": "hf", "arxiv_id": "2412.01234", "upvotes": 7}

    for name, row in (("arxiv.json", arxiv), ("journal.json", journal), ("hf.json", hf)):
        _import(run, tmp_path, name, [row])
    again = _import(run, tmp_path, "journal-again.json", [journal])

    (paper,) = _papers(run)
    assert paper["arxiv_id"] == "2412.01234" and paper["source"] == "arxiv"
    assert paper["doi"] == "10.1103/physrevb.110.l180501"  # the journal's, not arXiv's own
    assert paper["venue"] == "Physical Review B" and paper["upvotes"] == 7
    assert paper["url_journal"].startswith("https://journals.aps.org/")
    assert (again["new"], again["updated"]) == (0, 0)


def test_a_doi_finds_the_paper_whatever_its_title_says(run, tmp_path):
    preprint = {"title": "Spike timing in cortex", "source": "biorxiv", "authors": ["A. Ng"],
                "doi": "10.1101/2024.05.01.592000", "venue": "bioRxiv"}  # fmt: skip
    published = {"title": "Spike-timing in the cortex of mice", "source": "feed",
                 "authors": ["Ng, Ada"], "doi": "doi:10.1101/2024.05.01.592000"}  # fmt: skip
    _import(run, tmp_path, "a.json", [preprint])
    _import(run, tmp_path, "b.json", [published])

    (paper,) = _papers(run)
    assert paper["doi"] == "10.1101/2024.05.01.592000" and paper["venue"] == "bioRxiv"


def test_one_title_by_other_first_authors_or_under_other_dois_is_other_papers(run, tmp_path):
    rows = [
        {"title": "Introduction", "source": "feed", "authors": ["Ada Lovelace"]},
        {"title": "Introduction", "source": "feed", "authors": ["Alan Turing"]},
        {"title": "Editorial", "source": "feed", "doi": "10.1000/one"},
        {"title": "Editorial", "source": "feed", "doi": "10.1000/two"},
    ]
    _import(run, tmp_path, "same-titles.json", rows)
    _import(run, tmp_path, "same-titles-again.json", rows)

    papers = _papers(run)
    assert sorted((p["title"], tuple(p["authors"]), p["doi"]) for p in papers) == [
        ("Editorial", (), "10.1000/one"),
        ("Editorial", (), "10.1000/two"),
        ("Introduction", ("Ada Lovelace",), None),
        ("Introduction", ("Alan Turing",), None),
    ]


def test_an_arxiv_doi_alone_names_the_arxiv_paper(app):
    with app.transaction() as s:
        ingest_records([PaperRecord(title="A", source="feed", doi="10.48550/ARXIV.2412.00001")],
                       session=s)  # fmt: skip
        ingest_records([PaperRecord(title="A paper", source="arxiv", arxiv_id="2412.00001")],
                       session=s)  # fmt: skip
    with app.sessions() as s:
        (paper,) = s.scalars(select(Paper)).all()
        assert (paper.arxiv_id, paper.doi) == ("2412.00001", None)


def test_a_bad_doi_is_dropped_not_stored(app):
    with app.transaction() as s:
        ingest_records([PaperRecord(title="B", source="feed", doi="not a doi"),
                        PaperRecord(title="C", source="feed", doi="10.1/" + "x" * 400)],
                       session=s)  # fmt: skip
    with app.sessions() as s:
        assert s.scalar(select(func.count()).where(Paper.doi.is_not(None))) == 0


def test_papers_list_json_round_trips_doi_venue_and_journal_link(run, app, tmp_path):
    row = {"title": "Ordered phases", "source": "feed", "doi": "10.1103/x.1", "venue": "PRL",
           "url_journal": "https://journals.aps.org/prl/x.1"}  # fmt: skip
    _import(run, tmp_path, "one.json", [row])
    listed = tmp_path / "listed.json"
    listed.write_text(run("papers", "list", "--json").stdout, encoding="utf-8")
    before = dump_database(app.engine)

    again = run("papers", "import", str(listed), "--json")

    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["unchanged"] == 1
    assert dump_database(app.engine) == before


def test_the_card_names_the_journal_and_links_its_version_beside_the_preprint(app, run, tmp_path):
    with app.transaction() as s:
        f.subscriber(s, "vera@example.org", [f.topic(s, "kagome", ["kagome"])])
    arxiv = {"title": TITLE, "source": "arxiv", "arxiv_id": "2412.01234",
             "authors": ["Jane Q. Doe"], "abstract": "Kagome metals order.",
             "url_abs": "https://arxiv.org/abs/2412.01234"}  # fmt: skip
    journal = {"title": TITLE, "source": "feed", "authors": ["Doe, J."],
               "doi": "10.1103/PhysRevB.110.L180501", "venue": "Physical Review B",
               "url_journal": PRB}  # fmt: skip
    _import(run, tmp_path, "both.json", [arxiv, journal])

    assert run("send", "--yes", "--date", "2026-12-04").exit_code == 0
    (raw,) = mailbox.Maildir(app.settings.transport.removeprefix("maildir:"), create=False)
    message = email.message_from_bytes(raw.as_bytes(), policy=email.policy.default)
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert "Physical Review B" in html and "Physical Review B" in text
    assert f'href="{PRB}"' in html and f"Journal:  {PRB}" in text
    assert 'href="https://arxiv.org/abs/2412.01234"' in html


def test_a_doi_never_holds_a_control_character(app):
    with app.transaction() as s:
        ingest_records([PaperRecord(title="D", source="feed", doi="10.1000/ab\x00c\x1bd"),
                        PaperRecord(title="E", source="feed", doi="doi:\x0010.1000/x")],
                       session=s)  # fmt: skip
    with app.sessions() as s:
        dois = sorted(d for d in s.scalars(select(Paper.doi)) if d)
        assert dois == ["10.1000/ab", "10.1000/x"]  # the DOI after the junk is still found


ISCIENCE_DOI = "10.1016/j.isci.2022.105906"  # where the real bioRxiv row 10.1101/001768 went
ISCIENCE_PAGE = "https://www.cell.com/iscience/fulltext/S2589-0042(22)01978-5"


def _iscience_record() -> PaperRecord:
    """The journal's record of that work: its own title and DOI, its journal's name."""
    return PaperRecord(title="Cell-to-cell variation in nuclear transport in yeast",
                       source="feed", authors=["Lucía Durrieu", "Alan Bush"],
                       doi=f"https://doi.org/{ISCIENCE_DOI.upper()}", venue="iScience",
                       url_journal=ISCIENCE_PAGE)  # fmt: skip


def _biorxiv_records(day) -> list[PaperRecord]:
    from newsletter.papers.sources.biorxiv import parse_biorxiv_json

    path = FIXTURES / "biorxiv" / "biorxiv_details.json"
    return parse_biorxiv_json(path.read_bytes(), name=path.name, server="biorxiv",
                              listing_date=day)  # fmt: skip


def _one_work(app) -> Paper:
    with app.sessions() as s:
        found = s.scalars(select(Paper).where(Paper.authors.is_not(None))).all()
        papers = [p for p in found if p.title_key.startswith(("characterization of cell",
                                                               "cell to cell"))]  # fmt: skip
        assert len(papers) == 1, [p.title for p in papers]
        s.expunge(papers[0])
        return papers[0]


def test_a_journal_record_joins_the_preprint_that_says_it_was_published_there(app):
    from datetime import date

    day = date(2020, 1, 8)
    with app.transaction() as s:
        ingest_records(_biorxiv_records(day), session=s)
    with app.transaction() as s:
        stats = ingest_records([_iscience_record()], session=s)
    assert (stats.inserted, stats.updated) == (0, 1)

    paper = _one_work(app)
    assert paper.doi == "10.1101/001768" and paper.venue == "iScience"
    assert paper.url_journal == f"https://doi.org/{ISCIENCE_DOI}"
    before = dump_database(app.engine)
    with app.transaction() as s:  # both again, in one batch: nothing new, nothing changed
        again = ingest_records([*_biorxiv_records(day), _iscience_record()], session=s)
    assert again.inserted == 0 and dump_database(app.engine) == before


def test_a_preprint_joins_the_journal_record_it_was_published_as(app):
    from datetime import date

    with app.transaction() as s:
        ingest_records([_iscience_record()], session=s)
    with app.transaction() as s:
        stats = ingest_records(_biorxiv_records(date(2020, 1, 8)), session=s)
    assert stats.inserted == len(stats.paper_ids) - 1  # every preprint but the one published

    paper = _one_work(app)
    assert (paper.doi, paper.venue) == (ISCIENCE_DOI, "iScience")
    assert paper.url_abs == "https://www.biorxiv.org/content/10.1101/001768"


def test_a_journal_record_of_another_doi_stays_another_paper(app):
    from datetime import date

    preprints = _biorxiv_records(date(2020, 1, 8))
    (preprint,) = [r for r in preprints if r.doi == "10.1101/001768"]
    other = PaperRecord(title=preprint.title, source="feed", authors=["L. Durrieu"],
                        doi="10.1016/j.isci.2099.000001", venue="iScience")  # fmt: skip
    with app.transaction() as s:
        ingest_records(preprints, session=s)
        stats = ingest_records([other], session=s)
    assert stats.inserted == 1  # the same title and first author, but another work's DOI
