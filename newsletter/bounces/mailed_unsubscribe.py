"""Unsubscribe requests mailed to the List-Unsubscribe `mailto:` address.

Each digest offers `mailto:unsubscribe@<domain>?subject=unsubscribe%20<token>`; mail clients
send that message on the reader's behalf. It arrives where returned mail is read, so bounce
processing hands every message whose subject starts with the word "unsubscribe" here.
The signed token is the only authority: the sender's address proves nothing.
"""

from __future__ import annotations

import re
from email import policy
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser

from sqlalchemy.orm import Session

from newsletter.audience.signup import check_link, unsubscribe
from newsletter.core.config import Settings
from newsletter.core.errors import InputError
from newsletter.core.models import Subscriber
from newsletter.core.tokens import read_token

_REQUEST = re.compile(r"^unsubscribe(?: (.*))?$", re.IGNORECASE)


def unsubscribe_request(data: bytes) -> str | None:
    """Return the text after "unsubscribe" in the subject ("" if none), or None if no request."""
    match = _REQUEST.match(_subject(data))
    if match is None:
        return None
    return match.group(1) or ""


def _subject(data: bytes) -> str:
    raw = BytesHeaderParser(policy=policy.compat32).parsebytes(data).get("Subject")
    if raw is None:
        return ""
    try:
        # Mail clients may send the subject as RFC 2047 encoded words, folded over lines.
        text = str(make_header(decode_header(str(raw))))
    except (HeaderParseError, LookupError, UnicodeError):
        text = str(raw)
    return " ".join(text.split())


def unsubscribe_by_mail(token: str, *, session: Session, settings: Settings) -> Subscriber | None:
    """Unsubscribe the subscriber a mailed token names; None if forged or they are gone."""
    try:
        claim = read_token(settings, "unsubscribe", token)
        subscriber = check_link(claim, session=session)
    except InputError:  # NotFound too: a deleted subscription, or a key rotated since
        return None
    return unsubscribe(subscriber.id, session=session, source="mail")
