"""A hostile relay: clear text injected after STARTTLS, a greeting that never ends."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from newsletter.core.models import Delivery, DeliveryStatus
from newsletter.delivery.transports import TransportUnavailable, make_transport
from tests import factories as f
from tests.conftest import Cli
from tests.hostile_smtp_server import HostileSmtpServer
from tests.smtp_server import make_certificate

INJECTED = b"250-INJ\r\n250 PIPELINING\r\n"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def readers(app):
    with app.transaction() as s:
        llm = f.topic(s, "llm")
        f.paper(s, "Scaling laws for tiny models", topics={llm: 2.0}, upvotes=40)
        f.subscriber(s, "ada@example.org", [llm])
        f.subscriber(s, "alan@example.org", [llm])
    return app


def _statuses(app) -> list[DeliveryStatus]:
    with app.sessions() as s:
        return [d.status for d in s.scalars(select(Delivery))]


def test_clear_text_after_the_starttls_reply_fails_the_connection_and_nothing_is_sent(
    readers, run: Cli, certificate: tuple[Path, Path]
) -> None:
    with HostileSmtpServer(certificate=certificate, after_starttls=INJECTED) as relay:
        url = f"smtp://127.0.0.1:{relay.port}?tls=starttls&cafile={certificate[0]}"
        run.env = {**run.env, "NEWSLETTER_TRANSPORT": url}
        result = run("send", "--date", f.DAY.isoformat(), "--yes")

    assert result.exit_code == 1, result.output
    [line] = result.output.strip().splitlines()
    assert "sent more after its STARTTLS reply" in line
    assert relay.messages == []
    statuses = _statuses(readers)
    assert len(statuses) == 2 and set(statuses) == {DeliveryStatus.PENDING}


def test_the_same_relay_without_injection_delivers(
    readers, run: Cli, certificate: tuple[Path, Path]
) -> None:
    with HostileSmtpServer(certificate=certificate) as relay:
        url = f"smtp://127.0.0.1:{relay.port}?tls=starttls&cafile={certificate[0]}"
        run.env = {**run.env, "NEWSLETTER_TRANSPORT": url}
        result = run("send", "--date", f.DAY.isoformat(), "--yes")

    assert result.exit_code == 0, result.output
    assert len(relay.messages) == 2
    assert set(_statuses(readers)) == {DeliveryStatus.SENT}


def test_an_endless_greeting_is_refused_after_a_bounded_read() -> None:
    lines = 200_000  # 20 MB of "220-" lines, then a normal session
    with HostileSmtpServer(greeting_lines=lines) as relay:
        transport = make_transport(f"smtp://127.0.0.1:{relay.port}")
        transport.retry_delay = 0.01  # type: ignore[attr-defined]

        async def open_and_close() -> None:
            async with transport:
                pass

        with pytest.raises(TransportUnavailable, match="reply of more than 100 lines") as caught:
            asyncio.run(open_and_close())

    assert "\n" not in str(caught.value)
    assert relay.sessions, "the client connected"
    # The client hung up once the reply was too long: the server could not write it all.
    assert all(s.greeting_cut_off for s in relay.sessions)
    assert all(s.greeting_bytes < lines * 100 // 4 for s in relay.sessions)
