"""What a message says and how its bytes look, built apart from sending it.

Owns: `rendering` (Jinja and premailer, digests from shared parts), `headers` (the one
builder of header fields), `mime` (MIME assembly, quoted-printable, List-Unsubscribe,
DKIM), `compose` (a claimed delivery to message bytes), `notices` (confirmation and
preferences emails). May import `core`, `editions.selection`, `bounces.classify` (VERP
return paths) and the two `delivery` types it builds from and for: `store.ClaimedDelivery`
and `transports.OutgoingMessage`.
"""
