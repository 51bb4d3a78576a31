"""Paper identifiers: DOIs as written anywhere, and arXiv's own DOIs, in one place.

A DOI is kept in lowercase (DOIs are case-insensitive) without a `doi:` or doi.org prefix.
arXiv gives every paper a DOI, `10.48550/arXiv.<id>`: that names the arXiv paper, so it is
an arXiv id, not a journal's DOI.
"""

from __future__ import annotations

import re

# No control character ends up in a stored DOI: a NUL would fail the whole batch on PostgreSQL.
DOI = re.compile(r"10\.\d{4,9}/[^\s\"<>\x00-\x1f\x7f]+")
DOI_PREFIX = re.compile(r"(?:doi:\s*|(?:https?://)?(?:dx\.)?doi\.org/)", re.IGNORECASE)
ARXIV_DOI = "10.48550/arxiv."
DOI_MAX = 255
# Punctuation that ends a sentence or a bracket, not the DOI written before it.
_TRAILING = ".,;:)]}>'\""


def doi_of(value: str | None) -> str | None:
    """Return the lowercase DOI a text or link holds, or None (arXiv's DOIs included)."""
    if not value:
        return None
    text = DOI_PREFIX.sub("", value.strip(), count=1)
    found = DOI.search(text)
    if found is None:
        return None
    doi = found.group(0).rstrip(_TRAILING).lower()
    return doi if len(doi) <= DOI_MAX else None


def doi_link(doi: str) -> str:
    """Return the doi.org link of a DOI, as the cards and the papers' journal links write it."""
    return f"https://doi.org/{doi}"


def doi_of_link(url: str | None) -> str | None:
    """Return the DOI a doi.org link names (`https://doi.org/10.1016/j.x`), else None."""
    if not url or not re.match(r"(?:https?://)?(?:dx\.)?doi\.org/", url.strip(), re.IGNORECASE):
        return None
    return doi_of(url)


def arxiv_id_of_doi(doi: str | None) -> str | None:
    """Return the arXiv id an arXiv DOI names (`10.48550/arxiv.2507.01234`), else None."""
    if doi and doi.lower().startswith(ARXIV_DOI):
        return doi[len(ARXIV_DOI) :] or None
    return None
