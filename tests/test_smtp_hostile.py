"""A hostile relay: clear text injected after STARTTLS."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from newsletter.core.models import Delivery, DeliveryStatus
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
