"""What a message says and how its bytes look, built apart from sending it.

Owns: `digest` (the papers, recipient and edition a digest is made of, and the rendered
email), `templating` (the Jinja environments and their filters), `css` (premailer's
inlining), `parts` (the pieces shared between digests and the recipient slots),
`rendering` (digests from shared parts, a recipient's values filled in), `layouts` (a digest
template laid out once per number of papers, its cards made apart), `headers` (the one
builder of header fields), `mime` (MIME assembly, quoted-printable, List-Unsubscribe,
DKIM), `notices` (confirmation and preferences emails). May import `core` only: every
stage above builds its messages with it.
"""
