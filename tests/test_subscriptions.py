"""The self-service subscription service: sign-up, confirm, preferences, unsubscribe, GDPR."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import mailbox
from datetime import timedelta

import pytest
from sqlalchemy import select

from newsletter.audience import signup as svc
from newsletter.content.notices import Notice, build_notice
from newsletter.core.errors import InputError, NotFound
from newsletter.core.models import (
    Delivery,
    DeliveryStatus,
    Frequency,
    RateLimit,
    Subscriber,
    SubscriberStatus,
    Suppression,
    utcnow,
)
from newsletter.delivery import service as sending
from tests import factories as f

CONSENT = svc.ConsentRecord(ip="192.0.2.7", user_agent="TestBrowser/1.0", text="I agree.")


@pytest.fixture
def topics(app):
    with app.transaction() as s:
        return {t.slug: t.id for t in (f.topic(s, "llm"), f.topic(s, "rl"), f.topic(s, "bio"))}


def _prefs(topics, *slugs, **kw):
    return svc.Preferences(topic_ids=tuple(topics[s] for s in slugs), **kw)


def _subscribe(app, address, prefs, consent=CONSENT, now=None):
    with app.transaction() as s:
        return svc.subscribe(address, prefs, consent, session=s, settings=app.settings, now=now)


def _get(app, address):
    with app.sessions() as s:
        sub = s.scalar(select(Subscriber).where(Subscriber.email == address))
        if sub is not None:
            sub.topic_slugs = sorted(x.topic.slug for x in sub.subscriptions)
        return sub


def test_subscribe_stores_a_pending_subscriber_with_the_consent_record(app, topics):
    notice = _subscribe(app, "ada@example.org", _prefs(topics, "llm", "rl", hour=7, name="Ada"))
    assert notice is not None and notice.kind == "confirm"
    sub = _get(app, "ada@example.org")
    assert sub.status == SubscriberStatus.PENDING and sub.confirmed_at is None
    assert sub.topic_slugs == ["llm", "rl"] and sub.delivery_hour == 7 and sub.name == "Ada"
    assert sub.consent_source == "web" and sub.confirmation_sent_at is not None
    assert sub.consent["ip"] == "192.0.2.7"
    assert sub.consent["user_agent"] == "TestBrowser/1.0"
    assert sub.consent["form_version"] == svc.FORM_VERSION
    assert sub.consent["text"] == "I agree." and sub.consent["recorded_at"]


def test_a_confirmed_subscriber_gets_a_manage_email_and_keeps_their_choices(app, topics):
    with app.transaction() as s:
        sid = svc.subscribe(
            "ada@example.org", _prefs(topics, "llm"), CONSENT, session=s, settings=app.settings
        ).subscriber_id
        svc.confirm(sid, session=s)
    later = utcnow() + timedelta(minutes=11)
    notice = _subscribe(app, "ADA@example.org", _prefs(topics, "bio"), now=later)
    assert notice is not None and notice.kind == "manage" and notice.subscriber_id == sid
    sub = _get(app, "ada@example.org")
    assert sub.status == SubscriberStatus.CONFIRMED and sub.topic_slugs == ["llm"]


def test_one_email_per_address_per_ten_minutes(app, topics):
    now = utcnow()
    assert _subscribe(app, "ada@example.org", _prefs(topics, "llm"), now=now)
    assert (
        _subscribe(app, "ada@example.org", _prefs(topics, "llm"), now=now + timedelta(minutes=9))
        is None
    )
    again = _subscribe(
        app, "ada@example.org", _prefs(topics, "rl"), now=now + timedelta(minutes=10)
    )
    assert again is not None and again.kind == "confirm"
    # Unconfirmed choices wait in the history; the newest applies when confirmed.
    assert _get(app, "ada@example.org").topic_slugs == ["llm"]
    with app.transaction() as s:
        svc.confirm(again.subscriber_id, session=s)
    assert _get(app, "ada@example.org").topic_slugs == ["rl"]


def _request(app, address, consent=CONSENT, now=None):
    with app.transaction() as s:
        prefs = svc.Preferences(topic_ids=())
        return svc.request_signup(
            address, prefs, consent, session=s, settings=app.settings, now=now
        )


def test_the_per_ip_limit_refuses_further_sign_ups_for_an_hour(app, topics):
    app.settings = dataclasses.replace(app.settings, subscribe_per_ip_per_hour=2)
    now = utcnow()
    _request(app, "a@example.org", now=now)
    _request(app, "b@example.org", now=now)
    with pytest.raises(svc.RateLimited):
        _request(app, "c@example.org", now=now)
    other = dataclasses.replace(CONSENT, ip="198.51.100.1")
    assert _request(app, "c@example.org", consent=other, now=now)
    assert _request(app, "d@example.org", now=now + timedelta(hours=1))
    with app.sessions() as s:
        keys = list(s.scalars(select(RateLimit.key)))
    assert keys and not any("192.0.2.7" in k or "example.org" in k for k in keys)


def test_ipv6_visitors_are_limited_by_their_64_network(app, topics):
    app.settings = dataclasses.replace(app.settings, subscribe_per_ip_per_hour=2)
    now = utcnow()
    for host in ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9"):
        _request(app, f"{host[-1]}@example.org", dataclasses.replace(CONSENT, ip=host), now)
    with pytest.raises(svc.RateLimited):
        _request(app, "x@example.org", dataclasses.replace(CONSENT, ip="2001:db8:1:2::77"), now)
    assert _request(app, "y@example.org", dataclasses.replace(CONSENT, ip="2001:db8:1:3::1"), now)
    assert svc.network_of("2001:db8:1:2:abcd::1") == "2001:db8:1:2::/64"
    assert svc.network_of("::ffff:192.0.2.1") == "192.0.2.1"
    assert svc.network_of("192.0.2.1") == "192.0.2.1"


def test_a_sign_up_never_rewrites_an_opt_out(app, topics):
    """A stranger typing an unsubscribed address changes nothing until the owner confirms."""
    first = _subscribe(app, "ada@example.org", _prefs(topics, "llm", name="Ada"))
    with app.transaction() as s:
        svc.confirm(first.subscriber_id, session=s)
        svc.unsubscribe(first.subscriber_id, session=s)
    opted_out = _get(app, "ada@example.org")
    later = utcnow() + timedelta(minutes=11)
    stranger = dataclasses.replace(CONSENT, ip="203.0.113.66")
    notice = _subscribe(app, "ada@example.org", _prefs(topics, "bio", name="Evil"), stranger, later)
    assert notice.kind == "confirm" and notice.name == ""  # the typed name is not echoed
    sub = _get(app, "ada@example.org")
    assert sub.status == SubscriberStatus.UNSUBSCRIBED
    assert sub.unsubscribed_at == opted_out.unsubscribed_at and sub.name == "Ada"
    assert sub.topic_slugs == ["llm"] and sub.link_key == opted_out.link_key
    with app.sessions() as s:
        history = [(e.kind, e.ip) for e in s.get(Subscriber, sub.id).consent_events]
    assert history == [
        ("signup", "192.0.2.7"),
        ("confirm", ""),
        ("unsubscribe", ""),
        ("signup", "203.0.113.66"),
    ]
    with app.transaction() as s:  # the owner clicks the link: subscribed again, new links
        svc.confirm(sub.id, session=s)
    back = _get(app, "ada@example.org")
    assert back.status == SubscriberStatus.CONFIRMED and back.topic_slugs == ["bio"]
    assert back.link_key != opted_out.link_key


def test_a_suppressed_address_rejoins_only_by_confirming(app, topics):
    with app.transaction() as s:
        s.add(Suppression(email="gone@example.org", reason="hard bounce"))
    notice = _subscribe(app, "Gone@example.org", _prefs(topics, "llm"))
    assert notice is not None and notice.kind == "confirm" and notice.signup_id
    assert _get(app, "Gone@example.org").status == SubscriberStatus.PENDING
    with app.sessions() as s:
        assert s.scalar(select(Suppression)) is not None  # a sign-up alone lifts nothing
    with app.transaction() as s:
        svc.confirm(notice.subscriber_id, signup_id=notice.signup_id, session=s)
    with app.sessions() as s:
        assert s.scalar(select(Suppression)) is None
        events = s.get(Subscriber, notice.subscriber_id).consent_events
        assert [e.kind for e in events] == ["signup", "confirm", "unsuppress"]
        assert events[-1].details == {"reason": "hard bounce", "signup": notice.signup_id}


def test_confirm_is_idempotent_and_refuses_after_unsubscribe(app, topics):
    sid = _subscribe(app, "ada@example.org", _prefs(topics, "llm")).subscriber_id
    with app.transaction() as s:
        first = svc.confirm(sid, session=s).confirmed_at
        assert svc.confirm(sid, session=s).confirmed_at == first
        assert s.get(Subscriber, sid).consent["confirmed_at"] == first.isoformat()
        svc.unsubscribe(sid, session=s)
        with pytest.raises(InputError, match="subscribe again"):
            svc.confirm(sid, session=s)
    with app.transaction() as s, pytest.raises(NotFound):
        svc.confirm(sid + 100, session=s)


def test_update_preferences_replaces_topics_and_delivery_choices(app, topics):
    sid = _subscribe(app, "ada@example.org", _prefs(topics, "llm")).subscriber_id
    prefs = _prefs(
        topics,
        "rl",
        "bio",
        frequency=Frequency.WEEKLY,
        weekly_day=4,
        hour=21,
        timezone="Asia/Tokyo",
        max_papers=3,
        paused=True,
    )
    with app.transaction() as s:
        svc.update_preferences(sid, prefs, session=s)
    sub = _get(app, "ada@example.org")
    assert sub.topic_slugs == ["bio", "rl"] and sub.frequency == Frequency.WEEKLY
    assert (sub.weekly_day, sub.delivery_hour, sub.timezone) == (4, 21, "Asia/Tokyo")
    assert sub.max_papers == 3 and sub.paused is True
    with app.transaction() as s, pytest.raises(InputError, match="at least one topic"):
        svc.update_preferences(sid, _prefs(topics), session=s)


def test_unsubscribe_skips_unsent_deliveries_so_the_next_send_mails_nothing(app, settings):
    with app.transaction() as s:
        llm = f.topic(s, "llm")
        f.paper(s, "Scaling laws", topics={llm: 2.0}, upvotes=3)
        ada = f.subscriber(s, "ada@example.org", [llm]).id
        f.subscriber(s, "alan@example.org", [llm])
    sending.plan(app, f.DAY)
    with app.transaction() as s:
        assert svc.unsubscribe(ada, session=s).status == SubscriberStatus.UNSUBSCRIBED
        again = svc.unsubscribe(ada, session=s)
        assert again.unsubscribed_at is not None
    report = sending.send(app, f.DAY)
    assert report.summary.sent == 1
    box = mailbox.Maildir(settings.transport.removeprefix("maildir:"), create=False)
    rcpts = [email.message_from_bytes(bytes(m), policy=email.policy.default)["To"] for m in box]
    assert [str(r) for r in rcpts] == ["Alan <alan@example.org>"]
    with app.sessions() as s:
        row = s.scalar(select(Delivery).where(Delivery.subscriber_id == ada))
    assert row.status == DeliveryStatus.SKIPPED and row.skip_reason == "unsubscribed"
    with app.transaction() as s:
        assert svc.unsubscribe(ada + 100, session=s) is None


def test_resubscribe_restores_a_confirmed_subscriber_only(app, topics):
    sid = _subscribe(app, "ada@example.org", _prefs(topics, "llm")).subscriber_id
    with app.transaction() as s:
        svc.unsubscribe(sid, session=s)
        with pytest.raises(InputError):
            svc.resubscribe(sid, session=s)  # never confirmed: must confirm first
        s.get(Subscriber, sid).confirmed_at = utcnow()
        assert svc.resubscribe(sid, session=s).status == SubscriberStatus.CONFIRMED
        assert s.get(Subscriber, sid).unsubscribed_at is None


def test_export_holds_everything_and_delete_removes_it(app):
    with app.transaction() as s:
        llm = f.topic(s, "llm")
        f.paper(s, "Scaling laws", topics={llm: 2.0})
        sid = f.subscriber(s, "ada@example.org", [llm]).id
        s.get(Subscriber, sid).consent = {"ip": "192.0.2.7", "text": "I agree."}
    sending.plan(app, f.DAY)
    with app.sessions() as s:
        data = svc.export_my_data(sid, session=s)
    assert data["email"] == "ada@example.org" and data["topics"] == ["llm"]
    assert data["consent"] == {"ip": "192.0.2.7", "text": "I agree."}
    assert data["deliveries"] == [
        {"edition": "2026-11-27", "status": "pending", "sent_at": None, "skip_reason": None}
    ]
    assert isinstance(data["created_at"], str) and data["paused"] is False
    with app.transaction() as s:
        assert svc.delete_my_data(sid, session=s) is True
    with app.sessions() as s:
        assert s.get(Subscriber, sid) is None
        assert s.scalar(select(Delivery)) is None
    with app.transaction() as s:
        assert svc.delete_my_data(sid, session=s) is False


def test_purge_pending_deletes_only_old_unconfirmed_sign_ups(app, topics):
    old = utcnow() - timedelta(days=8)
    _subscribe(app, "old@example.org", _prefs(topics, "llm"), now=old)
    _subscribe(app, "new@example.org", _prefs(topics, "llm"))
    with app.transaction() as s:
        kept = f.subscriber(s, "kept@example.org", [])
        kept.created_at = old
    with app.transaction() as s:
        assert svc.purge_pending(session=s, older_than=timedelta(days=7)) == 1
    assert _get(app, "old@example.org") is None
    assert _get(app, "new@example.org") and _get(app, "kept@example.org")
    with app.sessions() as s:
        assert all(r.window_start > old for r in s.scalars(select(RateLimit)))


def test_the_confirmation_email_has_safe_headers_and_the_link(app, topics):
    notice = Notice("confirm", 42, "ada@example.org", "Ada Lovelace")
    msg = email.message_from_bytes(build_notice(app.settings, notice), policy=email.policy.default)
    assert msg["To"] == "Ada Lovelace <ada@example.org>"
    assert msg["Subject"] == "Confirm your subscription to Daily Papers"
    assert msg["Message-ID"].endswith("@news.example.test>") and msg["Date"]
    text = msg.get_body(("plain",)).get_content()
    assert f"{app.settings.base_url}/confirm/" in text
    assert "/confirm/" in msg.get_body(("html",)).get_content()
    hostile = dataclasses.replace(notice, name="Ada\r\nBcc: x@y.z")
    msg = email.message_from_bytes(build_notice(app.settings, hostile), policy=email.policy.default)
    assert "Bcc" not in msg and msg["To"].addresses[0].display_name == "Ada Bcc: x@y.z"


def test_limits_come_from_settings_and_refuse_nonsense(app, tmp_path):
    from newsletter.core.config import load_settings
    from newsletter.core.errors import ConfigError

    settings = dataclasses.replace(app.settings, mail_interval_minutes=5)
    assert svc.Limits.from_settings(settings).mail_interval_minutes == 5
    with pytest.raises(InputError, match="confirm_max_age_hours"):
        svc.Limits.from_settings(dataclasses.replace(app.settings, confirm_max_age_hours=0))
    toml = tmp_path / "n.toml"
    toml.write_text(f'secret_key = "{"k" * 32}"\nconfirm_max_age_hours = "soon"\n')
    with pytest.raises(ConfigError, match="confirm_max_age_hours"):
        load_settings(toml, env={})
