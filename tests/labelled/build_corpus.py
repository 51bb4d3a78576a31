"""Freeze the real papers of seeds/ and tests/fixtures/ into papers.json for the evaluation.

Run from the repository root: `.venv/bin/python tests/labelled/build_corpus.py`.
Kept independent of newsletter.papers.sources so the labelled set never moves under the labels.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from defusedxml import ElementTree

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
OUT = Path(__file__).with_name("papers.json")
ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
HEADER_BLOCKS = 5  # "new", "Get trending...", "Subscribe", "Daily Papers", "by AK ..."


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text or "").strip()


def seed_papers() -> list[dict]:
    text = (REPO / "seeds" / "hf-daily-papers-page.txt").read_text(encoding="utf-8")
    blocks = [b.strip() for b in text.split("\n\n") if b.strip()][HEADER_BLOCKS:]
    papers = []
    for i in range(0, len(blocks) - 1, 2):
        # The page glues the upvote count to the end of the abstract: "...performance.105".
        abstract = re.sub(r"(?<=\.)\d+$", "", blocks[i + 1])
        papers.append(_paper(f"seed-{i // 2 + 1:02d}", "seed", blocks[i], abstract))
    return papers


def hf_papers(name: str) -> list[dict]:
    items = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    out = []
    for item in items:
        p = item["paper"]
        out.append(
            _paper(p["id"], name, p["title"], p.get("summary", ""), p.get("ai_keywords") or [])
        )
    return out


def atom_papers(name: str) -> list[dict]:
    root = ElementTree.parse(FIXTURES / name).getroot()
    out = []
    for entry in root.iter(ATOM + "entry"):
        arxiv_id = entry.findtext(ATOM + "id").rsplit("/abs/", 1)[-1].split("v")[0]
        primary = entry.find(ARXIV + "primary_category")
        cats = [c.get("term") for c in entry.findall(ATOM + "category")]
        if primary is not None:
            cats = [primary.get("term")] + [c for c in cats if c != primary.get("term")]
        title, summary = entry.findtext(ATOM + "title"), entry.findtext(ATOM + "summary")
        out.append(_paper(arxiv_id, name, title, summary, categories=cats))
    return out


def rss_papers(name: str) -> list[dict]:
    root = ElementTree.parse(FIXTURES / name).getroot()
    out = []
    for item in root.iter("item"):
        arxiv_id = item.findtext("link").rsplit("/", 1)[-1]
        abstract = item.findtext("description").split("Abstract:", 1)[-1]
        cats = [c.text for c in item.findall("category")]
        out.append(_paper(arxiv_id, name, item.findtext("title"), abstract, categories=cats))
    return out


def _paper(key, source, title, abstract, keywords=(), categories=()) -> dict:
    return {
        "key": key,
        "source": source,
        "title": _clean(title),
        "abstract": _clean(abstract),
        "keywords": list(keywords),
        "categories": list(categories),
    }


def main() -> None:
    papers = seed_papers()
    for name in ("hf_daily_papers_30.json", "hf_daily_papers_5.json", "hf_daily_papers_3.json"):
        papers += hf_papers(name)
    for name in ("arxiv_api_2026.xml", "arxiv_api_legacy.xml", "arxiv_api_2026_idlist.xml"):
        papers += atom_papers(name)
    papers += rss_papers("arxiv_rss.xml")
    seen = {}
    for p in papers:
        seen.setdefault(p["key"], p)  # the same paper in two fixtures counts once
    OUT.write_text(json.dumps(list(seen.values()), indent=1, ensure_ascii=False) + "\n")
    print(f"{len(seen)} papers -> {OUT}")


if __name__ == "__main__":
    main()
