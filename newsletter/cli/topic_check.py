"""What `topics check` prints: a topic's counts, its matched papers with why, the unmatched."""

from __future__ import annotations

import dataclasses

import click

from newsletter.core.wording import plural
from newsletter.editions.selection import why_from_evidence
from newsletter.matching.check import TopicCheck, warnings_of
from newsletter.matching.matched import MatchedPaper
from newsletter.matching.suggestions import Suggestion, Suggestions
from newsletter.matching.unmatched import Unmatched

UNMATCHED_SHOWN = 50  # papers `topics check --unmatched` prints; --json lists them all


def check_json(check: TopicCheck) -> dict:
    """Return a check as JSON data: its matched papers with why, only when asked for."""
    data = dataclasses.asdict(check)
    if check.matched_papers is not None:
        data["matched_papers"] = [_paper_json(p) for p in check.matched_papers]
    else:
        del data["matched_papers"]
    return data


def _paper_json(paper: MatchedPaper) -> dict:
    """A matched paper with the line its card gives as why (None where the card says none)."""
    return {**dataclasses.asdict(paper), "why": why_from_evidence(paper.evidence)}


def print_check(check: TopicCheck) -> None:
    """Print one topic's check: counts, keywords, warnings, papers and suggestions."""
    click.echo(
        f"{check.slug}: {check.matched} of {plural(check.papers, 'paper')} of the last "
        f"{plural(check.days, 'day')} ({check.share:.0%}){_votes(check.likes, check.dislikes)}"
    )
    if check.matched:
        placed = ", ".join(f"{signal} {n}" for signal, n in check.placed_by.items())
        click.echo(f"  placed by {placed}")
    for k in check.keywords:
        click.echo(
            f"  {k.keyword}: {plural(k.papers, 'paper')} ({k.share:.0%})"
            f"{_votes(k.likes, k.dislikes)}"
        )
    for x in check.exclude:
        click.echo(f"  excluded {x.phrase!r}: in {plural(x.papers, 'paper')}")
    for warning in warnings_of(check):
        click.echo(f"  warning: {warning}")
    if check.matched_papers:
        _print_matched(check.matched_papers)
    if check.suggestions is not None:
        _print_suggestions(check.slug, check.suggestions)


def _print_matched(papers: list[MatchedPaper]) -> None:
    click.echo("  matched papers, newest first:")
    for p in papers:
        ref = p.arxiv_id or f"(paper {p.paper_id})"
        click.echo(f"    {ref}  {p.listing_date}  {p.placed_by:<10}  {_short(p.title, 70)}")
        why = why_from_evidence(p.evidence)
        card = f'card says "{why}"; ' if why else ""
        click.echo(f"      {card}evidence: {'; '.join(p.evidence) or 'none stored'}")


def print_unmatched(found: Unmatched) -> None:
    """Print the unmatched papers after the terms and categories many of them share."""
    share = len(found.unmatched) / found.papers if found.papers else 0.0
    click.echo(
        f"{len(found.unmatched)} of {plural(found.papers, 'paper')} of the last "
        f"{plural(found.days, 'day')} matched no topic ({share:.0%})"
    )
    if found.terms:
        click.echo("terms many of them share that the other papers rarely have:")
        for t in found.terms:
            held = plural(t.unmatched, "unmatched paper")
            click.echo(f"  {t.term}: in {held}, {t.listed} of all")
    if found.categories:
        click.echo("categories many of them are listed in:")
        for c in found.categories:
            held = plural(c.unmatched, "unmatched paper")
            click.echo(f"  {c.category}: {held}, {c.listed} of all")
    if found.terms or found.categories:
        click.echo(
            "  (a term or category to add: `newsletter topics edit SLUG --keywords ...` or "
            "`--categories ...`, which replace the lists, or a new topic: `topics add`)"
        )
    if found.unmatched:
        click.echo("the papers, newest first, with the terms that set each apart:")
    for p in found.unmatched[:UNMATCHED_SHOWN]:
        ref = p.arxiv_id or f"(paper {p.paper_id})"
        click.echo(f"  {ref}  {p.listing_date}  {_short(p.title, 70)}")
        click.echo(f"      {', '.join(p.terms) or '(no distinctive terms)'}")
    hidden = len(found.unmatched) - UNMATCHED_SHOWN
    if hidden > 0:
        click.echo(f"  ... and {plural(hidden, 'more paper')}: --json lists them all")


def _print_suggestions(slug: str, found: Suggestions) -> None:
    if found.not_taken:
        hint = _edit_hint(slug, "--examples", found.examples)
        click.echo(f"  suggested examples, the closest papers it does not take: {hint}")
        for s in found.not_taken:
            click.echo(f"    {_paper_ref(s)}  standing {s.standing:.1f}  {_short(s.title)}")
    if found.weakest:
        hint = _edit_hint(slug, "--not-examples", found.not_examples)
        click.echo(f"  suggested not-examples, the papers it takes by the weakest margin: {hint}")
        for s in found.weakest:
            click.echo(
                f"    {_paper_ref(s)}  standing {s.standing:.1f}, chance {s.chance:.2f}  "
                f"{_short(s.title)}"
            )


def _edit_hint(slug: str, option: str, current: list[str]) -> str:
    """The command that adds papers to a list it replaces whole: the current ones first."""
    return f"newsletter topics edit {slug} {option} {','.join([*current, 'ID,...'])}"


def _paper_ref(s: Suggestion) -> str:
    return s.arxiv_id or f"(paper {s.paper_id}, no arXiv id)"


def _short(title: str, width: int = 80) -> str:
    title = " ".join(title.split())
    return title if len(title) <= width else title[: width - 1].rstrip() + "…"


def _votes(likes: int, dislikes: int) -> str:
    return f"; readers voted {likes} more, {dislikes} less" if likes or dislikes else ""
