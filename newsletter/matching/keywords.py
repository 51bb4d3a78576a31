"""Compile a topic's keywords into the token sequences a paper's words are matched against.

A keyword becomes every sequence of token forms (`text`) it may be written as: "fine-tuning",
"finetuning", "fine tuning"; an acronym its acronym form. Compiling also adds a topic name's
parts, known equivalents ("LLM" brings "large language model"), named instances of the field
("Qwen3" for LLMs, at a share of a full match), an acronym's long forms (to notice a paper that
redefines it) and the false friends that contain the keyword but mean something else.
`match_at` matches one sequence at a token, for compiling and scoring alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from newsletter.matching.text import (
    STOPWORDS,
    WORD,
    Tokens,
    acronym_form,
    is_acronym,
    stem,
    tokenize,
    word_forms,
)
from newsletter.matching.wordlists import (
    EQUIVALENTS,
    FALSE_FRIENDS,
    GENERIC_PHRASES,
    GENERIC_WORDS,
    INSTANCES,
)

INSTANCE_SHARE = 0.7  # a named model or benchmark of the field ("Llama 3" for LLMs)
# Prefixes written with or without a hyphen: "multimodal" = "multi-modal".
PREFIXES = ("multi", "pre", "self", "semi", "cross", "non", "post", "co", "re", "sub", "inter")
_TERM = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")  # "fine-tuning" stays one term
_NAME_SPLIT = re.compile(r"\s*(?:&|/|,|;|\(|\)|\band\b|\bor\b)\s*")

Seq = tuple[str, ...]  # one keyword form as a sequence of token forms


@dataclass(frozen=True)
class Keyword:
    """One keyword of a topic compiled into token sequences, each with its share of a match."""

    text: str
    sequences: tuple[tuple[Seq, float], ...]
    generic: bool = False
    single_word: bool = False
    friends: frozenset[int] = frozenset()  # FALSE_FRIENDS whose hits do not count
    meanings: tuple[Seq, ...] = ()  # an acronym's long forms, to notice it redefined
    acronym: str = ""
    key: str = ""  # the stems of its words: its name in DocumentFrequencies


def _phrase_words(text: str) -> list[tuple[str, str]]:
    """Return (word, separator before it) pairs: separators decide where words may be glued."""
    out, prev = [], 0
    for m in WORD.finditer(text):
        out.append((m.group(0), text[prev : m.start()]))
        prev = m.end()
    return out


def variants(text: str) -> list[Seq]:
    """Return the token sequences a keyword may be written as: fine-tuning, finetuning, ..."""
    words = _phrase_words(text)
    out: dict[Seq, None] = {}

    def walk(n: int, acc: tuple[str, ...]) -> None:
        if n == len(words):
            out[acc] = None
            return
        word = words[n][0]
        walk(n + 1, (*acc, acronym_form(word) if is_acronym(word) else stem(word)))
        if split := _prefix_split(word):
            walk(n + 1, (*acc, *split))
        if n + 1 < len(words) and words[n + 1][1] == "-":
            nxt = words[n + 1][0]
            if not is_acronym(word) and not is_acronym(nxt):
                walk(n + 2, (*acc, stem(word + nxt)))  # "fine-tuning" is also "finetuning"

    walk(0, ())
    return [seq for seq in out if seq]


def _prefix_split(word: str) -> list[str]:
    """Split "multimodal" into multi, modal so that it also matches "multi-modal"."""
    lower = word.lower()
    for prefix in PREFIXES:
        if lower.startswith(prefix) and len(lower) - len(prefix) >= 4 and not is_acronym(word):
            return [prefix, stem(lower[len(prefix) :])]
    return []


def is_generic(words: Sequence[str]) -> bool:
    """Tell whether a keyword is a word every ML abstract uses ("learning", "robustness")."""
    content = [stem(w) for w in words if w.lower() not in STOPWORDS]
    if not content:
        return True
    if len(content) == 1 and not is_acronym(words[-1]):
        return content[0] in _GENERIC_STEMS or words[-1].lower() in GENERIC_WORDS
    return " ".join(content) in _GENERIC_PHRASE_STEMS


_GENERIC_STEMS = frozenset(stem(w) for w in GENERIC_WORDS)
_GENERIC_PHRASE_STEMS = frozenset(
    " ".join(stem(w) for w in WORD.findall(p) if w not in STOPWORDS) for p in GENERIC_PHRASES
)


def keyword_key(text: str) -> str:
    return " ".join(stem(w) for w in WORD.findall(text))


def unique_terms(items: Iterable[str]) -> list[str]:
    seen: dict[str, str] = {}
    for item in items:
        item = item.strip()
        if item:
            seen.setdefault(keyword_key(item), item)
    return list(seen.values())


def _name_parts(name: str) -> list[str]:
    """Split a topic name into keyword-like parts: "Speech & audio" -> speech, audio."""
    return [p for p in _NAME_SPLIT.split(name or "") if WORD.search(p)]


def _expand(texts: list[str]) -> list[str]:
    """Add the equivalents of the topic's keywords: "LLM" brings "large language model"."""
    keys = {keyword_key(t) for t in texts}
    extra = [
        term
        for group in EQUIVALENTS
        if keys & {keyword_key(t) for t in group}
        for term in group
        if keyword_key(term) not in keys
    ]
    # A keyword of stopwords only ("a", "of the") would match everywhere.
    useful = [t for t in texts if any(w.lower() not in STOPWORDS for w in WORD.findall(t))]
    return unique_terms(useful + extra)


def compile_keyword(text: str) -> Keyword:
    """Compile one keyword or phrase into token sequences, partial forms and flags."""
    words = WORD.findall(text)
    acronym = words[0] if len(words) == 1 and is_acronym(words[0]) else ""
    sequences = [(seq, 1.0) for seq in variants(text)]
    full = {seq for seq, _ in sequences}
    if INSTANCE_SHARE:
        sequences += [(seq, INSTANCE_SHARE) for seq in _instances(text) if seq not in full]
    return Keyword(
        text=text,
        sequences=tuple(sequences),
        generic=is_generic(words),
        single_word=len(words) == 1 and not acronym,
        acronym=acronym,
        key=keyword_key(text),
    )


def _instances(text: str) -> list[Seq]:
    """Return the named models and benchmarks that stand for a keyword ("Qwen3" for LLM)."""
    names = INSTANCES.get(keyword_key(text), ())
    return [tuple("~" + w.lower() for w in WORD.findall(name)) for name in names]


def compile_keywords(keywords: Iterable[str], *, name: str = "") -> tuple[Keyword, ...]:
    """Compile a topic's keywords, the parts of its name and their known equivalents."""
    compiled = [compile_keyword(t) for t in _expand([*keywords, *_name_parts(name)])]
    compiled = [_with_meanings(k) for k in compiled]
    return tuple(_with_false_friends(k, compiled) for k in compiled)


def _with_meanings(kw: Keyword) -> Keyword:
    """Attach an acronym's long forms, to notice papers that spell it out as something else."""
    if not kw.acronym:
        return kw
    key = keyword_key(kw.acronym)
    forms = [
        t
        for g in EQUIVALENTS
        if key in {keyword_key(x) for x in g}
        for t in g
        if keyword_key(t) != key
    ]
    meanings = tuple(seq for t in forms for seq in variants(t))
    return replace(kw, meanings=meanings) if meanings else kw


def _occurrences(kw: Keyword, tokens: Tokens) -> list[tuple[int, int]]:
    """Return the token ranges where a keyword fully matches (for compile-time checks)."""
    out = []
    for i, forms in enumerate(tokens.forms):
        for seq, share in kw.sequences:
            if share == 1.0 and seq[0] in forms:
                end = match_at(tokens, i, seq, gaps=False)[0]
                if end > 0:
                    out.append((i, end))
    return out


def _friend(phrase: str) -> tuple[Tokens, tuple[int, int]]:
    """Tokenize a false friend; return it with the token range of its misleading part."""
    before, _, rest = phrase.partition("[")
    inside, _, _ = rest.partition("]")
    tokens = tokenize(phrase.replace("[", "").replace("]", ""))
    if not inside:
        return tokens, (0, len(tokens.forms))
    start = len(WORD.findall(before))
    return tokens, (start, start + len(WORD.findall(inside)))


_FRIENDS = tuple(_friend(p) for p in FALSE_FRIENDS)


def _with_false_friends(kw: Keyword, topic: Sequence[Keyword]) -> Keyword:
    """Attach the compounds that contain this keyword but are not the topic's own keywords."""
    friends = set()
    for n, (tokens, (first, last)) in enumerate(_FRIENDS):
        whole = (0, len(tokens.forms))
        inside = [(a, b) for a, b in _occurrences(kw, tokens) if a < last and b > first]
        if inside and whole not in inside:
            if not any(whole in _occurrences(o, tokens) for o in topic if o is not kw):
                friends.add(n)
    return replace(kw, friends=frozenset(friends)) if friends else kw


def compile_description(description: str, keywords: Sequence[Keyword]) -> tuple[Keyword, ...]:
    """Compile the description's content words (and hyphenated compounds) not in the keywords."""
    known = {keyword_key(k.text) for k in keywords} | {
        stem(w) for k in keywords for w in WORD.findall(k.text)
    }
    terms = unique_terms(
        t
        for t in _TERM.findall(description or "")
        if keyword_key(t) not in known
        and len(t) > 3
        and not all(w.lower() in STOPWORDS or is_generic([w]) for w in WORD.findall(t))
    )
    return tuple(Keyword(t, tuple((seq, 1.0) for seq in variants(t))) for t in terms)


_STOP_FORMS = frozenset(f for w in STOPWORDS for f in word_forms(w))


def match_at(tokens: Tokens, i: int, seq: Seq, gaps: bool = True) -> tuple[int, bool]:
    """Match seq from token i (its first form already matched).

    Return the end token and whether one extra word was skipped, or (-1, False).
    """
    forms, joined, count = tokens.forms, tokens.joined, len(tokens.forms)
    j, skipped = i + 1, False
    for want in seq[1:]:
        if j < count and joined[j] and want in forms[j]:
            j += 1
        elif gaps and not skipped and j + 1 < count and joined[j] and joined[j + 1]:
            # One extra content word: "graph convolutional neural network", not "model with".
            if want not in forms[j + 1] or not _STOP_FORMS.isdisjoint(forms[j]):
                return -1, False
            j, skipped = j + 2, True
        else:
            return -1, False
    return j, skipped
