"""LaTeX in papers' text shown as text: the converter, and every place a reader sees a paper."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.core.latex import MAX_CHARS, MAX_DEPTH, readable

# --- the converter ------------------------------------------------------------------------

AS_TEXT = [
    # The forms the issue names, then real titles and abstracts of tests/labelled.
    (r"$\Lambda$CDM", "ΛCDM"),
    (r"$Λ$CDM from broken diffeomorphisms", "ΛCDM from broken diffeomorphisms"),
    (r"Gr\"obner bases", "Gröbner bases"),
    (r"CeAg$_2$Ge$_2$", "CeAg₂Ge₂"),
    (r"\textit{HISS}", "HISS"),
    (r"$0.7 - 2.5 \mathrm{\mu m}$", "0.7 - 2.5 μm"),
    (r"galaxies at $z\sim 2$", "galaxies at z∼2"),
    (r"\emph{in situ}", "in situ"),
    (r"Theory \& practice", "Theory & practice"),
    (r"pages 1--3 and Bose--Einstein", "pages 1–3 and Bose–Einstein"),
    (r"a pause --- then", "a pause — then"),
    (r"see Fig.~3 of Smith et~al.", "see Fig. 3 of Smith et al."),
    (r"Mn$^{2+}$-doping", "Mn²⁺-doping"),
    (r"$10^{-3}$ and $^{3}$He at $90^\circ$", "10⁻³ and ³He at 90°"),
    (r"BaFe$_2$(As$_{0.65}$P$_{0.35}$)$_2$", "BaFe₂(As_(0.65)P_(0.35))₂"),
    (r"RE$_{1-x}$AE$_{x}$MnO$_{3}$", "RE₁₋ₓAEₓMnO₃"),
    (r"$T_{\rm eff}$ and $M_\odot$", "T_eff and M_⊙"),  # no Unicode forms: "_" kept
    (r"for $m < 5\times10^{-21} $ eV", "for m < 5×10⁻²¹ eV"),
    (r"Nonstable $K$--theory of $C^*$--algebras", "Nonstable K–theory of C*–algebras"),
    (r"the reduction on \'etale modules", "the reduction on étale modules"),
    (r"Pl\" ucker relations", "Plücker relations"),
    (r"Jaros{\l}aw Buczy\'nski", "Jarosław Buczyński"),
    (r"Jean-Fran\c{c}ois M\'etayer", "Jean-François Métayer"),
    (r"values $<$0.1 km s$^{-1}$", "values <0.1 km s⁻¹"),
    (r"reach $\sim$$10^{-4} E_{k0}$", "reach ∼10⁻⁴ Eₖ₀"),
    (r"$\alpha$-particle in $\mathcal{O}(n^2)$", "α-particle in 𝒪(n²)"),
    (r"$$E = mc^2$$ and \(x_1\)", "E = mc² and x₁"),
    (r"$X\subset\Bbb{P}^r$", "X⊂ℙʳ"),
    (r"a \lq braid\rq", "a ‘braid’"),
    (r"\textbf{Bold} {\em claims} in \texttt{snake_case}", "Bold claims in snake_case"),
    (r"50\% of $N$", "50% of N"),
    (r"the \LaTeX\ way", "the LaTeX way"),
]

UNCHANGED = [
    "costs $5 and $10",
    "$5-$10 a month",
    "US$ 20",
    "a $ sign",
    "50% of C++ users",
    "R&D at 5%",
    "issue #42",
    "x < y > z and a <b> tag",
    "snake_case and __init__ and a_b_c",
    "x^y in prose",
    "run --help or --version",
    "i-- and C-- done",
    "A --> B",
    "~100 GPUs and a 10~100 range",
    "https://example.org/~user/a_b?x=1&y=50%25#top",
    '{"a": 1} as JSON',
    "it's ''quoted'' here",
    "`code` in backticks",
    "C:\\Users\\name",
    "a lone \\",
    "",
]

HOSTILE = [
    "{" * (MAX_DEPTH + 1) + r"\alpha" + "}" * (MAX_DEPTH + 1),  # deeper than any title
    "{" * 5000 + "}" * 5000,
    r"$\frac{" * 2000,
    r"\begin{equation} x",
    "}{" * 100 + r"\alpha",
    "$" * 1001,
    r"\\" * 500,
    r"$x$ " * (MAX_CHARS // 4 + 1),  # longer than any stored text
    "\U000f0001 $x$",  # the converter's own private-use characters
    r"\input{/etc/passwd} \include{/etc/hostname}",
    r"\verb|x",
    "\x00$x$\x1b",
]


@pytest.mark.parametrize(("latex", "text"), AS_TEXT)
def test_latex_reads_as_text(latex, text):
    assert readable(latex) == text


@pytest.mark.parametrize("text", UNCHANGED)
def test_text_that_is_not_latex_comes_through_unchanged(text):
    assert readable(text) == text


def test_a_percent_sign_does_not_eat_the_rest_of_a_latex_text():
    # pylatexenc reads % as a comment to the end of the line.
    assert readable(r"$\alpha$ rose by 50% in C++ code") == "α rose by 50% in C++ code"
    assert readable(r"$x$ costs $5 and 10%") == "x costs $5 and 10%"


def test_urls_and_code_names_in_a_latex_text_stay_as_written():
    text = r"$\beta$ code at https://github.com/a/b_c~d?x=1&y=%20 and snake_case --help"
    assert readable(text) == "β code at https://github.com/a/b_c~d?x=1&y=%20 and snake_case --help"


def test_unbalanced_braces_are_kept_and_the_rest_converted():
    assert readable(r"extra } brace and $\alpha$") == "extra } brace and α"
    assert readable(r"unclosed {\bf group") == "unclosed {group"


def test_unknown_macros_stay_as_written_but_a_papers_macro_for_a_name_reads_as_the_name():
    assert readable(r"in \Euclid (CLOE) with $\alpha$") == "in Euclid (CLOE) with α"
    assert readable(r"\JWST{} and \Planck data") == "JWST and Planck data"
    assert readable(r"\foo{bar} and \n") == r"\foo{bar} and \n"


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_input_never_raises_and_falls_back_to_the_original(text):
    shown = readable(text)
    assert isinstance(shown, str)
    assert "root:" not in shown  # \input reads no file
    assert not any("\U000f0000" <= c <= "\U000ffffd" for c in shown.replace("\U000f0001", ""))


@pytest.mark.parametrize("text", [HOSTILE[0], HOSTILE[7], HOSTILE[8]])
def test_what_no_title_is_like_is_shown_as_given(text):
    assert readable(text) == text


PLAIN_PIECES = [
    "$5", "50%", "C++", "snake_case", "--help", "~100", "R&D", "#3", "x^y", "<", ">", "a<b",
    "https://x.org/a_b~c?d=1&e=2", '{"a": 1}', "i--", "-->", "it's", "word", "42", "-", ".",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PLAIN_PIECES), max_size=12), st.sampled_from([" ", ", ", "  "]))
def test_text_made_of_non_latex_pieces_is_unchanged(pieces, separator):
    text = separator.join(pieces)
    assert readable(text) == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("\\${}^_~-%&#'` aZ0{}()[]$\\\"é\n")), max_size=80))
def test_any_text_converts_without_raising(text):
    shown = readable(text)
    assert isinstance(shown, str)
    assert "\n" not in shown or shown == text  # converted text is one line
