"""Who receives what: subscribers, the public sign-up flow and the suppression list.

Owns: `subscribers` (admin, CSV import and export), `signup` (the public flow: sign-up,
confirm, preferences, unsubscribe, GDPR), `suppressions` (addresses never mailed again).
May import `core`, `matching` (topics' list syntax, readers' votes and rules) and `content`
(the notices it asks for).
"""
