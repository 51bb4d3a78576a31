"""What a browser would submit from a page's form, for tests that post forms without one."""

from __future__ import annotations

from html.parser import HTMLParser


class _FormReader(HTMLParser):
    def __init__(self, action: str) -> None:
        super().__init__(convert_charrefs=True)
        self.action = action
        self.inside = False
        self.done = False
        self.fields: list[tuple[str, str]] = []
        self._select: str | None = None
        self._first_option: tuple[str, str] | None = None
        self._chosen = False
        self._pending: tuple[str, str | None] | None = None
        self._selected = False
        self._textarea: tuple[str, list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and not self.done and self.action in a.get("action", ""):
            self.inside = True
        if not self.inside:
            return
        if tag == "input" and a.get("name"):
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            if kind not in ("submit", "button"):
                self.fields.append((a["name"], a.get("value", "on" if kind == "checkbox" else "")))
        elif tag == "textarea" and a.get("name"):
            self._textarea = (a["name"], [])
        elif tag == "select":
            self._select, self._first_option, self._chosen = a.get("name"), None, False
        elif tag == "option" and self._select:
            value = a.get("value")
            self._pending = (self._select, value)  # the text is the value when none is given
            self._selected = "selected" in a

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._textarea[1].append(data)
        if self._pending is None:
            return
        name, value = self._pending
        option = (name, value if value is not None else data.strip())
        self._pending = None
        if self._first_option is None:
            self._first_option = option
        if self._selected and not self._chosen:
            self.fields.append(option)
            self._chosen = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea" and self._textarea is not None:
            name, text = self._textarea
            # A browser drops the one line break that may follow the opening tag.
            self.fields.append((name, "".join(text).removeprefix("\n")))
            self._textarea = None
        if tag == "select" and self._select:
            if not self._chosen and self._first_option:
                self.fields.append(self._first_option)
            self._select = None
        if tag == "form" and self.inside:
            self.inside, self.done = False, True


def form_fields(page: str, action: str) -> dict[str, str | list[str]]:
    """Return the fields the first form whose action contains `action` submits as it stands."""
    reader = _FormReader(action)
    reader.feed(page)
    fields: dict[str, str | list[str]] = {}
    for name, value in reader.fields:
        if name in fields:
            current = fields[name]
            fields[name] = [*current, value] if isinstance(current, list) else [current, value]
        else:
            fields[name] = value
    return fields
