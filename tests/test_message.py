"""The MIME message: headers, part order, encodings, header injection, DKIM."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import email
import email.policy
import re
import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.content.digest import DigestPaper, EditionInfo, Filled, Recipient, RenderedDigest
from newsletter.content.mime import (
    DkimSigner,
    _qp_extend,
    build_message_data,
    envelope_sender,
    make_dkim_signer,
    make_message_id,
)
from newsletter.content.rendering import make_renderer
from newsletter.core import tokens
from newsletter.core.config import Settings
from newsletter.core.errors import ConfigError, InputError
from newsletter.delivery.smtp import dot_stuff

EDITION = EditionInfo(date(2025, 11, 27))
SENT_AT = datetime(2025, 11, 27, 7, 30, 5, tzinfo=UTC)
MAILTO = "mailto:unsubscribe@news.example.test?subject=unsubscribe"
PAPER = DigestPaper(
    paper_id=1,
    title="Graph-LSTMs for Road Agents",
    authors=("Rohan Chandra", "Uttaran Bhattacharya"),
    abstract="We present a novel approach for traffic forecasting. " * 12,
    url_abs="https://arxiv.org/abs/1912.01118",
    url_pdf="https://arxiv.org/pdf/1912.01118",
    url_code=None,
    upvotes=42,
    topics=("Robotics",),
)


def render(settings: Settings, recipient: Recipient, paper: DigestPaper = PAPER) -> RenderedDigest:
    return make_renderer(settings).render(EDITION, [paper], recipient)


def build(
    settings: Settings, recipient: Recipient, rendered: RenderedDigest, **kw: object
) -> bytes:
    options: dict[str, object] = {
        "recipient": recipient,
        "settings": settings,
        "message_id": "<abc123@news.example.test>",
        "date": SENT_AT,
        "list_unsubscribe_url": tokens.unsubscribe_url(settings, recipient.subscriber_id, "none"),
        "list_unsubscribe_mailto": MAILTO,
    }
    options.update(kw)
    return build_message_data(rendered, **options)[0]  # type: ignore[arg-type]


def assert_crlf_only(raw: bytes) -> None:
    crlf = raw.count(b"\r\n")
    assert raw.count(b"\r") == crlf and raw.count(b"\n") == crlf
    assert dot_stuff(raw, crlf_only=True) == dot_stuff(raw)


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert not message.defects
    return message


def test_headers_and_parts(settings: Settings) -> None:
    ann = Recipient(1, "ann@example.org", "Ann Lee", ("Robotics",))
    rendered = render(settings, ann)
    raw = build(settings, ann, rendered)
    assert_crlf_only(raw)
    message = parse(raw)
    unsubscribe = tokens.unsubscribe_url(settings, 1, "none")
    assert list(message.keys()) == [
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "List-Id",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "Precedence",
        "Content-Type",
    ]
    assert message["From"] == "Daily Papers <papers@news.example.test>"
    assert message["To"] == "Ann Lee <ann@example.org>"
    assert message["Subject"] == rendered.subject
    assert message["Subject"] == "Your daily papers — Nov 27: Graph-LSTMs for Road Agents"
    assert message["Date"] == "Thu, 27 Nov 2025 07:30:05 +0000"
    assert message["Date"].datetime == SENT_AT
    assert message["Message-ID"] == "<abc123@news.example.test>"
    assert message["MIME-Version"] == "1.0"
    assert message["List-Id"] == "Daily Papers <daily-papers.news.example.test>"
    assert re.sub(r"\s+", " ", message["List-Unsubscribe"]) == f"<{unsubscribe}>, <{MAILTO}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Precedence"] == "bulk"
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    for part, body in zip(parts, (rendered.text, rendered.html), strict=True):
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
        # The parser keeps the CRLF of the wire format.
        assert part.get_content().replace("\r\n", "\n") == body
    assert "▲ 42" in parts[1].get_content()


def test_bytes_are_crlf_and_lines_are_short(settings: Settings) -> None:
    ann = Recipient(1, "ann@example.org", "Ann", ("Robotics",))
    raw = build(settings, ann, render(settings, ann))
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert raw.endswith(b"--\r\n")
    head, body = raw.split(b"\r\n\r\n", 1)
    # Quoted-printable lines must fit 76; header lines only must stay under 998 (the
    # List-Unsubscribe URL cannot be folded).
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    assert max(len(line) for line in head.split(b"\r\n")) <= 998
    assert raw.isascii()


def test_non_ascii_name_and_subject(settings: Settings) -> None:
    zoe = Recipient(5, "zoë@bücher.example", "Zoë Ødegård-Šimić", ("Robotics",))
    with pytest.raises(InputError, match="non-ASCII local part"):
        build(settings, zoe, render(settings, zoe))
    zoe = dataclasses.replace(zoe, email="zoe@bücher.example")
    paper = dataclasses.replace(PAPER, title="Über Graphen: Straßenverkehr mit 图神经网络 " * 3)
    rendered = render(settings, zoe, paper)
    raw = build(settings, zoe, rendered)
    assert b"=?utf-8?b?" in raw
    message = parse(raw)
    assert message["To"].addresses[0].display_name == "Zoë Ødegård-Šimić"
    assert message["To"].addresses[0].addr_spec == "zoe@xn--bcher-kva.example"
    assert message["Subject"] == rendered.subject
    assert "Über Graphen" in message["Subject"]
    assert "Hi Zoë Ødegård-Šimić," in message.get_body(("plain",)).get_content()
    header_lines = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert max(len(line) for line in header_lines if b"?utf-8?" in line) <= 78


def test_display_names_with_specials_are_quoted(settings: Settings) -> None:
    odd = Recipient(6, "odd@example.org", 'O\'Neil, "Jr." (Lab)', ())
    message = parse(build(settings, odd, render(settings, odd)))
    assert message["To"].addresses[0].display_name == 'O\'Neil, "Jr." (Lab)'
    assert message["To"].addresses[0].addr_spec == "odd@example.org"
    non_ascii_from = dataclasses.replace(settings, from_address="Tägliche Papiere <p@example.org>")
    message = parse(build(non_ascii_from, odd, render(settings, odd)))
    assert message["From"].addresses[0].display_name == "Tägliche Papiere"


def test_no_header_injection_through_display_values(settings: Settings) -> None:
    eve = Recipient(7, "eve@example.org", "Eve\r\nBcc: victim@example.org", ("A\r\nX-Evil: 1",))
    paper = dataclasses.replace(PAPER, title="Title\r\nBcc: victim@example.org\nX-Evil: 1")
    rendered = render(settings, eve, paper)
    message = parse(build(settings, eve, rendered))
    assert "Bcc" not in message and "X-Evil" not in message
    assert message["To"].addresses[0].display_name == "Eve Bcc: victim@example.org"
    assert (
        message["Subject"] == "Your daily papers — Nov 27: Title Bcc: victim@example.org X-Evil: 1"
    )
    hand_made = RenderedDigest("Hi\r\nBcc: victim@example.org\x00", "text", "<p>html</p>")
    message = parse(build(settings, eve, hand_made))
    assert message["Subject"] == "Hi Bcc: victim@example.org"
    assert "Bcc" not in message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "eve@example.org\r\nBcc: victim@example.org"),
        ("email", "eve@example.org>, <victim@example.org"),
        ("email", "eve@exa\x00mple.org"),
        ("email", "eve@exa\u2028mple.org"),
        ("email", "eve@exa\x85mple.org"),
        ("email", "not-an-address"),
        ("message_id", "<abc@x>\r\nBcc: victim@example.org"),
        ("message_id", "abc@x"),
        ("list_unsubscribe_url", "https://x.example/u\r\nBcc: victim@example.org"),
        ("list_unsubscribe_url", "javascript:alert(1)"),
        ("list_unsubscribe_url", "https://x.example/u>, <mailto:victim@example.org"),
        ("list_unsubscribe_mailto", "mailto:u@x.example\nBcc: victim@example.org"),
        ("list_unsubscribe_mailto", "https://not-mailto.example"),
    ],
)
def test_bad_header_values_are_refused(settings: Settings, field: str, value: str) -> None:
    ann = Recipient(1, "ann@example.org", "Ann", ())
    rendered = RenderedDigest("s", "t", "h")
    if field == "email":
        with pytest.raises(InputError):
            build(settings, dataclasses.replace(ann, email=value), rendered)
    else:
        with pytest.raises(InputError):
            build(settings, ann, rendered, **{field: value})


def test_bad_settings_are_config_errors(settings: Settings) -> None:
    ann = Recipient(1, "ann@example.org", "Ann", ())
    rendered = RenderedDigest("s", "t", "h")
    for bad in ("Papers <p@example.org>\r\nBcc: victim@example.org", "nobody"):
        with pytest.raises(ConfigError, match="from_address"):
            build(dataclasses.replace(settings, from_address=bad), ann, rendered)
    with pytest.raises(ConfigError, match="list_id"):
        build(dataclasses.replace(settings, list_id="Papers\r\n<x.example>"), ann, rendered)


def test_optional_mailto_and_default_date(settings: Settings) -> None:
    ann = Recipient(1, "ann@example.org", "", ())
    before = datetime.now(UTC).replace(microsecond=0)
    message = parse(
        build(settings, ann, render(settings, ann), list_unsubscribe_mailto=None, date=None)
    )
    assert message["List-Unsubscribe"] == f"<{tokens.unsubscribe_url(settings, 1, 'none')}>"
    assert message["To"] == "ann@example.org"
    assert before <= message["Date"].datetime <= datetime.now(UTC) + timedelta(seconds=1)


def test_date_keeps_its_offset(settings: Settings) -> None:
    ann = Recipient(1, "ann@example.org", "Ann", ())
    berlin = datetime(2025, 11, 27, 8, 30, tzinfo=timezone(timedelta(hours=1)))
    message = parse(build(settings, ann, render(settings, ann), date=berlin))
    assert message["Date"] == "Thu, 27 Nov 2025 08:30:00 +0100"


def test_envelope_sender_and_message_id(settings: Settings) -> None:
    assert envelope_sender(settings) == "papers@news.example.test"
    first, second = make_message_id(settings), make_message_id(settings)
    assert re.fullmatch(r"<[0-9a-f]{32}@news\.example\.test>", first)
    assert first != second


def _qp_body(text: str, parts: Filled | None) -> bytes:
    out: list[bytes] = []
    _qp_extend(out, text, parts)
    return b"".join(out)


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)


@given(literals=st.lists(_text, min_size=1, max_size=6), data=st.data())
def test_cached_qp_pieces_decode_to_the_body(literals: list[str], data: st.DataObject) -> None:
    values = data.draw(st.lists(_text, min_size=len(literals) - 1, max_size=len(literals) - 1))
    parts = Filled(tuple(literals), tuple(values))
    body = parts.join()
    encoded = _qp_body(body, parts)
    lines = encoded.split(b"\r\n")
    assert max(len(line) for line in lines) <= 76
    assert b"\n" not in encoded.replace(b"\r\n", b"")
    expected = body.replace("\r\n", "\n").replace("\r", "\n")
    if not expected.endswith("\n"):
        expected += "\n"
    assert _decode_qp(encoded) == expected
    assert _decode_qp(_qp_body(body, None)) == expected


_short = st.text(st.sampled_from("ab.= \u00e9\n"), max_size=90)


@given(literals=st.lists(_short, min_size=2, max_size=40), data=st.data())
def test_merged_literals_decode_for_any_filled_slots(
    literals: list[str], data: st.DataObject
) -> None:
    # One body, two recipients: the literals between empty slots are joined once and reused
    # after values of other lengths, so a merged chunk lands at many columns.
    for _ in range(2):
        slot = st.one_of(st.just(""), _short)
        values = data.draw(st.lists(slot, min_size=len(literals) - 1, max_size=len(literals) - 1))
        parts = Filled(tuple(literals), tuple(values))
        out: list[bytes] = []
        dots = _qp_extend(out, "", parts)
        encoded = b"".join(out)
        assert max(len(line) for line in encoded.split(b"\r\n")) <= 76
        assert dots == (encoded.startswith(b".") or b"\r\n." in encoded)
        expected = parts.join().replace("\r\n", "\n").replace("\r", "\n")
        assert _decode_qp(encoded) == expected + ("" if expected.endswith("\n") else "\n")


def _decode_qp(encoded: bytes) -> str:
    return binascii.a2b_qp(encoded.replace(b"\r\n", b"\n")).decode("utf-8")


def test_no_dkim_settings_means_no_signer(settings: Settings) -> None:
    assert make_dkim_signer(settings) is None


def test_incomplete_or_broken_dkim_settings(settings: Settings, tmp_path: Path) -> None:
    partial = dataclasses.replace(settings, dkim_selector="mail")
    with pytest.raises(ConfigError, match="dkim_domain, dkim_private_key_file"):
        make_dkim_signer(partial)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key\n", encoding="utf-8")
    named = dataclasses.replace(settings, dkim_selector="mail", dkim_domain="example.org")
    for path in (junk, tmp_path / "missing.pem"):
        broken = dataclasses.replace(named, dkim_private_key_file=str(path))
        with pytest.raises(ConfigError, match="dkim_private_key_file"):
            make_dkim_signer(broken)


@pytest.fixture(scope="module")
def rsa_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """Generate an RSA key with openssl; return the key file and the DER public key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("dkim")
    key = folder / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    return key, public


def test_dkim_signature_verifies_and_covers_one_click(
    settings: Settings, rsa_key: tuple[Path, bytes]
) -> None:
    dkim = pytest.importorskip("dkim")
    key_file, public = rsa_key
    signing = dataclasses.replace(
        settings,
        dkim_selector="mail",
        dkim_domain="news.example.test",
        dkim_private_key_file=str(key_file),
    )
    signer = make_dkim_signer(signing)
    assert isinstance(signer, DkimSigner)
    ann = Recipient(1, "ann@example.org", "Ann Ödegård", ("Robotics",))
    raw = build(signing, ann, render(signing, ann), dkim=signer)
    assert raw.startswith(b"DKIM-Signature: ")
    assert_crlf_only(raw)  # the SMTP client trusts build_message_data on this
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"mail._domainkey.news.example.test."
        return record

    assert dkim.verify(raw, dnsfunc=dns)
    message = parse(raw)
    tags = dict(
        tag.strip().split("=", 1)
        for tag in re.sub(r"\s+", "", message["DKIM-Signature"]).split(";")
    )
    signed = {h.lower() for h in tags["h"].split(":")}
    assert {
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
    } <= signed
    assert tags["d"] == "news.example.test" and tags["s"] == "mail"
    tampered = raw.replace(
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: x"
    )
    assert not dkim.verify(tampered, dnsfunc=dns)
