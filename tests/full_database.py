"""Run `newsletter ...` against a SQLite file that may grow by only a few more pages.

Every connection the process opens gets `PRAGMA max_page_count` set to the file's size when
the first one connected, plus SPARE pages: once those are used, SQLite itself answers
SQLITE_FULL, "database or disk is full", as on a disk with no room left.

    python tests/full_database.py SPARE newsletter-arguments...
"""

from __future__ import annotations

import runpy
import sys

from sqlalchemy import Engine, event


def cap_growth(spare: int) -> None:
    """Let every SQLite connection of this process grow the file by `spare` pages at most."""
    limit: list[int] = []

    @event.listens_for(Engine, "connect")
    def _cap(dbapi_conn, _record) -> None:  # noqa: ANN001 - DBAPI types
        cur = dbapi_conn.cursor()
        if not limit:
            limit.append(cur.execute("PRAGMA page_count").fetchone()[0] + spare)
        cur.execute(f"PRAGMA max_page_count={limit[0]}")
        cur.close()


def main() -> None:
    cap_growth(int(sys.argv[1]))
    sys.argv = ["newsletter", *sys.argv[2:]]
    runpy.run_module("newsletter", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
