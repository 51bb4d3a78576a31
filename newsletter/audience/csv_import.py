"""Import subscribers from a CSV file as a stream, in batches of bulk statements.

Memory does not grow with the file: rows are validated and written a batch at a time, and
who was written is kept in 4 bytes per subscriber. Bad rows are reported by line and
skipped; importing the same file twice changes nothing the second time.
"""

from __future__ import annotations

import csv
import os
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, cast

from sqlalchemy import Table, bindparam, delete, update
from sqlalchemy.orm import Session

from newsletter.audience.csv_format import (
    open_csv,
    read_header,
    split_topics_cell,
    unquote_cell,
)
from newsletter.audience.subscribers import (
    Defaults,
    lookup_values,
    resolve_topics,
    suppressed,
    topic_ids,
)
from newsletter.audience.validation import (
    email_key,
    mailable_email,
    require_wants,
    validate_hour,
    validate_interests,
    validate_max_papers,
    validate_name,
    validate_timezone,
)
from newsletter.core.db import driver_values, insert_many, insert_or_ignore, select_in
from newsletter.core.errors import InputError, quoted
from newsletter.core.models import (
    Frequency,
    Subscriber,
    SubscriberStatus,
    Subscription,
    new_link_key,
    utcnow,
)
from newsletter.matching.interests import embed_interests

BATCH_SIZE = 5000
MAX_REPORTED_ERRORS = 1000
IMPORT_STATUSES = (SubscriberStatus.CONFIRMED, SubscriberStatus.PENDING)

# Their Tables, which SQLAlchemy types as any FromClause a model could be mapped to.
SUBSCRIBERS = cast(Table, Subscriber.__table__)
SUBSCRIPTIONS = cast(Table, Subscription.__table__)


@dataclass
class ImportReport:
    """What an import did: counts, and the first errors by line."""

    source: str
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    max_errors: int = MAX_REPORTED_ERRORS
    # Who the file's rows are, new or not (for the confirmation emails of pending ones),
    # 4 bytes each however long the file.
    subscriber_ids: array[int] = field(default_factory=lambda: array("I"), repr=False)

    def add_error(self, line: int, reason: str) -> None:
        self.skipped += 1
        if len(self.errors) < self.max_errors:
            self.errors.append((line, reason))

    @property
    def errors_truncated(self) -> bool:
        return self.skipped > len(self.errors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "new": self.new,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "errors": [{"line": line, "reason": reason} for line, reason in self.errors],
            "errors_truncated": self.errors_truncated,
        }


@dataclass(slots=True)
class _Row:
    line: int
    key: str
    email: str
    name: str | None
    topic_ids: frozenset[int]
    timezone: str | None
    hour: int | None
    max_papers: int | None
    status: SubscriberStatus | None
    interests: str | None  # None: the cell was empty or absent
    embedded: tuple[str, bytes] | None = None


class _Importer:
    """Validate rows and write them in batches with bulk statements."""

    def __init__(
        self,
        session: Session,
        report: ImportReport,
        status: SubscriberStatus,
        defaults: Defaults,
        consent_source: str,
    ) -> None:
        self.session = session
        self.report = report
        self.status = status
        self.defaults = defaults
        self.consent_source = consent_source
        self.known_topics = topic_ids(session=session)
        self.pending: dict[str, _Row] = {}
        # The line that last wrote each subscriber id: finds repeats across batches in
        # 4 bytes per subscriber instead of keeping every address of the file.
        self.written_by = array("I")
        self._constants: dict[SubscriberStatus, dict[str, Any]] = {}

    def add(self, line: int, values: dict[str, str]) -> None:
        try:
            row = self._parse(line, values)
        except InputError as exc:
            self.report.add_error(line, str(exc))
            return
        first = self.pending.get(row.key)
        if first is not None:
            self.report.add_error(line, f"duplicate of line {first.line} ({row.email})")
            return
        self.pending[row.key] = row

    def _parse(self, line: int, values: dict[str, str]) -> _Row:
        email = mailable_email(values["email"])
        interests = validate_interests(values.get("interests", ""))
        slugs = split_topics_cell(values["topics"])
        ids = resolve_topics(slugs, self.known_topics, required=False)
        require_wants(ids, interests)
        get = values.get
        timezone = get("timezone", "").strip()
        hour = get("hour", "").strip()
        max_papers = get("max_papers", "").strip()
        status = get("status", "").strip()
        return _Row(
            line=line,
            key=email_key(email),
            email=email,
            name=validate_name(values.get("name", "")) or None,
            topic_ids=frozenset(ids),
            timezone=validate_timezone(timezone) if timezone else None,
            hour=validate_hour(hour) if hour else None,
            max_papers=validate_max_papers(max_papers) if max_papers else None,
            status=_parse_status(status.lower()) if status else None,
            interests=interests or None,
        )

    def flush(self) -> None:
        rows, self.pending = list(self.pending.values()), {}
        if not rows:
            return
        given = [r for r in rows if r.interests]
        for row, embedded in zip(given, embed_interests([r.interests or "" for r in given]),
                                 strict=True):  # fmt: skip
            row.embedded = embedded
        blocked = suppressed(self.session, [r.email for r in rows])
        if blocked:
            for row in rows:
                if row.key in blocked:
                    reason = blocked[row.key]
                    self.report.add_error(row.line, f"{row.email} is suppressed ({reason})")
            rows = [r for r in rows if r.key not in blocked]
        existing = self._existing([r.key for r in rows])
        new: list[_Row] = []
        changed: list[tuple[_Row, dict[str, Any]]] = []
        for row in rows:
            current = existing.get(row.key)
            if current is None:
                new.append(row)
            elif self._seen(current["id"]):
                first = self.written_by[current["id"]]
                self.report.add_error(row.line, f"duplicate of line {first} ({row.email})")
            else:
                self._mark(current["id"], row.line)
                changed.append((row, current))
        self._insert(new)
        self._update(changed)

    def _seen(self, subscriber_id: int) -> bool:
        return subscriber_id < len(self.written_by) and self.written_by[subscriber_id] != 0

    def _mark(self, subscriber_id: int, line: int) -> None:
        size = len(self.written_by)
        if subscriber_id >= size:
            grow = max(subscriber_id + 1, 2 * size) - size
            self.written_by.frombytes(bytes(grow * self.written_by.itemsize))
        self.written_by[subscriber_id] = line

    def _existing(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        columns = ("id", "email", "name", "timezone", "delivery_hour", "max_papers", *_INTERESTS)
        sql = f"SELECT {', '.join(columns)} FROM subscribers WHERE lower(email) IN ({{}})"
        records = select_in(self.session, sql + " ORDER BY id", lookup_values(keys))
        wanted = set(keys)
        found: dict[str, dict[str, Any]] = {}
        for record in records:
            key = email_key(record[1])
            if key in wanted and key not in found:
                found[key] = dict(zip(columns, record, strict=True), topic_ids=set())
        by_id = {r["id"]: r for r in found.values()}
        if by_id:
            sql = "SELECT subscriber_id, topic_id FROM subscriptions WHERE subscriber_id IN ({})"
            for subscriber_id, topic_id in select_in(self.session, sql, list(by_id)):
                by_id[subscriber_id]["topic_ids"].add(topic_id)
        return found

    def _insert(self, rows: list[_Row]) -> None:
        if not rows:
            return
        now = utcnow()
        self._constants.clear()  # they hold the previous batch's time
        # No conflict target: a unique index on lower(email), if the schema has one, counts too.
        stmt = insert_or_ignore(self.session, SUBSCRIBERS)
        insert_many(self.session, stmt, [self._new_values(r, now) for r in rows])
        sql = "SELECT email, id FROM subscribers WHERE email IN ({})"
        ids = dict(select_in(self.session, sql, [r.email for r in rows]))
        links = []
        for row in rows:
            subscriber_id = ids.get(row.email)
            if subscriber_id is None or self._seen(subscriber_id):
                # Only another writer can get in between the lookup and the insert.
                self.report.add_error(row.line, f"{row.email} was added during the import")
                continue
            self._mark(subscriber_id, row.line)
            links += [(subscriber_id, t) for t in row.topic_ids]
            self.report.new += 1
        self._link(links, now)

    def _new_values(self, row: _Row, now: datetime) -> dict[str, Any]:
        status = row.status or self.status
        constants = self._constants.get(status)
        if constants is None:
            constants = self._constants[status] = self._status_constants(status, now)
        return {
            **constants,
            "email": row.email,
            "name": row.name or "",
            "timezone": row.timezone or self.defaults.timezone,
            "delivery_hour": self.defaults.hour if row.hour is None else row.hour,
            "max_papers": self.defaults.max_papers if row.max_papers is None else row.max_papers,
            "link_key": new_link_key(),
            **_interest_columns(row),
        }

    def _status_constants(self, status: SubscriberStatus, now: datetime) -> dict[str, Any]:
        """Return the columns every new row of this status shares, ready for the driver."""
        values = {
            "status": status,
            "frequency": Frequency.DAILY,
            "weekly_day": 0,
            "paused": False,
            "confirmation_sent_at": None,
            "consent_source": self.consent_source,
            "consent": {"source": self.consent_source, "recorded_at": now.isoformat()},
            "created_at": now,
            "confirmed_at": now if status == SubscriberStatus.CONFIRMED else None,
            "unsubscribed_at": now if status == SubscriberStatus.UNSUBSCRIBED else None,
            "follow_authors": [],
            "muted_words": [],
            "personal_keywords": [],
        }
        return driver_values(self.session, SUBSCRIBERS, values)

    def _update(self, pairs: list[tuple[_Row, dict[str, Any]]]) -> None:
        updates, unlink, links = [], [], []
        now = utcnow()
        for row, current in pairs:
            wanted = {
                "name": row.name if row.name is not None else current["name"],
                "timezone": row.timezone or current["timezone"],
                "delivery_hour": current["delivery_hour"] if row.hour is None else row.hour,
                "max_papers": current["max_papers"] if row.max_papers is None else row.max_papers,
                **_interest_columns(row, current),
            }
            fields_changed = any(wanted[k] != current[k] for k in wanted)
            old_topics = current["topic_ids"]
            if not fields_changed and old_topics == row.topic_ids:
                self.report.unchanged += 1
                continue
            self.report.updated += 1
            if fields_changed:
                updates.append({"b_id": current["id"], **{f"b_{k}": v for k, v in wanted.items()}})
            unlink += [{"b_sid": current["id"], "b_tid": t} for t in old_topics - row.topic_ids]
            links += [(current["id"], t) for t in row.topic_ids - old_topics]
        self._write_updates(updates, unlink)
        self._link(links, now)

    def _write_updates(self, updates: list[dict[str, Any]], unlink: list[dict[str, Any]]) -> None:
        conn = self.session.connection()
        if updates:
            stmt = (
                update(SUBSCRIBERS)
                .where(SUBSCRIBERS.c.id == bindparam("b_id"))
                .values(
                    {
                        k: bindparam(f"b_{k}")
                        for k in ("name", "timezone", "delivery_hour", "max_papers", *_INTERESTS)
                    }
                )
            )
            conn.execute(stmt, updates)
        if unlink:
            unlinking = delete(SUBSCRIPTIONS).where(
                SUBSCRIPTIONS.c.subscriber_id == bindparam("b_sid"),
                SUBSCRIPTIONS.c.topic_id == bindparam("b_tid"),
            )
            conn.execute(unlinking, unlink)

    def _link(self, links: list[tuple[int, int]], now: datetime) -> None:
        if not links:
            return
        created = driver_values(self.session, SUBSCRIPTIONS, {"created_at": now})["created_at"]
        stmt = insert_or_ignore(self.session, SUBSCRIPTIONS)
        rows = [{"subscriber_id": s, "topic_id": t, "created_at": created} for s, t in links]
        insert_many(self.session, stmt, rows)


_INTERESTS = ("interests", "interests_model", "interests_vector")


def _interest_columns(row: _Row, current: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return a row's interests columns: the current ones when its cell is empty or the same."""
    if current is not None and row.interests in (None, current["interests"]):
        return {k: current[k] for k in _INTERESTS}
    model, vector = row.embedded or (None, None)
    return {"interests": row.interests or "", "interests_model": model, "interests_vector": vector}


def _parse_status(value: str) -> SubscriberStatus:
    try:
        return SubscriberStatus(value)
    except ValueError:
        known = ", ".join(s.value for s in SubscriberStatus)
        raise InputError(f"unknown status {quoted(value)} (known: {known})") from None


def import_csv(
    source: str | os.PathLike[str] | IO[Any],
    *,
    session: Session,
    status: SubscriberStatus | str = SubscriberStatus.CONFIRMED,
    defaults: Defaults | None = None,
    batch_size: int = BATCH_SIZE,
    on_progress: Callable[[int], None] | None = None,
    max_errors: int = MAX_REPORTED_ERRORS,
) -> ImportReport:
    """Import subscribers from a CSV file in batches; bad rows are reported and skipped.

    The file is read as a stream, so memory does not grow with its size. An unusable file
    (no header, unknown or missing columns, not UTF-8, not CSV) raises InputError, possibly
    after some batches were written: the caller's transaction must roll back. Existing
    subscribers keep their status; their name, preferences and topics are updated when the
    row gives them, so importing the same file twice changes nothing the second time.
    `on_progress` receives the number of bytes read since its last call.
    """
    status = SubscriberStatus(status)
    if status not in IMPORT_STATUSES:
        raise InputError(f"import status must be confirmed or pending, got {status.value!r}")
    with open_csv(source) as lines:
        report = ImportReport(source=lines.name, max_errors=max_errors)
        importer = _Importer(
            session, report, status, defaults or Defaults(), f"import:{lines.name}"[:64]
        )
        reader = csv.reader(lines)
        header = read_header(reader, lines.name)
        reported = 0

        def progress() -> None:
            nonlocal reported
            if on_progress is not None:
                on_progress(lines.bytes_read - reported)
                reported = lines.bytes_read

        try:
            _import_rows(reader, header, importer, batch_size, progress)
        except csv.Error as exc:
            raise InputError(
                f"{lines.name}, line {reader.line_num}: not valid CSV: {exc}"
            ) from None
        importer.flush()
        progress()
    report.errors.sort()
    report.subscriber_ids = array("I", (i for i, line in enumerate(importer.written_by) if line))
    return report


def _import_rows(
    reader: Any,
    header: list[str],
    importer: _Importer,
    batch_size: int,
    progress: Callable[[], None],
) -> None:
    width = len(header)
    line = reader.line_num
    for record in reader:
        start, line = line + 1, reader.line_num
        if not record:
            continue
        if len(record) != width:
            importer.report.add_error(start, f"expected {width} fields, got {len(record)}")
            continue
        importer.add(start, dict(zip(header, map(unquote_cell, record), strict=True)))
        if len(importer.pending) >= batch_size:
            importer.flush()
            progress()
