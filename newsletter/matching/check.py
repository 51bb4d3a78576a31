"""How well each topic's keywords fit the recent papers, with warnings for weak ones.

A keyword that most recent papers mention places none of them; one that no paper mentions
is probably misspelt or from another field; a topic that matches nothing leaves its
subscribers without a digest. Readers say the rest: the "more/less like this" votes that a
topic's subscribers cast on the papers it placed, counted for the topic and for each keyword
found in them, show which keyword brings papers its readers do not want. `check_topics`
measures this over the recent listings, with the stored matches as the papers a topic
matched (what `topics list` counts and the digests send) and the signal that placed each
(`combine.placed_by`), and on request the papers to teach it with (`suggestions`);
`quiet_topics` names the topics that matched no paper lately and `disliked_topics` those
whose readers mostly vote "less like this".
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from newsletter.core.models import FeedbackVote, Paper, PaperTopic, Subscription, Topic
from newsletter.matching.combine import PLACERS, placed_by
from newsletter.matching.keywords import compile_keyword
from newsletter.matching.matched import (
    MATCH_DAYS,
    MatchedPaper,
    listed_count,
    matched_counts,
    matched_papers,
    stored_matches,
    window_start,
)
from newsletter.matching.matches import compile_topic, recent_paper_rows, row_text
from newsletter.matching.scoring import PaperText, TopicIndex, TopicMatcher
from newsletter.matching.specificity import WARN_COMMON_SHARE
from newsletter.matching.suggestions import Suggestions, suggest_examples
from newsletter.matching.text import WORD, stem

CHECK_DAYS = MATCH_DAYS
QUIET_DAYS = 7  # `newsletter status` flags topics that matched nothing in this many days
MIN_PAPERS_FOR_NONE = 20  # below this, a keyword found nowhere proves little
BROAD_TOPIC_SHARE = 0.5  # a topic matching this share of the listing is hardly a filter
MIN_VOTES_TO_WARN = 5  # readers' verdict on a topic or keyword counts from this many votes
DISLIKED_SHARE = 0.5  # ... and warns when at least this share of them is "less like this"
PHRASES_SHOWN = 3  # a warned keyword names the phrases it is most often in
MIN_PHRASE_PAPERS = 2  # ... found in at least this many papers

Vote = tuple[PaperText, int]  # a voted paper and the vote: +1 more, -1 less like this
Placed = tuple[float, Sequence[str]]  # a stored match's score and evidence


@dataclass(frozen=True)
class KeywordCheck:
    """One keyword: in how many recent papers it is found, and what to do about it."""

    keyword: str
    papers: int
    share: float
    warning: str | None = None
    likes: int = 0  # readers' votes on the topic's papers in which this keyword is found
    dislikes: int = 0
    # The phrases its mentions stand in most often, with their numbers of papers: where a
    # keyword is misread ("disc corona") or which phrase would be more specific.
    phrases: list[tuple[str, int]] = field(default_factory=list)


@dataclass(frozen=True)
class PhraseCheck:
    """One excluded phrase: in how many recent papers it sets a keyword's mention aside."""

    phrase: str
    papers: int


@dataclass(frozen=True)
class TopicCheck:
    """One topic over the recent papers: what it matched, per keyword, with warnings."""

    slug: str
    name: str
    days: int
    papers: int
    matched: int
    share: float
    keywords: list[KeywordCheck] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    likes: int = 0  # its subscribers' votes on the papers it placed
    dislikes: int = 0
    exclude: list[PhraseCheck] = field(default_factory=list)
    # How many of the matched papers each signal placed (combine.PLACERS, in that order).
    placed_by: dict[str, int] = field(default_factory=dict)
    suggestions: Suggestions | None = None  # papers to teach it with, when asked for
    suggestions_note: str | None = None  # ... or why there are none
    matched_papers: list[MatchedPaper] | None = None  # each with why, when asked for


def check_topics(
    *,
    session: Session,
    slug: str | None = None,
    days: int = CHECK_DAYS,
    threshold: float = 1.0,
    suggest: bool = False,
    neighbours: bool = True,
    papers: bool = False,
) -> list[TopicCheck]:
    """Measure each topic (or the one named) against the papers of the last `days` days.

    Its matched papers are those `matched` counts for the same window. With `papers`, each
    check also lists them with the signal that placed each. With `suggest`, it also names
    papers to teach the topic with, judged by meaning where `neighbours` (the instance's
    match_neighbours) lets matching read it: this runs the sentence model, so call it outside
    a write transaction.
    """
    query = select(Topic).order_by(Topic.slug)
    if slug is not None:
        query = query.where(Topic.slug == slug)
    topics = list(session.scalars(query))
    # The words are read in at most the window's newest papers; the counts are over all.
    texts = {row[0]: row_text(row) for row in recent_paper_rows(session=session, days=days)}
    listed = listed_count(session=session, days=days)
    start = window_start(session=session, days=days)
    placed = stored_matches([t.id for t in topics], session=session, days=days)
    checks = []
    for topic in topics:
        votes = [
            (texts[paper_id], vote)
            for paper_id, vote in (topic_votes(topic.id, start, session=session) if start else ())
            if paper_id in texts
        ]
        matched = [(score, evidence) for _, score, evidence in placed[topic.id]]
        check = check_topic(
            topic, list(texts.values()), matched, days=days, threshold=threshold, votes=votes,
            listed=listed,
        )  # fmt: skip
        if papers:
            found = matched_papers(topic, session=session, days=days, threshold=threshold)
            check = replace(check, matched_papers=found)
        checks.append(check)
    if suggest and topics:
        checks = _with_suggestions(checks, topics, session, days, threshold, neighbours)
    return checks


def _with_suggestions(
    checks: list[TopicCheck],
    topics: list[Topic],
    session: Session,
    days: int,
    threshold: float,
    neighbours: bool,
) -> list[TopicCheck]:
    found = suggest_examples(
        session=session, topics=topics, days=days, threshold=threshold, neighbours=neighbours
    )
    if isinstance(found, str):
        return [replace(c, suggestions_note=found) for c in checks]
    by_slug = {t.slug: found[t.id] for t in topics}
    return [replace(c, suggestions=by_slug[c.slug]) for c in checks]


def topic_votes(topic_id: int, start: date, *, session: Session) -> list[tuple[int, int]]:
    """Return (paper id, vote) of the votes the topic's subscribers cast on papers it placed
    that were listed on `start` or later."""
    query = _readers_votes(FeedbackVote.paper_id, FeedbackVote.vote, start=start)
    return [tuple(row) for row in session.execute(query.where(PaperTopic.topic_id == topic_id))]


def _readers_votes(*columns: Any, start: date) -> Select[Any]:
    """Select over the votes of each topic's subscribers on the papers it placed, listed on
    `start` or later: a vote counts for a topic only when its reader follows it."""
    return (
        select(*columns)
        .select_from(FeedbackVote)
        .join(PaperTopic, PaperTopic.paper_id == FeedbackVote.paper_id)
        .join(
            Subscription,
            (Subscription.subscriber_id == FeedbackVote.subscriber_id)
            & (Subscription.topic_id == PaperTopic.topic_id),
        )
        .join(Paper, Paper.id == FeedbackVote.paper_id)
        .where(Paper.listing_date >= start)
    )


def check_topic(
    topic: Topic,
    papers: list[PaperText],
    matched: Sequence[Placed],
    *,
    days: int = CHECK_DAYS,
    threshold: float = 1.0,
    votes: Sequence[Vote] = (),
    listed: int | None = None,
) -> TopicCheck:
    """Measure one topic against a list of recent papers, its stored matches among them and
    its readers' votes on them.

    `listed` is how many papers the window holds, when `papers` are only its newest.
    """
    index = TopicIndex([compile_topic(topic)])
    mentions = [index.mentions(paper) for paper in papers]
    found = Counter(key for keys in mentions for key in keys)
    whole = bool(topic.whole_categories)
    signals = Counter(
        placed_by(score, evidence, threshold, whole_categories=whole) for score, evidence in matched
    )
    total = len(papers)
    listed = total if listed is None else listed
    voted = [(index.mentions(paper).keys(), vote) for paper, vote in votes]
    contexts = _phrase_counts(mentions)
    disliked = _phrase_counts(
        index.mentions(p) for p in {id(p): p for p, vote in votes if vote < 0}.values()
    )
    keywords = []
    for word in topic.keywords or ():
        key = compile_keyword(word).key
        check = _keyword_check(word, found[key], total)
        likes, dislikes = _count([vote for keys, vote in voted if key in keys])
        check = _with_votes(check, likes, dislikes)
        # Where readers dislike it, the phrases of the disliked papers say more than the listing's.
        phrases = disliked[key] if _disliked(likes, dislikes) else contexts[key]
        keywords.append(_with_phrases(check, phrases.most_common(PHRASES_SHOWN)))
    likes, dislikes = _count([vote for _, vote in votes])
    exclusions = TopicIndex([TopicMatcher.compile(topic.slug, topic.exclude or ())])
    excluded = exclusions.count_keywords(papers)
    return TopicCheck(
        slug=topic.slug,
        name=topic.name,
        days=days,
        papers=listed,
        matched=len(matched),
        share=_share(len(matched), listed),
        keywords=keywords,
        warnings=_topic_warnings(topic.slug, len(matched), listed, days, whole=whole)
        + _readers_warnings(topic.slug, likes, dislikes),
        likes=likes,
        dislikes=dislikes,
        exclude=[
            PhraseCheck(p, excluded.counts.get(compile_keyword(p).key, 0))
            for p in topic.exclude or ()
        ],
        placed_by={signal: signals[signal] for signal in PLACERS},
    )


def _phrase_counts(mentions: Iterable[dict[str, set[str]]]) -> defaultdict[str, Counter[str]]:
    """Count, per keyword key, the papers in which its mentions stand in each phrase.

    Inflections count as one phrase, shown in one of its written forms.
    """
    counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
    written: dict[str, str] = {}
    for found in mentions:
        for key, phrases in found.items():
            seen = set()
            for phrase in sorted(phrases):
                stems = " ".join(stem(w) for w in WORD.findall(phrase))
                written.setdefault(stems, phrase)
                seen.add(stems)
            counts[key].update(written[s] for s in seen)
    return counts


def _with_phrases(check: KeywordCheck, phrases: list[tuple[str, int]]) -> KeywordCheck:
    phrases = [(p, n) for p, n in phrases if n >= MIN_PHRASE_PAPERS]
    warning = check.warning
    if warning is not None and phrases:
        shown = ", ".join(f"{p!r} ({n})" for p, n in phrases)
        warning += f"; it is most often in {shown}"
    return replace(check, phrases=phrases, warning=warning)


def _count(votes: list[int]) -> tuple[int, int]:
    return sum(1 for v in votes if v > 0), sum(1 for v in votes if v < 0)


def _disliked(likes: int, dislikes: int) -> bool:
    votes = likes + dislikes
    return votes >= MIN_VOTES_TO_WARN and dislikes / votes >= DISLIKED_SHARE


def _with_votes(check: KeywordCheck, likes: int, dislikes: int) -> KeywordCheck:
    warning = check.warning
    if warning is None and _disliked(likes, dislikes):
        warning = (
            f"keyword {check.keyword!r}: {dislikes} of the {likes + dislikes} votes of this "
            'topic\'s readers on papers that contain it say "less like this": make it more '
            "specific, exclude the phrases it is misread in, or remove it"
        )
    return replace(check, likes=likes, dislikes=dislikes, warning=warning)


def _readers_warnings(slug: str, likes: int, dislikes: int) -> list[str]:
    if not _disliked(likes, dislikes):
        return []
    return [
        f"topic {slug!r}: {dislikes} of the {likes + dislikes} votes of its readers on the "
        'papers it placed say "less like this": see which keywords those papers share'
    ]


def _share(count: int, total: int) -> float:
    return round(count / total, 3) if total else 0.0


def _keyword_check(word: str, count: int, total: int) -> KeywordCheck:
    share = _share(count, total)
    warning = None
    if total and share >= WARN_COMMON_SHARE:
        warning = (
            f"keyword {word!r} is in {share:.0%} of recent papers: it says little about one; "
            "use a more specific phrase, or pair it with specific keywords"
        )
    elif total >= MIN_PAPERS_FOR_NONE and count == 0:
        warning = (
            f"keyword {word!r} is in none of the {total} recent papers: check its spelling, "
            "or add the words papers use for it (a synonym, an acronym)"
        )
    return KeywordCheck(word, count, share, warning)


def _topic_warnings(
    slug: str, matched: int, total: int, days: int, *, whole: bool = False
) -> list[str]:
    if not total:
        return [f"no papers in the last {days} days: nothing to check {slug!r} against"]
    if matched == 0:
        return [
            f"topic {slug!r} matched none of the {total} papers of the last {days} days: "
            "its subscribers get nothing; add keywords papers use"
        ]
    # A topic that takes whole categories filters by them, as its admin asked.
    if matched / total >= BROAD_TOPIC_SHARE and not whole:
        return [
            f"topic {slug!r} matched {matched / total:.0%} of recent papers: "
            "it filters little; use more specific keywords"
        ]
    return []


def warnings_of(check: TopicCheck) -> list[str]:
    """Return every warning of a topic check: its keywords' and its own."""
    return [k.warning for k in check.keywords if k.warning] + check.warnings


def quiet_topics(*, session: Session, days: int = QUIET_DAYS) -> list[str]:
    """Return the slugs of topics that matched no paper in the last `days` days of listings."""
    if window_start(session=session, days=days) is None:
        return []
    counts = matched_counts(session=session, days=days)
    quiet = [tid for tid, n in counts.items() if n == 0]
    query = select(Topic.slug).where(Topic.id.in_(quiet)).order_by(Topic.slug)
    return list(session.scalars(query)) if quiet else []


def disliked_topics(*, session: Session, days: int = CHECK_DAYS) -> list[dict[str, Any]]:
    """Return the topics whose readers' recent votes mostly say "less like this".

    Counted as `topics check` counts them (votes of a topic's subscribers on the papers it
    placed, listed in the last `days` days of listings), in one query for all topics.
    """
    start = window_start(session=session, days=days)
    if start is None:
        return []
    less = case((FeedbackVote.vote < 0, 1), else_=0)
    query = (
        _readers_votes(Topic.slug, func.count(), func.sum(less), start=start)
        .join(Topic, Topic.id == PaperTopic.topic_id)
        .group_by(Topic.slug)
        .order_by(Topic.slug)
    )
    return [
        {"slug": slug, "likes": votes - int(dislikes), "dislikes": int(dislikes)}
        for slug, votes, dislikes in session.execute(query)
        if _disliked(votes - int(dislikes), int(dislikes))
    ]
