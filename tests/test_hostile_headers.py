"""Hostile input aimed at headers and the SMTP envelope: CR/LF, NUL, encoded line breaks.

Also covered elsewhere, at the unit level: test_message.py (header injection through display
values, refused Message-ID and List-Unsubscribe values), test_smtp_client.py (unsafe envelope
addresses never reach the wire), test_subscribers.py (normalise_email refuses CR, LF and NUL).
These tests go end to end: from the CLI, a CSV file or the web form to the bytes on the wire.
"""

from __future__ import annotations

import base64
import dataclasses
import email
import email.policy
import json
import mailbox
import re
from email.header import decode_header, make_header

import pytest
from sqlalchemy import delete, func, select

from newsletter.audience import signup as svc
from newsletter.core.models import Delivery, RateLimit, Subscriber, Topic
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

    client = f.web_app(app, testing=False).test_client()
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


# -- names that hide header lines in RFC 2047 encoded words ----------------------------------

HIDDEN = (
    "x\r\nReply-To: a@evil.example\r\nBcc: b@evil.example\r\nContent-Type: text/html\r\n\r\n"
    "<h1>Your account is closed</h1>"
)
# 156 characters: within the form's limits, and free of raw CR or LF.
ENCODED_ATTACK = "=?utf-8?b?" + base64.b64encode(HIDDEN.encode()).decode() + "?="
NOTICE_HEADERS = ["Return-Path", "Delivered-To", "From", "To", "Subject", "Date", "Message-ID",
                  "MIME-Version", "Auto-Submitted", "Content-Type"]  # fmt: skip
# Every line of a header section: a field, or the continuation of a folded one.
HEADER_LINE = re.compile(rb"[!-9;-~]+: [ -~]*|[ \t]+[!-~][ -~]*")
HIDDEN_CONTROLS = [
    ENCODED_ATTACK,
    ENCODED_LF + "Bcc: victim@example.org",
    "=?utf-8?q?Eve=C2=85Bcc:_victim@example.org?=",  # an encoded NEL
    "Eve\u0085Bcc: victim@example.org",  # a raw NEL
    "Eve\u2028Bcc: victim@example.org",
    "Eve\tLee",
]


def _web_client(app):

    return f.web_app(app).test_client()


def _post_sign_up(client, **fields):
    page = client.get("/").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    data = {"email": "eve@example.org", "name": "Eve", "frequency": "daily", "hour": "8",
            "timezone": "UTC", "topics": ["llm"], "csrf_token": token, **fields}  # fmt: skip
    return client.post("/", data=data)


def _outbox(app) -> list[bytes]:
    box = mailbox.Maildir(app.settings.transport.removeprefix("maildir:"), create=True)
    return [bytes(m) for m in box]


def _assert_header_lines_well_formed(raw: bytes) -> None:
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]  # Maildir keeps LF line ends
    assert [line for line in head.split(b"\n") if not HEADER_LINE.fullmatch(line)] == []


def test_the_sign_up_form_refuses_a_name_that_encodes_header_lines(app, llm):
    client = _web_client(app)

    response = _post_sign_up(client, name=ENCODED_ATTACK)

    assert response.status_code == 400
    assert "Use a name without control characters" in response.get_data(as_text=True)
    assert _count(app, Subscriber) == 0 and _outbox(app) == []


@pytest.mark.parametrize("name", HIDDEN_CONTROLS)
def test_the_sign_up_form_refuses_names_with_control_characters_plain_or_encoded(app, llm, name):
    response = _post_sign_up(_web_client(app), name=name)

    assert response.status_code == 400
    assert _count(app, Subscriber) == 0 and _outbox(app) == []


def test_an_encoded_word_typed_as_a_name_is_mailed_as_those_very_characters(app, llm):
    name = "=?utf-8?q?Zo=C3=AB?="  # harmless once decoded, but not what the person typed
    client = _web_client(app)
    assert _post_sign_up(client, name=name).status_code == 303
    [confirmation] = _outbox(app)  # an unconfirmed name is not echoed at all
    sent = email.message_from_bytes(confirmation, policy=email.policy.default)
    shown = str(sent["To"]) + "".join(
        part.get_content() for part in sent.walk() if part.get_content_maintype() == "text"
    )
    assert "Zoë" not in shown and "Zo=C3" not in shown and "=?utf-8?q?" not in shown.lower()
    assert sent["To"].addresses[0].display_name == ""
    with app.transaction() as s:  # once confirmed, the "manage" notice is addressed by name
        reader = s.scalar(select(Subscriber))
        svc.confirm(reader.id, session=s)
        reader.name = name
    app.settings = dataclasses.replace(app.settings, mail_interval_minutes=1)
    with app.transaction() as s:
        s.execute(delete(RateLimit))

    response = _post_sign_up(client, name="Eve")

    assert response.status_code == 303
    [raw] = [m for m in _outbox(app) if m != confirmation]
    _assert_header_lines_well_formed(raw)
    to = email.message_from_bytes(raw, policy=email.policy.default)["To"]
    assert to.addresses[0].display_name == name


def test_a_stored_encoded_attack_cannot_add_headers_or_a_body_to_the_emailed_notice(app, llm):
    # Stored directly, as a row from before validation: a confirmed reader who signs up again
    # gets the "manage" notice, addressed with the stored name.
    with app.transaction() as s:
        f.subscriber(s, "eve@example.org", [s.scalar(select(Topic))]).name = ENCODED_ATTACK

    response = _post_sign_up(_web_client(app), name="Eve")

    assert response.status_code == 303
    [raw] = _outbox(app)
    _assert_header_lines_well_formed(raw)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert list(message.keys()) == NOTICE_HEADERS
    assert "Reply-To" not in message and "Bcc" not in message
    to = str(make_header(decode_header(_raw_lf_header(raw, b"To"))))
    assert to == f"{ENCODED_ATTACK} <eve@example.org>"  # shown literally, never decoded
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert "https://news.example.test/manage/" in text.get_content()
    assert "<h1>" not in html.get_content() and "https://news.example.test/manage/" in (
        html.get_content()
    )


def _raw_lf_header(raw: bytes, name: bytes) -> str:
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].replace(b"\n ", b" ")
    [line] = [h for h in head.split(b"\n") if h.startswith(name + b": ")]
    return line[len(name) + 2 :].decode("ascii")


@pytest.mark.parametrize("name", HIDDEN_CONTROLS)
def test_cli_add_refuses_names_with_control_characters_plain_or_encoded(run, app, llm, name):
    result = run("subscribers", "add", "eve@example.org", "--name", name, "--topics", "llm")

    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "control character" in result.stderr
    assert _count(app, Subscriber) == 0


def test_csv_rows_with_encoded_attacks_in_the_name_are_reported_by_line(run, app, llm, tmp_path):
    path = tmp_path / "people.csv"
    path.write_text(f"email,name,topics\neve@example.org,{ENCODED_ATTACK},llm\nada@x.org,Ada,llm\n")

    result = run("subscribers", "import", str(path), "--json")

    assert result.exit_code == 1  # as for every bad row: reported, skipped, the rest saved
    [error] = json.loads(result.stdout)["errors"]
    assert error["line"] == 2 and "control character" in error["reason"]
    with app.sessions() as s:
        assert s.scalars(select(Subscriber.email)).all() == ["ada@x.org"]


def test_a_digest_to_a_stored_encoded_attack_name_keeps_its_own_headers(run, app):
    with app.transaction() as s:
        t = f.topic(s, "llm")
        f.paper(s, "A paper", topics={t: 2.0})
        f.subscriber(s, "eve@example.org", [t]).name = ENCODED_ATTACK

    with SmtpTestServer() as server:
        _send_through(run, server)

    [message] = _received(server)
    assert set(message.keys()) == DIGEST_HEADERS
    assert str(make_header(decode_header(_raw_header(server, b"To")))) == (
        f"{ENCODED_ATTACK} <eve@example.org>"
    )
    assert "<h1>" not in message.get_body(("html",)).get_content()
    assert list(server.messages[0].recipients) == ["eve@example.org"]


def test_a_test_copy_to_a_stored_encoded_attack_name_keeps_its_own_headers(run, app):
    with app.transaction() as s:
        t = f.topic(s, "llm")
        f.paper(s, "A paper", topics={t: 2.0})
        f.subscriber(s, "eve@example.org", [t]).name = ENCODED_ATTACK

    result = run("send", "--to", "eve@example.org", "--date", f.DAY.isoformat())

    assert result.exit_code == 0, result.output
    [raw] = _outbox(app)
    _assert_header_lines_well_formed(raw)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert set(message.keys()) == DIGEST_HEADERS | {"Return-Path", "Delivered-To"}
    to = str(make_header(decode_header(_raw_lf_header(raw, b"To"))))
    assert to == f"{ENCODED_ATTACK} <eve@example.org>"


# -- addresses the mailer could not build --------------------------------------------------------

UNMAILABLE = {
    "jösé@example.org": "non-ASCII local part",
    "ｊｏｈｎ@example.org": "non-ASCII local part",
    "=?utf-8?q?a?=@example.org": "cannot contain",
}


@pytest.mark.parametrize("address", UNMAILABLE)
def test_the_sign_up_form_refuses_addresses_it_cannot_mail(app, llm, address):
    response = _post_sign_up(_web_client(app), email=address)

    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Enter a valid email address" in page and UNMAILABLE[address] in page
    assert _count(app, Subscriber) == 0 and _outbox(app) == []


def test_the_sign_up_form_mails_an_idn_domain_by_its_a_label(app, llm):
    response = _post_sign_up(_web_client(app), email="user@exämple.org")

    assert response.status_code == 303
    [raw] = _outbox(app)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Delivered-To"] == "user@xn--exmple-cua.org"  # the envelope recipient
    assert message["To"].addresses[0].addr_spec == "user@xn--exmple-cua.org"
    with app.sessions() as s:
        assert s.scalars(select(Subscriber.email)).all() == ["user@exämple.org"]


@pytest.mark.parametrize("address", UNMAILABLE)
def test_the_cli_refuses_addresses_it_cannot_mail(run, app, llm, tmp_path, address):
    added = run("subscribers", "add", address, "--topics", "llm")
    path = tmp_path / "people.csv"
    path.write_text(f"email,topics\n{address},llm\n", encoding="utf-8")
    imported = run("subscribers", "import", str(path), "--json")
    test_copy = run("send", "--to", address)

    for result in (added, test_copy):
        assert result.exit_code == 2
        assert result.stderr.count("\n") == 1 and UNMAILABLE[address] in result.stderr
    assert imported.exit_code == 1
    [error] = json.loads(imported.stdout)["errors"]
    assert error["line"] == 2 and UNMAILABLE[address] in error["reason"]
    assert _count(app, Subscriber) == 0 and _outbox(app) == []


def test_a_digest_to_an_idn_domain_goes_to_its_a_label(run, app):
    with app.transaction() as s:
        f.paper(s, "A paper", topics={f.topic(s, "llm"): 2.0})
    added = run("subscribers", "add", "user@exämple.org", "--topics", "llm", "--confirmed")
    assert added.exit_code == 0, added.output

    with SmtpTestServer() as server:
        _send_through(run, server)

    assert list(server.messages[0].recipients) == ["user@xn--exmple-cua.org"]
    [message] = _received(server)
    assert message["To"].addresses[0].addr_spec == "user@xn--exmple-cua.org"
