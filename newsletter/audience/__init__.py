"""Who receives what: subscribers, the public sign-up flow and the suppression list.

Owns: `subscribers` (admin: add, edit, show, list, remove, and finding them by address),
`validation` (every field of a subscriber checked and normalised), `csv_format` (the CSV
file's columns, cells and reading, and the export), `csv_import` (the streaming import),
`backup` (the lossless JSON export and its import, read by `json_list`), `signup` (the
public flow: sign-up, confirm, preferences, unsubscribe, GDPR), `invitations` (the sign-up's
confirmation email for subscribers an admin added), `suppressions` (addresses never mailed
again), `eligibility` (who receives digests), `service` (the subscriber and suppression admin as
the CLI and pages call it, each in its own session).
May import `core`, `matching` (topics' list syntax, readers' votes and rules) and `content`
(the notices it asks for).
"""
