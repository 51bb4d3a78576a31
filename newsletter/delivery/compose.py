"""Turn a claimed delivery into the bytes of its message."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from newsletter.bounces.classify import verp_address, verp_enabled
from newsletter.bounces.signing import delivery_message_id
from newsletter.content.digest import DigestPaper, EditionInfo, Recipient
from newsletter.content.headers import envelope_address
from newsletter.content.mime import (
    build_message_data,
    envelope_sender,
    make_dkim_signer,
    make_message_id,
)
from newsletter.content.rendering import DigestRenderer
from newsletter.core.config import Settings
from newsletter.core.deliveries import ClaimedDelivery
from newsletter.core.errors import ConfigError, InputError
from newsletter.core.tokens import make_token, unsubscribe_url
from newsletter.delivery.transports import OutgoingMessage
from newsletter.editions.readers import Reader, ReaderSelection


@dataclass(frozen=True)
class Prepared:
    """A message ready for the transport, with what its delivery row records on success."""

    message: OutgoingMessage
    message_id: str
    paper_ids: list[int]
    attempts: int

    @property
    def key(self) -> int:
        return self.message.key


@dataclass(frozen=True)
class NotBuilt:
    """A row whose stored data makes no valid message (say, an address stored before
    validation): it fails alone."""

    key: int
    reason: str


# What building a row gives: its message, why it has none, or None when nothing matched.
Built = Prepared | NotBuilt | None


def _reader_of(row: ClaimedDelivery) -> Reader:
    return Reader(row.subscriber_id, row.topic_ids, row.max_papers)


def unsubscribe_mailto(settings: Settings, subscriber_id: int, link_key: str) -> str:
    """Return the mailto: form of List-Unsubscribe, carrying the same signed token."""
    sender = envelope_sender(settings)
    domain = sender.rpartition("@")[2] or "localhost"
    address = settings.unsubscribe_mailto or f"unsubscribe@{domain}"
    token = make_token(settings, "unsubscribe", subscriber_id, link_key)
    # The space quoted apart: quote() is fast for a token, which needs no escaping.
    return f"mailto:{address}?subject=unsubscribe%20{quote(token)}"


class MessagePreparer:
    """Builds each subscriber's message for one edition, with the papers its selection gives."""

    def __init__(
        self,
        settings: Settings,
        renderer: DigestRenderer,
        selection: ReaderSelection,
        edition: EditionInfo,
        *,
        empty_policy: str = "skip",
    ) -> None:
        self.settings = settings
        self.selection = selection
        self.renderer = renderer
        self.edition = edition
        self.empty_policy = empty_policy
        # VERP: a return path per delivery, so a bounce names its row; on when the
        # operator routes bounces back to us (bounce_domain set).
        self.verp = verp_enabled(settings)
        self.sender = envelope_sender(settings)
        self.dkim = make_dkim_signer(settings)

    def prepare(
        self,
        key: int,
        attempts: int,
        subscriber_id: int,
        email: str,
        name: str,
        max_papers: int,
        topic_ids: tuple[int, ...],
        link_key: str,
    ) -> Prepared | None:
        """Build the message, or None when there is nothing to send and no note is wanted."""
        papers = self.selection.papers_for(Reader(subscriber_id, topic_ids, max_papers))
        return self._prepare(
            key, attempts, subscriber_id, email, name, max_papers, topic_ids, link_key, papers
        )

    def warm(self, rows: Sequence[ClaimedDelivery]) -> list[tuple[DigestPaper, ...]]:
        """Render the digests new among these rows together, in few premailer runs; return
        each row's papers."""
        self.selection.have_votes_of(row.subscriber_id for row in rows)
        chosen = [self.selection.papers_for(_reader_of(row)) for row in rows]
        self.renderer.warm(
            self.edition, chosen if self.empty_policy != "skip" else [p for p in chosen if p]
        )
        return chosen

    def prepare_many(self, rows: Sequence[ClaimedDelivery]) -> list[Prepared | None]:
        """Build the messages of many rows, rendering the digests new among them together."""
        chosen = self.warm(rows)
        return [self._prepare(*row, papers) for row, papers in zip(rows, chosen, strict=True)]

    def _prepare(
        self,
        key: int,
        attempts: int,
        subscriber_id: int,
        email: str,
        name: str,
        max_papers: int,
        topic_ids: tuple[int, ...],
        link_key: str,
        papers: tuple[DigestPaper, ...],
    ) -> Prepared | None:
        if not papers and self.empty_policy == "skip":
            return None
        names = self.selection.topic_names(topic_ids)
        recipient = Recipient(subscriber_id, email, name, names, link_key)
        return self.build(key, attempts, recipient, papers)

    def _envelope_sender(self, key: int) -> str:
        return verp_address(self.settings, key) if self.verp and key else self.sender

    def build(
        self, key: int, attempts: int, recipient: Recipient, papers: tuple[DigestPaper, ...]
    ) -> Prepared:
        """Render and assemble one message for a recipient."""
        if papers:
            rendered = self.renderer.render(self.edition, papers, recipient)
        else:
            rendered = self.renderer.render_empty(self.edition, recipient)
        # A bounce that quotes the Message-ID names its delivery; a test copy (key 0) has none.
        message_id = (
            delivery_message_id(self.settings, key) if key else make_message_id(self.settings)
        )
        data, dot_free = build_message_data(
            rendered,
            recipient=recipient,
            settings=self.settings,
            message_id=message_id,
            list_unsubscribe_url=unsubscribe_url(
                self.settings, recipient.subscriber_id, recipient.link_key
            ),
            list_unsubscribe_mailto=unsubscribe_mailto(
                self.settings, recipient.subscriber_id, recipient.link_key
            ),
            dkim=self.dkim,
        )
        return Prepared(
            # build_message_data writes CRLF line ends only; the SMTP client need not check them.
            message=OutgoingMessage(
                key=key,
                sender=self._envelope_sender(key),
                recipient=envelope_address(recipient.email),
                data=data,
                crlf_only=True,
                dot_free=dot_free,
            ),
            message_id=message_id,
            paper_ids=[p.paper_id for p in papers],
            attempts=attempts,
        )


def build_rows(preparer: MessagePreparer, rows: Sequence[ClaimedDelivery]) -> list[Built]:
    """Build the rows' messages together; a row that makes no valid message fails alone."""
    try:
        return list(preparer.prepare_many(rows))
    except ConfigError:
        raise
    except InputError:  # find the row, building one at a time
        pass
    built: list[Built] = []
    for row in rows:
        try:
            built.append(preparer.prepare(*row))
        except ConfigError:
            raise
        except InputError as exc:
            built.append(NotBuilt(row.key, str(exc)))
    return built
