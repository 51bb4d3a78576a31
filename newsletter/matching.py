"""Topic matching: decide, with a score and evidence, which papers belong to which topic."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from newsletter.models import Paper, PaperTopic, Topic

# Score scale: 1.0 (the default threshold) is "one clear, specific signal".
TITLE_WEIGHT = 1.0
PAPER_KEYWORD_WEIGHT = 0.9
ABSTRACT_WEIGHT = 0.6
REPEAT_BONUS = 0.15  # each further mention in the abstract, up to MAX_REPEATS
MAX_REPEATS = 2
GENERIC_FACTOR = 0.35  # generic words say little on their own
DECAY = 0.75  # the n-th distinct keyword adds DECAY**n of its weight
CATEGORY_PRIMARY = 0.5
CATEGORY_CROSS = 0.3
DESCRIPTION_WORD = 0.1
DESCRIPTION_CAP = 0.3

# Words that appear in most ML abstracts: alone they never place a paper in a topic.
GENERIC_WORDS = frozenset(
    """
    learning learn model models modeling network networks neural deep data dataset training
    method methods approach system systems efficient efficiency robust robustness performance
    task tasks framework algorithm algorithms optimization analysis evaluation benchmark
    large scale scaling generation generative representation representations prediction
    inference feature features structure structured information knowledge accuracy adaptive
    search attention memory language vision image video text control policy agent agents
    graph graphs reasoning understanding detection transfer automatic automated
    """.split()
)

# Phrases as common as single generic words: "a deep neural network" is no topic.
GENERIC_PHRASES = frozenset(
    {
        "deep learning",
        "machine learning",
        "neural network",
        "deep neural network",
        "artificial intelligence",
        "large scale",
        "state of the art",
    }
)

STOPWORDS = frozenset(
    """
    a an and or the of for in on to with by from as at into via about over under using use
    based new novel their its this that these those is are be been being we our us it they
    such than then also more most less not no can may any all each other both between
    papers paper research work works study studies method methods approach approaches
    topic topics including include includes e g i etc like related toward towards how what
    """.split()
)

_WORD = re.compile(r"[A-Za-z0-9]+")
_BOUNDARY_L = r"(?<![A-Za-z0-9])"
_BOUNDARY_R = r"(?![A-Za-z0-9])"


@dataclass(frozen=True)
class MatchStats:
    papers: int
    topics: int
    matches: int
    removed: int = 0


@dataclass(frozen=True)
class PaperText:
    """What the matcher reads of a paper."""

    title: str
    abstract: str = ""
    keywords: Sequence[str] = ()
    categories: Sequence[str] = ()


@dataclass(frozen=True)
class _Keyword:
    text: str
    pattern: re.Pattern[str]
    generic: bool


@dataclass(frozen=True)
class TopicMatcher:
    """A topic compiled for fast scoring: one regex per keyword, description words, categories."""

    slug: str
    keywords: tuple[_Keyword, ...]
    description: re.Pattern[str] | None
    categories: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def compile(
        cls,
        slug: str,
        keywords: Iterable[str] = (),
        description: str = "",
        categories: Iterable[str] = (),
    ) -> TopicMatcher:
        """Compile a topic's keywords, description and categories."""
        compiled = tuple(_compile_keyword(k) for k in _unique(keywords) if _WORD.search(k))
        return cls(
            slug=slug,
            keywords=compiled,
            description=_description_pattern(description, compiled),
            categories=frozenset(c.strip() for c in categories if c.strip()),
        )

    def score(self, paper: PaperText) -> tuple[float, list[str]]:
        """Score one paper against this topic and say why."""
        return score_paper(self, paper)


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, str] = {}
    for item in items:
        item = item.strip()
        if item and item.lower() not in seen:
            seen[item.lower()] = item
    return list(seen.values())


def _is_acronym(word: str) -> bool:
    # "RL", "LLM", "NAS", "GNNs", "3D": short tokens written in capitals.
    core = word[:-1] if len(word) > 2 and word.endswith("s") else word
    return len(core) >= 2 and core.isupper() and core.isalnum()


def _word_pattern(word: str) -> str:
    """Return a regex for one word with its simple inflections."""
    if _is_acronym(word):
        core = word[:-1] if word.endswith("s") and word[:-1].isupper() else word
        return re.escape(core) + "s?"
    w = word.lower()
    if w.isdigit() or len(w) <= 2:
        return "(?i:" + re.escape(w) + ")"
    stem = _stem(w)
    if stem.endswith("y") and len(stem) > 3:
        tail = "(?:y|ies|ied|ying)"
        return "(?i:" + re.escape(stem[:-1]) + tail + ")"
    if stem.endswith("e") and len(stem) > 3:
        tail = "(?:e|es|ed|ing|er|ers)?"
        return "(?i:" + re.escape(stem[:-1]) + tail + ")"
    return "(?i:" + re.escape(stem) + "(?:s|es|ed|ing|er|ers)?)"


def _stem(w: str) -> str:
    """Strip a plural or verb ending so all simple forms share one stem."""
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("sses", "shes", "ches", "xes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    if len(w) > 5 and w.endswith("ing"):
        return w[:-3]
    return w


def _compile_keyword(keyword: str) -> _Keyword:
    words = _WORD.findall(keyword)
    # Words of a phrase may be split by spaces, hyphens or slashes: "large-language models".
    body = r"[\s\-/]*".join(_word_pattern(w) for w in words)
    pattern = re.compile(_BOUNDARY_L + body + _BOUNDARY_R)
    content = [_stem(w.lower()) for w in words if w.lower() not in STOPWORDS]
    generic = not content or (
        len(content) == 1 and (content[0] in GENERIC_WORDS or words[0].lower() in GENERIC_WORDS)
    )
    generic = generic or " ".join(content) in _GENERIC_PHRASE_STEMS
    return _Keyword(text=keyword, pattern=pattern, generic=generic)


_GENERIC_PHRASE_STEMS = frozenset(
    " ".join(_stem(w) for w in p.split() if w not in STOPWORDS) for p in GENERIC_PHRASES
)


def _description_pattern(description: str, keywords: Sequence[_Keyword]) -> re.Pattern[str] | None:
    known = {w.lower() for k in keywords for w in _WORD.findall(k.text)}
    words = _unique(
        w
        for w in _WORD.findall(description)
        if len(w) > 3
        and w.lower() not in STOPWORDS
        and w.lower() not in GENERIC_WORDS
        and w.lower() not in known
    )
    if not words:
        return None
    alternatives = "|".join(_word_pattern(w) for w in words)
    return re.compile(_BOUNDARY_L + "(?:" + alternatives + ")" + _BOUNDARY_R)


def _keyword_hit(kw: _Keyword, paper: PaperText, paper_keywords: str) -> tuple[float, str] | None:
    factor = GENERIC_FACTOR if kw.generic else 1.0
    m = kw.pattern.search(paper.title)
    if m:
        return TITLE_WEIGHT * factor, f'title: "{m.group(0)}"'
    m = kw.pattern.search(paper_keywords) if paper_keywords else None
    if m:
        return PAPER_KEYWORD_WEIGHT * factor, f'keyword: "{m.group(0)}"'
    hits = kw.pattern.findall(paper.abstract)
    if not hits:
        return None
    weight = ABSTRACT_WEIGHT + REPEAT_BONUS * min(len(hits) - 1, MAX_REPEATS)
    label = f'abstract: "{hits[0]}"' + (f" x{len(hits)}" if len(hits) > 1 else "")
    return weight * factor, label


def score_paper(topic: TopicMatcher, paper: PaperText) -> tuple[float, list[str]]:
    """Score a paper against a compiled topic; return the score and the evidence."""
    paper_keywords = " ; ".join(paper.keywords)
    hits = [h for kw in topic.keywords if (h := _keyword_hit(kw, paper, paper_keywords))]
    hits.sort(key=lambda h: -h[0])
    score = sum(weight * DECAY**i for i, (weight, _) in enumerate(hits))
    evidence = [label for _, label in hits]
    score += _category_score(topic, paper, evidence)
    if topic.description is not None and score > 0:
        score += _description_score(topic.description, paper, evidence)
    return round(score, 3), evidence


def _category_score(topic: TopicMatcher, paper: PaperText, evidence: list[str]) -> float:
    for i, cat in enumerate(paper.categories):
        if cat in topic.categories:
            evidence.append(f"category: {cat}")
            return CATEGORY_PRIMARY if i == 0 else CATEGORY_CROSS
    return 0.0


def _description_score(pattern: re.Pattern[str], paper: PaperText, evidence: list[str]) -> float:
    found = {m.lower() for m in pattern.findall(paper.title + " \n " + paper.abstract)}
    if not found:
        return 0.0
    evidence.append("description: " + ", ".join(sorted(found)[:4]))
    return min(DESCRIPTION_WORD * len(found), DESCRIPTION_CAP)


def compile_topic(topic: Topic) -> TopicMatcher:
    """Compile one topic row."""
    return TopicMatcher.compile(
        topic.slug, topic.keywords or (), topic.description or "", topic.categories or ()
    )


def compile_topics(topics: Iterable[Topic]) -> list[tuple[int, TopicMatcher]]:
    """Compile topic rows once for a matching run."""
    return [(t.id, compile_topic(t)) for t in topics]


def match_papers(
    *,
    session: Session,
    paper_ids: Iterable[int] | None = None,
    threshold: float = 1.0,
    topic_ids: Iterable[int] | None = None,
) -> MatchStats:
    """(Re)compute PaperTopic rows for the given papers (all papers when None) against all topics.

    Replaces the existing PaperTopic rows of those papers (and only of `topic_ids` when
    given); does not commit.
    """
    topic_query = select(Topic)
    tids = None if topic_ids is None else sorted(set(topic_ids))
    if tids is not None:
        topic_query = topic_query.where(Topic.id.in_(tids))
    topics = compile_topics(session.scalars(topic_query))
    ids = None if paper_ids is None else sorted(set(paper_ids))
    rows = _load_papers(session, ids)
    removed = _delete_matches(session, ids, tids)
    new_rows = []
    for pid, title, abstract, keywords, categories in rows:
        text = PaperText(title or "", abstract or "", keywords or (), categories or ())
        for topic_id, matcher in topics:
            score, evidence = matcher.score(text)
            if score >= threshold:
                new_rows.append(
                    {"paper_id": pid, "topic_id": topic_id, "score": score, "evidence": evidence}
                )
    if new_rows:
        session.execute(insert(PaperTopic), new_rows)
    return MatchStats(papers=len(rows), topics=len(topics), matches=len(new_rows), removed=removed)


def _chunks(ids: list[int] | None, size: int = 500) -> Iterable[list[int] | None]:
    # Bounded IN lists: SQLite limits the bound parameters of one statement.
    if ids is None:
        yield None
        return
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


def _load_papers(session: Session, ids: list[int] | None) -> list[Any]:
    query = select(Paper.id, Paper.title, Paper.abstract, Paper.keywords, Paper.categories)
    rows: list[Any] = []
    for chunk in _chunks(ids):
        q = query if chunk is None else query.where(Paper.id.in_(chunk))
        rows.extend(session.execute(q).all())
    return rows


def _delete_matches(session: Session, ids: list[int] | None, topic_ids: list[int] | None) -> int:
    if topic_ids is not None and not topic_ids:
        return 0
    removed = 0
    for chunk in _chunks(ids):
        stmt = delete(PaperTopic)
        if chunk is not None:
            stmt = stmt.where(PaperTopic.paper_id.in_(chunk))
        if topic_ids is not None:
            stmt = stmt.where(PaperTopic.topic_id.in_(topic_ids))
        removed += session.execute(stmt).rowcount or 0
    return removed
