"""Subscribers as JSON: everything each one has, exported and imported without loss.

A record holds the address, status and name; the topics by slug; the delivery choices (time
zone, hour, papers per digest, frequency, weekly day, pause); the reader's rules (followed
authors, muted words, keywords), interests (their own words) and own papers (their vectors
are made again on import); the consent record and its history; the votes, naming each paper
by its arXiv id and title key; and the timestamps. Exporting, importing into an empty store
and exporting again gives the same file. What belongs to the store rather than to the
subscriber stays out: database ids, link keys (links in emails sent before an import
elsewhere stop working), delivery records, queued emails.

Import is all or nothing: the first bad row raises InputError naming it, after which the
caller's transaction must roll back. An address already stored is left as it is, so an old
file never subscribes again someone who left since; suppressed addresses stay suppressed.
"""

from __future__ import annotations

import json
import os
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from newsletter.audience.json_list import json_list
from newsletter.audience.subscribers import (
    resolve_topics,
    stored_ids,
    subscriber_pages,
    subscriber_to_dict,
    topic_ids,
)
from newsletter.audience.validation import (
    email_key,
    mailable_email,
    split_rules,
    validate_frequency,
    validate_hour,
    validate_interests,
    validate_max_papers,
    validate_name,
    validate_timezone,
    validate_weekday,
)
from newsletter.core.errors import InputError, quoted
from newsletter.core.models import (
    ConsentEvent,
    FeedbackVote,
    Paper,
    Subscriber,
    SubscriberStatus,
    Subscription,
    new_link_key,
    utcnow,
)
from newsletter.matching.feedback import LESS, MORE
from newsletter.matching.interests import embed_interests
from newsletter.matching.seeds import Seed, checked_seeds
from newsletter.matching.seeds import embedded as with_vectors
from newsletter.matching.stored_profiles import store_profiles

VOTES = {"more": MORE, "less": LESS}
RULES = {"follow_authors": "followed authors", "muted_words": "muted words",
         "personal_keywords": "keywords"}  # fmt: skip
TIMES = ("created_at", "confirmed_at", "unsubscribed_at", "confirmation_sent_at")
FIELDS = frozenset({"email", "name", "status", "topics", "timezone", "hour", "max_papers",
                    "frequency", "weekly_day", "paused", "consent_source", "consent",
                    "consent_history", "votes", "seed_papers", "interests", *RULES,
                    *TIMES})  # fmt: skip
EVENT_FIELDS = frozenset({"kind", "source", "at", "ip", "user_agent", "details"})
VOTE_FIELDS = frozenset({"arxiv_id", "title_key", "vote", "created_at", "updated_at"})
SEED_FIELDS = frozenset({"arxiv_id", "doi", "title", "abstract"})
# The widths of the columns a record's texts go into.
WIDTHS = {"consent_source": 64, "kind": 32, "source": 64, "ip": 64, "user_agent": 500,
          "arxiv_id": 32, "doi": 255}  # fmt: skip
BATCH_SIZE = 500


# --- export -------------------------------------------------------------------------------


def export_json(out: IO[str], *, session: Session) -> int:
    """Write every subscriber to `out` as a JSON list, one record a line; return the count."""
    slugs = {topic_id: slug for slug, topic_id in topic_ids(session=session).items()}
    out.write("[")
    count = 0
    for page in subscriber_pages(session, history=True):
        votes = _votes_of(session, [s.id for s in page])
        for subscriber in page:
            record = subscriber_record(subscriber, slugs, votes.get(subscriber.id, []))
            text = json.dumps(record, ensure_ascii=False, default=iso_time)
            out.write(("," if count else "") + "\n  " + text)
            count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def iso_time(value: object) -> str:
    """Write a timestamp as JSON text (for json.dumps' default=)."""
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def subscriber_record(
    subscriber: Subscriber, slugs: dict[int, str], votes: list[dict[str, Any]]
) -> dict[str, Any]:
    """Return everything a subscriber has, with no id of this store in it."""
    record = subscriber_to_dict(subscriber, consent=True)
    record["confirmation_sent_at"] = subscriber.confirmation_sent_at
    events = subscriber.consent_events
    position = {event.id: i for i, event in enumerate(events)}
    record["consent_history"] = [_event_record(e, position, slugs) for e in events]
    record["votes"] = votes
    return record


def _event_record(
    event: ConsentEvent, position: dict[int, int], slugs: dict[int, str]
) -> dict[str, Any]:
    details = dict(event.details or {})
    # Ids of this store become what they name: the sign-up by its place in the history,
    # topics by slug (a topic removed since is no longer anything).
    signup = details.pop("signup", None)
    if isinstance(signup, int) and signup in position:
        details["signup_event"] = position[signup]
    prefs = details.get("prefs")
    if isinstance(prefs, dict) and "topic_ids" in prefs:
        prefs = dict(prefs)
        prefs["topics"] = [slugs[t] for t in prefs.pop("topic_ids") or () if t in slugs]
        details["prefs"] = prefs
    return {
        "kind": event.kind,
        "source": event.source,
        "at": event.at,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "details": details,
    }


def _votes_of(session: Session, ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    query = (
        select(FeedbackVote, Paper.arxiv_id, Paper.title_key)
        .join(Paper, Paper.id == FeedbackVote.paper_id)
        .where(FeedbackVote.subscriber_id.in_(ids))
        .order_by(FeedbackVote.id)
    )
    found: dict[int, list[dict[str, Any]]] = {}
    for vote, arxiv_id, title_key in session.execute(query):
        found.setdefault(vote.subscriber_id, []).append(
            {
                "arxiv_id": arxiv_id,
                "title_key": title_key,
                "vote": "more" if vote.vote == MORE else "less",
                "created_at": vote.created_at,
                "updated_at": vote.updated_at,
            }
        )
    return found


# --- import ----------------------------------------------------------------------


@dataclass
class JsonImportReport:
    """What a JSON import did."""

    source: str
    new: int = 0
    present: int = 0  # already stored: left as they are
    votes_left_out: int = 0  # on papers this store does not hold (skip_missing_papers)
    subscriber_ids: array[int] = field(default_factory=lambda: array("I"), repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "new": self.new,
            "already_stored": self.present,
            "votes_left_out": self.votes_left_out,
        }


# --- import: checking a record ------------------------------------------------------------


@dataclass
class _Record:
    row: int
    key: str
    columns: dict[str, Any]
    topic_ids: list[int]
    history: list[dict[str, Any]]  # ConsentEvent columns; "signup_event" still a position
    votes: list[dict[str, Any]]  # "paper" is (arxiv_id, title_key)
    seeds: list[Seed] = field(default_factory=list)


_KINDS = {str: "a text", int: "a whole number", bool: "true or false", list: "a list",
          dict: "an object"}  # fmt: skip


def _typed(data: dict[str, Any], key: str, kind: type, default: Any = None) -> Any:
    """Return data[key] (or the default when it is absent or null), checking its JSON type."""
    value = data.get(key)
    if value is None:
        if default is None:
            raise InputError(f"{key} is missing")
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        shown = quoted(json.dumps(value, ensure_ascii=False), 40)
        raise InputError(f"{key} must be {_KINDS[kind]}, got {shown}")
    return value


def _text(data: dict[str, Any], key: str, default: str | None = None) -> str:
    value = _typed(data, key, str, default)
    width = WIDTHS.get(key)
    if width is not None and len(value) > width:
        raise InputError(f"{key} is longer than {width} characters")
    if "\x00" in value:
        raise InputError(f"{key} contains NUL")
    return value


def _time(data: dict[str, Any], key: str, required: bool = False) -> datetime | None:
    value = data.get(key)
    if value is None and not required:
        return None
    text = _typed(data, key, str)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InputError(f"{key} must be a date and time with its UTC offset, got {quoted(text)}")
    return moment


def _check_fields(data: Any, known: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InputError(f"{what} must be a JSON object")
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"{what}: unknown field(s) {', '.join(map(quoted, unknown))}")
    return data


def _columns(data: dict[str, Any]) -> dict[str, Any]:
    """Return the subscriber's columns, each checked as the form and the CLI check it."""
    status = _text(data, "status", SubscriberStatus.CONFIRMED.value)
    try:
        status_value = SubscriberStatus(status)
    except ValueError:
        known = ", ".join(s.value for s in SubscriberStatus)
        raise InputError(f"unknown status {quoted(status)} (known: {known})") from None
    columns: dict[str, Any] = {
        "email": mailable_email(_text(data, "email")),
        "name": validate_name(_text(data, "name", "")),
        "status": status_value,
        "timezone": validate_timezone(_text(data, "timezone", "UTC")),
        "delivery_hour": validate_hour(_typed(data, "hour", int, 8)),
        "max_papers": validate_max_papers(_typed(data, "max_papers", int, 10)),
        "frequency": validate_frequency(_text(data, "frequency", "daily")),
        "weekly_day": validate_weekday(_typed(data, "weekly_day", int, 0)),
        "paused": _typed(data, "paused", bool, False),
        "consent_source": _text(data, "consent_source", "import"),
        "consent": _typed(data, "consent", dict, {}),
    }
    for rule, what in RULES.items():
        items = _typed(data, rule, list, [])
        if not all(isinstance(i, str) for i in items):
            raise InputError(f"{rule} must be a list of texts")
        columns[rule] = split_rules(";".join(items), what)
    columns["interests"] = validate_interests(_typed(data, "interests", str, ""))
    for key in TIMES:
        columns[key] = _time(data, key)
    columns["created_at"] = columns["created_at"] or utcnow()
    return columns


def _history(data: dict[str, Any], known_topics: dict[str, int]) -> list[dict[str, Any]]:
    events = []
    entries = _typed(data, "consent_history", list, [])
    for number, entry in enumerate(entries, 1):
        what = f"consent_history entry {number}"
        entry = _check_fields(entry, EVENT_FIELDS, what)
        try:
            details = _details(_typed(entry, "details", dict, {}), known_topics, number - 1)
            events.append(
                {
                    "kind": _text(entry, "kind"),
                    "source": _text(entry, "source", "web"),
                    "at": _time(entry, "at", required=True),
                    "ip": _text(entry, "ip", ""),
                    "user_agent": _text(entry, "user_agent", ""),
                    "details": details,
                }
            )
        except InputError as exc:
            raise InputError(f"{what}: {exc}") from None
    return events


def _details(details: dict[str, Any], known_topics: dict[str, int], before: int) -> dict:
    """Turn an entry's slugs and history positions back into this store's ids (see export)."""
    details = dict(details)
    prefs = details.get("prefs")
    if isinstance(prefs, dict) and "topics" in prefs:
        prefs = dict(prefs)
        slugs = prefs.pop("topics")
        if not isinstance(slugs, list) or not all(isinstance(s, str) for s in slugs):
            raise InputError("details.prefs.topics must be a list of topic slugs")
        prefs["topic_ids"] = resolve_topics(slugs, known_topics) if slugs else []
        details["prefs"] = prefs
    position = details.get("signup_event")
    if position is not None and not (isinstance(position, int) and 0 <= position < before):
        raise InputError("details.signup_event must be the place of an earlier entry")
    return details


def _votes(data: dict[str, Any]) -> list[dict[str, Any]]:
    votes, seen = [], set()
    for number, entry in enumerate(_typed(data, "votes", list, []), 1):
        what = f"vote {number}"
        entry = _check_fields(entry, VOTE_FIELDS, what)
        try:
            arxiv_id = entry.get("arxiv_id")
            if arxiv_id is not None:
                arxiv_id = _text(entry, "arxiv_id")
            paper = (arxiv_id, _text(entry, "title_key"))
            direction = _text(entry, "vote")
            if direction not in VOTES:
                raise InputError(f'vote must be "more" or "less", got {quoted(direction)}')
            created = _time(entry, "created_at", required=True)
            updated = _time(entry, "updated_at", required=True)
        except InputError as exc:
            raise InputError(f"{what}: {exc}") from None
        if paper in seen:
            raise InputError(f"{what}: a second vote on the same paper")
        seen.add(paper)
        votes.append({"paper": paper, "vote": VOTES[direction], "created_at": created,
                      "updated_at": updated})  # fmt: skip
    return votes


def _seeds(data: dict[str, Any]) -> list[Seed]:
    """Return the reader's own papers, checked as an upload is."""
    seeds = []
    for number, entry in enumerate(_typed(data, "seed_papers", list, []), 1):
        entry = _check_fields(entry, SEED_FIELDS, f"seed paper {number}")
        try:
            arxiv_id, doi = (
                _text(entry, key) if entry.get(key) is not None else None
                for key in ("arxiv_id", "doi")
            )
            seeds.append(Seed(_text(entry, "title"), _text(entry, "abstract", ""), arxiv_id, doi))
        except InputError as exc:
            raise InputError(f"seed paper {number}: {exc}") from None
    return checked_seeds(seeds)


def _record(row: int, data: Any, known_topics: dict[str, int]) -> _Record:
    data = _check_fields(data, FIELDS, "a subscriber")
    columns = _columns(data)
    slugs = _typed(data, "topics", list, [])
    if not all(isinstance(s, str) for s in slugs):
        raise InputError("topics must be a list of topic slugs")
    ids = resolve_topics(slugs, known_topics) if slugs else []
    history = _history(data, known_topics)
    record = _Record(row, email_key(columns["email"]), columns, ids, history, _votes(data))
    record.seeds = _seeds(data)
    return record


# --- import: writing ----------------------------------------------------------------------


class _Writer:
    """Write checked records in batches; raise InputError at the first that cannot be."""

    def __init__(
        self, session: Session, report: JsonImportReport, skip_missing: bool, meaning: bool
    ) -> None:
        self.session = session
        self.report = report
        self.skip_missing = skip_missing
        self.meaning = meaning  # give own papers their sentence vectors, as an upload does
        self.known_topics = topic_ids(session=session)
        self.pending: dict[str, _Record] = {}
        # The row that wrote each subscriber id: finds a repeat in a later batch.
        self.written_by = array("I")

    def where(self, record: _Record) -> str:
        return f"{self.report.source}, row {record.row} ({record.columns['email']})"

    def add(self, record: _Record) -> None:
        first = self.pending.get(record.key)
        if first is not None:
            raise InputError(f"{self.where(record)}: the same address as row {first.row}")
        self.pending[record.key] = record
        if len(self.pending) >= BATCH_SIZE:
            self.flush()

    def flush(self) -> None:
        records, self.pending = list(self.pending.values()), {}
        stored = stored_ids(self.session, [r.columns["email"] for r in records])
        new = []
        for record in records:
            subscriber_id = stored.get(record.key)
            if subscriber_id is None:
                new.append(record)
            elif subscriber_id < len(self.written_by) and self.written_by[subscriber_id]:
                row = self.written_by[subscriber_id]
                raise InputError(f"{self.where(record)}: the same address as row {row}")
            else:
                self.report.present += 1
        if new:
            self._insert(new)

    def _insert(self, records: list[_Record]) -> None:
        papers = self._papers(records)
        self._embed_seeds(records)
        embedded = embed_interests([r.columns["interests"] for r in records])
        subscribers = [self._subscriber(r, e) for r, e in zip(records, embedded, strict=True)]
        self.session.add_all(subscribers)
        self.session.flush()
        for record, subscriber in zip(records, subscribers, strict=True):
            self._mark(subscriber.id, record.row)
            events = subscriber.consent_events
            for event in events:
                if "signup_event" in event.details:
                    details = dict(event.details)
                    details["signup"] = events[details.pop("signup_event")].id
                    event.details = details
            self.session.add_all(self._votes(record, subscriber.id, papers))
        self.session.flush()
        # Their stored profiles, from the votes and own papers just written.
        store_profiles([s.id for s in subscribers], session=self.session)
        self.report.new += len(records)
        self.report.subscriber_ids.extend(s.id for s in subscribers)
        self.session.expunge_all()  # keep memory flat however long the file is

    def _embed_seeds(self, records: list[_Record]) -> None:
        """Give the batch's own papers their vectors in one pass of the model (a backup
        carries none: they are the model's, made again here)."""
        given = [seed for record in records for seed in record.seeds]
        if not self.meaning or not given:
            return
        made = iter(with_vectors(given, enabled=True))
        for record in records:
            record.seeds = [next(made) for _ in record.seeds]

    def _subscriber(self, record: _Record, embedded: tuple[str, bytes] | None) -> Subscriber:
        model, vector = embedded or (None, None)
        return Subscriber(
            **record.columns,
            interests_model=model,
            interests_vector=vector,
            link_key=new_link_key(),
            subscriptions=[Subscription(topic_id=t) for t in record.topic_ids],
            consent_events=[ConsentEvent(**event) for event in record.history],
            seeds=[seed.as_row() for seed in record.seeds],
        )

    def _votes(
        self, record: _Record, subscriber_id: int, papers: dict[Any, int]
    ) -> list[FeedbackVote]:
        found = [(v, papers.get(v["paper"][0]) or papers.get(v["paper"][1])) for v in record.votes]
        missing = [v["paper"] for v, paper_id in found if paper_id is None]
        if missing and not self.skip_missing:
            named = ", ".join(arxiv_id or title_key for arxiv_id, title_key in missing[:3])
            raise InputError(
                f"{self.where(record)}: {len(missing)} vote(s) on papers this store does not "
                f"hold ({quoted(named, 120)}): fetch those days first, or pass "
                "--skip-missing-papers to leave such votes out"
            )
        self.report.votes_left_out += len(missing)
        return [
            FeedbackVote(
                subscriber_id=subscriber_id,
                paper_id=paper_id,
                vote=v["vote"],
                created_at=v["created_at"],
                updated_at=v["updated_at"],
            )  # fmt: skip
            for v, paper_id in found
            if paper_id is not None
        ]

    def _papers(self, records: list[_Record]) -> dict[Any, int]:
        """Return the stored papers the records' votes name, by arXiv id and by title key."""
        arxiv_ids = {v["paper"][0] for r in records for v in r.votes if v["paper"][0]}
        title_keys = {v["paper"][1] for r in records for v in r.votes}
        if not title_keys:
            return {}
        query = select(Paper.id, Paper.arxiv_id, Paper.title_key).where(
            or_(Paper.arxiv_id.in_(sorted(arxiv_ids)), Paper.title_key.in_(sorted(title_keys)))
        )
        found: dict[Any, int] = {}
        for paper_id, arxiv_id, title_key in self.session.execute(query):
            found[title_key] = paper_id
            if arxiv_id:
                found[arxiv_id] = paper_id
        return found

    def _mark(self, subscriber_id: int, row: int) -> None:
        size = len(self.written_by)
        if subscriber_id >= size:
            grow = max(subscriber_id + 1, 2 * size) - size
            self.written_by.frombytes(bytes(grow * self.written_by.itemsize))
        self.written_by[subscriber_id] = row


def import_json(
    source: str | os.PathLike[str] | IO[Any],
    *,
    session: Session,
    skip_missing_papers: bool = False,
    on_progress: Callable[[int], None] | None = None,
    meaning: bool = False,
) -> JsonImportReport:
    """Import subscribers from a JSON list as `export_json` writes it; all or nothing.

    Raises InputError naming the first bad row (the caller's transaction must roll back).
    A vote on a paper this store does not hold is such an error, unless
    `skip_missing_papers`. `on_progress` receives the number of bytes read since its last call.
    With `meaning` (the sentence model on), readers' own papers get their vectors again.
    """
    reading = json_list(source, what="list of subscribers", on_progress=on_progress)
    with reading as (name, rows):
        report = JsonImportReport(source=name)
        writer = _Writer(session, report, skip_missing_papers, meaning)
        for row, data in rows:
            try:
                record = _record(row, data, writer.known_topics)
            except InputError as exc:
                email = data.get("email") if isinstance(data, dict) else None
                who = f" ({quoted(email)})" if isinstance(email, str) else ""
                raise InputError(f"{name}, row {row}{who}: {exc}") from None
            writer.add(record)
        writer.flush()
    return report
