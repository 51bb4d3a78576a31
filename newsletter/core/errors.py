"""Domain errors. The CLI maps InputError to exit code 2 and the rest to 1."""


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
