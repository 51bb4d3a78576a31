"""Hostile input aimed at headers and the SMTP envelope: CR/LF, NUL, encoded line breaks.

Also covered elsewhere, at the unit level: test_message.py (header injection through display
values, refused Message-ID and List-Unsubscribe values), test_smtp_client.py (unsafe envelope
addresses never reach the wire), test_subscribers.py (normalise_email refuses CR, LF and NUL).
These tests go end to end: from the CLI, a CSV file or the web form to the bytes on the wire.
"""

from __future__ import annotations

import email
import email.policy
from email.header import decode_header, make_header

import pytest
from sqlalchemy import func, select

from newsletter.models import Delivery, Subscriber, Topic
from tests import factories as f
from tests.smtp_server import SmtpTestServer

ENCODED_LF = "=?UTF-8?Q?=0A?="
ENCODED_CRLF = "=?UTF-8?Q?=0D=0A?="
INJECTIONS = ["\r\nBcc: victim@example.org", "\nBcc: victim@example.org", "\rX-Evil: 1", "\x00"]
DIGEST_HEADERS = {
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Precedence",
}


def _count(app, model) -> int:
    with app.sessions() as s:
        return s.scalar(select(func.count()).select_from(model))


@pytest.fixture
def llm(app) -> None:
    with app.transaction() as s:
        f.topic(s, "llm")


# -- subscribers: the CLI, a CSV file, the web form --------------------------------------------


@pytest.mark.parametrize("injection", INJECTIONS)
@pytest.mark.parametrize("field", ["email", "name"])
def test_cli_add_refuses_line_breaks_and_nul(run, app, llm, field, injection):
    address = "eve@example.org" + (injection if field == "email" else "")
    name = "Eve" + (injection if field == "name" else "")

    result = run("subscribers", "add", address, "--name", name, "--topics", "llm")

    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "line break or NUL" in result.stderr
    assert _count(app, Subscriber) == 0


def test_csv_rows_with_line_breaks_in_email_or_name_are_reported_by_line(run, app, llm, tmp_path):
    path = tmp_path / "people.csv"
    path.write_bytes(
        b"email,name,topics\r\n"
        b'"eve@example.org\r\nRCPT TO:<victim@example.org>",Eve,llm\r\n'
        b'mallory@example.org,"Mallory\r\nBcc: victim@example.org",llm\r\n'
        b"ada@example.org,Ada,llm\r\n"
    )

    result = run("subscribers", "import", str(path), "--json")

    assert result.exit_code == 1
    assert '"line": 2' in result.stdout and '"line": 4' in result.stdout
    with app.sessions() as s:
        assert s.scalars(select(Subscriber.email)).all() == ["ada@example.org"]


@pytest.mark.parametrize("field", ["email", "name"])
def test_the_web_form_refuses_line_breaks(app, llm, field):
    import re

    from newsletter.web import create_app

    client = create_app(app.settings, app=app).test_client()
    page = client.get("/").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    data = {"email": "eve@example.org", "name": "Eve", "frequency": "daily", "hour": "8",
            "timezone": "UTC", "topics": ["llm"], "csrf_token": token}  # fmt: skip
    data[field] += "\r\nBcc: victim@example.org"

    response = client.post("/", data=data)

    assert response.status_code == 400
    assert _count(app, Subscriber) == 0


# -- topic names -------------------------------------------------------------------------------


@pytest.mark.parametrize("injection", INJECTIONS)
def test_topic_names_with_line_breaks_or_nul_are_refused(run, app, injection):
    result = run("topics", "add", "evil", "--name", "Evil" + injection, "--keywords", "evil")

    assert result.exit_code == 2 and "one line" in result.stderr
    assert _count(app, Topic) == 0


def test_a_topics_file_with_a_multi_line_name_is_refused_whole(run, app, tmp_path):
    path = tmp_path / "topics.toml"
    path.write_text(
        '[[topic]]\nslug = "ok"\nname = "Fine"\nkeywords = ["fine"]\n'
        '[[topic]]\nslug = "evil"\nname = "Evil\\r\\nBcc: victim@example.org"\n'
        'keywords = ["evil"]\n',
        encoding="utf-8",
    )

    result = run("topics", "import", str(path))

    assert result.exit_code == 2 and "evil" in result.stderr
    assert _count(app, Topic) == 0


# -- what reaches the wire ---------------------------------------------------------------------


def _send_through(run, server: SmtpTestServer) -> None:
    run.env = {**run.env, "NEWSLETTER_TRANSPORT": server.url + "?tls=none"}
    result = run("send", "--yes", "--date", f.DAY.isoformat())
    assert "Traceback" not in result.output


def _raw_header(server: SmtpTestServer, name: bytes) -> str:
    head = server.messages[0].data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ")
    [line] = [h for h in head.split(b"\r\n") if h.startswith(name + b": ")]
    return line[len(name) + 2 :].decode("ascii")


def _received(server: SmtpTestServer) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(m.data, policy=email.policy.default) for m in server.messages]


def test_encoded_line_breaks_stay_literal_text_in_every_header(run, app):
    name = f"Eve {ENCODED_LF}Bcc: victim@example.org"
    with app.transaction() as s:  # stored directly: the CLI and the form refuse such a name
        t = f.topic(s, "llm")
        t.name = f"LLM {ENCODED_LF}Bcc: victim@example.org"
        f.paper(s, f"Title {ENCODED_CRLF}Bcc: victim@example.org", topics={t: 2.0})
        f.subscriber(s, "eve@example.org", [t]).name = name

    with SmtpTestServer() as server:
        _send_through(run, server)
    [message] = _received(server)

    assert set(message.keys()) == DIGEST_HEADERS
    # RFC 2047 joins adjacent encoded words without the folding space between them.
    to = _raw_header(server, b"To")
    assert str(make_header(decode_header(to))) == f"{name} <eve@example.org>"
    assert ENCODED_CRLF in str(message["Subject"])
    assert list(server.messages[0].recipients) == ["eve@example.org"]
    head = server.messages[0].data.split(b"\r\n\r\n", 1)[0]
    assert ENCODED_LF.encode() not in head and ENCODED_CRLF.encode() not in head  # re-encoded


def test_rows_that_skipped_validation_never_reach_the_envelope_or_a_header(run, app):
    with app.transaction() as s:
        t = f.topic(s, "llm")
        f.paper(s, "Title\r\nBcc: victim@example.org\r\n\r\nbody", topics={t: 2.0})
        f.subscriber(s, "eve@example.org\r\nRCPT TO:<victim@example.org>", [t])
        f.subscriber(s, "ada@example.org", [t]).name = "Ada\r\nBcc: victim@example.org"

    with SmtpTestServer() as server:
        _send_through(run, server)

    wire = b"\n".join(server.raw_lines)
    assert b"RCPT TO:<victim" not in wire and b"\nBcc:" not in wire
    assert [list(m.recipients) for m in server.messages] == [["ada@example.org"]]
    [message] = _received(server)
    assert set(message.keys()) == DIGEST_HEADERS
    assert "\n" not in str(message["Subject"]) and "\n" not in str(message["To"])
    with app.sessions() as s:
        statuses = dict(s.execute(select(Delivery.subscriber_id, Delivery.status)).all())
    assert sorted(str(v) for v in statuses.values()) == ["failed", "sent"]
