"""Returned-mail benchmark: what `bounces process` does with real bounces of many mail systems.

Usage: python benchmarks/bounces.py [--corpus NAME ...] [--details]

Each corpus is a folder of tests/fixtures/bounces/ with a `labels.tsv` (file, failed address,
label, what the source project's tests expect); the repository's own samples are the folder
itself. Every labelled address is sent a digest (a subscriber and a sent delivery), its copy
of the sample arrives at that delivery's signed return path, and one run of the real
processing reads them all. Labels: hard (the address does not exist), soft or policy (mailbox
full, a delay, a block: must never suppress), complaint, permanent or temporary (flufl.bounce
and baunsu say only that), none (not a bounce: must change nothing).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsletter.bounces.classify import verp_token  # noqa: E402
from newsletter.bounces.mailboxes import Returned  # noqa: E402
from newsletter.bounces.process import process_bounces  # noqa: E402
from newsletter.core.app import App  # noqa: E402
from newsletter.core.config import load_settings  # noqa: E402
from newsletter.core.models import (  # noqa: E402
    BounceEvent,
    Delivery,
    Edition,
    Subscriber,
    SubscriberStatus,
    utcnow,
)

ROOT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "bounces"
CORPORA = {"repository": ROOT, "flufl": ROOT / "flufl", "baunsu": ROOT / "baunsu",
           "bounced": ROOT / "bounced", "bounceparser": ROOT / "bounceparser"}  # fmt: skip
DOMAIN = "news.example.test"
NOT_A_BOUNCE = "none"


@dataclass(frozen=True)
class Case:
    file: str
    address: str
    label: str


@dataclass
class Outcome:
    case: Case
    acted: str  # "suppressed", "unsubscribed" or ""
    reason: str
    error: str = ""


@dataclass
class _Source:
    """The samples as they arrive, one per labelled address, in the shape of a source."""

    items: list[Returned]
    name: str = "benchmark"
    left: int = 0
    kept: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def messages(self) -> Iterator[Returned]:
        yield from self.items

    def finish(self, processed: list[str], kept: list[str]) -> dict[str, str]:
        return {}

    def close(self) -> None:
        pass


def read_labels(folder: Path) -> list[Case]:
    """Read a corpus's labels.tsv; a row without an address is a message that is no bounce."""
    cases = []
    for line in (folder / "labels.tsv").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        file, address, label, *_ = line.split("\t")
        cases.append(Case(file, address, label))
    return cases


def batches(cases: list[Case]) -> list[list[Case]]:
    """Group the cases so that no address occurs twice in a group (one subscriber each)."""
    groups: list[tuple[set[str], list[Case]]] = []
    for index, case in enumerate(cases):
        key = (case.address or f"none{index}@example.invalid").lower()
        group = next((g for g in groups if key not in g[0]), None)
        if group is None:
            group = (set(), [])
            groups.append(group)
        group[0].add(key)
        group[1].append(case)
    return [g[1] for g in groups]


def run_batch(template: Path, work: Path, folder: Path, cases: list[Case]) -> list[Outcome]:
    """Send each case's address a digest, return the samples to them, and read the outcome."""
    db = work / "batch.db"
    shutil.copyfile(template, db)
    settings = load_settings(
        env={}, database_url=f"sqlite:///{db}", secret_key="benchmark-key-of-at-least-32-bytes",
        from_address=f"Daily Papers <papers@{DOMAIN}>", bounce_domain=DOMAIN,
        var_dir=str(work), transport=f"maildir:{work / 'outbox'}",
    )  # fmt: skip
    app = App(settings)
    try:
        ids = _deliveries(app, cases)
        items = []
        for (case, delivery_id), index in zip(ids, range(len(ids)), strict=True):
            token = verp_token(settings, delivery_id).encode()
            data = (folder / case.file).read_bytes()
            arrival = b"Delivered-To: bounces+" + token + b"@" + DOMAIN.encode() + b"\n"
            items.append(Returned(str(index), arrival + data))
        run = process_bounces(app, _Source(items))
        errors = {o.ref: o.detail for o in run.outcomes if o.detail.startswith("could not be read")}
        return [_outcome(app, case, delivery_id, errors.get(str(i), ""))
                for i, (case, delivery_id) in enumerate(ids)]  # fmt: skip
    finally:
        app.close()


def _deliveries(app: App, cases: list[Case]) -> list[tuple[Case, int]]:
    with app.transaction() as s:
        edition = Edition(listing_date=utcnow().date())
        s.add(edition)
        s.flush()
        ids = []
        for index, case in enumerate(cases):
            email = case.address or f"none{index}@example.invalid"
            sub = Subscriber(email=email, name="", status=SubscriberStatus.CONFIRMED,
                             timezone="UTC", delivery_hour=8, link_key=f"k{index}")  # fmt: skip
            s.add(sub)
            s.flush()
            row = Delivery(edition_id=edition.id, subscriber_id=sub.id, status="sent",
                           sent_at=utcnow())  # fmt: skip
            s.add(row)
            s.flush()
            ids.append((case, row.id))
    return ids


def _outcome(app: App, case: Case, delivery_id: int, error: str) -> Outcome:
    with app.sessions() as s:
        status = s.scalar(
            select(Subscriber.status).join(Delivery).where(Delivery.id == delivery_id)
        )
        reason = s.scalar(select(BounceEvent.reason).where(BounceEvent.delivery_id == delivery_id))
    acted = {SubscriberStatus.BOUNCED: "suppressed", SubscriberStatus.UNSUBSCRIBED: "unsubscribed"}
    return Outcome(case, acted.get(status, ""), reason or "-", error)


def evaluate(name: str, folder: Path, template: Path) -> list[Outcome]:
    outcomes = []
    with tempfile.TemporaryDirectory() as tmp:
        for group in batches(read_labels(folder)):
            outcomes.extend(run_batch(template, Path(tmp), folder, group))
    return outcomes


def summary(outcomes: list[Outcome]) -> dict[str, str]:
    """Count, per label, how many the processing acted on as it should."""
    by_label: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by_label[o.case.label].append(o)

    def share(label: str, acted: str) -> str:
        rows = by_label.get(label, [])
        done = sum(1 for o in rows if o.acted == acted)
        return f"{done}/{len(rows)} ({done / len(rows):.0%})" if rows else "-"

    soft_policy = by_label.get("soft", []) + by_label.get("policy", [])
    wrong = sum(1 for o in soft_policy if o.acted)
    return {
        "hard found": share("hard", "suppressed"),
        "soft/policy wrongly suppressed": (
            f"{wrong}/{len(soft_policy)} ({wrong / len(soft_policy):.0%})" if soft_policy else "-"
        ),
        "complaints acted on": share("complaint", "unsubscribed"),
        "permanent (per source) suppressed": share("permanent", "suppressed"),
        "temporary (per source) suppressed": share("temporary", "suppressed"),
        "non-bounces acted on": str(sum(1 for o in by_label.get(NOT_A_BOUNCE, []) if o.acted)),
        "could not be read": str(sum(1 for o in outcomes if o.error)),
    }


def migrated_template(folder: Path) -> Path:
    path = folder / "template.db"
    app = App(load_settings(env={}, database_url=f"sqlite:///{path}", secret_key="k" * 32))
    app.ensure_schema()
    app.close()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", action="append", choices=sorted(CORPORA))
    parser.add_argument("--details", action="store_true", help="list every case not as labelled")
    args = parser.parse_args()
    names = args.corpus or [n for n, p in CORPORA.items() if (p / "labels.tsv").exists()]
    with tempfile.TemporaryDirectory() as tmp:
        template = migrated_template(Path(tmp))
        results = {name: evaluate(name, CORPORA[name], template) for name in names}
    columns = list(summary([]).keys())
    print("| corpus | addresses | " + " | ".join(columns) + " |")
    print("|---|---:|" + "---:|" * len(columns))
    for name, outcomes in results.items():
        row = summary(outcomes)
        print(f"| {name} | {len(outcomes)} | " + " | ".join(row[c] for c in columns) + " |")
    for name, outcomes in results.items():
        missed = Counter(o.reason for o in outcomes if o.case.label == "permanent" and not o.acted)
        if missed:
            print(f"{name}: permanent not suppressed, by reason: {dict(missed.most_common())}")
    if args.details:
        for name, outcomes in results.items():
            for o in outcomes:
                expected = {"hard": "suppressed", "permanent": "suppressed",
                            "complaint": "unsubscribed"}.get(o.case.label, "")  # fmt: skip
                if o.acted != expected or o.error:
                    print(f"{name}\t{o.case.file}\t{o.case.address}\t{o.case.label}\t"
                          f"{o.acted or 'nothing'}\t{o.reason}\t{o.error}")  # fmt: skip


if __name__ == "__main__":
    main()
