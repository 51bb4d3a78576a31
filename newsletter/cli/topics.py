"""`newsletter topics` commands."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import click

from newsletter.cli.common import echo_json, parse_date, pass_app
from newsletter.cli.topic_check import check_json, print_check, print_unmatched
from newsletter.core.app import App
from newsletter.core.errors import InputError
from newsletter.core.wording import plural
from newsletter.matching import service
from newsletter.matching.check import CHECK_DAYS
from newsletter.matching.matched import MATCH_DAYS
from newsletter.matching.topics import TopicInfo


@click.group()
def topics() -> None:
    """Manage topics: the subjects subscribers choose and papers are matched to."""


@topics.command("add")
@click.argument("slug")
@click.option("--name", required=True, help="Display name, e.g. 'Large language models'.")
@click.option("--description", default="", help="One line; its words are weak evidence.")
@click.option("--keywords", default="", help='Comma-separated: "LLM, large language model".')
@click.option(
    "--categories", default="",
    help="Comma-separated arXiv categories or archives (cs.CL,cs.LG or cond-mat) or "
    "bioRxiv/medRxiv subjects (neuroscience, cell-biology, epidemiology).",
)  # fmt: skip
@click.option(
    "--exclude", default="",
    help='Comma-separated phrases in which a keyword means something else: "dataset distillation".',
)  # fmt: skip
@click.option(
    "--examples", default="",
    help="Comma-separated arXiv ids or DOIs of stored papers the topic should take.",
)  # fmt: skip
@click.option(
    "--not-examples", default="",
    help="Comma-separated arXiv ids or DOIs of stored papers it should not take.",
)  # fmt: skip
@click.option(
    "--whole-categories", is_flag=True,
    help="Take every paper of the topic's categories, whatever its words.",
)  # fmt: skip
@pass_app
def add_command(
    app: App,
    slug: str,
    name: str,
    description: str,
    keywords: str,
    categories: str,
    exclude: str,
    examples: str,
    not_examples: str,
    whole_categories: bool,
) -> None:
    """Add a topic and match it against the papers already stored.

    A keyword found only inside one of the --exclude phrases does not count: "distillation"
    in "dataset distillation" is not model compression, "corona" in "accretion disc corona"
    is not the Sun's. A category may be an archive (cond-mat, math, astro-ph): it stands
    for all its subject classes; or a bioRxiv or medRxiv subject collection, written as
    it reads or with hyphens ("cell biology", cell-biology). With --whole-categories every
    paper of the categories belongs to the topic. --examples and --not-examples name papers
    the store holds (an arXiv id, any version, or a DOI); one it does not hold is refused.

    \b
    Examples:
      newsletter topics add llm --name "Large language models" \\
        --keywords "LLM, large language model, instruction tuning" --categories cs.CL
      newsletter topics add compression --name "Model compression" \\
        --keywords "pruning, quantization, distillation" --exclude "dataset distillation"
      newsletter topics add supercon --name "Superconductivity" \\
        --categories cond-mat.supr-con --whole-categories
      newsletter topics add neuro --name "Neural circuits" --categories neuroscience \\
        --keywords "optogenetics, circuit"
      newsletter topics add kneser --name "Additive combinatorics" --categories math \\
        --examples 2507.01234,math/0601001 --not-examples 10.1101/2024.05.01.592000
    """
    fit = service.add_topic(
        app,
        slug,
        name,
        description=description,
        keywords=keywords,
        categories=categories,
        exclude=exclude,
        examples=examples,
        not_examples=not_examples,
        whole_categories=whole_categories,
    )
    click.echo(f"added topic {slug}: {_matches(fit.matched, fit.days)}")
    for warning in fit.warnings:
        click.echo(f"warning: {warning}", err=True)


def _matches(matched: int, days: int) -> str:
    return f"it matches {plural(matched, 'paper')} of the last {plural(days, 'day')}"


@topics.command("edit")
@click.argument("slug")
@click.option("--name", help="A new display name.")
@click.option("--description", help="A new one-line description.")
@click.option("--keywords", help="The new comma-separated keywords (replace the old ones).")
@click.option("--categories", help="The new comma-separated categories or preprint subjects.")
@click.option("--exclude", help='The new comma-separated excluded phrases ("" clears them).')
@click.option("--examples", help='The new comma-separated example papers ("" clears them).')
@click.option("--not-examples", help="The new comma-separated papers it should not take.")
@click.option(
    "--whole-categories/--no-whole-categories", default=None,
    help="Take every paper of its categories, or only those its evidence places.",
)  # fmt: skip
@pass_app
def edit_command(
    app: App,
    slug: str,
    name: str | None,
    description: str | None,
    keywords: str | None,
    categories: str | None,
    exclude: str | None,
    examples: str | None,
    not_examples: str | None,
    whole_categories: bool | None,
) -> None:
    """Change a topic's name, description, keywords, categories, excluded phrases or papers.

    Only the options given change; each replaces the old value whole. The topic's papers
    are matched again, and the same warnings as `topics add` are printed.

    \b
    Examples:
      newsletter topics edit sun --exclude "accretion disc corona, disc corona"
      newsletter topics edit llm --keywords "LLM, large language model, instruction tuning"
      newsletter topics edit supercon --categories cond-mat.supr-con,cond-mat.str-el
      newsletter topics edit kneser --examples 2507.01234,2507.04321v2
    """
    fit = service.edit_topic(
        app,
        slug,
        name=name,
        description=description,
        keywords=keywords,
        categories=categories,
        exclude=exclude,
        examples=examples,
        not_examples=not_examples,
        whole_categories=whole_categories,
    )
    if not fit.changed:
        click.echo(f"topic {slug} unchanged: {_matches(fit.matched, fit.days)}")
        return
    click.echo(f"updated topic {slug}: {_matches(fit.matched, fit.days)}")
    for warning in fit.warnings:
        click.echo(f"warning: {warning}", err=True)


@topics.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def import_command(app: App, file: str, as_json: bool) -> None:
    """Create or update topics from a TOML file (by slug), then match the changed ones.

    \b
    The file holds one [[topic]] table per topic:
      [[topic]]
      slug = "llm"
      name = "Large language models"
      description = "Training, prompting and evaluating LLMs."
      keywords = ["LLM", "large language model"]
      categories = ["cs.CL"]                # or archives: "cond-mat", "math"
      exclude = ["n-gram language model"]   # optional
      examples = ["2507.01234"]             # optional: stored papers, arXiv ids or DOIs
      not_examples = ["2507.04321"]         # optional
      whole_categories = false              # true: every paper of the categories
    A keyword found only inside an excluded phrase does not count there.
    \b
    Example:
      newsletter topics import seeds/topics.toml
    """
    stats = service.import_topics(app, file)
    if as_json:
        echo_json(dataclasses.asdict(stats))
        return
    click.echo(
        f"{stats.created} created, {stats.updated} updated, {stats.unchanged} unchanged; "
        f"{plural(stats.matches, 'match', 'matches')} of the changed topics among the papers "
        f"of the last {plural(stats.days, 'day')}"
    )


@topics.command("check")
@click.argument("slug", required=False)
@click.option(
    "--days", type=click.IntRange(min=1), default=CHECK_DAYS, show_default=True,
    help="Check against the papers of this many listing days back from the newest.",
)  # fmt: skip
@click.option("--papers", "with_papers", is_flag=True, help="List each matched paper with why.")
@click.option(
    "--unmatched", is_flag=True,
    help="List the papers no topic matched, with the terms and categories that set them apart.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def check_command(
    app: App, slug: str | None, days: int, with_papers: bool, unmatched: bool, as_json: bool
) -> None:
    """Show how many recent papers each topic and keyword matches; warn about weak ones.

    A topic's matched papers are those stored for it among the papers of the last --days
    listing days: what `topics list` counts and the digests send, counted by the signal
    that placed each: keywords, category, meaning or neighbours. With --papers each of them
    is listed, newest first, with that signal, the line its card says why with, and the
    evidence. With --unmatched, the papers no topic matched are listed instead, each with
    the terms that set it apart from the other papers, after the terms and arXiv categories
    many of them share: the keyword, category or topic to add.

    A keyword in most papers places none of them; one in no paper is likely misspelt; a
    topic that matches nothing leaves its subscribers without a digest. The "more/less like
    this" votes of a topic's subscribers on the papers it placed are counted for the topic
    and for each keyword found in them: a keyword most of whose voted papers were marked
    "less like this" is flagged. Where topics are matched by meaning, each topic also
    suggests examples: the recent papers closest to it that it does not take (add the right
    ones with `topics edit SLUG --examples`), and those it takes by the weakest margin (set
    the wrong ones aside with `--not-examples`).

    \b
    Examples:
      newsletter topics check
      newsletter topics check llm --days 7 --json
      newsletter topics check llm --papers
      newsletter topics check --unmatched --days 7
    """
    if unmatched:
        if slug is not None or with_papers:
            raise InputError("--unmatched lists the papers of no topic: give no SLUG or --papers")
        _check_unmatched(app, days, as_json)
        return
    checks = service.check(app, slug, days=days, papers=with_papers)  # unknown slug: exit 2
    if as_json:
        echo_json([check_json(c) for c in checks])
        return
    if not checks:
        click.echo("no topics yet: add one with `newsletter topics add` or `topics import`")
    for check in checks:
        print_check(check)
    if checks and checks[0].suggestions_note:  # the same for every topic: said once
        click.echo(checks[0].suggestions_note)


def _check_unmatched(app: App, days: int, as_json: bool) -> None:
    found = service.unmatched(app, days=days)
    if as_json:
        echo_json(dataclasses.asdict(found))
        return
    print_unmatched(found)


@topics.command("list")
@click.option(
    "--days", type=click.IntRange(min=1), default=MATCH_DAYS, show_default=True,
    help="Count the matched papers of this many listing days back from the newest.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def list_command(app: App, days: int, as_json: bool) -> None:
    """List topics with their subscriber and matched-paper counts.

    A topic's papers are those it matched among the last --days listing days, as `topics
    check` counts them (`topics check SLUG --papers` lists them).

    \b
    Examples:
      newsletter topics list
      newsletter topics list --days 7 --json
    """
    infos = service.list_topics(app, days=days)
    if as_json:
        echo_json([dataclasses.asdict(i) for i in infos])
        return
    if not infos:
        click.echo("no topics yet: add one with `newsletter topics add` or `topics import`")
        return
    width = max(len(i.slug) for i in infos)
    subscribers = [plural(i.subscribers, "subscriber") for i in infos]
    papers = [plural(i.papers, "paper") for i in infos]
    wide = max(map(len, subscribers)), max(map(len, papers))
    for i, readers, matched in zip(infos, subscribers, papers, strict=True):
        click.echo(
            f"{i.slug:<{width}}  {readers:<{wide[0]}}  {matched:<{wide[1]}}  {i.name}"
            + _definition_note(i)
        )
    click.echo(f"papers: matched among the listings of the last {plural(days, 'day')}")


def _definition_note(info: TopicInfo) -> str:
    """Say what of a topic's definition its name does not: whole categories, examples."""
    notes = []
    if info.whole_categories:
        notes.append("every paper of " + ", ".join(info.categories))
    if info.examples or info.not_examples:
        notes.append(f"{plural(len(info.examples), 'example')}, {len(info.not_examples)} not")
    return f"  ({'; '.join(notes)})" if notes else ""


@topics.command("remove")
@click.argument("slug")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def remove_command(app: App, slug: str, yes: bool) -> None:
    """Remove a topic, its paper matches and its subscriptions.

    \b
    Example:
      newsletter topics remove old-topic --yes
    """
    subscribers = service.count_subscribers(app, slug)  # an unknown slug: exit 2, no prompt
    if not yes:
        lose = f" {plural(subscribers, 'subscriber')} will lose it." if subscribers else ""
        click.confirm(f"Remove topic {slug}?{lose}", abort=True, err=True)
    subscribers = service.remove_topic(app, slug)
    click.echo(f"removed topic {slug}; {plural(subscribers, 'subscriber')} lost it")


@topics.command("match")
@click.option("--date", "day", help="Only papers listed on this day (YYYY-MM-DD).")
@pass_app
def match_command(app: App, day: str | None) -> None:
    """Re-run matching for all papers, or for the papers of one listing date.

    \b
    Examples:
      newsletter topics match
      newsletter topics match --date 2026-11-27
    """
    with _MatchProgress() as progress:
        stats = service.match_again(app, parse_date(day), progress=progress)
    click.echo(
        f"matched {plural(stats.papers, 'paper')} against {plural(stats.topics, 'topic')}: "
        f"{plural(stats.matches, 'match', 'matches')} (replacing {stats.removed})"
    )


class _MatchProgress:
    """A stderr progress bar, opened at the first report: the one that gives the total."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._done = 0

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            self._bar = click.progressbar(length=total, label="matching", file=sys.stderr)
            self._bar.__enter__()
        self._bar.update(done - self._done)
        self._done = done

    def __enter__(self) -> service.Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


def register(group: click.Group) -> None:
    group.add_command(topics)
