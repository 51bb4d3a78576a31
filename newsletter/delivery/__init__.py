"""Sending: claim owed deliveries, hand messages to a transport, record every reply.

Owns: `service` (plan and deliver an edition, previews, test copies, status), `store` (every
claiming, renewing, releasing and recording statement, and what "owed" means), `engine`
(the asyncio send loop, the claims' heartbeat, group-committed results), `guard` (the
deliverability guard: pauses and complaint holds), `transports` (Maildir and the SMTP pool),
`smtp` (the pipelining SMTP client). May import `core`, `content`, `editions`,
`audience.suppressions` and `bounces` (kinds of returned mail, edition health).
"""
