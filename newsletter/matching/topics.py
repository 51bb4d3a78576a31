"""Topics: add, import, list and remove the subjects subscribers choose."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from newsletter.core.config import parse_toml
from newsletter.core.errors import InputError, NotFound, quoted
from newsletter.core.models import PaperTopic, Subscription, Topic, xml_safe
from newsletter.core.taxonomy import category_code, closest_category
from newsletter.matching.examples_store import check_examples, normalise_paper_refs
from newsletter.matching.matched import MATCH_DAYS, matched_counts
from newsletter.matching.matches import match_papers

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
MAX_NAME = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_KEYWORD = 100
LIST_FIELDS = ("keywords", "categories", "exclude", "examples", "not_examples")
TOPIC_FIELDS = frozenset({"slug", "name", "description", "whole_categories", *LIST_FIELDS})


@dataclass(frozen=True)
class TopicSpec:
    """A validated topic definition, before it is stored."""

    slug: str
    name: str
    description: str = ""
    keywords: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()  # phrases in which a keyword means something else
    examples: tuple[str, ...] = ()  # identifiers of papers it should take (examples_store)
    not_examples: tuple[str, ...] = ()  # ... and of papers it should not
    whole_categories: bool = False  # every paper of its categories belongs to it


@dataclass(frozen=True)
class ImportStats:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    matches: int = 0  # the changed topics' matches among the papers of the last `days` days
    slugs: tuple[str, ...] = field(default_factory=tuple)
    days: int = MATCH_DAYS


@dataclass(frozen=True)
class TopicInfo:
    """A topic with how many subscribers chose it and how many papers of the last `days`
    days of listings it matched (`papers`, as `matched` counts them)."""

    slug: str
    name: str
    description: str
    keywords: list[str]
    categories: list[str]
    subscribers: int
    papers: int
    exclude: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    not_examples: list[str] = field(default_factory=list)
    whole_categories: bool = False
    days: int = MATCH_DAYS


def split_list(value: str | Iterable[str] | None, separator: str = ",") -> list[str]:
    """Split "k1, k2" (or take a list), strip the items and drop empty ones."""
    if value is None:
        return []
    items = value.split(separator) if isinstance(value, str) else value
    return [item.strip() for item in items if item and item.strip()]


def validate_slug(slug: str) -> str:
    """Return the slug, or raise InputError saying what a slug may contain."""
    if not isinstance(slug, str) or not SLUG_RE.match(slug):
        raise InputError(
            f"invalid topic slug {quoted(slug)}: use 1-64 lowercase letters, digits and hyphens"
        )
    return slug


def normalise_category(value: str) -> str:
    """Return an arXiv archive or category as arXiv spells it ("cs.lg" -> "cs.LG",
    "COND-MAT" -> "cond-mat") or a bioRxiv/medRxiv subject's code ("Cell Biology" ->
    "cell-biology"), or raise InputError suggesting the closest one."""
    code = category_code(value)
    if code is not None:
        return code
    closest = closest_category(value)
    hint = (
        f"did you mean {closest}?"
        if closest
        else "expected an arXiv category (cs.LG), an archive (math) or a bioRxiv subject "
        "(neuroscience)"
    )
    raise InputError(
        f"invalid category {quoted(value)}: not an arXiv category or bioRxiv/medRxiv subject; "
        f"{hint}"
    )


def make_spec(
    slug: str,
    name: str,
    description: str = "",
    keywords: str | Iterable[str] | None = (),
    categories: str | Iterable[str] | None = (),
    exclude: str | Iterable[str] | None = (),
    *,
    examples: str | Iterable[str] | None = (),
    not_examples: str | Iterable[str] | None = (),
    whole_categories: bool = False,
) -> TopicSpec:
    """Validate the parts of a topic and return its spec.

    Example papers are checked for their form here and against the store on saving.
    """
    validate_slug(slug)
    name = (name or "").strip()
    if _CONTROL.search(name):  # names reach web pages and emails: one line, no NUL
        raise InputError(f"topic {quoted(slug)}: name must be one line without control characters")
    name = xml_safe(name).strip()  # what else XML cannot hold is dropped
    if not name:
        raise InputError(f"topic {quoted(slug)}: a name is required")
    if len(name) > MAX_NAME:
        raise InputError(f"topic {quoted(slug)}: name longer than {MAX_NAME} characters")
    words = _phrases(slug, keywords, "keyword")
    cats = _dedupe(normalise_category(c) for c in split_list(categories))
    description = xml_safe(description or "").strip()
    excluded = _phrases(slug, exclude, "excluded phrase")
    if whole_categories and not cats:
        raise InputError(f"topic {quoted(slug)}: whole categories needs at least one category")
    try:
        liked = normalise_paper_refs(split_list(examples))
        disliked = normalise_paper_refs(split_list(not_examples))
    except InputError as exc:
        raise InputError(f"topic {quoted(slug)}: {exc}") from exc
    return TopicSpec(
        slug,
        name,
        description,
        tuple(words),
        tuple(cats),
        tuple(excluded),
        tuple(liked),
        tuple(disliked),
        bool(whole_categories),
    )


def _phrases(slug: str, value: str | Iterable[str] | None, what: str) -> list[str]:
    """Split, clean and check a list of keywords or phrases: each with a letter or digit."""
    phrases = _dedupe(split_list([xml_safe(p) for p in split_list(value)]))
    for phrase in phrases:
        if len(phrase) > MAX_KEYWORD or not re.search(r"[A-Za-z0-9]", phrase):
            raise InputError(f"topic {quoted(slug)}: invalid {what} {quoted(phrase)}")
    return phrases


def _dedupe(items: Iterable[str]) -> list[str]:
    seen: dict[str, str] = {}
    for item in items:
        seen.setdefault(item.lower(), item)
    return list(seen.values())


def parse_topics_toml(text: str, source: str = "topics file") -> list[TopicSpec]:
    """Parse `[[topic]]` entries (or `[topics.<slug>]` tables) into validated specs."""
    entries = _entries(parse_toml(text, source), source)
    specs: list[TopicSpec] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries, start=1):
        named = f" ({quoted(entry['slug'])})" if "slug" in entry else ""
        label = f"{source}: topic #{index}{named}"
        spec = _spec_from_entry(entry, label)
        if spec.slug in seen:
            raise InputError(f"{label}: slug {quoted(spec.slug)} appears twice")
        seen.add(spec.slug)
        specs.append(spec)
    return specs


def _entries(data: Mapping[str, Any], source: str) -> list[dict[str, Any]]:
    if isinstance(data.get("topic"), list):
        return [dict(e) if isinstance(e, dict) else {"_bad": e} for e in data["topic"]]
    if isinstance(data.get("topics"), dict):
        return [
            {"slug": slug, **body} if isinstance(body, dict) else {"slug": slug, "_bad": body}
            for slug, body in data["topics"].items()
        ]
    raise InputError(f"{source}: expected [[topic]] entries with slug, name and keywords")


def _spec_from_entry(entry: Mapping[str, Any], label: str) -> TopicSpec:
    unknown = sorted(set(entry) - TOPIC_FIELDS)
    if unknown:
        raise InputError(f"{label}: unknown field {quoted(unknown[0])}")
    for key in ("slug", "name", "description"):
        if key in entry and not isinstance(entry[key], str):
            raise InputError(f"{label}: {key} must be a string")
    for key in LIST_FIELDS:
        value = entry.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InputError(f"{label}: {key} must be a list of strings")
    if not isinstance(entry.get("whole_categories", False), bool):
        raise InputError(f"{label}: whole_categories must be true or false")
    if "slug" not in entry:
        raise InputError(f"{label}: slug is required")
    try:
        return make_spec(
            entry["slug"],
            entry.get("name", ""),
            entry.get("description", ""),
            entry.get("keywords", []),
            entry.get("categories", []),
            entry.get("exclude", []),
            examples=entry.get("examples", []),
            not_examples=entry.get("not_examples", []),
            whole_categories=entry.get("whole_categories", False),
        )
    except InputError as exc:
        raise InputError(f"{label}: {exc}") from exc


def add_topic(
    *,
    session: Session,
    slug: str,
    name: str,
    description: str = "",
    keywords: str | Iterable[str] = (),
    categories: str | Iterable[str] = (),
    exclude: str | Iterable[str] = (),
    examples: str | Iterable[str] = (),
    not_examples: str | Iterable[str] = (),
    whole_categories: bool = False,
    threshold: float = 1.0,
    neighbours: bool = True,
) -> Topic:
    """Create a topic and match it against the papers already stored, as ingest would
    (`threshold` and `neighbours`: the instance's match settings).

    Each example and not-example must name a stored paper (InputError otherwise).
    """
    spec = make_spec(
        slug,
        name,
        description,
        keywords,
        categories,
        exclude,
        examples=examples,
        not_examples=not_examples,
        whole_categories=whole_categories,
    )
    if session.scalar(select(Topic.id).where(Topic.slug == spec.slug)) is not None:
        raise InputError(f"topic {quoted(spec.slug)} already exists")
    _check_papers(spec, session)
    topic = Topic(slug=spec.slug)
    _apply(topic, spec)
    session.add(topic)
    session.flush()
    match_papers(session=session, topic_ids=[topic.id], threshold=threshold, neighbours=neighbours)
    return topic


def edit_topic(
    slug: str,
    *,
    session: Session,
    name: str | None = None,
    description: str | None = None,
    keywords: str | Iterable[str] | None = None,
    categories: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    examples: str | Iterable[str] | None = None,
    not_examples: str | Iterable[str] | None = None,
    whole_categories: bool | None = None,
    threshold: float = 1.0,
    neighbours: bool = True,
) -> tuple[Topic, bool]:
    """Change the parts given of a topic; rematch its papers if anything changed.

    Return the topic and whether it changed. A part left None keeps its value; an empty one
    (keywords="") clears it.
    """
    topic = get_topic(slug, session=session)
    spec = make_spec(
        slug,
        topic.name if name is None else name,
        (topic.description or "") if description is None else description,
        (topic.keywords or []) if keywords is None else keywords,
        (topic.categories or []) if categories is None else categories,
        (topic.exclude or []) if exclude is None else exclude,
        examples=(topic.examples or []) if examples is None else examples,
        not_examples=(topic.not_examples or []) if not_examples is None else not_examples,
        whole_categories=(
            bool(topic.whole_categories) if whole_categories is None else whole_categories
        ),
    )
    if _same(topic, spec):
        return topic, False
    _check_papers(spec, session)
    _apply(topic, spec)
    session.flush()
    match_papers(session=session, topic_ids=[topic.id], threshold=threshold, neighbours=neighbours)
    session.expire(topic, ["papers"])  # matched again outside the ORM
    return topic, True


def import_topics(
    path: str | Path, *, session: Session, threshold: float = 1.0, neighbours: bool = True
) -> ImportStats:
    """Create or update the topics of a TOML file by slug, then match the changed ones."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc
    specs = parse_topics_toml(text, str(path))
    existing = {t.slug: t for t in session.scalars(select(Topic))}
    created = updated = unchanged = 0
    changed: list[Topic] = []
    for spec in specs:  # every paper named is checked before the first change
        if spec.slug not in existing or not _same(existing[spec.slug], spec):
            try:
                _check_papers(spec, session)
            except InputError as exc:
                raise InputError(f"{path}: {exc}") from exc
    for spec in specs:
        topic = existing.get(spec.slug)
        if topic is None:
            topic = Topic(slug=spec.slug)
            session.add(topic)
            created += 1
        elif _same(topic, spec):
            unchanged += 1
            continue
        else:
            updated += 1
        _apply(topic, spec)
        changed.append(topic)
    session.flush()
    matches = 0
    if changed:
        ids = [t.id for t in changed]
        match_papers(session=session, topic_ids=ids, threshold=threshold, neighbours=neighbours)
        matches = sum(matched_counts(session=session, topic_ids=ids).values())
    slugs = tuple(s.slug for s in specs)
    return ImportStats(created, updated, unchanged, matches, slugs)


def _same(topic: Topic, spec: TopicSpec) -> bool:
    return (
        topic.name == spec.name
        and (topic.description or "") == spec.description
        and list(topic.keywords or []) == list(spec.keywords)
        and list(topic.categories or []) == list(spec.categories)
        and list(topic.exclude or []) == list(spec.exclude)
        and list(topic.examples or []) == list(spec.examples)
        and list(topic.not_examples or []) == list(spec.not_examples)
        and bool(topic.whole_categories) == spec.whole_categories
    )


def _check_papers(spec: TopicSpec, session: Session) -> None:
    check_examples(spec.slug, spec.examples, spec.not_examples, session=session)


def _apply(topic: Topic, spec: TopicSpec) -> None:
    topic.name = spec.name
    topic.description = spec.description
    topic.keywords = list(spec.keywords)
    topic.categories = list(spec.categories)
    topic.exclude = list(spec.exclude)
    topic.examples = list(spec.examples)
    topic.not_examples = list(spec.not_examples)
    topic.whole_categories = spec.whole_categories


def list_topics(*, session: Session, days: int = MATCH_DAYS) -> list[TopicInfo]:
    """Return every topic with its subscriber count and how many papers of the last `days`
    days of listings it matched, by slug."""
    subs = _counts(session, Subscription.topic_id)
    papers = matched_counts(session=session, days=days)
    return [
        TopicInfo(
            slug=t.slug,
            name=t.name,
            description=t.description or "",
            keywords=list(t.keywords or []),
            categories=list(t.categories or []),
            subscribers=subs.get(t.id, 0),
            papers=papers.get(t.id, 0),
            exclude=list(t.exclude or []),
            examples=list(t.examples or []),
            not_examples=list(t.not_examples or []),
            whole_categories=bool(t.whole_categories),
            days=days,
        )
        for t in session.scalars(select(Topic).order_by(Topic.slug))
    ]


def _counts(session: Session, column: Any) -> dict[int, int]:
    rows = session.execute(select(column, func.count()).group_by(column))
    return {topic_id: count for topic_id, count in rows}


def get_topic(slug: str, *, session: Session) -> Topic:
    """Return the topic with this slug or raise NotFound."""
    topic = session.scalar(select(Topic).where(Topic.slug == slug))
    if topic is None:
        raise NotFound(f"unknown topic {quoted(slug)} (see `newsletter topics list`)")
    return topic


def count_subscribers(slug: str, *, session: Session) -> int:
    """Return how many subscribers chose the topic (NotFound when it does not exist)."""
    topic = get_topic(slug, session=session)
    query = select(func.count()).select_from(Subscription).where(Subscription.topic_id == topic.id)
    return session.scalar(query) or 0


def remove_topic(slug: str, *, session: Session) -> int:
    """Delete a topic with its matches and subscriptions; return how many subscribers lost it."""
    subscribers = count_subscribers(slug, session=session)
    topic = get_topic(slug, session=session)
    # Explicit deletes: do not rely on SQLite's foreign_keys pragma for the cascade.
    session.execute(delete(Subscription).where(Subscription.topic_id == topic.id))
    session.execute(delete(PaperTopic).where(PaperTopic.topic_id == topic.id))
    session.execute(delete(Topic).where(Topic.id == topic.id))
    return subscribers
