"""How words read in what the product prints: counts ("1 paper", "2 papers") and text cut
to a length at a word."""


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """Return the count with its noun in the number it takes: "1 paper", "2 papers".

    `plural_form` is for a noun that does not just add an "s" ("match", "matches").
    """
    return f"{count} {singular if count == 1 else plural_form or singular + 's'}"


def trim_text(text: str, limit: int) -> str:
    """Cut text to at most limit characters, at a word where one is near, marked with "…"."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 0.6:  # a word boundary, unless it would lose much of the text
        cut = cut[:space]
    return cut.rstrip(" ,;:.-—(") + "…"
