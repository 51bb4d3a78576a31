"""Returned mail for the bounce tests: samples, sent deliveries they are about, and lookups."""

from __future__ import annotations

import mailbox
import re
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from newsletter.bounces.classify import verp_token
from newsletter.bounces.signing import delivery_message_id
from newsletter.core.app import App
from newsletter.core.models import Delivery, Edition, Subscriber, Suppression, utcnow
from tests import factories as f
from tests.conftest import FIXTURES

BOUNCES = FIXTURES / "bounces"
# Each sample and the subscriber it is about.
SAMPLES = {
    "postfix_hard.eml": "gone@example.org",
    "postfix_delayed.eml": "slow@example.net",
    "exim_dsn_hard.eml": "closed@example.com",
    "exim_text_hard.eml": "nobody@example.com",
    "exim_text_delayed.eml": "later@example.com",
    "gmail_hard.eml": "no.such.reader@gmail.example",
    "microsoft_hard.eml": "absent@outlook.example",
    "arf_abuse.eml": "angry@example.net",
    "auto_reply.eml": "away@example.com",
    "human_reply.eml": "curious@example.org",
}
# The addresses that do not exist; closed@example.com's mailbox is only disabled (soft).
HARD = {"gone@example.org", "nobody@example.com"} | {
    "no.such.reader@gmail.example",
    "absent@outlook.example",
}


def add_sent_deliveries(app: App, *, sent_at: datetime | None = None) -> dict[str, int]:
    """Send one edition to each sample's subscriber and a happy reader; return delivery ids."""
    with app.transaction() as s:
        topic = f.topic(s, "llm")
        edition = Edition(listing_date=f.DAY)
        s.add(edition)
        s.flush()
        ids = {}
        for email in [*SAMPLES.values(), "happy@example.com"]:
            sub = f.subscriber(s, email, [topic])
            delivery = Delivery(
                edition_id=edition.id,
                subscriber_id=sub.id,
                status="sent",
                sent_at=sent_at or utcnow(),
            )
            s.add(delivery)
            s.flush()
            ids[email] = delivery.id
    return ids


def returned(app: App, name: str, delivery_id: int | None) -> bytes:
    """Read a sample, addressed to the signed return path of one delivery."""
    token = verp_token(app.settings, delivery_id) if delivery_id else "none"
    return (BOUNCES / name).read_bytes().replace(b"VERPTOKEN", token.encode())


def unsigned(name: str, about: str) -> bytes:
    """Read a sample sent to the bare bounce address, naming `about` instead of its reader."""
    data = (BOUNCES / name).read_bytes().replace(b"bounces+VERPTOKEN@", b"bounces@")
    return data.replace(SAMPLES[name].encode(), about.encode()) if name in SAMPLES else data


def quoting(app: App, name: str, delivery_id: int, about: str | None = None) -> bytes:
    """Read a sample sent to the bare bounce address, its original quoting the Message-ID
    of one delivery (and naming `about` instead of its reader, if given)."""
    data = unsigned(name, about) if about else unsigned(name, SAMPLES.get(name, ""))
    message_id = delivery_message_id(app.settings, delivery_id).encode()
    quoted = re.sub(rb"<[0-9a-f]{32}@news\.example\.test>", message_id, data)
    assert quoted != data, f"{name} quotes no Message-ID"
    return quoted


def statuses(app: App) -> dict[str, str]:
    with app.sessions() as s:
        return {sub.email: sub.status.value for sub in s.scalars(select(Subscriber))}


def suppression_reasons(app: App) -> dict[str, str]:
    with app.sessions() as s:
        return {row.email: row.reason for row in s.scalars(select(Suppression))}


def make_maildir(path: Path, messages: list[bytes]) -> mailbox.Maildir:
    box = mailbox.Maildir(path, create=True)
    for data in messages:
        box.add(data)
    return box
