"""Benchmark the subscriber CSV import: rows per second and peak memory by file size.

Run: .venv/bin/python benchmarks/import_csv.py [--sizes 10000,100000,300000]

Each size is imported into a fresh SQLite database by a child process of its own, so the
peak resident memory of one size does not hide inside another's. The child imports the
file twice: the second run must find every row unchanged.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_ROWS_PER_SECOND = 20_000
TARGET_ROWS = 100_000
DEFAULT_SIZES = (10_000, 100_000)
TOPICS = ("ml", "nlp", "cv", "robotics", "theory", "systems", "security", "bio")
TIMEZONES = ("UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "")
FIRST_NAMES = ("Ada", "Grace", "Émile", "Zoë", "Łukasz", "Søren", "李", "Ngozi", "José", "Anna")
# The index a migration should add: it makes the case-insensitive address lookup of each
# batch an index search instead of a scan of the table (see --lower-email-index).
LOWER_EMAIL_INDEX = "CREATE UNIQUE INDEX uq_subscribers_email_lower ON subscribers (lower(email))"
DOMAINS = 2_000  # distinct domains: real lists have many, and each is validated once


def write_csv(path: Path, rows: int, seed: int = 7) -> None:
    """Write a realistic subscriber CSV with `rows` distinct addresses."""
    rnd = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["email", "name", "topics", "timezone", "hour"])
        for i in range(rows):
            first = rnd.choice(FIRST_NAMES)
            local = f"reader.{i}" if i % 3 else f"First.Last+{i}"
            domain = f"mail{rnd.randrange(DOMAINS)}.example.org"
            topics = ";".join(rnd.sample(TOPICS, rnd.randint(1, 3)))
            hour = rnd.choice(("", str(rnd.randrange(24))))
            out.writerow([f"{local}@{domain}", f"{first} {i}", topics, rnd.choice(TIMEZONES), hour])


def peak_rss_kib() -> int:
    """Return this process's peak resident memory (VmHWM) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(csv_path: str, workdir: str, lower_index: bool) -> None:
    """Import one file twice into a fresh database and print the measurements as JSON."""
    from sqlalchemy import text

    from newsletter.audience.csv_import import import_csv
    from newsletter.core.app import App
    from newsletter.core.config import load_settings
    from newsletter.core.models import Topic

    settings = load_settings(
        env={},
        database_url=f"sqlite:///{workdir}/bench.db",
        var_dir=workdir,
        secret_key="bench" * 8,
    )
    app = App(settings)
    with app.transaction() as session:
        session.add_all(Topic(slug=s, name=s.upper()) for s in TOPICS)
        if lower_index:
            session.execute(text(LOWER_EMAIL_INDEX))
    baseline = peak_rss_kib()
    timings, cpu, reports = [], [], []
    for _ in range(2):
        started, started_cpu = time.perf_counter(), time.process_time()
        with app.transaction() as session:
            reports.append(import_csv(csv_path, session=session).to_dict())
        timings.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    app.close()
    result = {"seconds": timings, "cpu": cpu, "reports": reports, "baseline_kib": baseline}
    print(json.dumps(result | {"peak_kib": peak_rss_kib()}))


def measure(rows: int, tmp: Path, lower_index: bool) -> dict:
    """Generate a file of `rows` rows and import it in a child process."""
    workdir = tmp / f"n{rows}"
    workdir.mkdir()
    path = workdir / "subscribers.csv"
    write_csv(path, rows)
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(path), str(workdir)]
        + (["--lower-email-index"] if lower_index else []),
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    first, again = result["reports"]
    assert first["new"] == rows and first["skipped"] == 0, first
    assert again["unchanged"] == rows and again["new"] == again["updated"] == 0, again
    return result | {"rows": rows, "megabytes": path.stat().st_size / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    parser.add_argument(
        "--lower-email-index",
        action="store_true",
        help="add a unique index on lower(email) to the schema first",
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, lower_index=args.lower_email_index)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        "| rows | file MB | import s | CPU s | rows/s | re-import s | rows/s "
        "| peak RSS MiB | Δ MiB |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rows in sizes:
            r = measure(rows, Path(tmp), args.lower_email_index)
            first, again = r["seconds"]
            rates[rows] = rows / first
            growth = (r["peak_kib"] - r["baseline_kib"]) / 1024
            print(
                f"| {rows:,} | {r['megabytes']:.1f} | {first:.2f} | {r['cpu'][0]:.2f} "
                f"| {rows / first:,.0f} | {again:.2f} | {rows / again:,.0f} "
                f"| {r['peak_kib'] / 1024:.0f} | {growth:+.0f} |"
            )
    print()
    if TARGET_ROWS in rates:
        rate = rates[TARGET_ROWS]
        verdict = "meets" if rate >= TARGET_ROWS_PER_SECOND else "MISSES"
        print(
            f"First import of {TARGET_ROWS:,} rows: {rate:,.0f} rows/s, which {verdict} "
            f"the target of {TARGET_ROWS_PER_SECOND:,} rows/s."
        )
    print(
        "Δ is peak RSS above the child's peak before importing (Python, SQLAlchemy, schema). "
        f"Load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
        "(wall time suffers on a busy machine; CPU time less so)."
    )


if __name__ == "__main__":
    main()
