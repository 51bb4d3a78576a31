"""Preparers for a builder process that fails on purpose (importable there, by name)."""

from __future__ import annotations

import os

from newsletter.core.config import Settings
from newsletter.delivery.compose import MessagePreparer
from newsletter.delivery.service import preparer_in_process


def dies_at_second_batch(settings: Settings, edition_id: int, empty_policy: str) -> MessagePreparer:
    """A builder's preparer whose process ends abruptly when the second batch arrives."""
    preparer = preparer_in_process(settings, edition_id, empty_policy)
    warm, batches = preparer.warm, []

    def warm_then_die(rows):  # noqa: ANN001, ANN202
        batches.append(len(rows))
        if len(batches) == 2:
            os._exit(3)  # as if killed: no reply, no clean-up
        return warm(rows)

    preparer.warm = warm_then_die  # type: ignore[method-assign]
    return preparer


def raises_on_load(settings: Settings, edition_id: int, empty_policy: str) -> MessagePreparer:
    """A builder's preparer that cannot be made (say, the database went away meanwhile)."""
    raise RuntimeError("the selection could not be loaded")
