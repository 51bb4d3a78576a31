"""Who receives what: subscribers, sign-ups, suppressions and the transactional mail queue.

Owns: `subscribers` (admin, CSV import and export), `signup` (the public flow: sign-up,
confirm, preferences, unsubscribe, GDPR), `suppressions`, `mail_queue` (sign-ups and
notices handled after the request commits). May import `core`, `matching.topics` (topics'
list syntax), `content` (notices) and `delivery.transports`.
"""
