"""SQLAlchemy 2.0 typed models: papers, topics, subscribers, editions and deliveries."""

from __future__ import annotations

import enum
import re
import secrets
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Stable constraint names keep migrations identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


LINK_KEY_BYTES = 12  # 16 URL-safe characters: never repeats, short in a link


def new_link_key() -> str:
    """Return a fresh random key for a subscriber's links (see newsletter.core.tokens)."""
    return secrets.token_urlsafe(LINK_KEY_BYTES)


# XML 1.0 cannot hold C0 controls other than tab, LF and CR, lone surrogates, U+FFFE and
# U+FFFF: one in a stored text makes the Atom feed ill-formed (and PostgreSQL refuses NUL).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """Drop the characters XML 1.0 cannot hold."""
    return _NOT_XML.sub("", text)


def utcnow() -> datetime:
    """Return the current time in UTC, timezone-aware."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back timezone-aware (SQLite drops zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class SafeText(TypeDecorator[str]):
    """Text from outside, stored without the characters XML 1.0 cannot hold."""

    impl: type[String] = Text  # SafeString's is a bounded String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else xml_safe(value)


class SafeString(SafeText):
    """A bounded SafeText: `SafeString(200)`."""

    impl = String
    cache_ok = True


class SafeStrings(TypeDecorator[list[str]]):
    """A JSON list of texts from outside (authors, keywords), each made XML-safe."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: list[str] | None, dialect: Any) -> list[str] | None:
        if value is None:
            return None
        return [xml_safe(item) if isinstance(item, str) else item for item in value]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON}


class SubscriberStatus(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"


class Frequency(enum.StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"


def _str_enum(cls: type[enum.StrEnum], name: str) -> Enum:
    # Stored as VARCHAR with a CHECK, not a native PostgreSQL ENUM: easier to migrate.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda e: [m.value for m in e],
    )


class Paper(Base):
    """A research paper as listed on one day by a source."""

    __tablename__ = "papers"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Identity: the arXiv id when known (without version), else the normalised title.
    arxiv_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    title_key: Mapped[str] = mapped_column(String(512), unique=True)
    title: Mapped[str] = mapped_column(SafeText)
    abstract: Mapped[str] = mapped_column(SafeText, default="")
    summary: Mapped[str | None] = mapped_column(SafeText)
    authors: Mapped[list[str]] = mapped_column(SafeStrings, default=list)
    url_abs: Mapped[str | None] = mapped_column(SafeString(2048))
    url_pdf: Mapped[str | None] = mapped_column(SafeString(2048))
    url_code: Mapped[str | None] = mapped_column(SafeString(2048))
    published_on: Mapped[date | None] = mapped_column(Date)
    listing_date: Mapped[date] = mapped_column(Date, index=True)
    upvotes: Mapped[int | None] = mapped_column(Integer)
    keywords: Mapped[list[str]] = mapped_column(SafeStrings, default=list)
    categories: Mapped[list[str]] = mapped_column(SafeStrings, default=list)
    source: Mapped[str] = mapped_column(SafeString(32))
    # The work's DOI in lowercase (a journal's or a preprint server's; arXiv's own DOI is its
    # arXiv id), where it was published or posted, and the journal version's page.
    doi: Mapped[str | None] = mapped_column(String(255), unique=True)
    venue: Mapped[str | None] = mapped_column(SafeString(300))
    url_journal: Mapped[str | None] = mapped_column(SafeString(2048))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    topics: Mapped[list[PaperTopic]] = relationship(
        back_populates="paper", cascade="all, delete-orphan"
    )


class PaperEmbedding(Base):
    """A paper's sentence vector, made once when it is stored (see matching.embeddings)."""

    __tablename__ = "paper_embeddings"

    paper_id: Mapped[int] = mapped_column(
        ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(String(64))  # vectors of another model are not compared
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float16, little-endian


class Topic(Base):
    """A subject subscribers choose, defined by keywords, categories, a description and
    example papers."""

    __tablename__ = "topics"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(SafeString(200))
    description: Mapped[str] = mapped_column(SafeText, default="")
    keywords: Mapped[list[str]] = mapped_column(SafeStrings, default=list)
    categories: Mapped[list[str]] = mapped_column(SafeStrings, default=list)
    # Phrases in which a keyword means something else: a hit inside one does not count.
    exclude: Mapped[list[str]] = mapped_column(SafeStrings, default=list)
    # Papers it should and should not take: arXiv ids without version, or lowercase DOIs.
    examples: Mapped[list[str]] = mapped_column(SafeStrings, default=list)
    not_examples: Mapped[list[str]] = mapped_column(SafeStrings, default=list)
    # Every paper of its categories belongs to it, whatever its words.
    whole_categories: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    papers: Mapped[list[PaperTopic]] = relationship(
        back_populates="topic", cascade="all, delete-orphan"
    )


class PaperTopic(Base):
    """A paper matched to a topic, with the score and the evidence that matched."""

    __tablename__ = "paper_topics"

    paper_id: Mapped[int] = mapped_column(
        ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True
    )
    topic_id: Mapped[int] = mapped_column(
        ForeignKey("topics.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    score: Mapped[float] = mapped_column(Float)
    evidence: Mapped[list[str]] = mapped_column(JSON, default=list)

    paper: Mapped[Paper] = relationship(back_populates="topics")
    topic: Mapped[Topic] = relationship(back_populates="papers")


class Subscriber(Base):
    """A person who receives digests, with their delivery preferences."""

    __tablename__ = "subscribers"
    # Addresses that differ only in ASCII case are one subscriber; the database enforces it.
    # AUTOINCREMENT: SQLite would otherwise give a deleted row's id to the next sign-up.
    __table_args__ = (
        Index("uq_subscribers_email_lower", func.lower(text("email")), unique=True),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(SafeString(200), default="")
    status: Mapped[SubscriberStatus] = mapped_column(
        _str_enum(SubscriberStatus, "subscriber_status"),
        default=SubscriberStatus.PENDING,
        index=True,
    )
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    delivery_hour: Mapped[int] = mapped_column(Integer, default=8)
    max_papers: Mapped[int] = mapped_column(Integer, default=10)
    frequency: Mapped[Frequency] = mapped_column(
        _str_enum(Frequency, "frequency"), default=Frequency.DAILY
    )
    # 0 = Monday, as datetime.weekday(); only used by weekly digests.
    weekly_day: Mapped[int] = mapped_column(Integer, default=0)
    # A paused subscriber keeps their preferences but is not planned into editions.
    paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    confirmation_sent_at: Mapped[datetime | None] = mapped_column()
    consent_source: Mapped[str] = mapped_column(String(64), default="admin")
    consent: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column()
    unsubscribed_at: Mapped[datetime | None] = mapped_column()
    # Part of every link token: rotating it (or deleting the row) kills every earlier link.
    link_key: Mapped[str] = mapped_column(String(32), default=new_link_key)
    # The reader's own signals: papers by these authors come first, papers with these
    # words never come, and these keywords match like a private topic.
    follow_authors: Mapped[list[str]] = mapped_column(JSON, default=list)
    muted_words: Mapped[list[str]] = mapped_column(JSON, default=list)
    personal_keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    # What they want in their own words, matched by meaning like a private topic, and its
    # sentence vector, made once when the text is set (see matching.interests).
    interests: Mapped[str] = mapped_column(SafeText, default="", server_default="")
    interests_model: Mapped[str | None] = mapped_column(String(64))
    interests_vector: Mapped[bytes | None] = mapped_column(LargeBinary)

    subscriptions: Mapped[list[Subscription]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan"
    )
    consent_events: Mapped[list[ConsentEvent]] = relationship(
        back_populates="subscriber",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="ConsentEvent.id",
    )
    seeds: Mapped[list[ReaderSeed]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="ReaderSeed.id"
    )


class ReaderSeed(Base):
    """One of a reader's own papers: it counts as a like and is never sent to them. Kept as
    text with its identifiers, not as a paper of the store: no query of papers (archive, feeds,
    matching) can ever show a paper from a reader's library."""

    __tablename__ = "reader_seeds"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    arxiv_id: Mapped[str | None] = mapped_column(String(32))  # without version
    doi: Mapped[str | None] = mapped_column(String(255))  # lowercase
    title: Mapped[str] = mapped_column(SafeText)
    abstract: Mapped[str] = mapped_column(SafeText, default="")
    # Its sentence vector, as papers' (see PaperEmbedding); none without the sentence model.
    model: Mapped[str | None] = mapped_column(String(64))
    vector: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StoredProfile(Base):
    """A reader's profile in the sentence model's space (`matching.stored_profiles`): unit
    directions (float16, as PaperEmbedding's) of what they liked with their own papers, what
    they disliked, and their own papers alone, rewritten with each vote or change of seeds."""

    __tablename__ = "reader_profiles"

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(String(64))
    liked: Mapped[bytes | None] = mapped_column(LargeBinary)
    disliked: Mapped[bytes | None] = mapped_column(LargeBinary)
    own: Mapped[bytes | None] = mapped_column(LargeBinary)
    likes: Mapped[int] = mapped_column(Integer, default=0)
    dislikes: Mapped[int] = mapped_column(Integer, default=0)
    seeds: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class QueuedMail(Base):
    """A sign-up request or a transactional email, waiting to be handled after commit.

    The web answers a sign-up by storing one of these and nothing else, the same for every
    address; the mail queue decides what the request calls for and sends it, outside any
    request and without holding a database lock while the relay answers.
    """

    __tablename__ = "mail_queue"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(primary_key=True)
    # "signup" (still to decide), then "confirm" or "manage" (an email to send).
    kind: Mapped[str] = mapped_column(String(16))
    email: Mapped[str] = mapped_column(String(320))
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # Claimed as deliveries are: "host:pid" of the process sending it, until its lease ends.
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column()
    done_at: Mapped[datetime | None] = mapped_column()
    failed_at: Mapped[datetime | None] = mapped_column()  # given up: done, but never sent
    last_error: Mapped[str | None] = mapped_column(Text)


class FeedbackVote(Base):
    """A reader's "more like this" (+1) or "less like this" (-1) on one paper."""

    __tablename__ = "feedback_votes"
    __table_args__ = (UniqueConstraint("subscriber_id", "paper_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"), index=True)
    vote: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConsentEvent(Base):
    """One entry of a subscriber's consent history: sign-up, confirmation, opt-out, ...

    Append-only: what a subscriber agreed to, and when they withdrew, is never overwritten.
    """

    __tablename__ = "consent_events"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(64), default="web")
    at: Mapped[datetime] = mapped_column(default=utcnow)
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(500), default="")
    # The sign-up's choices, kept until it is confirmed, and the consent text shown.
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    subscriber: Mapped[Subscriber] = relationship(back_populates="consent_events")


class Subscription(Base):
    """A subscriber's choice of one topic."""

    __tablename__ = "subscriptions"

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    topic_id: Mapped[int] = mapped_column(
        ForeignKey("topics.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    subscriber: Mapped[Subscriber] = relationship(back_populates="subscriptions")
    topic: Mapped[Topic] = relationship()


class EditionKind(enum.StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"


class Edition(Base):
    """The digest of one listing date (daily) or one week (weekly)."""

    __tablename__ = "editions"
    __table_args__ = (UniqueConstraint("kind", "listing_date"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[EditionKind] = mapped_column(
        _str_enum(EditionKind, "edition_kind"), default=EditionKind.DAILY
    )
    # Daily: the listing date. Weekly: the last listing date the week covers.
    listing_date: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    planned_at: Mapped[datetime | None] = mapped_column()
    # Set by the deliverability guard (delivery.guard): nothing is claimed while it is set.
    paused_at: Mapped[datetime | None] = mapped_column()
    pause_reason: Mapped[str | None] = mapped_column(String(300))
    # The guard's counts when an admin last resumed: only answers after them are judged.
    guard_baseline: Mapped[dict[str, int] | None] = mapped_column(JSON)
    # When the guard's window filled without a pause: it stops counting for this edition.
    guard_cleared_at: Mapped[datetime | None] = mapped_column()

    deliveries: Mapped[list[Delivery]] = relationship(back_populates="edition")


class Delivery(Base):
    """One subscriber's copy of one edition, with its explicit delivery state."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("edition_id", "subscriber_id"),
        # The claim query scans owed rows of one edition in id order.
        Index("ix_deliveries_owed", "edition_id", "status", "next_attempt_at"),
        # Return paths name delivery ids: a deleted row's id must never come back.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("editions.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[DeliveryStatus] = mapped_column(
        _str_enum(DeliveryStatus, "delivery_status"), default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    lease_until: Mapped[datetime | None] = mapped_column()
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    last_reply: Mapped[str | None] = mapped_column(Text)
    skip_reason: Mapped[str | None] = mapped_column(String(200))
    message_id: Mapped[str | None] = mapped_column(String(255))
    # The papers this copy carried: keeps later digests from repeating them.
    paper_ids: Mapped[list[int] | None] = mapped_column(JSON)
    sent_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime | None] = mapped_column()

    edition: Mapped[Edition] = relationship(back_populates="deliveries")
    subscriber: Mapped[Subscriber] = relationship()


class Suppression(Base):
    """An address that must never be mailed again (hard bounce, complaint, operator)."""

    __tablename__ = "suppressions"
    __table_args__ = (Index("ix_suppressions_email_lower", func.lower(text("email"))),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    reason: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Lease(Base):
    """A named lock with an expiry, held by one process at a time (e.g. the scheduler)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column()
    acquired_at: Mapped[datetime] = mapped_column(default=utcnow)


class SourceFetch(Base):
    """A source's last fetch, the last one that stored its listing, and its last failure."""

    __tablename__ = "source_fetches"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    attempted_at: Mapped[datetime] = mapped_column()
    day: Mapped[date] = mapped_column(Date)  # the listing asked for
    status: Mapped[str] = mapped_column(String(16))  # "stored", "no listing" or "failed"
    stored_at: Mapped[datetime | None] = mapped_column()
    stored_day: Mapped[date | None] = mapped_column(Date)
    papers: Mapped[int | None] = mapped_column(Integer)  # in the stored listing
    new_papers: Mapped[int | None] = mapped_column(Integer)
    failed_at: Mapped[datetime | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)  # the last failure's one line


class RateLimit(Base):
    """A fixed-window counter shared by every web process (per IP, per address)."""

    __tablename__ = "rate_limits"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[datetime] = mapped_column()
    count: Mapped[int] = mapped_column(Integer, default=0)


class BounceEvent(Base):
    """A hard, soft or blocked bounce or a complaint about one address, from one report."""

    __tablename__ = "bounce_events"
    __table_args__ = (
        # Soft bounces are counted per address within a window.
        Index("ix_bounce_events_email_lower", func.lower(text("email")), "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str | None] = mapped_column(String(16))
    # Why, in a word (bounces.reasons): "bad-mailbox", "mailbox-full", "spam", "complaint"...
    reason: Mapped[str | None] = mapped_column(String(32))
    diagnostic: Mapped[str] = mapped_column(Text, default="")
    # Set when the VERP token named the delivery: what makes rates per edition possible.
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL"), index=True
    )
    # A hash of the returned message: reading the same message twice records it once.
    message_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


__all__ = [
    "BounceEvent",
    "ConsentEvent",
    "FeedbackVote",
    "QueuedMail",
    "Lease",
    "RateLimit",
    "SourceFetch",
    "Delivery",
    "DeliveryStatus",
    "Edition",
    "EditionKind",
    "Suppression",
    "Base",
    "Frequency",
    "Paper",
    "PaperTopic",
    "Subscriber",
    "SubscriberStatus",
    "Subscription",
    "Topic",
    "new_link_key",
    "utcnow",
    "xml_safe",
]
