"""A paper's text as the matcher reads it: word tokens, their stems and acronym forms.

A paper's title, abstract and (Hugging Face) keywords are split into word tokens once; each
token is reduced to a stem ("Fine-Tuned" -> fine, tune) and, when it is a capitalised acronym
("LLMs"), also to a case-sensitive form; a versioned model name ("Qwen3") also stands for its
family. Keywords are compiled from the same forms (`keywords`), so that finding them is one
look-up per token.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from itertools import accumulate, chain

from newsletter.matching.wordlists import INSTANCES

FORMS_CACHE_LIMIT = 200_000  # distinct words whose forms are remembered between papers

STOPWORDS = frozenset(
    """
    a an and or the of for in on to with by from as at into via about over under using use
    based new novel their its this that these those is are be been being we our us it they
    such than then also more most less not no can may any all each other both between
    paper research work study method approach topic including include e g i etc like
    related toward towards how what which who when where alone together within without
    """.split()
)
# Words that never begin a phrase worth naming ("during pre-training"): the stopwords and
# the prepositions and conjunctions the matcher reads as ordinary words.
FUNCTION_WORDS = STOPWORDS | frozenset(
    "during after before through across while since among upon whether".split()
)

NOT_PLURAL = ("ss", "us", "is", "ics")
# Words whose "-ed" or "-ing" is not an ending.
NOT_ENDINGS = frozenset(
    "embed bed red seed need speed feed shed breed proceed exceed succeed indeed hundred "
    "sacred thing string bring spring king ring sing wing during nothing anything something".split()
)
NOT_PLURAL_WORDS = frozenset({"bias", "alias", "atlas", "canvas", "lens", "news", "gas", "chaos"})
WORD = re.compile(r"[A-Za-z0-9]+")
_DOUBLED = re.compile(r"([b-df-hj-km-rtv])\1$")  # a doubled final consonant, not l, s or z
# Distinct words remembered by `stem`: a day's papers and readers' own papers use far fewer,
# and a send stems each reader's own papers again (about a megabyte a 10,000 words).
STEMS_KEPT = 1 << 15


@lru_cache(maxsize=STEMS_KEPT)
def stem(word: str) -> str:
    """Reduce a word to a stem shared by its simple forms: tuning, tuned, tune -> tune.

    A small Porter-style stemmer: plural and verb endings go, a short stem regains its "e"
    ("tuning" -> tune, but "planning" -> plan, so "plane" stays apart).
    """
    w = word.lower()
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif len(w) > 4 and w.endswith(("sses", "shes", "ches", "xes")):
        w = w[:-2]
    elif (
        len(w) > 3 and w.endswith("s") and not w.endswith(NOT_PLURAL) and w not in NOT_PLURAL_WORDS
    ):
        w = w[:-1]
    if len(w) > 8 and w.endswith(("ization", "isation")):
        return w[:-7] + "iz"  # quantization, quantized -> quantiz
    w = _strip_ending(w)
    if w.endswith("e") and len(w) > 2 and (_measure(w[:-1]) > 1 or not _cvc(w[:-1])):
        w = w[:-1]  # image, imaging -> imag; but tune stays
    if w.endswith("ll") and _measure(w) > 1:
        w = w[:-1]  # modelling -> model, distill -> distil
    return w


def _strip_ending(w: str) -> str:
    """Strip "-ing", "-ed" (and "-er" after a doubled consonant) from a lowercase word."""
    if w in NOT_ENDINGS:
        return w
    for ending in ("ing", "ed", "er"):
        base = w[: -len(ending)]
        if not w.endswith(ending) or len(base) < 2 or not re.search("[aeiouy]", base):
            continue
        if _DOUBLED.search(base):
            return base[:-1]  # planning -> plan, embedded -> embed
        if ending != "er":  # "planner", but not "transformer"
            return base + "e" if _measure(base) == 1 and _cvc(base) else base
    return w


def _kinds(word: str) -> str:
    return "".join(
        "v" if c in "aeiou" or (c == "y" and i and word[i - 1] not in "aeiou") else "c"
        for i, c in enumerate(word)
    )


def _measure(word: str) -> int:
    """Count the vowel-consonant runs of a word, as Porter's stemmer does."""
    return re.sub(r"(.)\1+", r"\1", _kinds(word)).count("vc")


def _cvc(word: str) -> bool:
    """Tell whether a word ends consonant-vowel-consonant ("tun", "plan"), as in a short stem."""
    return len(word) >= 3 and _kinds(word).endswith("cvc") and word[-1] not in "wxy"


def is_acronym(word: str) -> bool:
    """Tell capitalised short forms ("RL", "LLMs", "LoRA", "3D") from ordinary words."""
    core = word[:-1] if len(word) > 2 and word.endswith("s") else word
    upper = sum(c.isupper() for c in core)
    return len(core) >= 2 and (upper >= 2 or core.isupper())


def acronym_form(word: str) -> str:
    core = word[:-1] if word.endswith("s") and not word[-2:].isupper() else word
    return "^" + core  # "^" keeps acronyms apart from lowercase stems


def word_forms(word: str) -> tuple[str, ...]:
    """Return the forms a text word can match: its stem, its acronym form, its unversioned name."""
    forms: tuple[str, ...] = (acronym_form(word), stem(word)) if is_acronym(word) else (stem(word),)
    m = _VERSIONED.fullmatch(word)
    if m is not None and m.group(1).lower() in _INSTANCE_NAMES:
        forms += ("~" + m.group(1).lower(),)  # "Qwen3", "Llama2": the family of a named model
    return forms


_VERSIONED = re.compile(r"([A-Za-z]{3,})(?:\d+[a-z]?)?")
_INSTANCE_NAMES = frozenset(n.lower() for names in INSTANCES.values() for n in names)


class Tokens:
    """One text field as word tokens: their forms and phrase joins; places on demand."""

    def __init__(self, text: str) -> None:
        self.text = text
        # [gap, word, gap, word, ..., gap] in one call: the loop over tokens stays in C.
        self._parts = parts = _SPLIT.split(text)
        self.forms = [_FORMS.get(w) or _remember(w) for w in parts[1::2]]
        self._gaps = parts[0:-1:2]

    @cached_property
    def joined(self) -> list[bool]:
        """For each token, whether it continues a phrase from the token before it."""
        return [
            g == " " or g == "-" or (g != "" and _JOINED.fullmatch(g) is not None)
            for g in self._gaps
        ]

    @cached_property
    def vocabulary(self) -> frozenset[str]:
        """Every form of every token."""
        return frozenset(chain.from_iterable(self.forms))

    @cached_property
    def _starts(self) -> list[int]:
        return list(accumulate(map(len, self._parts)))[0::2]

    def span_text(self, start: int, end: int) -> str:
        """Return the text from token start to just after token end - 1."""
        last = self._starts[end - 1] + len(self._parts[2 * end - 1])
        return self.text[self._starts[start] : last]

    @cached_property
    def _sentence_starts(self) -> list[int]:
        return [k for k, g in enumerate(self._gaps) if g != " " and _SENTENCE_END.search(g)]

    def sentence(self, i: int) -> int:
        """Return the sentence number of token i."""
        return bisect_right(self._sentence_starts, i)


_SPLIT = re.compile(r"([A-Za-z0-9]+)")
_SENTENCE_END = re.compile(r"[.?!]\W*\s$")
_JOINED = re.compile(r"[\s\-/]+")  # between the words of a phrase: "large-language  models"
_FORMS: dict[str, tuple[str, ...]] = {}


def _remember(word: str) -> tuple[str, ...]:
    if len(_FORMS) > FORMS_CACHE_LIMIT:
        _FORMS.clear()
    forms = _FORMS[word] = word_forms(word)
    return forms


def tokenize(text: str) -> Tokens:
    """Split text into word tokens with their forms, once per paper and field."""
    return Tokens(text)


@dataclass(frozen=True)
class PaperText:
    """What the matcher reads of a paper."""

    title: str
    abstract: str = ""
    keywords: Sequence[str] = ()
    categories: Sequence[str] = ()

    @cached_property
    def fields(self) -> dict[str, Tokens]:
        """Each non-empty field as tokens, computed once for all topics."""
        texts = {
            "title": self.title,
            "keyword": " ; ".join(self.keywords),  # a phrase never spans two of them
            "abstract": self.abstract,
        }
        return {name: tokenize(text) for name, text in texts.items() if text}
