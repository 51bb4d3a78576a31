"""Returned mail: classify DSN, ARF and VERP, read mailboxes, apply results, mailed opt-outs.

Owns: `classify` (parsing reports and signed return paths), `mailboxes` (Maildir, mbox,
stdin and IMAP readers), `process` (applying results, rates and health),
`mailed_unsubscribe` (the List-Unsubscribe mailto requests). May import `core` and
`audience`.
"""
