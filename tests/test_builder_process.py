"""Building messages in a second process: the same messages, each sent once, whatever the
builder does."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import logging
import mailbox
import multiprocessing
import re
from functools import partial

import pytest
from sqlalchemy import select, update

from newsletter.core.models import Delivery, DeliveryStatus
from newsletter.delivery import service as sending
from newsletter.delivery.engine import SendOptions
from tests import builder_faults
from tests import factories as f

SUBSCRIBERS = 150
BATCH = 40  # four batches: the builder serves several, and a failure lands mid-run
BUILT_APART = "building messages in a process of their own"


@pytest.fixture
def crowd(app):
    """Three topics, six papers, 150 confirmed subscribers of one to three topics each."""
    with app.transaction() as s:
        llm, rl, bio = f.topic(s, "llm"), f.topic(s, "rl"), f.topic(s, "bio")
        f.paper(s, "Scaling laws for tiny models", topics={llm: 2.0}, upvotes=40)
        f.paper(s, "Instruction tuning revisited", topics={llm: 1.2}, upvotes=10)
        f.paper(s, "Policy gradients with a twist", topics={rl: 1.5}, upvotes=25)
        f.paper(s, "Agents that plan", topics={llm: 1.1, rl: 1.1}, upvotes=5)
        f.paper(s, "Protein folding at scale", topics={bio: 1.4}, upvotes=12)
        f.paper(s, "Gene regulatory networks", topics={bio: 1.2}, upvotes=3)
        f.bulk_subscribers(s, SUBSCRIBERS, [llm, rl, bio])
    return app


def _maildir(app, tmp_path, name):
    path = tmp_path / name
    app.settings = dataclasses.replace(app.settings, transport=f"maildir:{path}")
    return path


def _messages(path) -> dict[str, bytes]:
    """Each message of a Maildir by its recipient, without what depends on when it was built:
    the Date, the unique part of the Message-ID and the random MIME boundaries."""
    found = {}
    for raw in mailbox.Maildir(path, create=False):
        message = email.message_from_bytes(bytes(raw), policy=email.policy.default)
        recipient = message["To"].addresses[0].addr_spec
        assert recipient not in found, f"{recipient} got two messages"
        del message["Date"]
        token = message["Message-ID"].split(".", 1)[0]  # names the delivery; the rest is unique
        del message["Message-ID"]
        message["Message-ID"] = token
        found[recipient] = re.sub(rb"=_dpn_[0-9a-f]+", b"=_dpn_", message.as_bytes())
    return found


def _sender(app, *, build_process_from, factory=None):
    stats = sending.plan(app, f.DAY)
    options = SendOptions(batch_size=BATCH, build_process_from=build_process_from)
    sender = sending.edition_sender(app, stats.edition_id, options=options)
    if factory is not None:
        sender.build_apart = partial(factory, app.settings, stats.edition_id, "skip")
    sender.builder_wait = 60.0  # the run is short: let the first batch wait for the builder
    return sender


def _statuses(app) -> dict[DeliveryStatus, int]:
    with app.reading() as s:
        rows = s.scalars(select(Delivery.status)).all()
    return {status: rows.count(status) for status in set(rows)}


def _plan_again(app) -> None:
    """Make every row of the edition owed again, as planning left it."""
    with app.transaction() as s:
        s.execute(
            update(Delivery)
            .where(Delivery.status == DeliveryStatus.SENT)
            .values(status=DeliveryStatus.PENDING, attempts=0, sent_at=None, message_id=None,
                    paper_ids=None, last_reply=None, claimed_by=None, lease_until=None)
        )  # fmt: skip


def test_messages_built_in_a_second_process_are_the_ones_built_here(crowd, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="newsletter.delivery.engine")
    apart = _maildir(crowd, tmp_path, "apart")
    summary = _sender(crowd, build_process_from=1).run()
    assert BUILT_APART in caplog.text
    assert summary.sent == SUBSCRIBERS and summary.failed == 0 and summary.owed == 0

    _plan_again(crowd)
    caplog.clear()
    here = _maildir(crowd, tmp_path, "here")
    assert _sender(crowd, build_process_from=0).run().sent == SUBSCRIBERS
    assert BUILT_APART not in caplog.text

    built_apart, built_here = _messages(apart), _messages(here)
    assert len(built_apart) == SUBSCRIBERS
    assert built_apart == built_here
    assert not multiprocessing.active_children(), "the builder outlived its run"


def test_a_small_send_builds_its_messages_here(crowd, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="newsletter.delivery.engine")
    _maildir(crowd, tmp_path, "out")
    assert _sender(crowd, build_process_from=SUBSCRIBERS + 1).run().sent == SUBSCRIBERS
    assert BUILT_APART not in caplog.text


def test_a_builder_that_dies_leaves_the_rest_to_the_sender_each_sent_once(
    crowd, tmp_path, caplog
):
    out = _maildir(crowd, tmp_path, "out")
    sender = _sender(crowd, build_process_from=1, factory=builder_faults.dies_at_second_batch)
    summary = sender.run()
    assert "the builder process stopped" in caplog.text
    assert "building messages in the sending process" in caplog.text
    assert summary.sent == SUBSCRIBERS and summary.owed == 0
    assert len(_messages(out)) == SUBSCRIBERS  # every one once: _messages refuses a second
    assert _statuses(crowd) == {DeliveryStatus.SENT: SUBSCRIBERS}


def test_a_builder_that_cannot_load_says_why_and_the_sender_builds(crowd, tmp_path, caplog):
    out = _maildir(crowd, tmp_path, "out")
    sender = _sender(crowd, build_process_from=1, factory=builder_faults.raises_on_load)
    assert sender.run().sent == SUBSCRIBERS
    assert "RuntimeError: the selection could not be loaded" in caplog.text
    assert len(_messages(out)) == SUBSCRIBERS


def test_a_run_stopped_mid_batch_ends_its_builder_and_hands_back_the_rest(crowd, tmp_path):
    _maildir(crowd, tmp_path, "out")
    sender = _sender(crowd, build_process_from=1)
    sender.progress = lambda summary: sender.stop() if summary.sent >= 10 else None
    summary = sender.run()
    assert summary.stopped and 10 <= summary.sent < SUBSCRIBERS
    assert summary.owed == SUBSCRIBERS - summary.sent
    statuses = _statuses(crowd)
    assert statuses[DeliveryStatus.SENT] == summary.sent
    assert statuses[DeliveryStatus.PENDING] == summary.owed  # handed back, none left claimed
    assert not multiprocessing.active_children(), "the builder outlived its run"
