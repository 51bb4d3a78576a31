"""The scheduling service on a controllable clock: due times, catch-up, leases, fetches."""

from __future__ import annotations

import dataclasses
import email
import email.policy
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from newsletter.core.app import App
from newsletter.core.errors import ConfigError
from newsletter.core.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    EditionKind,
    Frequency,
    Paper,
    Subscriber,
    Topic,
)
from newsletter.delivery.transports import make_transport
from newsletter.editions import schedule
from newsletter.papers.sources.registry import ScheduledSource
from newsletter.runners import tick as sch
from tests import factories as f
from tests.conftest import FIXTURES
from tests.feed_server import FeedServer, Reply
from tests.smtp_server import SmtpTestServer

NO_FETCH = schedule.ScheduleConfig(sources=())


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- slots and cut-offs -----------------------------------------------------------------------


def test_a_skipped_local_hour_is_delivered_an_hour_later_on_the_dst_day():
    berlin = ZoneInfo("Europe/Berlin")
    group = schedule.Group("Europe/Berlin", 2, Frequency.DAILY)
    # 2026-03-29 02:00 does not exist in Berlin: clocks jump from 02:00 CET to 03:00 CEST.
    assert schedule.last_slot(group, utc(2026, 3, 29, 12), berlin) == utc(2026, 3, 29, 1)
    assert schedule.last_slot(group, utc(2026, 3, 28, 12), berlin) == utc(2026, 3, 28, 1)
    assert schedule.last_slot(group, utc(2026, 3, 30, 12), berlin) == utc(2026, 3, 30, 0)


def test_a_weekly_slot_is_the_last_chosen_weekday_at_the_hour():
    group = schedule.Group("America/Los_Angeles", 9, Frequency.WEEKLY, weekly_day=0)
    la = ZoneInfo("America/Los_Angeles")
    # Monday 2026-03-30 09:00 PDT is 16:00 UTC; a minute before it, the previous Monday counts.
    assert schedule.last_slot(group, utc(2026, 3, 30, 16), la) == utc(2026, 3, 30, 16)
    assert schedule.last_slot(group, utc(2026, 3, 30, 15, 59), la) == utc(2026, 3, 23, 16)


@pytest.mark.parametrize(
    ("zone", "hour", "local_day", "listing"),
    [
        ("UTC", 8, date(2026, 3, 24), date(2026, 3, 24)),  # after the 06:00 fetch: today's
        ("Asia/Tokyo", 12, date(2026, 3, 24), date(2026, 3, 23)),  # 03:00 UTC: not fetched yet
        ("Pacific/Auckland", 8, date(2026, 3, 24), date(2026, 3, 23)),  # the previous evening
        ("America/Los_Angeles", 8, date(2026, 3, 24), date(2026, 3, 24)),
        ("Pacific/Honolulu", 22, date(2026, 3, 23), date(2026, 3, 23)),  # never a later date
    ],
)
def test_the_listing_cutoff_is_what_was_published_by_the_local_delivery_time(
    zone, hour, local_day, listing
):
    tz = ZoneInfo(zone)
    slot = datetime.combine(local_day, time(hour), tzinfo=tz).astimezone(UTC)
    assert schedule.listing_cutoff(slot, tz, time(6)) == listing


def test_the_schedule_comes_from_the_settings_with_defaults(settings):
    settings = dataclasses.replace(
        settings, scheduler_fetch_cron="30 7 * * *", scheduler_sources="hf, arxiv"
    )
    config = schedule.ScheduleConfig.from_settings(settings)
    assert [(s.name, s.source.name, s.categories) for s in config.sources] == [
        ("hf", "hf", ()), ("arxiv", "arxiv", ())  # no categories: the source's own
    ]  # fmt: skip
    assert config.listing_ready == time(7, 30)  # follows the fetch time
    assert config.staleness == timedelta(hours=12)
    ready = dataclasses.replace(settings, scheduler_listing_ready="05:45")
    assert schedule.ScheduleConfig.from_settings(ready).listing_ready == time(5, 45)
    with pytest.raises(ConfigError, match="setting scheduler_tick_seconds: expected a number"):
        dataclasses.replace(settings, scheduler_tick_seconds="soon")


# -- a simulated week -------------------------------------------------------------------------

START = utc(2026, 3, 23)  # Monday; Europe leaves winter time on Sunday 2026-03-29
END = utc(2026, 3, 31)
STEP = timedelta(minutes=15)
HOLIDAY = date(2026, 3, 25)  # no listing that day
LISTINGS = [d for d in (date(2026, 3, 21) + timedelta(days=i) for i in range(10)) if d != HOLIDAY]
DOWN = [  # the scheduler is not running (restarts at awkward moments)
    (utc(2026, 3, 24, 7, 50), utc(2026, 3, 24, 9, 40)),  # misses UTC 08:00: caught up late
    (utc(2026, 3, 26, 10), utc(2026, 3, 27, 0, 30)),  # 14.5 h: New York's 07:00 goes stale
]
SMTP_DOWN = utc(2026, 3, 28, 7)  # the mail server refuses this tick (Berlin's 08:00)
READERS = [
    # email, time zone, hour, frequency, weekday, topics
    ("utc@example.org", "UTC", 8, "daily", 0, ["llm"]),
    ("unset@example.org", "", 8, "daily", 0, ["rl"]),
    ("berlin-early@example.org", "Europe/Berlin", 2, "daily", 0, ["llm", "rl"]),
    ("berlin@example.org", "Europe/Berlin", 8, "daily", 0, ["rl"]),
    ("ny@example.org", "America/New_York", 7, "daily", 0, ["llm"]),
    ("tokyo@example.org", "Asia/Tokyo", 12, "daily", 0, ["llm", "rl"]),
    ("auckland@example.org", "Pacific/Auckland", 8, "daily", 0, ["llm"]),
    ("kolkata@example.org", "Asia/Kolkata", 17, "weekly", 4, ["llm", "rl"]),
    ("la@example.org", "America/Los_Angeles", 9, "weekly", 0, ["llm"]),
]


def _add_listing(app: App, day: date) -> None:
    """What the morning fetch stores: three papers, two topics."""
    with app.transaction() as s:
        topics = {t.slug: t for t in s.scalars(select(Topic))}
        n = day.toordinal()
        f.paper(s, f"LLM paper of {day}", day=day, topics={topics["llm"]: 2.0}, upvotes=n % 17)
        f.paper(s, f"RL paper of {day}", day=day, topics={topics["rl"]: 2.0}, upvotes=n % 13)
        both = {topics["llm"]: 1.5, topics["rl"]: 1.5}
        f.paper(s, f"Agents paper of {day}", day=day, topics=both, upvotes=n % 11)


def _readers(app: App) -> None:
    with app.transaction() as s:
        topics = {slug: f.topic(s, slug) for slug in ("llm", "rl")}
        for address, tz, hour, freq, weekday, slugs in READERS:
            sub = f.subscriber(s, address, [topics[x] for x in slugs], max_papers=3)
            sub.timezone, sub.delivery_hour = tz, hour
            sub.frequency, sub.weekly_day = Frequency(freq), weekday


def _ticks() -> list[datetime]:
    ticks, t = [], START
    while t < END:
        if not any(a <= t < b for a, b in DOWN):
            ticks.append(t)
        t += STEP
    return ticks


def _expected(reader: tuple, ticks: list[datetime]) -> dict[date, datetime]:
    """Independently: which listing each reader gets at which tick (a spec of the rules)."""
    address, tz, hour, freq, weekday, _ = reader
    zone = ZoneInfo(tz or "UTC")
    sending_ticks = [t for t in ticks if t != SMTP_DOWN]
    slots = []
    for offset in range(-2, 10):
        day = (START + timedelta(days=offset)).date()
        if freq == "weekly" and day.weekday() != weekday:
            continue
        slots.append((day, datetime.combine(day, time(hour), tzinfo=zone).astimezone(UTC)))
    got, handled = {}, set()
    for i, (day, slot) in enumerate(slots):
        tick = next((t for t in ticks if t >= slot), None)
        if tick is None or (i + 1 < len(slots) and slots[i + 1][1] <= tick):
            continue  # the scheduler never ran between this slot and the next one
        cutoff = min(day, (slot - timedelta(hours=6)).date())
        listing = max(d for d in LISTINGS if d <= cutoff)
        if freq == "weekly" and listing <= cutoff - timedelta(days=7):
            continue
        if listing in handled:
            continue
        handled.add(listing)
        if tick - slot > timedelta(hours=12):
            continue  # stale: skipped, and recorded as such
        got[listing] = next(t for t in sending_ticks if t >= tick)
    return got


def test_a_simulated_week_delivers_every_digest_once_at_the_local_hour(settings):
    settings = dataclasses.replace(settings, retry_base_seconds=0.01, retry_max_seconds=0.02)
    app = App(settings)
    _readers(app)
    for day in LISTINGS:
        if datetime.combine(day, time(6), tzinfo=UTC) < START:
            _add_listing(app, day)
    ticks = _ticks()
    arrivals: dict[str, list[datetime]] = defaultdict(list)
    with SmtpTestServer() as srv:
        app.settings = dataclasses.replace(settings, transport=srv.url)
        for tick in ticks:
            if tick.time() == time(6) and tick.date() in LISTINGS:
                _add_listing(app, tick.date())  # the morning fetch
            if any(tick - STEP < b <= tick for _, b in DOWN):
                app.close()
                app = App(app.settings)  # a restart: a new process state
            before = len(srv.messages)
            down = make_transport("smtp://127.0.0.1:1") if tick == SMTP_DOWN else None
            report = sch.run_due(app, tick, config=NO_FETCH, transport=down, fetch=False)
            assert (report.error is not None) == (tick == SMTP_DOWN)
            for message in srv.messages[before:]:
                arrivals[message.recipients[0]].append(tick)
    with app.sessions() as s:
        rows = s.execute(
            select(Subscriber.email, Edition.listing_date, Delivery.status, Delivery.paper_ids)
            .join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .join(Edition, Edition.id == Delivery.edition_id)
        ).all()
    app.close()
    sent = defaultdict(dict)
    for address, listing, status, _ in rows:
        if status == DeliveryStatus.SENT:
            sent[address][listing] = None
    for reader in READERS:
        expected = _expected(reader, ticks)
        address = reader[0]
        assert sorted(arrivals[address]) == sorted(expected.values()), address
        assert sorted(sent[address]) == sorted(expected), address
    # Every message once; the mail server saw exactly the sent rows.
    assert sum(len(v) for v in arrivals.values()) == sum(len(v) for v in sent.values())
    # Berlin's 08:00 moves from 07:00 to 06:00 UTC with the clocks.
    berlin = sorted(arrivals["berlin@example.org"])
    assert utc(2026, 3, 27, 7) in berlin and utc(2026, 3, 30, 6) in berlin
    assert utc(2026, 3, 28, 7, 15) in berlin  # the refused tick, sent on the next one
    assert utc(2026, 3, 24, 9, 45) in arrivals["utc@example.org"]  # caught up after a restart
    assert utc(2026, 3, 29, 1) in arrivals["berlin-early@example.org"]  # 02:00 skipped: 03:00
    stale = [r for r in rows if r[0] == "ny@example.org" and r[2] == DeliveryStatus.SKIPPED]
    assert date(2026, 3, 26) in {r[1] for r in stale}
    # Auckland's 08:00 is the previous UTC evening: never the listing fetched that morning.
    late = {START, utc(2026, 3, 27, 0, 30)}  # the first tick, the end of the long outage
    for t in set(arrivals["auckland@example.org"]) - late:
        assert t.astimezone(ZoneInfo("Pacific/Auckland")).hour == 8
    # No paper twice to anyone.
    papers = defaultdict(list)
    for address, _, _, ids in rows:
        papers[address] += ids or []
    for address, ids in papers.items():
        assert len(ids) == len(set(ids)), address


def test_a_weekly_digest_carries_the_weeks_best_papers_without_repeats(app):
    with app.transaction() as s:
        llm = f.topic(s, "llm")
        days = [date(2026, 3, 23) + timedelta(days=i) for i in range(5)]
        for i, day in enumerate(days):
            f.paper(s, f"Paper {i}", day=day, topics={llm: 2.0}, upvotes=10 * i)
        old = f.paper(s, "Last week's", day=date(2026, 3, 16), topics={llm: 2.0}, upvotes=999)
        reader = f.subscriber(s, "weekly@example.org", [llm], max_papers=3)
        reader.frequency, reader.weekly_day = Frequency.WEEKLY, 4  # Friday, 08:00 UTC
        # Wednesday's paper already reached them in a daily digest before they switched.
        daily = Edition(kind=EditionKind.DAILY, listing_date=days[2])
        s.add(daily)
        s.flush()
        wed = s.scalar(select(Paper.id).where(Paper.title == "Paper 2"))
        s.add(
            Delivery(edition_id=daily.id, subscriber_id=reader.id, status="sent", paper_ids=[wed])
        )
    with SmtpTestServer() as srv:
        app.settings = dataclasses.replace(app.settings, transport=srv.url)
        early = sch.run_due(app, utc(2026, 3, 27, 7, 59), config=NO_FETCH, fetch=False)
        report = sch.run_due(app, utc(2026, 3, 27, 8), config=NO_FETCH, fetch=False)
        again = sch.run_due(app, utc(2026, 3, 27, 9), config=NO_FETCH, fetch=False)
    assert (early.sent, report.sent, again.sent) == (0, 1, 0)
    msg = email.message_from_bytes(srv.messages[0].data, policy=email.policy.default)
    text = msg.get_body(preferencelist=("plain",)).get_content()
    assert "Paper 4" in text and "Paper 3" in text and "Paper 1" in text
    assert "Paper 2" not in text and old.title not in text
    with app.sessions() as s:
        sent = s.scalars(
            select(Edition.listing_date)
            .join(Delivery, Delivery.edition_id == Edition.id)
            .where(Edition.kind == EditionKind.WEEKLY, Delivery.status == DeliveryStatus.SENT)
        ).all()
    assert sent == [days[-1]]


def test_dry_run_lists_the_next_24_hours_and_writes_nothing(app):
    _readers(app)
    _add_listing(app, date(2026, 3, 23))
    now = utc(2026, 3, 23, 7, 30)
    with app.sessions() as s:
        before = s.scalar(select(func.count()).select_from(Delivery))
    plan = schedule.plan_next_24h(app, now, config=NO_FETCH)
    with app.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Delivery)) == before == 0
    by_reader = {r: p for p in plan for r in p.recipients}
    assert by_reader["utc@example.org"].at == utc(2026, 3, 23, 8)
    assert by_reader["utc@example.org"].available == date(2026, 3, 23)
    assert by_reader["tokyo@example.org"].at == utc(2026, 3, 24, 3)
    assert by_reader["la@example.org"].at == utc(2026, 3, 23, 16)
    assert by_reader["la@example.org"].kind == "weekly"
    assert "kolkata@example.org" not in by_reader  # Friday is more than a day away
    assert [p.at for p in plan] == sorted(p.at for p in plan)


# -- fetching ---------------------------------------------------------------------------------


def test_the_morning_fetch_stores_the_listing_once_and_a_holiday_is_normal(app):
    config = schedule.ScheduleConfig(sources=(ScheduledSource.of("hf"),), fetch_backoff_seconds=600)
    with FeedServer() as feed:
        feed.add("/api/daily_papers", Reply.file(FIXTURES / "hf_daily_papers_5.json"))
        app.settings = dataclasses.replace(app.settings, hf_url=feed.url, http_retries=1)
        assert sch.run_fetch(app, utc(2026, 3, 23, 5, 59), config=config, holder="a") == []
        first = sch.run_fetch(app, utc(2026, 3, 23, 6, 5), config=config, holder="a")
        again = sch.run_fetch(app, utc(2026, 3, 23, 6, 20), config=config, holder="b")
        asked = [r.param("date") for r in feed.requests]
    assert [(o.status, o.day) for o in first] == [("stored", date(2026, 3, 23))]
    assert again == [] and set(asked) == {"2026-03-23"}
    with app.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Paper)) == 5
    with FeedServer() as feed:
        feed.add("/api/daily_papers", Reply(body=b"[]"))
        app.settings = dataclasses.replace(app.settings, hf_url=feed.url)
        holiday = sch.run_fetch(app, utc(2026, 3, 24, 6), config=config, holder="a")
        later = sch.run_fetch(app, utc(2026, 3, 24, 9), config=config, holder="a")
    assert [o.status for o in holiday] == ["no listing"] and later == []


def test_a_failed_fetch_is_retried_with_a_growing_backoff(app):
    config = schedule.ScheduleConfig(sources=(ScheduledSource.of("hf"),), fetch_backoff_seconds=600)
    t0 = utc(2026, 3, 23, 6)
    with FeedServer() as feed:
        feed.add(
            "/api/daily_papers",
            Reply(status=503, body=b"down", content_type="text/plain"),
            Reply(status=503, body=b"down", content_type="text/plain"),
            Reply.file(FIXTURES / "hf_daily_papers_5.json"),
        )
        app.settings = dataclasses.replace(app.settings, hf_url=feed.url, http_retries=1)
        first = sch.run_fetch(app, t0, config=config, holder="a")
        assert first[0].status == "failed" and first[0].retry_at == t0 + timedelta(minutes=10)
        assert sch.run_fetch(app, t0 + timedelta(minutes=9), config=config, holder="a") == []
        second = sch.run_fetch(app, t0 + timedelta(minutes=10), config=config, holder="a")
        # The next wait is as long as the attempts so far took: the delay doubles.
        assert second[0].status == "failed"
        assert second[0].retry_at == t0 + timedelta(minutes=20)
        third = sch.run_fetch(app, t0 + timedelta(minutes=20), config=config, holder="a")
    assert third[0].status == "stored"
    assert Counter(o.status for o in first + second + third) == {"failed": 2, "stored": 1}


def test_a_tick_fetches_the_owed_listing_before_it_plans(app):
    config = schedule.ScheduleConfig(sources=(ScheduledSource.of("hf"),))
    with FeedServer() as feed:
        feed.add("/api/daily_papers", Reply.file(FIXTURES / "hf_daily_papers_5.json"))
        app.settings = dataclasses.replace(app.settings, hf_url=feed.url, http_retries=1)
        report = sch.run_due(app, utc(2026, 3, 23, 6, 5), config=config, holder="a")
        again = sch.run_due(app, utc(2026, 3, 23, 6, 10), config=config, holder="a")
    assert [(o.source, o.status) for o in report.fetched] == [("hf", "stored")]
    assert report.ok and again.fetched == [] and len(feed.requests) == 1
    assert "fetch hf 2026-03-23: stored" in report.line()
