"""What one sender holds: the rows it claimed, and until when it may trust its lease on them.

The database decides who holds a row (see `store`); a sender keeps its own record so that it
can ask before each message without a query. Its lease is trusted for `lease_seconds` minus
a margin after the last claim or renewal began, measured on this process's monotonic clock,
which keeps running while the process is stopped. Past that, or for a row a renewal no longer
returned (another sender took it), the sender must not send: it renews first, and drops what
it lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

# A sender stops trusting its claims this share of the lease before they run out: room for
# a late heartbeat (one beats every third of the lease) and for the message in hand.
MARGIN_SHARE = 1 / 3


class HeldClaims:
    """The rows a sender holds, which it lost, and until when its lease is trusted."""

    def __init__(self, lease_seconds: float) -> None:
        self.lease_seconds = lease_seconds
        # Held while the database and this record change together (a renewal, a recording),
        # so a renewal never mistakes a row just recorded for one another sender took.
        self.lock = threading.Lock()
        self._held: set[int] = set()
        self._lost: set[int] = set()
        self._trusted_until = 0.0

    def _trust_from(self, started: float) -> float:
        return started + self.lease_seconds * (1 - MARGIN_SHARE)

    def claimed(self, ids: Iterable[int], started: float) -> None:
        """Note rows claimed by a statement that began at `started` (time.monotonic())."""
        with self.lock:
            if not self._held:  # else the older rows' lease, renewed earlier, ends first
                self._trusted_until = self._trust_from(started)
            self._held.update(ids)

    def renewed(self, still_held: set[int], started: float) -> set[int]:
        """Note a renewal that began at `started` and returned `still_held`; return what was lost.

        Call it with `lock` held since before the renewal's statement.
        """
        lost = self._held - still_held
        self._held &= still_held
        self._lost |= lost
        self._trusted_until = self._trust_from(started)
        return lost

    def done(self, ids: Iterable[int]) -> None:
        """Forget rows whose answer is recorded. Call it with `lock` held."""
        self._held.difference_update(ids)

    def trusted(self) -> bool:
        """Tell whether the lease on every held row is surely still running."""
        return time.monotonic() < self._trusted_until

    def holds(self, key: int) -> bool:
        """Tell whether this sender may send the row now: held, not lost, lease trusted."""
        return key in self._held and key not in self._lost and self.trusted()

    def lost(self, key: int) -> bool:
        """Tell whether a renewal found the row taken by another sender."""
        return key in self._lost
