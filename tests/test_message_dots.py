"""build_message_data says truly when a message needs no SMTP dot-stuffing."""

from __future__ import annotations

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from newsletter.content.digest import Filled, Recipient, RenderedDigest
from newsletter.content.mime import build_message_data
from newsletter.core.config import Settings
from newsletter.delivery.smtp import dot_stuff

# Dots, line ends and long runs make lines that start with a dot after hard or soft breaks.
_CHUNKS = [".", "a", " ", "\n", "=", "é", "x" * 70, ".\n", "b" * 75]
_text = st.lists(st.sampled_from(_CHUNKS), max_size=8).map("".join)


def _build(settings: Settings, literals: list[str], values: list[str]) -> tuple[bytes, bool]:
    parts = Filled(tuple(literals), tuple(values))
    rendered = RenderedDigest("Papers", text_parts=parts, html_parts=parts)
    return build_message_data(
        rendered,
        recipient=Recipient(1, "ann@example.org", "Ann", ()),
        settings=settings,
        message_id="<abc@news.example.test>",
        list_unsubscribe_url="https://news.example.test/unsubscribe/t",
        list_unsubscribe_mailto=None,
    )


# The settings fixture is only read: sharing it between examples is safe.
@hypothesis_settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(literals=st.lists(_text, min_size=1, max_size=6), data=st.data())
def test_dot_free_only_when_no_line_starts_with_a_dot(
    settings: Settings, literals: list[str], data: st.DataObject
) -> None:
    values = data.draw(st.lists(_text, min_size=len(literals) - 1, max_size=len(literals) - 1))
    raw, dot_free = _build(settings, literals, values)
    has_dot_line = raw.startswith(b".") or b"\r\n." in raw
    assert dot_free is not has_dot_line
    assert dot_stuff(raw, crlf_only=True, dot_free=dot_free) == dot_stuff(raw)


def test_a_dot_after_a_line_break_is_reported(settings: Settings) -> None:
    raw, dot_free = _build(settings, ["Hello\n", "\n. It was sent"], ["ann"])
    assert b"\r\n." in raw and not dot_free
    raw, dot_free = _build(settings, ["Hello\n", " It was sent"], ["ann"])
    assert dot_free and dot_stuff(raw, dot_free=True) == dot_stuff(raw)
