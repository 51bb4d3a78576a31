"""Sending: claim owed deliveries, hand messages to a transport, record every reply.

Owns: `service` (plan and deliver an edition, previews, test copies, status), `engine`
(claiming with a lease, the asyncio send loop, group-committed results), `transports`
(Maildir and the SMTP pool), `smtp` (the pipelining SMTP client). May import `core`,
`content`, `editions` and `audience.suppressions`.
"""
