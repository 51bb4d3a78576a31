"""The deliverability guard: pauses on dead addresses or blocks, resumes, complaint holds."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from newsletter.bounces.mailboxes import MaildirSource
from newsletter.bounces.process import process_bounces
from newsletter.core.models import Delivery, DeliveryStatus, Edition, Subscriber
from newsletter.delivery import service as sending
from newsletter.delivery.engine import SendOptions
from newsletter.delivery.guard import Answers, GuardLimits, judge, window_full
from newsletter.editions.schedule import ScheduleConfig
from newsletter.runners import tick
from tests import factories as f
from tests.bounce_mail import make_maildir, returned
from tests.smtp_server import Fault, SmtpTestServer

DAY = f.DAY.isoformat()
BEFORE = f.DAY - timedelta(days=1)
READERS = 100
LIMITS = GuardLimits(window=100, address_failure_rate=0.05, block_rate=0.02)


# -- the decision over counts -----------------------------------------------------------------


def test_more_than_the_share_of_the_window_pauses_and_exactly_the_share_does_not():
    assert judge(Answers(100, 5, 0), 0, LIMITS) is None
    assert "6 address failures in 100 answers" in judge(Answers(100, 6, 0), 0, LIMITS)
    assert judge(Answers(100, 0, 2), 0, LIMITS) is None
    assert "3 policy blocks in 100 answers" in judge(Answers(100, 0, 3), 0, LIMITS)


def test_a_pause_comes_as_soon_as_the_window_can_no_longer_stay_under_the_limit():
    # 6 dead addresses among the first 8 answers of a list of 1000: the first 100 are lost.
    assert "more than 5% of the first 100" in judge(Answers(8, 6, 0), 992, LIMITS)
    assert judge(Answers(8, 5, 0), 992, LIMITS) is None


def test_a_smaller_edition_is_judged_over_all_its_answers():
    # 40 readers: 3 dead addresses are 7.5% of them, though far from 5% of a window of 100.
    assert "of the first 40" in judge(Answers(10, 3, 0), 30, LIMITS)
    assert judge(Answers(10, 2, 0), 30, LIMITS) is None


def test_the_decision_is_exact_where_floating_point_is_not():
    limits = GuardLimits(window=100, address_failure_rate=0.29)  # 0.29 * 100 == 28.999...
    assert judge(Answers(100, 29, 0), 0, limits) is None
    assert judge(Answers(100, 30, 0), 0, limits) is not None


def test_answers_since_a_resume_leave_out_what_came_before_and_the_window_then_fills():
    seen = Answers(130, 9, 1).since(Answers(30, 8, 2))
    assert seen == Answers(100, 1, 0)
    assert judge(seen, 0, LIMITS) is None and window_full(seen, LIMITS)
    assert not window_full(Answers(99, 0, 0), LIMITS)


# -- a real send over SMTP --------------------------------------------------------------------


def _readers(app, n: int = READERS) -> None:
    with app.transaction() as s:
        t = f.topic(s, "llm")
        f.paper(s, "A language model", topics={t: 2.0})
        f.paper(s, "Yesterday's model", day=BEFORE, topics={t: 2.0})
        f.bulk_subscribers(s, n, [t])


def _guard_config(tmp_path, **extra: object) -> None:
    values = {"guard_window": 100, "send_batch_size": 10, **extra}
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    (tmp_path / "newsletter.toml").write_text("\n".join(lines) + "\n")


def _refusing(app, reply: str, count: int) -> list[Fault]:
    """Refuse the first `count` readers in the order senders claim them (by delivery id)."""
    sending.plan(app, f.DAY)
    with app.sessions() as s:
        first = s.scalars(
            select(Subscriber.email)
            .join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .order_by(Delivery.id)
            .limit(count)
        ).all()
    return [Fault(reply=reply, recipient=email) for email in first]


def _statuses(app, day=f.DAY) -> Counter:
    with app.sessions() as s:
        rows = s.execute(
            select(Delivery.status, func.count())
            .join(Edition, Edition.id == Delivery.edition_id)
            .where(Edition.listing_date == day)
            .group_by(Delivery.status)
        ).all()
    return Counter({DeliveryStatus(status).value: n for status, n in rows})


def _status_json(run) -> dict:
    result = run("status", "--date", DAY, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_dead_addresses_among_the_first_answers_pause_the_send_until_resumed(app, run, tmp_path):
    _readers(app)
    _guard_config(tmp_path)
    with SmtpTestServer(faults=_refusing(app, "550 5.1.1 no such user", 10)) as srv:
        run.env["NEWSLETTER_TRANSPORT"] = srv.url
        first = run("send", "--yes", "--date", DAY)

        assert first.exit_code == 1
        assert "edition is paused" in first.output and "address failures" in first.output
        counts = _statuses(app)
        assert counts["pending"] > 0 and counts["sending"] == 0
        assert counts["sent"] + counts["failed"] < READERS
        guard = _status_json(run)["guard"]
        assert guard["paused"] and "address failures" in guard["reason"]
        assert guard["address_failures"] >= 6 and guard["address_failure_rate"] > 0.05
        assert "paused since" in run("status", "--date", DAY).output

        accepted = len(srv.messages)
        again = run("send", "--yes", "--date", DAY)
        assert again.exit_code == 1 and again.output.count("\n") == 1
        assert "is paused" in again.output and "--resume" in again.output
        assert len(srv.messages) == accepted and _statuses(app) == counts

        resumed = run("send", "--yes", "--resume", "--date", DAY)
        assert resumed.exit_code == 0, resumed.output
    final = _statuses(app)
    assert final["pending"] == final["sending"] == 0 and final["sent"] == READERS - 10
    received = srv.recipients()
    assert len(received) == len(set(received)) == READERS - 10
    assert not _status_json(run)["guard"]["paused"]


def test_policy_blocks_pause_the_send_and_resume_lifts_the_pause(app, run, tmp_path):
    _readers(app)
    _guard_config(tmp_path)
    with SmtpTestServer(faults=_refusing(app, "550 5.7.1 message refused by policy", 3)) as srv:
        run.env["NEWSLETTER_TRANSPORT"] = srv.url
        first = run("send", "--yes", "--date", DAY)
        assert first.exit_code == 1 and "3 policy blocks" in first.output
        assert _statuses(app)["pending"] > 0
        text = run("status", "--date", DAY).output
        assert "policy blocks" in text and "paused since" in text

        lifted = run("resume", "--date", DAY)
        assert lifted.exit_code == 0 and "resumed" in lifted.output
        assert run("send", "--yes", "--date", DAY).exit_code == 0
    assert _statuses(app) == Counter({"sent": READERS - 3, "failed": 3})
    guard = _status_json(run)["guard"]
    assert guard["resumed"] and guard["blocks"] == 0  # judged only after the resume


def test_a_worker_stops_claiming_a_paused_edition_and_resumes_after_the_word(app, run, tmp_path):
    _readers(app)
    _guard_config(tmp_path)
    faults = _refusing(app, "550 5.1.1 no such user", 10)
    assert run("plan", "--date", DAY).exit_code == 0  # already planned: plans nothing new
    with SmtpTestServer(faults=faults) as srv:
        run.env["NEWSLETTER_TRANSPORT"] = srv.url
        first = run("worker", "--once", "--poll", "0.1")
        assert first.exit_code == 0, first.output
        assert f"the {DAY} edition is paused" in first.output
        owed = _statuses(app)["pending"]
        assert owed > 0

        accepted = len(srv.messages)
        idle = run("worker", "--once", "--poll", "0.1")
        assert "sent 0" in idle.output and "is paused" in idle.output
        assert len(srv.messages) == accepted and _statuses(app)["pending"] == owed

        assert run("resume", "--date", DAY).exit_code == 0
        done = run("worker", "--once", "--poll", "0.1")
        assert done.exit_code == 0 and "paused" not in done.output
    final = _statuses(app)
    assert final["pending"] == 0 and final["sent"] == READERS - 10


def test_resume_of_an_unknown_or_unpaused_edition_is_one_line_exit_2(app, run):
    from tests.factories import dump_database

    _readers(app, 3)
    sending.plan(app, f.DAY)
    before = dump_database(app.engine)
    for args in (["--date", "2030-01-01"], ["--date", DAY]):
        result = run("resume", *args)
        assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "not paused" in result.output
    assert dump_database(app.engine) == before


# -- complaints about the last edition --------------------------------------------------------


def _complaints_about_yesterday(app, run, tmp_path, complaints: int) -> None:
    """Send yesterday's edition to every reader, then read complaints about some of them."""
    assert run("send", "--yes", "--date", BEFORE.isoformat()).exit_code == 0
    with app.sessions() as s:
        ids = s.scalars(select(Delivery.id).order_by(Delivery.id).limit(complaints)).all()
    box = tmp_path / "complaints"
    make_maildir(box, [returned(app, "arf_abuse.eml", i) for i in ids])
    process_bounces(app, MaildirSource(box))


def test_a_send_after_an_edition_with_too_many_complaints_needs_force(app, run, tmp_path):
    from tests.factories import dump_database

    _readers(app)
    _complaints_about_yesterday(app, run, tmp_path, complaints=3)  # 3% of 100, above 0.3%
    before = dump_database(app.engine)
    for command in ("send", "plan"):
        extra = ["--yes"] if command == "send" else []
        refused = run(command, *extra, "--date", DAY)
        assert refused.exit_code == 1 and refused.output.count("\n") == 1, refused.output
        assert "3 complaints in 100 messages (3.00%)" in refused.output
        assert "--force" in refused.output
    assert dump_database(app.engine) == before

    forced = run("send", "--yes", "--force", "--date", DAY)
    assert forced.exit_code == 0, forced.output
    assert _statuses(app) == Counter({"sent": READERS - 3})  # the complainers unsubscribed
    # The forced edition is now the last one: the next needs no force.
    assert run("send", "--yes", "--date", DAY).exit_code == 0


def test_complaints_at_the_limit_do_not_hold_the_next_edition(app, run, tmp_path):
    _readers(app)
    _guard_config(tmp_path, complaint_rate_limit=0.03)
    _complaints_about_yesterday(app, run, tmp_path, complaints=3)  # exactly 3%
    assert run("send", "--yes", "--date", DAY).exit_code == 0


def test_the_scheduler_tick_logs_a_complaint_hold_and_starts_nothing(app, run, tmp_path, caplog):
    _readers(app)
    _complaints_about_yesterday(app, run, tmp_path, complaints=3)
    now = datetime.combine(f.DAY, datetime.min.time(), tzinfo=UTC) + timedelta(hours=9)
    with caplog.at_level(logging.WARNING, logger="newsletter.runners.tick"):
        report = tick.run_due(app, now, config=ScheduleConfig(sources=()), fetch=False)
    assert report.held and "3 complaints in 100 messages" in report.held
    assert report.planned == report.sent == 0 and report.ok
    assert "held:" in report.line()
    assert any("no new edition starts" in r.getMessage() for r in caplog.records)
    assert _statuses(app) == Counter()


def test_the_scheduler_tick_leaves_a_paused_edition_alone(app, caplog):
    _readers(app, 40)
    limits = GuardLimits(window=100)
    with SmtpTestServer(faults=_refusing(app, "550 5.1.1 no such user", 5)) as srv:
        app.settings = dataclasses.replace(app.settings, transport=srv.url)
        options = SendOptions(batch_size=10, guard=limits)
        report = sending.send(app, f.DAY, options=options)
        assert report.summary.paused and report.summary.owed > 0
        accepted = len(srv.messages)
        now = datetime.combine(f.DAY, datetime.min.time(), tzinfo=UTC) + timedelta(hours=9)
        with caplog.at_level(logging.WARNING, logger="newsletter.runners.tick"):
            ticked = tick.run_due(app, now, config=ScheduleConfig(sources=()), fetch=False)
    assert ticked.sent == 0 and ticked.ok and len(srv.messages) == accepted
    assert any("is paused" in line for line in ticked.paused)
    assert any("is paused" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("rate", [0.0, 1.5])
def test_guard_rates_out_of_range_are_refused(rate):
    from newsletter.core.config import load_settings
    from newsletter.core.errors import ConfigError

    with pytest.raises(ConfigError, match="guard_block_rate"):
        load_settings(env={}, guard_block_rate=rate, secret_key="k" * 32)
