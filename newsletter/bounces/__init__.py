"""Returned mail: classify DSN, ARF, text bounces and VERP, read mailboxes, apply results.

Owns: `classify` (parsing reports, each failed recipient apart), `signing` (the signed
return path and Message-ID that name a delivery), `reasons` (RFC 3463 codes and a
server's wording to a kind and a reason), `detectors` (text bounce formats through
flufl.bounce), `mailboxes` (Maildir, mbox, stdin and IMAP readers), `process` (applying
results, rates and health), `refusals` (5xx replies during a send, read by the same rules),
`mailed_unsubscribe` (the List-Unsubscribe mailto requests). May import `core`, `content`
(the envelope sender) and `audience` (suppressions and unsubscribes).
"""
