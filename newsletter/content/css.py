"""CSS moved into style attributes with premailer, each distinct stylesheet parsed once."""

from __future__ import annotations

import logging
from typing import ClassVar

from premailer import Premailer

STYLE_CACHE_SIZE = 64  # distinct <style> blocks whose rules are kept


class _Premailer(Premailer):
    """premailer, turning each distinct <style> block into rules once per process.

    A send inlines a few dozen documents of one stylesheet, and reading the rules again took
    most of each run. Valid for the options inline_css passes, which are always the same.
    """

    _rules: ClassVar[dict[tuple[str, int], tuple[list, list]]] = {}
    _leftover_css: ClassVar[dict[int, str]] = {}  # id of a cached leftover list -> its CSS

    def _parse_style_rules(self, css_body: str, ruleset_index: int) -> tuple[list, list]:
        key = (css_body, ruleset_index)
        parsed = self._rules.get(key)
        if parsed is None:
            if len(self._rules) >= STYLE_CACHE_SIZE:  # operators' templates: a handful
                self._rules.clear()
                self._leftover_css.clear()
            parsed = self._rules[key] = super()._parse_style_rules(css_body, ruleset_index)
        return parsed

    def _css_rules_to_string(self, rules: list) -> str:
        css = self._leftover_css.get(id(rules))
        if css is None:
            css = super()._css_rules_to_string(rules)
            # Only a list the cache keeps alive has an id no other list can take.
            if any(rules is leftover for _, leftover in list(self._rules.values())):
                self._leftover_css[id(rules)] = css
        return css


def inline_css(html: str) -> str:
    """Move the <style> rules into style attributes, keeping media queries in a <style> block."""
    inlined = _Premailer(
        html,
        keep_style_tags=False,  # leftover rules (media queries, :hover) stay in a new <style>
        strip_important=False,  # media queries need !important to beat the inlined styles
        remove_classes=False,  # media queries select by class
        disable_validation=True,
        allow_network=False,
        cssutils_logging_level=logging.CRITICAL,
    ).transform(pretty_print=False)  # pretty printing would depend on a node's neighbours
    return inlined if inlined.endswith("\n") else inlined + "\n"
