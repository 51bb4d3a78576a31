"""Run `newsletter ...` as on a host whose wall clock is off by some seconds.

On PostgreSQL the database runs apart from the process, so Debian's libfaketime (package
`faketime`, preloaded into the process itself, so that its pid is the worker's) shifts every
wall clock the process reads (libc's, hence Python's). A SQLite database runs inside the
process and would read the same shifted libc clock, although every process of one database
file shares one host clock; there the shift is Python's alone (time-machine), and the clock
SQLite reads stays the host's.

    command, env = skewed_newsletter(["worker", "--once"], 90, database_url)

As a process: `python tests/skewed_clock.py SECONDS newsletter-arguments...`.
"""

from __future__ import annotations

import glob
import runpy
import sys
from datetime import UTC, datetime, timedelta

import time_machine

FAKETIME_LIBRARY = "/usr/lib/*/faketime/libfaketimeMT.so.1"  # the build for threaded programs


def skewed_newsletter(
    args: list[str], seconds: float, database_url: str
) -> tuple[list[str], dict[str, str]]:
    """Return the command that runs `newsletter ARGS` with the clock `seconds` ahead, and env."""
    if database_url.startswith("sqlite"):
        return [sys.executable, __file__, str(seconds), *args], {}
    libraries = glob.glob(FAKETIME_LIBRARY)
    assert libraries, "Debian's faketime is needed (apt-get install faketime)"
    env = {
        "LD_PRELOAD": libraries[0],
        "FAKETIME": f"{seconds:+g}s",
        # A host's monotonic clock does not follow its wall clock: durations stay true.
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    return [sys.executable, "-m", "newsletter", *args], env


def main() -> None:
    seconds = float(sys.argv[1])
    sys.argv = ["newsletter", *sys.argv[2:]]
    with time_machine.travel(datetime.now(UTC) + timedelta(seconds=seconds), tick=True):
        runpy.run_module("newsletter", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
