"""The delivery store: what is owed, claiming, heartbeats, hand-backs and guarded recording."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from newsletter.core import deliveries
from newsletter.core.models import Delivery, DeliveryStatus, utcnow
from newsletter.delivery import service as sending
from newsletter.delivery.drain import owed_editions
from tests import factories as f

HOST = socket.gethostname()
NOW_PLUS = timedelta(minutes=5)
STATES = {
    # name: (status, next attempt in seconds from now or None, lease in seconds or None)
    "pending": ("pending", None, None),
    "pending-due": ("pending", -1, None),
    "pending-later": ("pending", 300, None),
    "sending-live": ("sending", None, 300),
    "sending-lapsed": ("sending", None, -1),
    "sent": ("sent", None, None),
    "failed": ("failed", None, None),
    "skipped": ("skipped", None, None),
}
OWED = {"pending", "pending-due", "sending-lapsed"}


def _edition(app, names) -> int:  # noqa: ANN001
    """Plan an edition with one row per name (subscriber `name@example.org`); return its id."""
    with app.transaction() as s:
        t = f.topic(s, "llm")
        f.paper(s, "A language model", topics={t: 2.0})
        for name in names:
            f.subscriber(s, f"{name}@example.org", [t])
    return sending.plan(app, f.DAY).edition_id


def _ids(app) -> dict[str, int]:  # noqa: ANN001
    with app.sessions() as s:
        return {d.subscriber.email.partition("@")[0]: d.id for d in s.scalars(select(Delivery))}


def _by_name(app, column: str) -> dict[str, object]:  # noqa: ANN001
    """Return one column of every row, by the name of its subscriber."""
    with app.sessions() as s:
        rows = s.scalars(select(Delivery))
        return {d.subscriber.email.partition("@")[0]: getattr(d, column) for d in rows}


def _set(app, delivery_id: int, **values) -> None:  # noqa: ANN001, ANN003
    with app.transaction() as s:
        s.execute(update(Delivery).where(Delivery.id == delivery_id).values(**values))


def _in_states(app) -> dict[str, int]:  # noqa: ANN001
    """Plan one row per entry of STATES and put each into its state."""
    _edition(app, STATES)
    ids = _ids(app)
    now = utcnow()
    for name, (status, next_in, lease_in) in STATES.items():
        _set(
            app,
            ids[name],
            status=status,
            next_attempt_at=None if next_in is None else now + timedelta(seconds=next_in),
            lease_until=None if lease_in is None else now + timedelta(seconds=lease_in),
            claimed_by="elsewhere:1" if status == "sending" else None,
        )
    return ids


def test_a_row_is_owed_when_pending_and_due_or_sending_under_a_lapsed_claim(app):
    ids = _in_states(app)
    with app.engine.connect() as conn:
        owed = set(conn.scalars(select(Delivery.id).where(deliveries.owed_clause(utcnow()))))
    assert owed == {ids[name] for name in OWED}


def test_a_claim_takes_exactly_the_owed_rows(app):
    ids = _in_states(app)
    with app.engine.begin() as conn:
        claimed = deliveries.claim_deliveries(conn, 1, worker="me:1", limit=100, lease_seconds=60)
    assert {c[0] for c in claimed} == {ids[name] for name in OWED}
    with app.sessions() as s:
        mine = s.scalars(select(Delivery).where(Delivery.claimed_by == "me:1")).all()
    assert all(d.status == DeliveryStatus.SENDING for d in mine)
    assert all(utcnow() < d.lease_until <= utcnow() + timedelta(seconds=61) for d in mine)


def test_an_edition_owes_rows_once_a_live_claim_runs_out(app):
    ids = _in_states(app)
    for name in OWED:  # leave only the row being sent under a live claim
        _set(app, ids[name], status="sent", lease_until=None)
    assert owed_editions(app) == []

    _set(app, ids["sending-live"], lease_until=utcnow() - timedelta(seconds=1))
    assert owed_editions(app) == [1]


def test_claimed_rows_are_named_and_carry_their_subscriber(app):
    _edition(app, ["ada"])
    with app.engine.begin() as conn:
        claimed = deliveries.claim_deliveries(conn, 1, worker="me:1", limit=10, lease_seconds=60)
        [row], missing = deliveries.load_claimed(conn, claimed)
    assert missing == []
    assert isinstance(row, deliveries.ClaimedDelivery)
    assert (row.email, row.attempts, row.max_papers, len(row.topic_ids)) == (
        "ada@example.org",
        1,
        10,
        1,
    )
    assert row.key == claimed[0][0] and row.link_key


def test_a_heartbeat_renews_only_the_rows_its_worker_is_sending(app):
    _edition(app, ["mine", "theirs", "done"])
    ids = _ids(app)
    soon = utcnow() + timedelta(seconds=5)
    _set(app, ids["mine"], status="sending", claimed_by="me:1", lease_until=soon)
    _set(app, ids["theirs"], status="sending", claimed_by="them:1", lease_until=soon)
    _set(app, ids["done"], status="sent", claimed_by="me:1", lease_until=None)
    with app.engine.begin() as conn:
        assert deliveries.renew_claims(conn, worker="me:1", lease_seconds=60) == {ids["mine"]}
    leases = _by_name(app, "lease_until")
    assert leases["mine"] > utcnow() + timedelta(seconds=50)
    assert leases["theirs"] < utcnow() + timedelta(seconds=6) and leases["done"] is None


def _exited_pid() -> int:
    """Return the pid of a process that ran, exited and was reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_rows_of_dead_and_zombie_senders_of_this_host_come_back_and_no_others(app):
    zombie = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        zombie.kill()
        _wait_for_zombie(zombie.pid)
        dead = _exited_pid()
        holders = {
            "dead": f"{HOST}:{dead}",
            "zombie": f"{HOST}:{zombie.pid}",
            "alive": f"{HOST}:{os.getpid()}",
            "remote": f"elsewhere:{dead}",
        }
        _edition(app, holders)
        ids = _ids(app)
        later = utcnow() + NOW_PLUS
        for name, holder in holders.items():
            _set(app, ids[name], status="sending", claimed_by=holder, lease_until=later)
        with app.engine.begin() as conn:
            assert deliveries.release_dead_claims(conn, here=HOST) == 2
    finally:
        zombie.wait()
    with app.sessions() as s:
        status = {
            d.subscriber.email.partition("@")[0]: d.status for d in s.scalars(select(Delivery))
        }
    assert status == {
        "dead": "pending",
        "zombie": "pending",
        "alive": "sending",
        "remote": "sending",
    }


def _wait_for_zombie(pid: int) -> None:
    stat = f"/proc/{pid}/stat"
    if not os.path.exists(stat):
        pytest.skip("no /proc here: zombies cannot be told from live processes")
    deadline = time.monotonic() + 10
    while Path(stat).read_text().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline, "the killed child never became a zombie"
        time.sleep(0.01)
    os.kill(pid, 0)  # a zombie still answers: that is why the state is read


def test_replies_are_recorded_only_for_rows_the_worker_still_holds(app):
    _edition(app, ["kept", "taken"])
    ids = _ids(app)
    with app.engine.begin() as conn:
        deliveries.claim_deliveries(conn, 1, worker="me:1", limit=10, lease_seconds=60)
    _set(app, ids["taken"], claimed_by="them:1")  # taken over after our claim lapsed
    params = [
        {"b_id": ids[name], "b_worker": "me:1", "b_reply": "550 no", "b_now": utcnow()}
        for name in ("kept", "taken")
    ]
    with app.engine.begin() as conn:
        deliveries.record_results(conn, sent=[], failed=params, retry=[], skipped=[])
    assert _by_name(app, "status") == {"kept": "failed", "taken": "sending"}
