"""How counts read in what the product prints: "1 paper", "2 papers"."""


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """Return the count with its noun in the number it takes: "1 paper", "2 papers".

    `plural_form` is for a noun that does not just add an "s" ("match", "matches").
    """
    return f"{count} {singular if count == 1 else plural_form or singular + 's'}"
