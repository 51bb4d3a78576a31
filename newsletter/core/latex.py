"""Readable text from the LaTeX in papers' titles, abstracts and author names.

Sources give titles as their authors typed them: `$\\Lambda$CDM`, `Gr\\"obner`,
`CeAg$_2$Ge$_2$`. `readable` shows them as a reader reads them (ΛCDM, Gröbner, CeAg₂Ge₂);
papers are stored as given and converted where they are shown. Text that is not LaTeX comes
through unchanged: a lone `$5`, `50%`, `C++`, `snake_case`, `--help`, `~100`, URLs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from pylatexenc import latex2text, latexwalker
from pylatexenc.latex2text import LatexNodes2Text, MacroTextSpec, SpecialsTextSpec
from pylatexenc.macrospec import MacroSpec, MacroStandardArgsParser, SpecialsSpec

MAX_CHARS = 20_000  # above any stored text (abstracts are cut at 5,000): shown as given
MAX_DEPTH = 24  # braces nested deeper are no title's: shown as given
CACHE_SIZE = 16_384  # the title, abstract, TL;DR and authors of a few thousand papers
SCRIPT_LETTERS_MAX = 3  # ᵗʰ and ₘₐₓ read as scripts; a longer word reads better as "_word"

# Without one of these, no LaTeX construct can be in a text: it is returned as it is.
_MAYBE_LATEX = re.compile(r"[\\$~{}]|--|``|''")
# Each kept-as-is span becomes one private-use character until pylatexenc is done.
_SENTINEL_BASE = 0xF0000
_SENTINELS = re.compile("[\U000f0000-\U000ffffd]")
_SENTINEL_LIMIT = 0xFFFFD - _SENTINEL_BASE
_TOKEN = re.compile(
    r"""
      (?P<url>(?:https?|ftp)://[^\s{}<>"\\$]+)
    | (?P<escape>\\(?:[A-Za-z]+|[^A-Za-z]))   # a macro, or an escaped character
    | (?P<lone>\\)                             # a backslash ending the text
    | (?P<dollar>\$\$?)
    | (?P<literal>[%&\#])                      # a comment, a table cell, a parameter: not here
    | (?P<tilde>~)
    | (?P<dashes>-{2,})
    | (?P<open>\{)
    | (?P<close>\})
    | (?P<quote>``|'')
    | (?P<script>[\^_])
    """,
    re.X,
)
_MATH_OPENERS = ("\\(", "\\[")
_MATH_DELIMITERS = ("\\(", "\\[", "\\)", "\\]")
_MATH_CHARS = re.compile(r"[\\^_{}=<>+*/|]")
_MACRO_OR_SCRIPT = re.compile(r"\\[A-Za-z]|[\^_{]")
_SPACES = re.compile(r"\s+")
# Plain words between the LaTeX: pylatexenc reads a text character by character, so long runs
# go past it as one sentinel each (a tenth of the time on an abstract). Short ones stay, for
# \mathbb{R} and the like.
_PLAIN_RUN = re.compile(r"[^\s\[\]'`](?:[^\[\]'`]*[^\s\[\]'`])?")
PLAIN_RUN_MIN = 8
_ARGUMENT = re.compile(r"\s*\S?")

# Unicode has sub- and superscript forms of these; anything else keeps its "_" or "^".
_SUB = dict(
    zip(
        "0123456789+-−=()aeoxhklmnpstijruvəβγρφχ",
        "₀₁₂₃₄₅₆₇₈₉₊₋₋₌₍₎ₐₑₒₓₕₖₗₘₙₚₛₜᵢⱼᵣᵤᵥₔᵦᵧᵨᵩᵪ",
        strict=True,
    )
)
_SUP = dict(
    zip(
        "0123456789+-−=()abcdefghijklmnoprstuvwxyzABDEGHIJKLMNOPRTUVW′*∗†‡∘",
        "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁻⁼⁽⁾ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖʳˢᵗᵘᵛʷˣʸᶻᴬᴮᴰᴱᴳᴴᴵᴶᴷᴸᴹᴺᴼᴾᴿᵀᵁⱽᵂ′**†‡°",
        strict=True,
    )
)


def readable(text: str) -> str:
    """Return text with its LaTeX shown as Unicode text; text without LaTeX as it is."""
    if not text or _MAYBE_LATEX.search(text) is None:
        return text
    return _readable(text)


@lru_cache(maxsize=CACHE_SIZE)
def _readable(text: str) -> str:
    if len(text) > MAX_CHARS or _SENTINELS.search(text):
        return text
    try:
        shown = _convert(text)
    except Exception:  # noqa: BLE001 - hostile input (RecursionError included) reads as given
        return text
    return shown if shown or not text.strip() else text


class _Unreadable(ValueError):
    """A text no title or abstract is like (braces nested deep, thousands of spans)."""


def _convert(text: str) -> str:
    protected, kept = _protect(text)
    converter = _Converter(kept)
    converted = converter.nodelist_to_text(_walker(protected).get_latex_nodes()[0])
    return _SPACES.sub(" ", converter.restore(converted)).strip()


def _protect(text: str) -> tuple[str, list[str]]:
    """Put a sentinel in place of every span pylatexenc must not read as LaTeX."""
    tokens = list(_TOKEN.finditer(text))
    math = _math_dollars(text, tokens)
    latexish = bool(math) or any(t.lastgroup == "escape" and t[0][1:2].isalpha() for t in tokens)
    literal: set[int] = set()  # indexes of tokens kept as they are
    opened: list[int] = []
    in_math = False
    for i, token in enumerate(tokens):
        kind = token.lastgroup
        if i in math:
            in_math = not in_math
        elif token[0] in _MATH_DELIMITERS:
            in_math = token[0] in _MATH_OPENERS
        if kind in ("url", "lone", "literal"):
            literal.add(i)
        elif kind == "dollar" and i not in math:
            literal.add(i)
        elif kind == "script" and not in_math:  # snake_case, x^y in prose
            literal.add(i)
        elif kind == "tilde" and not _is_tie(text, token):
            literal.add(i)
        elif kind == "dashes" and not _is_dash(text, token):
            literal.add(i)
        elif kind == "quote" and not latexish:
            literal.add(i)
        elif kind == "open":
            if not latexish:
                literal.add(i)
                continue
            opened.append(i)
            if len(opened) > MAX_DEPTH:
                raise _Unreadable(text[:40])
        elif kind == "close":
            if not latexish or not opened:
                literal.add(i)
            else:
                opened.pop()
    literal.update(opened)  # braces never closed
    return _with_sentinels(text, tokens, literal)


def _with_sentinels(
    text: str, tokens: list[re.Match[str]], literal: set[int]
) -> tuple[str, list[str]]:
    """Replace the literal tokens and the long plain runs between tokens with sentinels."""
    kept: list[str] = []

    def sentinel(span: str) -> str:
        if len(kept) >= _SENTINEL_LIMIT:
            raise _Unreadable("too many spans")
        kept.append(span)
        return chr(_SENTINEL_BASE + len(kept) - 1)

    out: list[str] = []
    last, argument_next = 0, False
    for i, token in enumerate([*tokens, None]):
        gap = text[last : token.start() if token is not None else len(text)]
        if argument_next:  # the character after \" or ^ (spaces between) is its argument
            head = _ARGUMENT.match(gap)[0]  # type: ignore[index]
            out.append(head)
            gap = gap[len(head) :]
        out.append(_PLAIN_RUN.sub(lambda m: _run(m[0], sentinel), gap))
        if token is None:
            break
        out.append(sentinel(token[0]) if i in literal else token[0])
        argument_next = token.lastgroup in ("escape", "script")
        last = token.end()
    return "".join(out), kept


def _run(run: str, sentinel: Callable[[str], str]) -> str:
    return sentinel(run) if len(run) >= PLAIN_RUN_MIN else run


def _math_dollars(text: str, tokens: list[re.Match[str]]) -> set[int]:
    """Return the indexes of the dollar tokens that open or close math.

    A `$` opens math when a non-space follows it, and the next dollar of its kind closes it
    unless a digit follows that one (a formula can: "$\\sim$5"); what lies between must look
    like math or hold no space ("costs $5 and $10" is no formula, "$z\\sim 2$" and "$K$" are).
    """
    dollars = [i for i, t in enumerate(tokens) if t.lastgroup == "dollar"]
    found: set[int] = set()
    n = 0
    while n < len(dollars) - 1:
        i, j = dollars[n], dollars[n + 1]
        opener, closer = tokens[i], tokens[j]
        inside = text[opener.end() : closer.start()]
        after = text[closer.end() : closer.end() + 1]
        if (
            opener[0] == closer[0]
            and inside.strip()
            and not inside[0].isspace()
            and (not after.isdigit() or _MACRO_OR_SCRIPT.search(inside))  # "$5-$10", "$\sim$5"
            and (_MATH_CHARS.search(inside) or not any(c.isspace() for c in inside))
        ):
            found.update((i, j))
            n += 2
        else:
            n += 1
    return found


def _is_tie(text: str, token: re.Match[str]) -> bool:
    """Return True for LaTeX's unbreakable space ("Fig.~3", "et~al."), not "~100"."""
    before = text[token.start() - 1 : token.start()]
    after = text[token.end() : token.end() + 1]
    return (
        bool(before)
        and (before.isalpha() or before in ".,;:)}$")
        and (after.isalnum() or after in "(\\$")
    )


def _is_dash(text: str, token: re.Match[str]) -> bool:
    """Return True for LaTeX's en and em dashes, not "--help", "i--" or "-->"."""
    if len(token[0]) > 3:
        return False
    before = text[token.start() - 1 : token.start()]
    after = text[token.end() : token.end() + 1]
    if after == ">" or before == "<":
        return False
    if before.isspace() or not before:
        return after.isspace() or after.isdigit() or after in "$\\"  # " -- ", "--3"
    if after.isspace() or not after:
        return False  # "i-- ", "C--"
    return True  # "Bose--Einstein", "1--3", "$K$--theory"


def _scripted(content: str, table: dict[str, str], mark: str) -> str:
    """Return content as sub- or superscript characters, or after its mark where it cannot be."""
    letters = sum(c.isalpha() for c in content)
    if content and letters <= SCRIPT_LETTERS_MAX and all(c in table for c in content):
        return "".join(table[c] for c in content)
    if len(content) <= 1 or content.isalnum():
        return mark + content  # T_eff, M_⊙
    return f"{mark}({content})"  # As_(0.65)


def _script(table: dict[str, str], mark: str) -> Any:
    """Make the text spec of "_" or "^": in math a script, in prose the character itself."""

    def to_text(node: Any, l2tobj: Any) -> str:
        args = node.nodeargd.argnlist if node.nodeargd else []
        content = l2tobj.restore(l2tobj._groupnodecontents_to_text(args[0])) if args else ""
        if not node.parsing_state.in_math_mode:  # snake_case, x^y in prose
            return mark + content
        return _scripted(content.strip(), table, mark)

    return to_text


def _script_macro(table: dict[str, str], mark: str) -> Any:
    """Make the text spec of \\textsuperscript or \\textsubscript."""

    def to_text(node: Any, l2tobj: Any) -> str:
        return _scripted(l2tobj.restore(l2tobj.node_arg_to_text(node, 0)).strip(), table, mark)

    return to_text


# Macros pylatexenc does not know (or drops) that titles and abstracts use.
_ONE_ARGUMENT = ("boldsymbol", "bm", "operatorname", "textsuperscript", "textsubscript", "pmod")
_TWO_ARGUMENTS = ("dfrac", "tfrac")
_FONT_SWITCHES = "rm it em bf sc tt sl sf cal bfseries itshape normalfont left right big Big "
_FONT_SWITCHES += "bigg Bigg bigl bigr Bigl Bigr thanks"
_AS_TEXT = {
    "url": "%s", "texttt": "%s", "textsc": "%s", "textsf": "%s", "mathtt": "%s",
    "mathsf": "%s", "boldsymbol": "%s", "bm": "%s", "operatorname": "%s",
    "dfrac": "%s/%s", "tfrac": "%s/%s", "pmod": " (mod %s)", "mod": " mod ", "bmod": " mod ",
    "LaTeX": "LaTeX", "TeX": "TeX", "degree": "°", "micro": "µ", "ne": "≠", "S": "§",
    "P": "¶", "ddag": "‡", "checkmark": "✓", "copyright": "©", "TM": "™", "cdotp": "·",
    "colon": ":", "newline": " ", "triangle": "△",
    **{name: name for name in "det arg dim ker deg gcd Pr tr Re Im".split()},
    **{name: "" for name in _FONT_SWITCHES.split()},
}  # fmt: skip


@lru_cache(maxsize=1)
def _walker_context() -> Any:
    db = latexwalker.get_default_latex_context_db()
    one_argument = MacroStandardArgsParser("{")
    db.add_context_category(
        "newsletter",
        macros=[MacroSpec(name, "{") for name in _ONE_ARGUMENT]
        + [MacroSpec(name, "{{") for name in _TWO_ARGUMENTS],
        specials=[SpecialsSpec("_", one_argument), SpecialsSpec("^", one_argument)],
        prepend=True,
    )
    return db


def _walker(text: str) -> Any:
    return latexwalker.LatexWalker(text, latex_context=_walker_context(), tolerant_parsing=True)


@lru_cache(maxsize=1)
def _text_context() -> Any:
    db = latex2text.get_default_latex_context_db()
    db.add_context_category(
        "newsletter",
        macros=[MacroTextSpec(name, text) for name, text in _AS_TEXT.items()]
        + [
            MacroTextSpec("textsuperscript", _script_macro(_SUP, "^")),
            MacroTextSpec("textsubscript", _script_macro(_SUB, "_")),
        ],
        specials=[
            SpecialsTextSpec("~", " "),
            SpecialsTextSpec("&", "&"),
            SpecialsTextSpec("_", _script(_SUB, "_")),
            SpecialsTextSpec("^", _script(_SUP, "^")),
        ],
        prepend=True,
    )
    return db


class _Converter(LatexNodes2Text):
    """pylatexenc's converter, keeping a macro it does not know as it was written.

    One per text: it holds the spans its sentinels stand for.
    """

    def __init__(self, kept: list[str]) -> None:
        super().__init__(_text_context(), math_mode="text", strict_latex_spaces=True)
        self.kept = kept

    def restore(self, text: str) -> str:
        """Put the kept spans back in place of their sentinels."""
        return _SENTINELS.sub(lambda m: self.kept[ord(m[0]) - _SENTINEL_BASE], text)

    def nodelist_to_text(self, nodelist: list[Any]) -> str:
        out: list[str] = []
        previous = None
        for node in nodelist:
            text = self.node_to_text(node)
            if self._unknown(previous) and node.isNodeType(latexwalker.LatexGroupNode):
                text = "{" + text + "}"  # \foo{bar} as written, not \foobar
            out.append(text)
            previous = node
        return "".join(out)

    def macro_node_to_text(self, node: Any) -> str:
        if not self._unknown(node):
            return super().macro_node_to_text(node)
        return "\\" + node.macroname + node.macro_post_space  # \Euclid, \n: as written

    def _unknown(self, node: Any) -> bool:
        return (
            node is not None
            and node.isNodeType(latexwalker.LatexMacroNode)
            and self.latex_context.get_macro_spec(node.macroname) is None
        )
