"""Why a message was not delivered: RFC 3463 codes by class and subject, then the wording."""

from __future__ import annotations

import pytest

from newsletter.bounces.reasons import classify_failure, kind_of, reason_from_wording


@pytest.mark.parametrize(
    ("status", "text", "kind", "reason"),
    [
        # Addressing failures (5.1.x) are the only ones that suppress.
        ("5.1.1", "550 5.1.1 <a@example.org>: Recipient address rejected", "hard", "bad-mailbox"),
        ("5.1.2", "550 5.1.2 Host unknown", "hard", "bad-domain"),
        ("5.1.6", "551 5.1.6 Mailbox has moved", "hard", "moved"),
        ("5.1.10", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found",
         "hard", "bad-mailbox"),  # the words pick the reason within the address family
        # 5.1.7/5.1.8 are about our sender, not the reader's address.
        ("5.1.8", "553 5.1.8 Sender address rejected: Domain not found", "blocked", "rejected"),
        # Mailbox status (5.2.x) is soft.
        ("5.2.2", "552 5.2.2 Mailbox full", "soft", "mailbox-full"),
        ("5.2.1", "550 5.2.1 The email account that you tried to reach is disabled",
         "soft", "mailbox-disabled"),
        ("5.2.3", "552 5.2.3 Message size exceeds fixed maximum", "soft", "too-large"),
        # Systems, network, protocol, media, delivery time: soft.
        ("5.3.0", "553 5.3.0 Unknown user", "hard", "bad-mailbox"),  # a misused code
        ("5.3.0", "553 5.3.0 mail system full", "soft", "system"),
        ("5.4.4", "554 5.4.4 Unable to route", "soft", "network"),
        ("5.4.7", "delivery time expired", "soft", "expired"),
        ("5.5.0", "554 5.5.0 syntax error", "soft", "protocol"),
        ("5.6.0", "554 5.6.0 corrupt message", "soft", "message-format"),
        # Security and policy (5.7.x): blocked; only words naming the address alone, with no
        # sign of a block, make one a dead address (as servers misuse 5.7.1 for "no such user").
        ("5.7.1", "554 5.7.1 Message rejected as spam", "blocked", "spam"),
        ("5.7.1", "550 5.7.1 Service unavailable, client host blocked using Spamhaus",
         "blocked", "reputation"),
        ("5.7.26", "550 5.7.26 Unauthenticated email is not accepted due to DMARC policy",
         "blocked", "authentication"),
        ("5.7.1", "554 5.7.1 Virus found in message", "blocked", "content"),
        ("5.7.1", "550 5.7.1 user unknown", "hard", "bad-mailbox"),
        ("5.7.1", "550 5.7.1 <a@b>: Recipient address rejected: Access denied", "blocked",
         "policy"),
        ("5.7.1", "550 5.7.1 no such user, or blocked as spam", "blocked", "spam"),
        # An address code with words of a full mailbox or a block: the words win.
        ("5.1.1", "550 5.1.1 user over quota", "soft", "mailbox-full"),
        ("5.1.1", "550 5.1.1 blocked using zen.spamhaus.org", "blocked", "reputation"),
        ("5.1.7", "550 5.1.7 invalid address", "blocked", "policy"),  # our sender's
        # Words about our sender, not the reader: "domain not found" is our domain's.
        ("5.1.1", "550 5.1.1 Sender address rejected: Domain not found", "blocked",
         "rejected"),
        (None, "554 Relay access denied", "blocked", "rejected"),
        # A provider's own reply: Exchange Online's "access denied" for a recipient it lacks.
        ("5.4.1", "550 5.4.1 Recipient address rejected: Access denied. AS(201806281)", "hard",
         "bad-mailbox"),
        # Every 4.x.x is soft, even with alarming words.
        ("4.2.2", "452 4.2.2 Over quota", "soft", "mailbox-full"),
        ("4.7.0", "421 4.7.0 Message blocked as spam", "soft", "deferred"),
        ("4.1.1", "450 4.1.1 user unknown", "soft", "deferred"),
    ],
)  # fmt: skip
def test_codes_decide_the_family_and_words_the_reason(status, text, kind, reason):
    verdict = classify_failure(status, text, permanent=True)
    assert (verdict.kind, verdict.reason) == (kind, reason)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("550 Requested action not taken: mailbox unavailable", "bad-mailbox"),
        ("This user doesn't have a yahoo.example account", "bad-mailbox"),
        ("Sorry, no mailbox here by that name. (#5.1.1)", "bad-mailbox"),
        ("550 <x@y.example>... User unknown", "bad-mailbox"),
        ("The recipient name is not recognized", "bad-mailbox"),
        ("Domain does not exist", "bad-domain"),
        ("User's mailbox is full", "mailbox-full"),
        ("552 Requested mail action aborted: exceeded storage allocation (quota)", "mailbox-full"),
        ("This account has been disabled or discontinued", "mailbox-disabled"),
        ("554 Your message looks like spam", "spam"),
        ("553 Your IP is listed on a blacklist", "reputation"),
        ("550 Rejected by DMARC policy for example.org", "authentication"),
        ("553 sorry, that domain isn't in my list of allowed rcpthosts", "rejected"),
        ("connect to mx.example.org: Connection refused", "network"),
    ],
)
def test_without_a_code_the_words_decide(text, reason):
    assert reason_from_wording(text) == reason
    assert classify_failure(None, text, permanent=True).reason == reason


def test_no_code_and_no_known_words_never_suppress():
    verdict = classify_failure(None, "Delivery failed 20 attempts", permanent=True)
    assert (verdict.kind, verdict.reason) == ("soft", "unclassified")


def test_a_delay_is_soft_even_with_a_permanent_code():
    verdict = classify_failure("5.1.1", "550 5.1.1 user unknown", permanent=False)
    assert verdict.kind == "soft"


def test_an_x_0_x_code_lets_the_words_decide():
    assert classify_failure("5.0.0", "550 unknown user <a@b.example>").reason == "bad-mailbox"
    assert classify_failure("5.0.0", "550 5.7.1 likely unsolicited mail").kind == "blocked"
    assert classify_failure("5.0.0", "Reason 1 (Unable-To-Transfer)").reason == "unclassified"


def test_each_reason_has_one_kind():
    kinds = [kind_of(r) for r in ("bad-mailbox", "bad-domain", "spam", "mailbox-disabled")]
    assert kinds == ["hard", "hard", "blocked", "soft"]
