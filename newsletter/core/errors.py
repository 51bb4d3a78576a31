"""Domain errors, and how they quote what was given. The CLI maps InputError to exit code 2
and the rest to 1.
"""

QUOTED_MAX = 80  # characters of a value an error message quotes


class NewsletterError(Exception):
    """Base of every error the product raises on purpose."""

    exit_code = 1


class InputError(NewsletterError):
    """The user gave something invalid: a file, a value, an address."""

    exit_code = 2


class ConfigError(InputError):
    """The configuration is invalid."""


class NotFound(InputError):
    """A named thing (topic, subscriber, edition) does not exist."""


class DatabaseUnavailable(NewsletterError):
    """The database cannot be opened or reached: refused, down, a folder that cannot be made."""


class SourceError(NewsletterError):
    """A paper source could not be read or fetched."""


class NoListing(SourceError):
    """A source has no listing for the day (weekends, holidays): normal, not a fault."""


class TransportError(NewsletterError):
    """A message could not be handed to the transport."""


class DatabaseError(NewsletterError):
    """The database refused a statement: locked by another process too long, full, gone."""


class SendingHeld(NewsletterError):
    """An edition may not be sent now: the guard paused it, or complaints hold it."""


def quoted(value: object, limit: int = QUOTED_MAX) -> str:
    """Return value quoted for a one-line error: at most `limit` characters of it as written.

    What people type can be megabytes long: an error names it, it does not echo it.
    """
    text = str(value)
    kept, size = 0, 0
    for char in text:
        size += len(repr(char)) - 2  # as the quote writes it: "\u202e" is six
        if size > limit:
            break
        kept += 1
    if kept == len(text):
        return repr(text)
    return f"{text[:kept]!r}… ({len(text):,} characters)"
