"""Rebuild papers.json and labels.json of the multi-field set from the saved source extract.

Run from the repository root: `.venv/bin/python tests/labelled/fields/build.py`.

The source is a run of consecutive arXiv records (29 June to early July 2010) of the Kaggle
"arxiv-metadata-oai-snapshot" (CC0), as two files of the public repository
timvtinsa/DE-Project-Tartu-2022 hold them. `source/index.tsv` lists every record of the pool in
file order (file, id, first-version date, categories, and a flag for a withdrawn or empty
abstract); `source/records.jsonl` holds the authors, title and abstract of the records the rule
below selects. Nothing here reads a title or an abstract to decide anything: the selection, the
labels and the split are functions of the categories, the dates and the file order alone.

- Labels: a paper belongs to a topic when its categories (primary or cross-listed) include one of
  the topic's defining categories (TOPIC_CATEGORIES); a paper with none is a distractor ([]).
- Parts: "earlier" = first version submitted on or before 2010-06-30 (UTC), "later" = after.
- Selection, separately in each part, walking the records in file order: a record is taken when
  one of its topics still has fewer than QUOTA[part] positives taken in that part, or when it has
  no topic and fewer than DISTRACTORS[part] distractors were taken in that part. A record flagged
  withdrawn (abstract is arXiv's withdrawal notice) or empty is skipped and counts for nothing.
"""

from __future__ import annotations

import json
import re
from email.utils import parsedate_to_datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "source"
REPO = "timvtinsa/DE-Project-Tartu-2022"
COMMIT = "3fb1c17ad865c2a44a752e4d1be628b0ff13678e"
FILES = {  # pool order: batch500-2 holds the records just before those of batch500-1
    "batch500-2": "data/batches/batch500-2.json",
    "batch500-1": "data/batches/batch500-1.json",
}

TOPIC_CATEGORIES = {
    "number-theory": {"math.NT"},
    "algebraic-geometry": {"math.AG"},
    "combinatorics": {"math.CO"},
    "probability": {"math.PR"},
    "pde": {"math.AP"},
    "correlated-electrons": {"cond-mat.str-el"},
    "stat-mech": {"cond-mat.stat-mech"},
    "nanoscale": {"cond-mat.mes-hall"},
    "superconductivity": {"cond-mat.supr-con"},
    "quantum": {"quant-ph"},
    "hep-theory": {"hep-th"},
    "information-theory": {"cs.IT", "math.IT"},
    "statistics": {"stat.ME", "stat.AP", "stat.CO", "stat.TH", "math.ST", "stat.OT"},
    "quantitative-biology": {"q-bio"},  # the whole archive: any q-bio.* category
}
SPLIT_DATE = "2010-06-30"  # last day of the earlier part
QUOTA = {"earlier": 6, "later": 18}
DISTRACTORS = {"earlier": 12, "later": 25}


def topics_of(categories: list[str]) -> list[str]:
    """Return the topics whose defining categories meet the paper's, in topics.toml order."""
    cats = set(categories) | {c.split(".", 1)[0] for c in categories}  # archive of each category
    return [slug for slug, defining in TOPIC_CATEGORIES.items() if cats & defining]


def read_index() -> list[dict]:
    rows = []
    for line in (SOURCE / "index.tsv").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        file, key, created, categories, flag = (line.split("\t") + [""])[:5]
        day = parsedate_to_datetime(created).date().isoformat()
        rows.append(
            {
                "file": file,
                "key": key,
                "date": day,
                "categories": categories.split(),
                "flag": flag.strip(),
                "part": "earlier" if day <= SPLIT_DATE else "later",
            }
        )
    order = list(FILES)
    rows.sort(key=lambda r: order.index(r["file"]))  # stable: file order within each file
    return rows


def select(rows: list[dict]) -> list[dict]:
    """Apply the quota rule; return the selected rows in pool order."""
    taken: dict[tuple[str, str], int] = {}
    chosen = []
    for row in rows:
        if row["flag"]:
            continue
        part, topics = row["part"], topics_of(row["categories"])
        if topics:
            wanted = any(taken.get((part, t), 0) < QUOTA[part] for t in topics)
        else:
            wanted = taken.get((part, ""), 0) < DISTRACTORS[part]
        if not wanted:
            continue
        for t in topics or [""]:
            taken[(part, t)] = taken.get((part, t), 0) + 1
        chosen.append(row)
    return chosen


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text or "").strip()


def main() -> None:
    rows = read_index()
    records = {}
    for line in (SOURCE / "records.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            records[rec["id"]] = rec
    chosen = select(rows)
    missing = [r["key"] for r in chosen if r["key"] not in records]
    if missing:
        raise SystemExit(f"records.jsonl lacks {len(missing)} chosen records: {missing}")
    papers, labels = [], {}
    for row in chosen:
        rec = records[row["key"]]
        path = FILES[row["file"]]
        papers.append(
            {
                "key": row["key"],
                "source": f"{REPO}:{path}",
                "sources": [
                    f"https://arxiv.org/abs/{row['key']}v1",
                    f"https://github.com/{REPO}/blob/{COMMIT}/{path}",
                ],
                "title": _clean(rec["title"]),
                "abstract": _clean(rec["abstract"]),
                "keywords": [],
                "categories": row["categories"],
                "authors": _clean(rec["authors"]),
                "date": row["date"],
                "part": row["part"],
            }
        )
        labels[row["key"]] = topics_of(row["categories"])
    (HERE / "papers.json").write_text(json.dumps(papers, indent=1, ensure_ascii=False) + "\n")
    body = ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in labels.items())
    (HERE / "labels.json").write_text("{\n" + body + "\n}\n")
    unused = sorted(set(records) - {r["key"] for r in chosen})
    print(f"{len(rows)} records in the pool, {len(papers)} chosen; unused texts: {unused}")


if __name__ == "__main__":
    main()
