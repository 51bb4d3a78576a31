"""Why a message was not delivered: RFC 3463 status codes first, the server's wording second.

An enhanced status code `class.subject.detail` says how lasting a failure is (the class) and
what it is about (the subject): 5.1.x is the address, 5.2.x the mailbox, 5.3 to 5.6 the
systems, the network and the message on the way, 5.7.x security and policy. A code settles
the family; the wording only picks the reason within it, so a server's prose cannot turn a
policy block into a dead address. Where a server gives no code (or only x.0.x), the wording
alone decides, with phrases of the kind established bounce analysers match on.

Only an addressing failure (a mailbox or domain that does not exist, or moved) is `hard` and
suppresses the address. Mailbox trouble, system, network and delivery-time failures and every
4.x.x are `soft`. Security and policy refusals are `blocked`: they are about the sender's
mail, not the address, so they are counted and reported and never suppress anyone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HARD = "hard"
SOFT = "soft"
BLOCKED = "blocked"

# Reasons, each with the one kind it always has.
BAD_MAILBOX = "bad-mailbox"
BAD_DOMAIN = "bad-domain"
MOVED = "moved"
MAILBOX_FULL = "mailbox-full"
MAILBOX_DISABLED = "mailbox-disabled"
MAILBOX_ERROR = "mailbox-error"
TOO_LARGE = "too-large"
SYSTEM = "system"
NETWORK = "network"
EXPIRED = "expired"
PROTOCOL = "protocol"
MESSAGE_FORMAT = "message-format"
DEFERRED = "deferred"
UNCLASSIFIED = "unclassified"
UNRECOGNIZED = "unrecognized"
SPAM = "spam"
AUTHENTICATION = "authentication"
REPUTATION = "reputation"
CONTENT = "content"
POLICY = "policy"
# Our sender refused (its address, domain or host) or relaying denied: never the reader's.
REJECTED = "rejected"

ADDRESS_REASONS = (BAD_MAILBOX, BAD_DOMAIN, MOVED)
MAILBOX_REASONS = (MAILBOX_FULL, MAILBOX_DISABLED, MAILBOX_ERROR, TOO_LARGE)
TRANSIENT_REASONS = (
    SYSTEM, NETWORK, EXPIRED, PROTOCOL, MESSAGE_FORMAT, DEFERRED, UNCLASSIFIED, UNRECOGNIZED
)  # fmt: skip
BLOCKED_REASONS = (SPAM, AUTHENTICATION, REPUTATION, CONTENT, REJECTED, POLICY)
SOFT_REASONS = MAILBOX_REASONS + TRANSIENT_REASONS

_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
# A basic reply code where servers put one: at the start of a line, or after "smtp;".
_BASIC = re.compile(r"(?:^|[\n;:(]\s*|#)([245])\d\d(?=[\s\-.]|$)")


def _phrases(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(patterns))


# Wording of each reason, tried in this order: narrower phrases before the broad ones that
# would also match them ("mailbox size limit" is a full mailbox, not a message too large;
# "connection refused" is the network, not a policy).
_WORDING: tuple[tuple[str, re.Pattern[str]], ...] = (
    (MAILBOX_FULL, _phrases(
        r"mail ?box (is )?(full|over)", r"over ?quota", r"quota (exceeded|exceed|full)",
        r"exceed\w* (\w+ ){0,3}quota", r"insufficient (disk |storage )?(space|storage)",
        r"mail ?box size limit", r"storage (space |allocation )?(limit|exceeded|full)",
        r"disk (quota|full)", r"mail ?(box|folder) (\w+ ){0,2}exceed", r"out of storage",
        r"too much mail", r"inbox is full", r"user is over", r"has exceeded (its|the|his|her)",
        r"storage allocation", r"\bquota\b", r"mail ?folder is full",
        r"(does not have|not) enough (storage |disk )?space", r"full mail ?box",
    )),
    (MAILBOX_DISABLED, _phrases(
        r"(mail ?box|account|user|address|recipient)( \S+){0,5} (is |has been |was )?"
        r"(disabled|deactivated|suspended|inactive|locked|frozen|on hold)",
        r"(disabled|inactive|suspended|deactivated|expired) (mail ?box|account|user|recipient)",
        r"invalid/inactive user", r"suspend(ed)? the service", r"disabled or discontinued",
        r"mail ?box unavailable or access denied",
    )),
    (AUTHENTICATION, _phrases(
        r"\bdmarc\b", r"\bspf\b", r"\bdkim\b", r"sender policy framework", r"unauthenticated",
        r"authentication (check |checks )?(fail|required)", r"not (pass|passing) authentication",
        r"\bsender ?id\b",
    )),
    (REPUTATION, _phrases(
        r"black ?list", r"block ?list", r"deny ?list", r"\brbl\b", r"\bdnsbl\b", r"spamhaus",
        r"spamcop", r"barracuda", r"\bsorbs\b", r"(is|are|was|been|currently) listed (on|in|at|by)",
        r"reputation", r"sender score", r"too many complaints", r"user complaints",
        r"rate limit", r"throttl", r"\bts[s]?\d\d\b", r"reverse dns", r"\bptr\b",
    )),
    (SPAM, _phrases(
        r"\bspam", r"junk mail", r"unsolicited", r"phishing", r"bulk mail",
        r"(considered|classified|detected|identified) as (junk|bulk|suspicious)",
    )),
    (CONTENT, _phrases(
        r"virus", r"malware", r"infected", r"trojan", r"(attachment|file type)s? (\w+ ){0,3}"
        r"(not allowed|blocked|rejected|prohibited|forbidden)", r"banned (attachment|content)",
        r"(content|message) (was )?(rejected|not allowed|filtered|blocked) by content",
        r"content (policy|filter)",
    )),
    (REJECTED, _phrases(
        r"sender (address |domain |e-?mail )?(\S+ ){0,2}(rejected|refused|denied|blocked|"
        r"not (allowed|accepted|permitted|authori[sz]ed)|verif\w* fail)", r"sender verify",
        r"(mail from|envelope from|envelope sender|return.path) (\S+ ){0,3}(rejected|refused|"
        r"denied|invalid|not accepted)", r"(your|sending|client) (domain|host|ip|server) "
        r"(\S+ ){0,3}(rejected|refused|denied|blocked|not allowed)",
        r"relay(ing)? (access )?(denied|not permitted|not allowed|prohibited)",
        r"unable to relay", r"rcpthosts", r"not (authorized|authorised|permitted|allowed) to "
        r"(send|relay)", r"we do not relay",
    )),
    (MOVED, _phrases(
        r"(mail ?box|address|user|recipient) (has )?(been )?moved", r"no forwarding address",
        r"user not local",
    )),
    (BAD_DOMAIN, _phrases(
        r"host (or domain name )?(not found|unknown)", r"unknown (host|domain|mail domain)",
        r"domain (name )?(not found|does ?n[o']t exist|unknown|is not valid)", r"nxdomain",
        r"no (mx|mail exchanger|such domain)", r"(unrouteable|unroutable) (mail )?domain",
        r"null mx", r"domain (\S+ ){0,2}does not accept mail", r"name or service not known",
        r"bad destination system address", r"domain (is not reachable|must exist)",
        r"mx records? (\S+ ){0,3}non-?existent host", r"couldn'?t find any host",
        r"domain mentioned in (e-?mail )?address is unknown", r"account or domain may not exist",
    )),
    (BAD_MAILBOX, _phrases(
        r"user unknown", r"unknown (user|recipient|local[- ]?part|mail ?box|address|alias)",
        r"no such (user|mail ?box|recipient|address|account|person|local user)",
        r"(does ?n[o']t|does not|did not|not) exist", r"mail ?box (is |currently )?unavailable",
        r"mail ?box not (found|available)", r"(user|recipient|address|mail ?box|account)s? "
        r"(\S+ ){0,2}(not found|not listed|unknown|not recognized|not recognised|invalid)",
        r"invalid (recipient|mail ?box|user|address|e-?mail)", r"recipientnotfound",
        r"no (mail ?box|account|user) (here )?by that name", r"not a (valid|known) "
        r"(user|recipient|mail ?box|address)", r"does ?n[o']t have an? [\w.-]+ account",
        r"no longer (valid|available|in use|active|exists|with)", r"unrouteable address",
        r"bad destination mail ?box", r"addressee unknown", r"recipient rejected",
        r"undeliverable address", r"no mailbox here", r"not our customer", r"unknown or illegal",
        r"account (\S+ ){0,2}(closed|deleted|removed|terminated|not found)",
        r"(user|mail ?box) (is |has been |was )(terminated|deleted|removed|closed)",
        # Wording classes of the mature analysers and of real reports in other languages.
        r"user not known", r"not (a |an )?(known|active|valid) (user|address|mail ?box)",
        r"no matches to nameserver query", r"invalid (final )?(delivery )?user ?id",
        r"does not have a final (e-?mail )?delivery point", r"n'existe pas", r"nie istnieje",
        r"no existe", r"existiert nicht", r"non esiste", r"bad[-_ ]recipient",
        r"archived recipient", r"no (mail ?box|mail box) (found|available)",
        r"no longer accepts mail", r"non-?existent (user|address|mail ?box|recipient)",
        r"destination addresses were unknown", r"recipient (\S+ ){0,3}(is not local|not ok)",
        r"can'?t accept user", r"no valid recipients", r"badrcptto", r"no one at this address",
        r"e-?mail address (is wrong|could not be found)", r"e-?mail name is not found",
    )),
    (TOO_LARGE, _phrases(
        r"message (size )?(is )?(too (large|big)|exceeds)", r"message length exceeds",
        r"exceeds (\w+ ){0,4}(size|length) limit", r"size limit", r"too big",
    )),
    (EXPIRED, _phrases(
        r"(delivery|retry) time(out)? (expired|exceeded)", r"message expired", r"expired after",
        r"too long in (the )?queue", r"in the queue too long", r"retry timeout", r"gave up",
        r"giving up",
    )),
    (NETWORK, _phrases(
        r"connection (refused|timed out|reset|closed|lost|dropped)", r"no route to host",
        r"network (is )?unreachable", r"timed out", r"could not connect", r"unable to connect",
        r"establish an smtp connection", r"too many hops", r"mail loop", r"loops back",
        r"temporary (dns|lookup) failure", r"host unreachable",
    )),
    (SYSTEM, _phrases(
        r"system (error|failure|not accepting)", r"server (error|busy|unavailable)",
        r"internal error", r"local error", r"service (temporarily )?unavailable",
        r"out of memory", r"insufficient system",
    )),
    (PROTOCOL, _phrases(
        r"syntax error", r"command (not |un)recognized", r"protocol error", r"bad sequence",
        r"line too long", r"too many recipients",
    )),
    (POLICY, _phrases(
        r"\bblocked\b", r"\bpolic(y|ies)\b", r"access denied", r"administratively",
        r"prohibited",
        r"not accepting mail from", r"refused", r"denied", r"banned", r"not authori[sz]ed",
    )),
)  # fmt: skip

# The reason each specific code stands for; a subject's default covers its other details.
_CODE_REASONS = {
    ("1", "0"): BAD_MAILBOX,
    ("1", "1"): BAD_MAILBOX,
    ("1", "2"): BAD_DOMAIN,
    ("1", "3"): BAD_MAILBOX,  # the address is not valid syntax
    ("1", "4"): BAD_MAILBOX,
    ("1", "6"): MOVED,
    ("1", "7"): POLICY,  # our sender's address, not theirs
    ("1", "8"): POLICY,
    ("1", "10"): BAD_DOMAIN,  # RFC 7505 null MX; Microsoft also says so of a missing mailbox
    ("2", "1"): MAILBOX_DISABLED,
    ("2", "2"): MAILBOX_FULL,
    ("2", "3"): TOO_LARGE,
    ("3", "4"): TOO_LARGE,
    ("4", "7"): EXPIRED,
    ("7", "23"): AUTHENTICATION,
    ("7", "24"): AUTHENTICATION,
    ("7", "25"): REPUTATION,  # no reverse DNS
    ("7", "26"): AUTHENTICATION,
    ("7", "27"): AUTHENTICATION,
}
_SUBJECT_REASONS = {
    "1": BAD_MAILBOX,
    "2": MAILBOX_ERROR,
    "3": SYSTEM,
    "4": NETWORK,
    "5": PROTOCOL,
    "6": MESSAGE_FORMAT,
    "7": POLICY,
}
_FAMILIES = (ADDRESS_REASONS, MAILBOX_REASONS, TRANSIENT_REASONS, BLOCKED_REASONS)


@dataclass(frozen=True)
class Verdict:
    """What one failure is: its kind (hard, soft, blocked), its reason, and its code."""

    kind: str
    reason: str
    status: str | None = None


def kind_of(reason: str) -> str:
    """Return the kind a reason always has."""
    if reason in ADDRESS_REASONS:
        return HARD
    return BLOCKED if reason in BLOCKED_REASONS else SOFT


def enhanced_status(text: str) -> str | None:
    """Return the first RFC 3463 code in a text ("5.1.1"), or None."""
    match = _ENHANCED.search(text)
    return ".".join(match.groups()) if match else None


def specific_code(status: str | None) -> bool:
    """Tell whether a status names a reason by itself (5.1.1 does; 5.0.0 and none do not)."""
    return _code_reason(enhanced_status(status or "")) is not None


def reason_from_wording(text: str) -> str | None:
    """Return the reason a server's words give, or None when they say nothing known."""
    matches = _worded_reasons(text)
    return matches[0] if matches else None


def _worded_reasons(text: str) -> list[str]:
    lowered = " ".join(text.lower().split())
    return [reason for reason, pattern in _WORDING if pattern.search(lowered)]


def classify_failure(
    status: str | None, text: str = "", *, permanent: bool | None = None
) -> Verdict:
    """Classify one failure from its status code and the server's words.

    `permanent` is what the report itself states (a DSN's Action, a text bounce's "permanent
    error"); None when it says nothing, and then the code's class decides.
    """
    code = enhanced_status(status or "") or enhanced_status(text)
    klass = code.split(".")[0] if code else _basic_class(status or text)
    if klass == "2":
        return Verdict(SOFT, UNCLASSIFIED, code)  # a success code in a failure: unreliable
    if klass == "4" or permanent is False:
        return Verdict(SOFT, _soft_reason(code, text), code)
    return Verdict(*_permanent(code, text), code)


def _basic_class(text: str) -> str | None:
    match = _BASIC.search(text)
    return match.group(1) if match else None


def _soft_reason(code: str | None, text: str) -> str:
    # A delay or a temporary refusal: only the soft reasons fit, whatever the words say.
    worded = [r for r in _worded_reasons(text) if r in SOFT_REASONS]
    if worded:
        return worded[0]
    coded = _code_reason(code)
    return coded if coded in SOFT_REASONS else DEFERRED


# Replies of one provider whose code says something else than the family it belongs to (from
# the providers' own lists of their replies, as mature analysers keep them).
_PROVIDER_REPLIES = (
    # Exchange Online's directory-based edge blocking: the recipient does not exist.
    ("5.4.1", "recipient address rejected: access denied", BAD_MAILBOX),
    ("5.2.1", "content filter agent quarantined", SPAM),  # Exchange
)


def _provider_reply(code: str | None, text: str) -> str | None:
    lowered = " ".join(text.lower().split())
    return next((r for c, words, r in _PROVIDER_REPLIES if c == code and words in lowered), None)


def _permanent(code: str | None, text: str) -> tuple[str, str]:
    provider = _provider_reply(code, text)
    if provider is not None:
        return kind_of(provider), provider
    coded = _code_reason(code)
    worded = _worded_reasons(text)
    if coded is None:  # no code, or x.0.x: the words alone decide
        reason = worded[0] if worded else UNCLASSIFIED
        return kind_of(reason), reason
    family = next(f for f in _FAMILIES if coded in f)
    reason = next((r for r in worded if r in family), coded)
    overruled = _overruling_words(code, family, worded)
    return kind_of(overruled or reason), overruled or reason


# Mailbox trouble and the sender's reputation are what servers most often misreport as a dead
# address (a 5.1.1 "over quota", "blocked by Spamhaus"): such words win over an address code.
_NOT_AN_ADDRESS = (MAILBOX_FULL, SPAM, REPUTATION, AUTHENTICATION, REJECTED)
# Codes servers misuse for a missing mailbox: 5.3.0 and 5.5.x "addressee unknown", 5.4.4
# "no such domain", 5.7.1 "no such user". Subject 1 is not among them: 5.1.7 and 5.1.8 are
# about our sender, and the 5.2 mailbox codes keep their family.
_LOOSE_SUBJECTS = ("3", "4", "5", "7")


def _overruling_words(code: str | None, family: tuple[str, ...], worded: list[str]) -> str | None:
    """Return the reason the words give against the code's family, where they may decide."""
    if family == ADDRESS_REASONS:
        return next((r for r in worded if r in _NOT_AN_ADDRESS), None)
    subject = code.split(".")[1] if code else ""
    if subject in _LOOSE_SUBJECTS and not any(r in BLOCKED_REASONS for r in worded):
        # Only words naming the address itself; any sign of a block keeps the code's family.
        address = [r for r in worded if r in ADDRESS_REASONS]
        if address and not any(r in MAILBOX_REASONS for r in worded):
            return address[0]
    return None


def _code_reason(code: str | None) -> str | None:
    """Return the reason of a specific code; None for none or an undefined subject (x.0.x)."""
    if code is None:
        return None
    _, subject, detail = code.split(".")
    return _CODE_REASONS.get((subject, detail)) or _SUBJECT_REASONS.get(subject)
