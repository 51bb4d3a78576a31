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
from typing import Any, NamedTuple

from pylatexenc import latex2text, latexwalker
from pylatexenc.latex2text import LatexNodes2Text, MacroTextSpec, SpecialsTextSpec
from pylatexenc.macrospec import MacroSpec, MacroStandardArgsParser, SpecialsSpec

MAX_CHARS = 20_000  # above any stored text (abstracts are cut at 5,000): shown as given
MAX_DEPTH = 24  # braces nested deeper are no title's: shown as given
CACHE_SIZE = 4096  # texts with LaTeX: a physics day of 2,000 papers holds ~1,600
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
    | (?P<dollar>\$)
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
_MACRO = re.compile(r"\\[A-Za-z]")
_SCRIPT = re.compile(r"[\^_{]")
_LINE_BREAKS = re.compile(r"\s*\n\s*")
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
    # Line breaks come from display math and \\: stored texts are one line of single spaces.
    shown = _LINE_BREAKS.sub(" ", converter.restore(converted))
    return shown.strip() if text == text.strip() else shown


class _Token(NamedTuple):
    kind: str
    text: str
    start: int
    end: int


def _tokens(text: str) -> list[_Token]:
    return [_Token(m.lastgroup or "", m[0], m.start(), m.end()) for m in _TOKEN.finditer(text)]


def _protect(text: str) -> tuple[str, list[str]]:
    """Put a sentinel in place of every span pylatexenc must not read as LaTeX."""
    tokens = _tokens(text)
    opening, closing = _math_dollars(text, tokens)
    latexish = bool(opening) or any(t.kind == "escape" and t.text[1:2].isalpha() for t in tokens)
    literal = _literal_tokens(text, tokens, (opening, closing), latexish)
    return _with_sentinels(text, tokens, literal)


def _literal_tokens(
    text: str, tokens: list[_Token], math: tuple[set[int], set[int]], latexish: bool
) -> set[int]:
    """Return the indexes of the tokens that mean themselves here, not LaTeX."""
    opening, closing = math
    literal: set[int] = set()
    opened: list[int] = []
    in_math = False
    for i, token in enumerate(tokens):
        kind = token.kind
        if i in opening or i in closing:
            in_math = i in opening
        elif token.text in _MATH_DELIMITERS:
            in_math = token.text in _MATH_OPENERS
        if (
            kind in ("url", "lone", "literal")
            or (kind == "dollar" and i not in opening and i not in closing)
            or (kind == "script" and not in_math)  # snake_case, x^y in prose
            or (kind == "tilde" and not _is_tie(text, token))
            or (kind == "dashes" and not _is_dash(text, token))
            or (kind in ("quote", "open", "close") and not latexish)  # {"a": 1}
            or (kind == "close" and not opened)
        ):
            literal.add(i)
        elif kind == "open":
            opened.append(i)
            if len(opened) > MAX_DEPTH:
                raise _Unreadable(text[:40])
        elif kind == "close":
            opened.pop()
    literal.update(opened)  # braces never closed
    return literal


def _with_sentinels(text: str, tokens: list[_Token], literal: set[int]) -> tuple[str, list[str]]:
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
        gap = text[last : token.start if token is not None else len(text)]
        if argument_next:  # the character after \" or ^ (spaces between) is its argument
            head = _ARGUMENT.match(gap)[0]  # type: ignore[index]  # \s*\S? matches any text
            out.append(head)
            gap = gap[len(head) :]
        out.append(_PLAIN_RUN.sub(lambda m: _run(m[0], sentinel), gap))
        if token is None:
            break
        out.append(sentinel(token.text) if i in literal else token.text)
        argument_next = token.kind in ("escape", "script")
        last = token.end
    return "".join(out), kept


def _run(run: str, sentinel: Callable[[str], str]) -> str:
    return sentinel(run) if len(run) >= PLAIN_RUN_MIN else run


def _math_dollars(text: str, tokens: list[_Token]) -> tuple[set[int], set[int]]:
    """Return the indexes of the dollar tokens that open math and of those that close it.

    `$$` opens display math that the next `$$` closes; inside inline math a `$` closes, so
    "$\\sim$$10$" is two formulas. See `_is_formula` for what may lie between.
    """
    dollars = [i for i, t in enumerate(tokens) if t.kind == "dollar"]

    def adjacent(n: int) -> bool:
        return n + 1 < len(dollars) and tokens[dollars[n]].end == tokens[dollars[n + 1]].start

    opening: set[int] = set()
    closing: set[int] = set()
    n = 0
    while n < len(dollars) - 1:
        if adjacent(n):  # $$ ... $$
            close = next((m for m in range(n + 2, len(dollars)) if adjacent(m)), None)
            if close is not None and _is_formula(
                text, tokens[dollars[n + 1]], tokens[dollars[close]], tokens[dollars[close + 1]]
            ):
                opening.update(dollars[n : n + 2])
                closing.update(dollars[close : close + 2])
                n = close + 2
            else:
                n += 2
        elif _is_formula(text, tokens[dollars[n]], tokens[dollars[n + 1]], tokens[dollars[n + 1]]):
            opening.add(dollars[n])
            closing.add(dollars[n + 1])
            n += 2
        else:
            n += 1
    return opening, closing


def _is_formula(text: str, opener: _Token, closer: _Token, last: _Token) -> bool:
    """Return True when the dollars around a span are math delimiters, not prices.

    What lies between must not start or end with a space, nor be followed by a digit, and
    must look like math or hold no space; a formula with a macro may break the first two
    ("$m < 5\\times10^{-21} $", "$\\sim$5"). "costs $5 and $10" is no formula, "$z\\sim 2$",
    "$K$", "$<$0.1" are.
    """
    inside = text[opener.end : closer.start]
    after = text[last.end : last.end + 1]
    if not inside.strip():
        return False
    macro = _MACRO.search(inside) is not None
    if (inside[0].isspace() or inside[-1].isspace()) and not macro:
        return False
    if after.isdigit() and not (
        macro or _SCRIPT.search(inside) or not any(c.isalnum() for c in inside)
    ):
        return False
    return _MATH_CHARS.search(inside) is not None or not any(c.isspace() for c in inside)


def _is_tie(text: str, token: _Token) -> bool:
    """Return True for LaTeX's unbreakable space ("Fig.~3", "et~al."), not "~100"."""
    before = text[token.start - 1 : token.start]
    after = text[token.end : token.end + 1]
    if not before or not after:
        return False
    return (before.isalpha() or before in ".,;:)}$") and (after.isalnum() or after in "(\\$")


def _is_dash(text: str, token: _Token) -> bool:
    """Return True for LaTeX's en and em dashes, not "--help", "i--" or "-->"."""
    if len(token.text) > 3:
        return False
    before = text[token.start - 1 : token.start]
    after = text[token.end : token.end + 1]
    if after == ">" or before == "<":
        return False
    if not after:
        return False  # "i--", "C--"
    if before.isspace() or not before:
        return after.isspace() or after.isdigit() or after in "$\\"  # " -- ", "--3"
    return after.isalnum() or after in "$\\({"  # "Bose--Einstein", "1--3"; not "C--,"


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
_ONE_ARGUMENT = (
    "boldsymbol", "bm", "operatorname", "textsuperscript", "textsubscript", "pmod", "underbar",
    "Bbb",
)  # fmt: skip
_TWO_ARGUMENTS = ("dfrac", "tfrac", "binom", "stackrel")
_FONT_SWITCHES = "rm it em bf sc tt sl sf cal bfseries itshape normalfont left right big Big "
_FONT_SWITCHES += "bigg Bigg bigl bigr Bigl Bigr thanks"
_AS_TEXT = {
    "url": "%s", "texttt": "%s", "textsc": "%s", "textsf": "%s", "mathtt": "%s",
    "mathsf": "%s", "boldsymbol": "%s", "bm": "%s", "operatorname": "%s",
    "dfrac": "%s/%s", "tfrac": "%s/%s", "pmod": " (mod %s)", "mod": " mod ", "bmod": " mod ",
    "LaTeX": "LaTeX", "TeX": "TeX", "degree": "°", "micro": "µ", "ne": "≠", "S": "§",
    "P": "¶", "ddag": "‡", "checkmark": "✓", "copyright": "©", "TM": "™", "cdotp": "·",
    "colon": ":", "newline": " ", "triangle": "△", "underbar": "%s", "lq": "‘", "rq": "’",
    "binom": "(%s choose %s)", "stackrel": "%(2)s",
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
            MacroTextSpec("Bbb", db.get_macro_spec("mathbb").simplify_repl),  # plain TeX's
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


class _Converter(LatexNodes2Text):  # type: ignore[misc]  # pylatexenc has no types
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
        for at, node in enumerate(nodelist):
            following = nodelist[at + 1] if at + 1 < len(nodelist) else None
            if self._names_a_thing(node, following):  # an author's macro: \Euclid, \JWST
                out.append(node.macroname + node.macro_post_space)
                previous = None  # its {} (if any) is empty and goes
                continue
            text = self.node_to_text(node)
            grouped = node.isNodeType(latexwalker.LatexGroupNode)
            if self._unknown(previous) and grouped:
                text = "{" + text + "}"  # \foo{bar} as written, not \foobar
            out.append(text)
            previous = node
        return "".join(out)

    def macro_node_to_text(self, node: Any) -> str:
        if not self._unknown(node):
            text: str = super().macro_node_to_text(node)
            return text
        written: str = "\\" + node.macroname + node.macro_post_space  # \foo, \n: as written
        return written

    def _names_a_thing(self, node: Any, following: Any) -> bool:
        """Tell whether an unknown macro is a capitalised word not followed by another macro:
        a paper's macro for a name (Euclid, Planck), not part of a Windows path."""
        return (
            self._unknown(node)
            and _NAME_MACRO.fullmatch(node.macroname) is not None
            and not (following is not None and following.isNodeType(latexwalker.LatexMacroNode))
        )

    def _unknown(self, node: Any) -> bool:
        return (
            node is not None
            and node.isNodeType(latexwalker.LatexMacroNode)
            and self.latex_context.get_macro_spec(node.macroname) is None
        )


_NAME_MACRO = re.compile(r"[A-Z][A-Za-z]{2,}")

