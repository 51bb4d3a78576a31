"""Digest layouts: digests assembled from shared cards are the digests rendered whole."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest

from newsletter.content.digest import EditionInfo, Recipient, RenderedDigest
from newsletter.content.layouts import NoLayout, StandIns
from newsletter.content.rendering import DigestRenderer, make_renderer
from newsletter.core.config import Settings
from newsletter.core.resources import shipped_dir
from tests.test_rendering import ANN, EDITION, hostile_paper, sample_papers

BOB = Recipient(7, "bob@example.org", "Bob <&>", ("Q&A",), "k3y")


class WholeRenderer(DigestRenderer):
    """Renders every digest by running its whole template, as before layouts."""

    def _lay_out(self, key: tuple) -> None:
        return None


def whole_renderer(settings: Settings) -> WholeRenderer:
    base = make_renderer(settings)
    return WholeRenderer(settings, base.html_env, base.text_env)


def same(a: RenderedDigest, b: RenderedDigest) -> bool:
    return (a.subject, a.text, a.html) == (b.subject, b.text, b.html)


def personal_orders() -> list[list]:
    """Known papers in every order and length, with a reason and a why, as readers get them."""
    papers = [*sample_papers(), hostile_paper()]
    papers[1] = dataclasses.replace(papers[1], reason="You follow Ann", why="title mentions x")
    papers[2] = dataclasses.replace(papers[2], why="most upvoted in LLMs", summary="Short.")
    orders = [list(p) for n in (1, 2, 4) for p in itertools.permutations(papers, n)]
    return orders[::3]  # a spread of them: every count, many orders


def test_personal_digests_from_shared_cards_are_byte_identical_to_whole_ones(
    settings: Settings,
) -> None:
    shared, whole = make_renderer(settings), whole_renderer(settings)
    orders = personal_orders()
    shared.warm(EDITION, orders)  # as a batch of rows is prepared
    for papers, reader in zip(orders, itertools.cycle([ANN, BOB]), strict=False):
        assert same(shared.render(EDITION, papers, reader), whole.render(EDITION, papers, reader))
    assert shared.stats.whole == 0  # no digest ran its template
    assert whole.stats.whole == len(orders)


def test_a_new_order_of_known_papers_runs_no_template(settings: Settings) -> None:
    renderer = make_renderer(settings)
    papers = sample_papers()
    renderer.render(EDITION, papers, ANN)
    cards = renderer.stats.cards
    # html cards are the same in any place; text ones carry their number; and the preheader.
    reordered = [papers[0], papers[2], papers[1]]
    renderer.render(EDITION, reordered, ANN)
    assert renderer.stats.whole == 0
    assert renderer.stats.cards - cards == 2 + 1
    cards = renderer.stats.cards
    renderer.render(EDITION, [papers[0], papers[1], papers[2]], BOB)  # known: a body cache hit
    renderer.render(EDITION, reordered, BOB)
    assert renderer.stats.cards == cards


def test_the_empty_note_is_laid_out_too(settings: Settings) -> None:
    renderer = make_renderer(settings)
    note = renderer.render_empty(EDITION, ANN)
    assert same(note, whole_renderer(settings).render_empty(EDITION, ANN))
    assert renderer.stats.whole == 0


def test_each_edition_and_count_has_its_own_layout(settings: Settings) -> None:
    renderer, whole = make_renderer(settings), whole_renderer(settings)
    papers = sample_papers()
    for edition in (EDITION, EditionInfo(EDITION.listing_date.replace(day=28), "weekly")):
        for count in (1, 2, 3):
            expected = whole.render(edition, papers[:count], ANN)
            assert same(renderer.render(edition, papers[:count], ANN), expected)
    assert len(renderer._layouts) == 6


def _custom(settings: Settings, tmp_path: Path, edit) -> Settings:  # noqa: ANN001
    custom = tmp_path / "custom" / "email"
    custom.mkdir(parents=True)
    for name in ("digest.html", "digest.txt"):
        shipped = (shipped_dir("templates") / "email" / name).read_text(encoding="utf-8")
        (custom / name).write_text(edit(name, shipped), encoding="utf-8")
    return dataclasses.replace(settings, templates_dir=str(tmp_path / "custom"))


@pytest.mark.parametrize(
    "edit",
    [
        # The layout reads a paper: the title of the first one in the intro.
        lambda name, t: t.replace(" on your topics.", " on {{ papers[0].title }}."),
        # A card reads the digest's papers instead of its arguments.
        lambda name, t: t.replace("{{ paper.title|one_line", "{{ papers[0].title }}{{ paper.title"),
        # A fragment by a {% call %} block, as operator templates written before macros do.
        lambda name, t: t.replace(
            '{{ fragment("preheader", preheader_text, papers) }}',
            '{% call fragment("preheader") %}{{ preheader_text(papers) }}{% endcall %}',
        ),
    ],
    ids=["layout reads a paper", "card reads the papers", "call block"],
)
def test_templates_that_read_their_papers_are_rendered_whole(
    settings: Settings,
    tmp_path: Path,
    edit,  # noqa: ANN001
) -> None:
    overridden = _custom(settings, tmp_path, edit)
    renderer, whole = make_renderer(overridden), whole_renderer(overridden)
    papers = sample_papers()
    for order in ([papers[0], papers[1]], [papers[1], papers[0]], papers):
        assert same(renderer.render(EDITION, order, ANN), whole.render(EDITION, order, ANN))
    assert renderer.stats.whole == 3
    assert papers[1].title in renderer.render(EDITION, [papers[1], papers[0]], BOB).text


def test_stand_ins_refuse_to_be_read() -> None:
    stand_ins = StandIns(2)
    assert len(stand_ins) == 2
    paper = stand_ins[0]
    for read in (
        lambda: paper.title,
        lambda: str(paper),
        lambda: f"{paper}",
        lambda: paper.__html__(),
        lambda: paper == stand_ins[1],
        lambda: paper < stand_ins[1],
        lambda: hash(paper),
        lambda: paper["title"],
    ):
        with pytest.raises(NoLayout):
            read()
