"""Example papers: the identifiers an admin writes and the stored papers they name."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import delete

from newsletter.core.app import App
from newsletter.core.errors import InputError
from newsletter.core.models import Paper, Topic
from newsletter.matching.examples_store import (
    check_examples,
    example_paper_ids,
    normalise_paper_ref,
    resolve_paper_refs,
)


@pytest.mark.parametrize(
    ("written", "ref"),
    [
        ("2507.01234", "2507.01234"),
        ("2507.01234v3", "2507.01234"),
        ("arXiv:2507.01234", "2507.01234"),
        ("https://arxiv.org/abs/2507.01234v2", "2507.01234"),
        ("https://arxiv.org/pdf/2507.01234.pdf", "2507.01234"),
        ("hep-th/9901001v2", "hep-th/9901001"),
        ("math.GT/0309136", "math/0309136"),
        ("10.48550/arXiv.2507.01234", "2507.01234"),
        ("10.1101/2024.05.01.592000", "10.1101/2024.05.01.592000"),
        ("https://doi.org/10.1103/PhysRevB.99.1", "10.1103/physrevb.99.1"),
        ("doi:10.1038/NPHYS1234", "10.1038/nphys1234"),
    ],
)
def test_identifiers_are_written_one_way(written: str, ref: str) -> None:
    assert normalise_paper_ref(written) == ref


@pytest.mark.parametrize("bad", ["", "2507.1", "paper", "10.1101", "https://example.org/x"])
def test_what_is_no_identifier_is_refused(bad: str) -> None:
    with pytest.raises(InputError, match="not a paper identifier"):
        normalise_paper_ref(bad)


def _paper(session, title: str, **fields) -> int:
    row = Paper(title=title, title_key=title.lower(), listing_date=date(2026, 11, 27),
                source="test", **fields)  # fmt: skip
    session.add(row)
    session.flush()
    return row.id


def test_a_doi_names_the_paper_whose_link_holds_it_and_no_longer_doi(app: App) -> None:
    with app.transaction() as s:
        long = _paper(
            s, "Long", url_abs="https://www.biorxiv.org/content/10.1101/2024.01.01.12345v1"
        )
        pdf = _paper(s, "Pdf", url_pdf="https://doi.org/10.1234/ABC_1%2.full.pdf")
        found = resolve_paper_refs(
            ["10.1101/2024.01.01.12345", "10.1101/2024.01.01.1234", "10.1234/abc_1%2"], session=s
        )
    assert found == {"10.1101/2024.01.01.12345": long, "10.1234/abc_1%2": pdf}


def test_example_ids_come_in_order_without_papers_gone_since(app: App) -> None:
    with app.transaction() as s:
        a = _paper(s, "A", arxiv_id="2507.00001")
        b = _paper(s, "B", arxiv_id="hep-th/9901001")
        c = _paper(s, "C", arxiv_id="2507.00003")
        check_examples("t", ["hep-th/9901001", "2507.00001"], ["2507.00003"], session=s)
        topic = Topic(slug="t", name="T", examples=["hep-th/9901001", "2507.00001"],
                      not_examples=["2507.00003"])  # fmt: skip
        s.add(topic)
        s.flush()
        assert example_paper_ids(topic, session=s) == ([b, a], [c])
        s.execute(delete(Paper).where(Paper.id == a))
        assert example_paper_ids(topic, session=s) == ([b], [c])
        with pytest.raises(InputError, match="no stored paper has the arXiv id '2507.00001'"):
            check_examples("t", ["2507.00001"], [], session=s)
