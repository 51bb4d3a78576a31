"""Topic matching: decide, with a score and evidence, which papers belong to which topic.

A topic is a list of plain keywords, a one-line description and optional arXiv categories.
Keywords match as whole words or phrases with simple inflections ("large language model"
matches "Large-Language Models"); capitalised acronyms match case-sensitively ("RL", "LLMs").
On the score scale, 1.0 (the default threshold) means "one clear, specific signal": a keyword
in the title or in the paper's own keywords, or a specific keyword repeated in the abstract,
or two distinct ones. Generic words and the description only ever add to other evidence.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from newsletter.models import Paper, PaperTopic, Topic

TITLE_WEIGHT = 1.0
PAPER_KEYWORD_WEIGHT = 0.8  # HF ai_keywords: chosen for the paper, but many and loose
ABSTRACT_WEIGHT = 0.7
ABSTRACT_REPEAT = 0.3  # each further mention in the abstract, up to ABSTRACT_MAX
ABSTRACT_MAX = 1.0
LEAD_BONUS = 0.3  # the abstract's first sentence says what the paper is about
LEAD_CHARS = 250  # where the first sentence ends when no full stop is found
SECONDARY_SHARE = 0.3  # a keyword also seen in another field (title and abstract) adds this share
SINGLE_WORD_FACTOR = 0.85  # one ordinary word is vaguer than a phrase or an acronym
GENERIC_FACTOR = 0.4  # generic words say little on their own
DECAY = 0.7  # the n-th distinct keyword adds DECAY**n of its weight: diminishing returns
CATEGORY_PRIMARY = 0.6
CATEGORY_CROSS = 0.3
DESCRIPTION_WORD = 0.1
DESCRIPTION_CAP = 0.3
PROGRESS_EVERY = 200  # papers between progress reports

# Words that appear in most ML abstracts whatever the subject: alone they place no paper.
GENERIC_WORDS = frozenset(
    """
    learning learn model network neural deep data dataset training train method approach
    system efficient efficiency robust robustness performance task framework algorithm
    optimization analysis evaluation benchmark large scale scaling generation generative
    representation prediction inference feature structure information knowledge accuracy
    adaptive adaptation automatic automated fast scalable general application language
    improvement improve effective accurate problem result architecture signal process
    exploration
    """.split()
)

# Phrases as common as single generic words: "a deep neural network" is no topic.
GENERIC_PHRASES = (
    "deep learning",
    "machine learning",
    "neural network",
    "deep neural network",
    "artificial intelligence",
    "large scale",
    "state of the art",
    "real world",
)

# Compounds in which a keyword means something else: a hit inside one does not count,
# unless the compound itself is one of the topic's keywords.
FALSE_FRIENDS = (
    "neural architecture search",
    "architecture search",
    "hyperparameter search",
    "grid search",
    "random search",
    "beam search",
    "line search",
    "search space",
    "road agent",
    "hate speech",
    "part of speech",
    "part-of-speech",
    "figure of speech",
    "free speech",
    "information diffusion",
    "memory efficient",
    "memory footprint",
    "memory usage",
    "memory consumption",
    "memory cost",
    "privacy policy",
    "public policy",
    "image manipulation",
    "data manipulation",
    "media manipulation",
    "packet manipulation",
    "web navigation",
    "GUI navigation",
    "website navigation",
    "representation alignment",
    "feature alignment",
    "latent alignment",
    "modality alignment",
    "cross-modal alignment",
    "multimodal alignment",
    "vision-language alignment",
    "image-text alignment",
    "text-image alignment",
    "sequence alignment",
    "distribution alignment",
    "domain alignment",
    "temporal alignment",
    "word alignment",
    "token alignment",
    "dense alignment",
    "in-depth alignment",
    "planner alignment",
    "vehicle safety",
    "road safety",
    "traffic safety",
    "food safety",
    "patient safety",
    "type safety",
    "memory safety",
    "thread safety",
    "theoretically sound",
    "mathematically sound",
    "sound and complete",
    "vision-language model",
    "vision language model",
    "visual language model",
    "visual question answering",
    "multimodal image fusion",
    "multi-modal image fusion",
    "multimodal distribution",
    "multimodal large language model",
    "omnimodal large language model",
    "multi-agent reinforcement learning",
    "multimodal optimization",
    "message passing interface",
    "customer segmentation",
    "word segmentation",
    "dataset distillation",
    "data pruning",
    "data sparsity",
    "vector quantization",
    "vector quantized",
    "design space exploration",
    "data exploration",
)

# Terms that name the same thing: a topic with one of them also matches the others.
EQUIVALENTS = (
    ("LLM", "large language model"),
    ("VLM", "vision-language model"),
    ("MLLM", "multimodal large language model"),
    ("RL", "reinforcement learning"),
    ("RLHF", "reinforcement learning from human feedback"),
    ("MARL", "multi-agent reinforcement learning"),
    ("GNN", "graph neural network"),
    ("NAS", "neural architecture search"),
    ("ASR", "automatic speech recognition", "speech recognition"),
    ("TTS", "text-to-speech", "speech synthesis"),
    ("PEFT", "parameter-efficient fine-tuning"),
    ("MoE", "mixture of experts"),
    ("NER", "named entity recognition"),
    ("NLP", "natural language processing"),
    ("RAG", "retrieval-augmented generation"),
    ("T2I", "text-to-image"),
    ("ViT", "vision transformer"),
    ("LoRA", "low-rank adaptation"),
    ("OOD", "out-of-distribution"),
    ("CoT", "chain-of-thought"),
    ("ICL", "in-context learning"),
    ("VQA", "visual question answering"),
    ("GAN", "generative adversarial network"),
    ("VAE", "variational autoencoder"),
    ("DPO", "direct preference optimization"),
    ("SLAM", "simultaneous localization and mapping"),
    ("autonomous driving", "self-driving", "autonomous vehicle"),
    ("image generation", "image synthesis"),
    ("video generation", "video synthesis"),
)

STOPWORDS = frozenset(
    """
    a an and or the of for in on to with by from as at into via about over under using use
    based new novel their its this that these those is are be been being we our us it they
    such than then also more most less not no can may any all each other both between
    paper research work study method approach topic including include e g i etc like
    related toward towards how what which who when where alone together within without
    """.split()
)

# Prefixes written with or without a hyphen: "multimodal" = "multi-modal".
PREFIXES = ("multi", "pre", "self", "semi", "cross", "non", "post", "co", "re", "sub", "inter")
NOT_PLURAL = ("ss", "us", "is", "ics")
NOT_PLURAL_WORDS = frozenset({"bias", "alias", "atlas", "canvas", "lens", "news", "gas", "chaos"})
_WORD = re.compile(r"[A-Za-z0-9]+")
_TERM = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")  # "fine-tuning" stays one term
_L = r"(?<![A-Za-z0-9])"
_R = r"(?![A-Za-z0-9])"
_SEP = r"[\s\-/]*"  # between the words of a phrase: "large-language  models", "finetuning"
_NAME_SPLIT = re.compile(r"\s*(?:&|/|,|;|\(|\)|\band\b|\bor\b)\s*")


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

    @cached_property
    def fields(self) -> dict[str, tuple[str, str]]:
        """Each field's text and its lowercase copy, computed once for all topics."""
        texts = {
            "title": self.title,
            "keyword": " ; ".join(self.keywords),
            "abstract": self.abstract,
        }
        return {name: (text, text.lower()) for name, text in texts.items() if text}

    @cached_property
    def lowered(self) -> str:
        """All fields lowercased in one string, to rule keywords out with one substring test."""
        return "\n".join(low for _, low in self.fields.values())

    @cached_property
    def lead_end(self) -> int:
        """Where the abstract's first sentence ends."""
        m = re.search(r"[.?!](?:\s|$)", self.abstract)
        return m.end() if m else min(len(self.abstract), LEAD_CHARS)


@dataclass(frozen=True)
class Keyword:
    """One compiled keyword of a topic."""

    text: str
    pattern: re.Pattern[str]
    generic: bool
    single_word: bool = False
    anchor: str = ""  # lowercase text every match contains
    folded: bool = False  # the pattern is for lowercased text
    false_friends: re.Pattern[str] | None = None
    # For an acronym with a known long form: the paper may define it as something else.
    meaning: re.Pattern[str] | None = None

    @cached_property
    def _any_case(self) -> re.Pattern[str]:
        # Rare texts whose lowercase changes length: match the original case-insensitively.
        if not self.folded:
            return self.pattern
        return re.compile(_L + self.pattern.pattern, re.IGNORECASE)

    def _redefined(self, text: str) -> bool:
        """Tell whether the text spells the acronym out as something else: "attack ... (ASR)"."""
        assert self.meaning is not None
        for m in re.finditer(r"\(\s*" + self.pattern.pattern + r"\s*[);,]", text):
            if not self.meaning.search(text[max(0, m.start() - 80) : m.start()]):
                return True
        return False

    def spans(self, text: str, lowered: str = "") -> list[tuple[int, int, str]]:
        """Return the (start, end, matched text) of each hit outside a false friend."""
        if not text:
            return []
        lowered = lowered or text.lower()
        if self.anchor not in lowered:
            return []  # a substring test is far cheaper than the regex
        if self.folded and len(lowered) == len(text):
            hits = [
                (m.start(), m.end(), text[m.start() : m.end()])
                for m in self.pattern.finditer(lowered)
                if m.start() == 0 or not lowered[m.start() - 1].isalnum()
            ]
        else:
            hits = [(m.start(), m.end(), m.group(0)) for m in self._any_case.finditer(text)]
        if hits and self.meaning is not None and self._redefined(text):
            return []
        if hits and self.false_friends is not None:
            masks = [m.span() for m in self.false_friends.finditer(text)]
            hits = [h for h in hits if not any(a <= h[0] and h[1] <= b for a, b in masks)]
        return hits


@dataclass(frozen=True)
class TopicMatcher:
    """A topic compiled for fast scoring: one regex per keyword, description words, categories."""

    slug: str
    keywords: tuple[Keyword, ...]
    description: re.Pattern[str] | None = None
    categories: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def compile(
        cls,
        slug: str,
        keywords: Iterable[str] = (),
        description: str = "",
        categories: Iterable[str] = (),
        *,
        name: str = "",
    ) -> TopicMatcher:
        """Compile a topic's keywords (plus the parts of its name), description and categories."""
        texts = _expand(_unique([*keywords, *_name_parts(name)]))
        compiled = list({k.pattern.pattern: k for k in map(compile_keyword, texts)}.values())
        compiled = [_with_meaning(k) for k in compiled]
        compiled = [_with_false_friends(k, compiled) for k in compiled]
        return cls(
            slug=slug,
            keywords=tuple(compiled),
            description=_description_pattern(description, texts),
            categories=frozenset(c.strip() for c in categories if c.strip()),
        )

    def score(self, paper: PaperText) -> tuple[float, list[str]]:
        """Score one paper against this topic and say why."""
        return score_paper(self, paper)


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, str] = {}
    for item in items:
        item = item.strip()
        if item:
            seen.setdefault(item.lower(), item)
    return list(seen.values())


def _key(text: str) -> str:
    return " ".join(stem(w) for w in _WORD.findall(text))


def _expand(texts: list[str]) -> list[str]:
    """Add the equivalents of the topic's keywords: "LLM" brings "large language model"."""
    keys = {_key(t) for t in texts}
    extra = [
        term
        for group in EQUIVALENTS
        if keys & {_key(t) for t in group}
        for term in group
        if _key(term) not in keys
    ]
    # A keyword of stopwords only ("a", "of the") would match everywhere.
    useful = [t for t in texts if any(w.lower() not in STOPWORDS for w in _WORD.findall(t))]
    return useful + extra


def _with_meaning(kw: Keyword) -> Keyword:
    """Attach the long forms of an acronym keyword, to notice papers that redefine it."""
    words = _WORD.findall(kw.text)
    if len(words) != 1 or not _is_acronym(words[0]):
        return kw
    key = _key(kw.text)
    forms = [t for g in EQUIVALENTS if key in {_key(x) for x in g} for t in g if _key(t) != key]
    if not forms:
        return kw
    alternatives = "|".join(_SEP.join(word_pattern(w) for w in _WORD.findall(t)) for t in forms)
    return dataclasses.replace(kw, meaning=re.compile(f"{_L}(?:{alternatives}){_R}"))


def _name_parts(name: str) -> list[str]:
    """Split a topic name into keyword-like parts: "Speech & audio" -> speech, audio."""
    return [p for p in _NAME_SPLIT.split(name or "") if _WORD.search(p)]


def _is_acronym(word: str) -> bool:
    """Tell capitalised short forms ("RL", "LLMs", "LoRA", "3D") from ordinary words."""
    core = word[:-1] if len(word) > 2 and word.endswith("s") else word
    upper = sum(c.isupper() for c in core)
    return len(core) >= 2 and upper >= 2 or (len(core) >= 2 and core.isupper())


def stem(word: str) -> str:
    """Strip one plural or verb ending so the simple forms of a word share a stem."""
    w = word.lower()
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("sses", "shes", "ches", "xes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(NOT_PLURAL) and w not in NOT_PLURAL_WORDS:
        return w[:-1]
    for ending, shortest in (("ing", 3), ("ed", 4)):
        base = w[: -len(ending)]
        if w.endswith(ending) and len(base) >= shortest and re.search("[aeiouy]", base):
            return base
    return w


def _forms(word: str) -> list[str]:
    """Return regex alternatives for the simple inflections of a lowercase word."""
    s = stem(word)
    if s.endswith("e"):
        return [s + "(?:s|d|r|rs)?", s[:-1] + "(?:ing|ings|ed|er|ers)"]  # image, imaging
    if s.endswith("y") and len(s) > 3:
        return [s + "(?:s|ing|ings)?", s[:-1] + "(?:ies|ied|ier|iers)"]  # policy, policies
    forms = [s + "(?:s|es|ed|ing|ings|er|ers)?"]
    if s != word and word.endswith(("ing", "ed")):
        if s[-1] == s[-2] and s[-1] not in "aeiouls":
            forms.append(s[:-1] + "s?")  # planning -> plan, plans
        else:
            forms.append(s + "(?:e|es|er|ers)")  # tuning -> tune, tunes
    elif re.search("[^aeiou][aeiou][^aeiouwxy]$", s):
        forms.append(s + s[-1] + "(?:ing|ings|ed|er|ers)")  # embed -> embedding
    return forms


def word_pattern(word: str, *, folded: bool = False) -> str:
    """Return a regex for one word and its simple inflections.

    With folded=True the regex is for lowercased text and starts with a literal prefix,
    which lets the regex engine skip ahead quickly; acronyms keep their case either way.
    """
    if _is_acronym(word):
        core = word[:-1] if word.endswith("s") and not word[-2:].isupper() else word
        return re.escape(core) + "s?"
    lower = word.lower()
    if lower.isdigit() or len(lower) <= 3:
        body = re.escape(lower) + "s?"
    else:
        body = _factored(lower)
        for prefix in PREFIXES:
            if lower.startswith(prefix) and len(lower) - len(prefix) >= 4:
                # "multimodal" also reads "multi-modal": a hyphen or space after a prefix.
                rest = _factored(lower, drop=len(prefix))
                body = prefix + "[\\s\\-]?" + rest
                break
    return body if folded else f"(?i:{body})"


def _factored(word: str, drop: int = 0) -> str:
    """Join a word's forms behind their common literal prefix: imag(?:e(?:s|d)?|ing)."""
    forms = [f[drop:] for f in _forms(word)]
    literals = [re.match("[a-z0-9]*", f).group(0) for f in forms]  # type: ignore[union-attr]
    common = os.path.commonprefix(literals)
    return common + "(?:" + "|".join(f[len(common) :] for f in forms) + ")"


def compile_keyword(text: str) -> Keyword:
    """Compile a keyword or phrase into a pattern and tell whether it is generic."""
    words = _WORD.findall(text)
    folded = not any(_is_acronym(w) for w in words)
    if folded:
        # Matched in lowercased text; the left word boundary is checked in Keyword.spans.
        pattern = re.compile(_SEP.join(word_pattern(w, folded=True) for w in words) + _R)
    else:
        pattern = re.compile(_L + _SEP.join(word_pattern(w) for w in words) + _R)
    single = len(words) == 1 and not _is_acronym(words[0])
    return Keyword(
        text=text,
        pattern=pattern,
        folded=folded,
        generic=is_generic(words),
        single_word=single,
        anchor=max((_anchor(w) for w in words), key=len),
    )


def _anchor(word: str) -> str:
    """Return lowercase text that every inflection of the word contains."""
    if _is_acronym(word):
        return word.lower().removesuffix("s") if not word[-2:].isupper() else word.lower()
    lower = word.lower()
    if lower.isdigit() or len(lower) <= 3:
        return lower
    for prefix in PREFIXES:
        if lower.startswith(prefix) and len(lower) - len(prefix) >= 4:
            lower = lower[len(prefix) :]  # "multi-modal": the hyphen may split the word
            break
    return stem(lower)[:-1] if len(stem(lower)) > 3 else stem(lower)[:2]


def is_generic(words: Sequence[str]) -> bool:
    """Tell whether a keyword is a word every ML abstract uses ("learning", "robustness")."""
    content = [stem(w) for w in words if w.lower() not in STOPWORDS]
    if not content:
        return True
    if len(content) == 1 and not _is_acronym(words[-1]):
        return content[0] in _GENERIC_STEMS or words[-1].lower() in GENERIC_WORDS
    return " ".join(content) in _GENERIC_PHRASE_STEMS


_GENERIC_STEMS = frozenset(stem(w) for w in GENERIC_WORDS)
_GENERIC_PHRASE_STEMS = frozenset(
    " ".join(stem(w) for w in _WORD.findall(p) if w not in STOPWORDS) for p in GENERIC_PHRASES
)


def _with_false_friends(kw: Keyword, topic_keywords: Sequence[Keyword]) -> Keyword:
    """Attach the compounds that contain this keyword but are not the topic's own keywords."""
    friends = [
        phrase
        for phrase in FALSE_FRIENDS
        if kw.pattern.search(phrase)
        and not any(_covers(other, phrase) for other in topic_keywords if other is not kw)
        and not _covers(kw, phrase)
    ]
    if not friends:
        return kw
    alternatives = "|".join(_SEP.join(word_pattern(w) for w in _WORD.findall(p)) for p in friends)
    return dataclasses.replace(kw, false_friends=re.compile(f"{_L}(?:{alternatives}){_R}"))


def _covers(kw: Keyword, phrase: str) -> bool:
    m = kw.pattern.search(phrase)
    return m is not None and m.end() - m.start() >= len(phrase)


def _description_pattern(description: str, keywords: Sequence[str]) -> re.Pattern[str] | None:
    """Compile the description's content words (and hyphenated compounds) not in the keywords."""
    known = {_key(k) for k in keywords} | {stem(w) for k in keywords for w in _WORD.findall(k)}
    terms = _unique(
        t
        for t in _TERM.findall(description or "")
        if _key(t) not in known
        and len(t) > 3
        and not all(w.lower() in STOPWORDS or is_generic([w]) for w in _WORD.findall(t))
    )
    if not terms:
        return None
    alternatives = "|".join(_SEP.join(word_pattern(w) for w in _WORD.findall(t)) for t in terms)
    return re.compile(f"{_L}(?:{alternatives}){_R}")


@dataclass
class _Hit:
    keyword: Keyword
    fields: dict[str, list[tuple[int, int, str]]]


def _find_hits(topic: TopicMatcher, paper: PaperText) -> list[_Hit]:
    texts, lowered = paper.fields, paper.lowered
    hits = []
    for kw in topic.keywords:
        if kw.anchor not in lowered:
            continue
        fields = {name: spans for name, pair in texts.items() if (spans := kw.spans(*pair))}
        if fields:
            hits.append(_Hit(kw, fields))
    return _drop_nested(hits)


def _drop_nested(hits: list[_Hit]) -> list[_Hit]:
    """Drop hits found only inside a longer keyword's hits ("language model" in "large ...")."""
    if len(hits) < 2:
        return hits
    return [h for h in hits if not _all_nested(h, [o for o in hits if o is not h])]


def _all_nested(hit: _Hit, others: list[_Hit]) -> bool:
    for name, spans in hit.fields.items():
        for start, end, _ in spans:
            if not any(
                a <= start and end <= b and (b - a) > (end - start)
                for o in others
                for a, b, _ in o.fields.get(name, ())
            ):
                return False
    return True


def _keyword_weight(hit: _Hit, lead_end: int) -> tuple[float, str]:
    """Weigh one keyword's hits across title, paper keywords and abstract."""
    # A single ordinary word in a title still names the subject; elsewhere it is vaguer.
    vague = SINGLE_WORD_FACTOR if hit.keyword.single_word else 1.0
    weights = {}
    if "title" in hit.fields:
        weights["title"] = TITLE_WEIGHT
    if "keyword" in hit.fields:
        weights["keyword"] = PAPER_KEYWORD_WEIGHT * vague
    if "abstract" in hit.fields:
        spans = hit.fields["abstract"]
        weight = ABSTRACT_WEIGHT + ABSTRACT_REPEAT * (len(spans) - 1)
        if spans[0][0] < lead_end:
            weight += LEAD_BONUS
        weights["abstract"] = min(weight, ABSTRACT_MAX) * vague
    best = max(weights, key=weights.__getitem__)
    total = weights[best] + SECONDARY_SHARE * (sum(weights.values()) - weights[best])
    if hit.keyword.generic:
        total *= GENERIC_FACTOR
    text = hit.fields[best][0][2]
    label = f'{best}: "{text}"'
    if best == "abstract" and len(hit.fields["abstract"]) > 1:
        label += f" x{len(hit.fields['abstract'])}"
    return total, label


def score_paper(topic: TopicMatcher, paper: PaperText) -> tuple[float, list[str]]:
    """Score a paper against a compiled topic; return the score and the evidence."""
    lead_end = paper.lead_end
    weighed = sorted(
        (_keyword_weight(h, lead_end) for h in _find_hits(topic, paper)),
        key=lambda w: -w[0],
    )
    score = sum(weight * DECAY**i for i, (weight, _) in enumerate(weighed))
    evidence = [label for _, label in weighed]
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
        topic.slug,
        topic.keywords or (),
        topic.description or "",
        topic.categories or (),
        name=topic.name or "",
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
    progress: Callable[[int], None] | None = None,
) -> MatchStats:
    """(Re)compute PaperTopic rows for the given papers (all papers when None) against all topics.

    Replaces the existing PaperTopic rows of those papers (and only of `topic_ids` when
    given); does not commit. `progress(n)` reports n more papers scored.
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
    for done, (pid, title, abstract, keywords, categories) in enumerate(rows, start=1):
        if progress is not None and done % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
        text = PaperText(title or "", abstract or "", keywords or (), categories or ())
        for topic_id, matcher in topics:
            score, evidence = matcher.score(text)
            if score >= threshold:
                new_rows.append(
                    {"paper_id": pid, "topic_id": topic_id, "score": score, "evidence": evidence}
                )
    if progress is not None and len(rows) % PROGRESS_EVERY:
        progress(len(rows) % PROGRESS_EVERY)
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
