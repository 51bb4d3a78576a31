"""Sending: compose each owed delivery, hand it to a transport, record every reply.

Owns: `service` (plan and deliver an edition, the check before a send, previews, test
copies, dry runs, an edition's counts), `status` (what `status` shows beside them),
`compose` (a claimed delivery to message bytes), `drain` (what every edition owes, for the
worker and the tick; the rows themselves are written by `core.deliveries`), `claims` (what
a sender still holds, and until when it may trust its lease), `engine` (the asyncio send
loop, the claims' heartbeat, group-committed results), `guard` (the deliverability guard:
pauses and complaint holds), `mail_queue` (sign-ups and notices handled after the request
commits, retried while their links work), `transports` (Maildir and the SMTP pool), `smtp`
(the pipelining SMTP client), `doctor` (checks of DNS, relay and web). May import every
stage below it: `core`, `matching`, `ranking`, `papers`, `content`, `audience`, `editions`
and `bounces`.
"""
