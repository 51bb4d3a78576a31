"""A topic's example papers: the identifiers an admin writes, checked against the store.

A topic's `examples` (papers it should take) and `not_examples` (papers it should not) are
stored on the topic as identifiers: an arXiv id without its version ("2507.01234",
"hep-th/9901001") or a DOI in lowercase ("10.1101/2024.05.01.592000"). An arXiv id names
the stored paper of that id whatever version was written; a DOI names the stored paper whose
abstract or PDF link holds it (doi.org, bioRxiv and medRxiv links do), and arXiv's own DOIs
(10.48550/arXiv.2507.01234) are arXiv ids. `check_examples` refuses an identifier that names
no stored paper; `example_paper_ids` gives the scoring the paper ids.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from newsletter.core.errors import InputError, quoted
from newsletter.core.identifiers import ARXIV_DOI
from newsletter.core.identifiers import DOI as _DOI
from newsletter.core.identifiers import DOI_PREFIX as _DOI_PREFIX
from newsletter.core.models import Paper, Topic

MAX_EXAMPLES = 200  # per list: a topic is taught by a few papers, not a whole listing
_ARXIV_NEW = r"\d{4}\.\d{4,5}"
_ARXIV_OLD = r"[a-z][a-z-]*(?:\.[a-z]{2})?/\d{7}"  # hep-th/9901001, math.GT/0309136
_ARXIV = re.compile(rf"(?:arxiv:)?({_ARXIV_NEW}|{_ARXIV_OLD})(?:v\d+)?", re.IGNORECASE)
_ARXIV_URL = re.compile(
    r"(?:https?://)?(?:www\.|export\.)?arxiv\.org/(?:abs|pdf)/(.+?)(?:\.pdf)?/?", re.IGNORECASE
)
# What may follow a DOI inside a link that holds it: a bioRxiv version, a page suffix, the
# end, or the start of a path or query. Not a digit: 10.1101/2024.01.01.1234 is not ...12345.
_AFTER_DOI = re.compile(r"(?:v\d+)?(?:\.full(?:\.pdf|-text)?|\.pdf|\.abstract)?(?:$|[/?#&])")
EXAMPLE_FORMS = "an arXiv id (2507.01234, hep-th/9901001) or a DOI (10.1101/...)"


def normalise_paper_ref(value: str) -> str:
    """Return an arXiv id without version or a lowercase DOI, or raise InputError.

    "arXiv:2507.01234v2", "https://arxiv.org/abs/2507.01234" and
    "10.48550/arXiv.2507.01234" give "2507.01234"; "https://doi.org/10.1101/X" gives
    "10.1101/x".
    """
    text = value.strip()
    if url := _ARXIV_URL.fullmatch(text):
        text = url.group(1)
    text = _DOI_PREFIX.sub("", text, count=1) if _DOI_PREFIX.match(text) else text
    if text.lower().startswith(ARXIV_DOI):
        text = text[len(ARXIV_DOI) :]
    if arxiv := _ARXIV.fullmatch(text):
        found = arxiv.group(1)
        archive, slash, number = found.partition("/")
        # An old id's subject class is not part of it: math.GT/0309136 is math/0309136.
        return f"{archive.partition('.')[0].lower()}/{number}" if slash else found
    if _DOI.fullmatch(text):
        return text.lower()
    raise InputError(f"not a paper identifier: {quoted(value)}: expected {EXAMPLE_FORMS}")


def normalise_paper_refs(values: Iterable[str]) -> list[str]:
    """Normalise each identifier, keeping the first of any written twice."""
    return list(dict.fromkeys(normalise_paper_ref(v) for v in values))


def is_doi(ref: str) -> bool:
    """Tell whether a normalised identifier is a DOI (else it is an arXiv id)."""
    return ref.startswith("10.")


def resolve_paper_refs(refs: Sequence[str], *, session: Session) -> dict[str, int]:
    """Return the stored paper id of each normalised identifier that names one."""
    arxiv_ids = [r for r in refs if not is_doi(r)]
    found: dict[str, int] = {}
    if arxiv_ids:
        query = select(Paper.arxiv_id, Paper.id).where(Paper.arxiv_id.in_(arxiv_ids))
        rows = session.execute(query)
        found.update({arxiv_id: pid for arxiv_id, pid in rows if arxiv_id is not None})
    for doi in (r for r in refs if is_doi(r)):
        pid = _paper_with_doi(doi, session=session)
        if pid is not None:
            found[doi] = pid
    return found


def _paper_with_doi(doi: str, *, session: Session) -> int | None:
    """Return the id of the paper of that DOI, or whose abstract or PDF link holds it."""
    stored = session.scalar(select(Paper.id).where(Paper.doi == doi))
    if stored is not None:
        return int(stored)
    links = (func.lower(Paper.url_abs), func.lower(Paper.url_pdf))
    query = (
        select(Paper.id, Paper.url_abs, Paper.url_pdf)
        .where(or_(*(link.contains(doi, autoescape=True) for link in links)))
        .order_by(Paper.id)
    )
    for pid, *urls in session.execute(query):
        for url in (u.lower() for u in urls if u):
            at = url.find(doi)
            while at >= 0:
                if _AFTER_DOI.match(url, at + len(doi)) and url[at - 1 : at] in ("", "/", ":", "="):
                    return int(pid)
                at = url.find(doi, at + 1)
    return None


def check_examples(
    slug: str, examples: Sequence[str], not_examples: Sequence[str], *, session: Session
) -> None:
    """Raise InputError naming the first identifier that names no stored paper, or a paper
    given both as an example and as a not-example."""
    for what, refs in (("examples", examples), ("not-examples", not_examples)):
        if len(refs) > MAX_EXAMPLES:
            raise InputError(f"topic {quoted(slug)}: more than {MAX_EXAMPLES} {what}")
    found = resolve_paper_refs([*examples, *not_examples], session=session)
    for ref in (*examples, *not_examples):
        if ref not in found:
            kind = "DOI" if is_doi(ref) else "arXiv id"
            raise InputError(
                f"topic {quoted(slug)}: no stored paper has the {kind} {quoted(ref)}: "
                "import or fetch it first (`newsletter papers list` shows what is stored)"
            )
    both = {found[r] for r in examples} & {found[r] for r in not_examples}
    if both:
        ref = next(r for r in examples if found[r] in both)
        raise InputError(
            f"topic {quoted(slug)}: {quoted(ref)} is both an example and a not-example"
        )


def example_paper_ids(topic: Topic, *, session: Session) -> tuple[list[int], list[int]]:
    """Return the stored paper ids of a topic's examples and of its not-examples, in order.

    An identifier whose paper is no longer stored is left out.
    """
    examples = list(topic.examples or ())
    not_examples = list(topic.not_examples or ())
    found = resolve_paper_refs([*examples, *not_examples], session=session)
    positives = list(dict.fromkeys(found[r] for r in examples if r in found))
    negatives = list(dict.fromkeys(found[r] for r in not_examples if r in found))
    return positives, negatives
