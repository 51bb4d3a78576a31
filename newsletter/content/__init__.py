"""What a message says and how its bytes look, built apart from sending it.

Owns: `rendering` (Jinja and premailer, digests from shared parts), `layouts` (a digest
template laid out once per number of papers, its cards made apart), `headers` (the one
builder of header fields), `mime` (MIME assembly, quoted-printable, List-Unsubscribe,
DKIM), `notices` (confirmation and preferences emails). May import `core` only: every
stage above builds its messages with it.
"""
