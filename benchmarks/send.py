"""Sending benchmark: our sender beside smtp-source (the C limit) and the naive baseline.

All three push into the same Postfix smtp-sink on loopback. Our figure is end to end: planning,
choosing papers, rendering, building, sending over SMTP and recording every delivery.

Usage:
  python benchmarks/send.py [--subscribers 100000] [--connections 4] [--naive 2000]
                            [--database URL] [--memory 25000,100000,200000] [--profile]
                            [--voters 0.2 --followers 0.05 --own-words 0.2]

With --voters or --followers, that share of subscribers hold 10 to 14 votes on the previous
day's papers, or follow an author; with --own-words, that share wrote a sentence of interests
and gave three papers of their own. The send is timed again beside the same subscribers
without them.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DAY = date(2026, 11, 27)
TOPICS = 20
CHUNK = 10_000  # subscribers inserted per statement: keeps populating out of the RSS figure
LABELLED = REPO / "tests" / "labelled" / "papers.json"
VOTES = (10, 14)  # votes each voter holds
LIKED_SHARE = 0.7
FOLLOWED_NAMES = 100  # followers pick one of authors 1 to 100; seed papers 1-50 have one each


def author_name(number: int) -> str:
    """Return the made-up name of author `number`: "Author Ab" for 1, "Author Ac" for 2..."""
    # Author matching reads the letters of names only: "Author 1" and "Author 2" would be one
    # person, followed by every follower of any of them.
    return "Author " + "".join(chr(ord("a") + d) for d in divmod(number, 26)).capitalize()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sink(port: int) -> subprocess.Popen:
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    proc = subprocess.Popen(
        [sink, "-c", "-u", "nobody", f"127.0.0.1:{port}", "1000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("smtp-sink did not start (apt-get install postfix)")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def seed_papers(shared: Path) -> list[dict]:
    path = shared / "bench" / "seed_papers.json"
    if path.is_file():
        return json.loads(path.read_text())
    from newsletter.core.resources import shipped_dir
    from newsletter.papers.sources.files import read_paper_file

    records = read_paper_file(shipped_dir("seeds") / "hf-daily-papers-page.txt", fmt="seed-text")
    return [{"title": r.title, "abstract": r.abstract} for r in records]


def populate(
    app, n: int, papers: list[dict], seed: int = 1, per_digest: int = 10  # noqa: ANN001
) -> None:
    """20 topics, the seed papers matched to 1-3 topics each, n subscribers with 1-4 topics,
    each taking `per_digest` papers (10: about 47 KB a message; 3: about 7 KB)."""
    from sqlalchemy import insert

    from newsletter.core.models import Paper, PaperTopic, Subscriber, Subscription, Topic, utcnow

    rnd = random.Random(seed)
    now = utcnow()
    with app.engine.begin() as conn:
        conn.execute(
            insert(Topic),
            [
                {
                    "id": i,
                    "slug": f"topic-{i}",
                    "name": f"Topic {i}",
                    "description": "",
                    "keywords": [],
                    "categories": [],
                    "created_at": now,
                }
                for i in range(1, TOPICS + 1)
            ],
        )
        conn.execute(
            insert(Paper),
            [
                {
                    "id": i,
                    "title": p["title"],
                    "title_key": f"seed {i}",
                    "abstract": p["abstract"],
                    "authors": ["Ada Lovelace", "Alan Turing", "Grace Hopper", author_name(i)],
                    "url_abs": f"https://arxiv.org/abs/2611.{i:05d}",
                    "url_pdf": f"https://arxiv.org/pdf/2611.{i:05d}",
                    "keywords": [],
                    "categories": [],
                    "listing_date": DAY,
                    "source": "bench",
                    "upvotes": rnd.randint(0, 200),
                    "created_at": now,
                    "updated_at": now,
                }
                for i, p in enumerate(papers, start=1)
            ],
        )
        conn.execute(
            insert(PaperTopic),
            [
                {"paper_id": i, "topic_id": t, "score": 1.5, "evidence": []}
                for i in range(1, len(papers) + 1)
                for t in rnd.sample(range(1, TOPICS + 1), rnd.randint(1, 3))
            ],
        )
    for start in range(0, n, CHUNK):
        subs, links = [], []
        for i in range(start + 1, min(n, start + CHUNK) + 1):
            subs.append(
                {
                    "id": i,
                    "email": f"s{i}@example.com",
                    "name": f"Reader {i}",
                    "status": "confirmed",
                    "timezone": "UTC",
                    "delivery_hour": 8,
                    "max_papers": per_digest,
                    "frequency": "daily",
                    "weekly_day": 0,
                    "consent_source": "bench",
                    "consent": {},
                    "created_at": now,
                }
            )
            for t in rnd.sample(range(1, TOPICS + 1), rnd.randint(1, 4)):
                links.append({"subscriber_id": i, "topic_id": t, "created_at": now})
        with app.engine.begin() as conn:
            conn.execute(insert(Subscriber), subs)
            conn.execute(insert(Subscription), links)


def add_reader_signals(app, n: int, voters: float, followers: float, seed: int = 2) -> None:  # noqa: ANN001
    """Give a share of the n subscribers votes on yesterday's papers, another an author."""
    from datetime import timedelta

    from sqlalchemy import func, insert, select, update

    from newsletter.core.models import FeedbackVote, Paper, Subscriber, utcnow

    rnd = random.Random(seed)
    now = utcnow()
    with app.engine.begin() as conn:
        first = conn.scalar(select(func.max(Paper.id))) + 1
        past = past_papers()
        conn.execute(insert(Paper), [
            {"id": first + i, "title": p["title"], "title_key": f"past {i}",
             "abstract": p["abstract"], "authors": ["Ada Lovelace"], "keywords": [],
             "categories": [], "url_abs": f"https://arxiv.org/abs/2610.{i:05d}",
             "listing_date": DAY - timedelta(days=1), "source": "bench", "created_at": now,
             "updated_at": now}
            for i, p in enumerate(past)
        ])  # fmt: skip
    past_ids = list(range(first, first + len(past)))
    chosen = rnd.sample(range(1, n + 1), int(n * voters))
    for start in range(0, len(chosen), CHUNK):
        rows = [
            {"subscriber_id": sid, "paper_id": pid, "created_at": now, "updated_at": now,
             "vote": 1 if rnd.random() < LIKED_SHARE else -1}
            for sid in chosen[start : start + CHUNK]
            for pid in rnd.sample(past_ids, rnd.randint(*VOTES))
        ]  # fmt: skip
        with app.engine.begin() as conn:
            conn.execute(insert(FeedbackVote), rows)
    following = rnd.sample(range(1, n + 1), int(n * followers))
    with app.engine.begin() as conn:
        for sid in following:
            name = author_name(rnd.randint(1, FOLLOWED_NAMES))
            conn.execute(update(Subscriber).where(Subscriber.id == sid)
                         .values(follow_authors=[name]))  # fmt: skip


def add_own_words(app, n: int, share: float, seed: int = 3) -> None:  # noqa: ANN001
    """Give a share of the n subscribers a sentence of interests and three papers of their own.

    The sentences are the machine-learning ones of benchmarks/reader_interests.toml, each
    embedded once (as `subscribers edit --interests` does); the own papers are three of
    yesterday's, with their vectors. The day's papers get their vectors, as ingest gives them.
    """
    import tomllib

    from sqlalchemy import insert, select, update

    from newsletter.core.models import Paper, ReaderSeed, Subscriber
    from newsletter.matching.embeddings import MODEL_ID, load_encoder, paper_text, to_bytes
    from newsletter.matching.interests import embed_interests
    from newsletter.matching.matches import embed_papers

    rnd = random.Random(seed)
    table = tomllib.loads((REPO / "benchmarks" / "reader_interests.toml").read_text("utf-8"))
    sentences = list(table["ml"]["topics"].values())
    vectors = embed_interests(sentences)
    encoder = load_encoder()
    with app.transaction() as session:
        today = list(session.scalars(select(Paper.id).where(Paper.listing_date == DAY)))
        embed_papers(session=session, paper_ids=today, encoder=encoder)
    past = past_papers()
    texts = [paper_text(p["title"], p["abstract"]) for p in past]
    past_vectors = list(to_bytes(encoder.embed(texts)))
    chosen = rnd.sample(range(1, n + 1), int(n * share))
    for start in range(0, len(chosen), CHUNK):
        part = chosen[start : start + CHUNK]
        with app.engine.begin() as conn:
            for sid in part:
                k = rnd.randrange(len(sentences))
                model, blob = vectors[k]
                said = {"interests": sentences[k], "interests_model": model,
                        "interests_vector": blob}  # fmt: skip
                conn.execute(update(Subscriber).where(Subscriber.id == sid).values(**said))
            conn.execute(insert(ReaderSeed), [
                {"subscriber_id": sid, "title": past[j]["title"], "abstract": past[j]["abstract"],
                 "model": MODEL_ID, "vector": past_vectors[j]}
                for sid in part for j in rnd.sample(range(len(past)), 3)
            ])  # fmt: skip


def past_papers() -> list[dict]:
    """Return the labelled papers that are not among the seed papers (yesterday's listing)."""
    seed_titles = {p["title"] for p in seed_papers(REPO.parent / "shared")}
    papers = json.loads(LABELLED.read_text(encoding="utf-8"))
    return [p for p in papers if p["title"] not in seed_titles]


def child(args: argparse.Namespace) -> None:
    """Populate a fresh database, then time one end-to-end send; print JSON."""
    from newsletter.core.app import App
    from newsletter.core.config import load_settings
    from newsletter.delivery import service as sending
    from newsletter.delivery.transports import make_transport

    tmp = Path(args.workdir)
    url = args.database or f"sqlite:///{tmp}/send.db"
    settings = load_settings(
        env={},
        database_url=url,
        var_dir=str(tmp),
        secret_key="bench-secret-of-at-least-32-bytes",
        base_url="https://papers.example.com",
        from_address="Daily Papers <papers@example.com>",
        postal_address="1 Example Street, Example City",
        transport=f"smtp://127.0.0.1:{args.port}?connections={args.connections}",
    )
    app = App(settings)
    app.ensure_schema()
    if args.own_words_only:
        add_own_words(app, args.subscribers, args.own_words)
        return
    populate(app, args.subscribers, seed_papers(Path(args.shared)), per_digest=args.digest_papers)
    if args.voters or args.followers:
        add_reader_signals(app, args.subscribers, args.voters, args.followers)
    if args.own_words:
        # In a process of its own: the sentence model loaded here would count in the send's
        # memory, which it does not need (the vectors are stored).
        cmd = [sys.executable, __file__, "--own-words-only", "--workdir", str(tmp),
               "--database", url, "--subscribers", str(args.subscribers),
               "--own-words", str(args.own_words), "--port", "0", "--shared", str(args.shared)]
        subprocess.run(cmd, check=True, capture_output=True, text=True)  # fmt: skip
    if args.voters or args.own_words:
        # Votes and own papers were written in bulk: their stored profiles are written as a
        # restore's are (`feedback profiles --rebuild`), before the send reads them.
        from newsletter.matching.stored_profiles import rebuild_profiles

        rebuild_profiles(app)
    gc.collect()
    _reset_peak_rss()  # measure the send, not the populating
    transport = _SizeCounting(make_transport(settings.transport))
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    if args.prepare_only:  # for --workers: the workers do the sending
        stats = sending.plan(app, DAY)
        print(json.dumps({"pending": stats.pending}))
        return
    children_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started, cpu, builder_cpu = time.perf_counter(), time.process_time(), _children_cpu()
    report = sending.send(app, DAY, transport=transport)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    builder_cpu = _children_cpu() - builder_cpu  # the builder process, when the send used one
    if profiler:
        import pstats

        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
    s = report.summary
    print(
        json.dumps(
            {
                "sent": s.sent,
                "failed": s.failed,
                "skipped": s.skipped,
                "owed": s.owed,
                "seconds": elapsed,
                "cpu_seconds": cpu,  # of this process: the neighbours on a shared machine aside
                "builder_cpu_seconds": builder_cpu,
                "builder_rss_mb": _builder_peak_mb(children_peak),
                "avg_bytes": transport.bytes // max(transport.count, 1),
                "rss_mb": _peak_rss_mb(),
            }
        )
    )


def _builder_peak_mb(before: int) -> float | None:
    """Return the builder process's peak RSS, when it is known: the kernel keeps only the
    largest of all ended children (0 when the send built its messages itself)."""
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak > before or not before:
        return peak / 1024
    return None  # not above an earlier child's (the own words' model): unknown


def _children_cpu() -> float:
    """Return the CPU seconds of this process's children that have ended."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _reset_peak_rss() -> None:
    """Reset the kernel's high-water mark of this process (Linux), where it can be."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss_mb() -> float:
    """Return the peak RSS since the last reset (VmHWM), or since start where unsupported."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _SizeCounting:
    """Wraps a transport to learn the average message size, for smtp-source's -l."""

    def __init__(self, inner) -> None:  # noqa: ANN001
        self.inner = inner
        self.connections = inner.connections
        self.bytes = 0
        self.count = 0

    async def __aenter__(self):
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc):
        return await self.inner.__aexit__(*exc)

    async def send(self, message, *, after=None):  # noqa: ANN001
        self.bytes += len(message.data)
        self.count += 1
        return await self.inner.send(message, after=after)


@contextmanager
def fresh_database(url: str | None) -> Iterator[str | None]:
    """Yield a new, empty database on the server of a PostgreSQL URL (None: SQLite in tmp)."""
    if not url or not url.startswith("postgresql"):
        yield url
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = "bench_" + uuid.uuid4().hex[:10]
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


def run_ours(
    args: argparse.Namespace,
    port: int,
    subscribers: int,
    profile: bool = False,
    signals: bool = False,
) -> dict:
    with tempfile.TemporaryDirectory() as tmp, fresh_database(args.database) as url:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "--workdir",
            tmp,
            "--port",
            str(port),
            "--subscribers",
            str(subscribers),
            "--connections",
            str(args.connections),
            "--shared",
            str(args.shared),
            "--digest-papers",
            str(args.digest_papers),
        ]
        if url:
            cmd += ["--database", url]
        if profile:
            cmd.append("--profile")
        if signals:
            cmd += ["--voters", str(args.voters), "--followers", str(args.followers),
                    "--own-words", str(args.own_words)]  # fmt: skip
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        if profile:
            Path("benchmarks/profile.txt").write_text(out.stderr)
        return json.loads(out.stdout.strip().splitlines()[-1])


def run_workers(args: argparse.Namespace, port: int, workers: int) -> dict:
    """Plan an edition, then time K `newsletter worker --once` processes draining it."""
    with tempfile.TemporaryDirectory() as tmp, fresh_database(args.database) as url:
        db_url = url or f"sqlite:///{tmp}/send.db"
        subprocess.run(
            [sys.executable, __file__, "--child", "--prepare-only", "--workdir", tmp,
             "--port", str(port), "--subscribers", str(args.subscribers),
             "--database", db_url, "--shared", str(args.shared)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        env = {
            **os.environ,
            "NEWSLETTER_DATABASE_URL": db_url,
            "NEWSLETTER_TRANSPORT": f"smtp://127.0.0.1:{port}",
            "NEWSLETTER_SECRET_KEY": "bench-secret-of-at-least-32-bytes",
            "NEWSLETTER_BASE_URL": "https://papers.example.com",
            "NEWSLETTER_FROM": "Daily Papers <papers@example.com>",
            "NEWSLETTER_POSTAL_ADDRESS": "1 Example Street, Example City",
            "NEWSLETTER_VAR_DIR": tmp,
        }
        command = [sys.executable, "-m", "newsletter", "worker", "--once",
                   "--concurrency", str(args.connections), "--poll", "0.2"]  # fmt: skip
        started = time.perf_counter()
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
        procs = [subprocess.Popen(command, env=env, cwd=tmp, **pipes) for _ in range(workers)]
        outputs = [p.communicate() for p in procs]
        elapsed = time.perf_counter() - started
        if any(p.returncode for p in procs):
            raise SystemExit(f"a worker failed: {outputs}")
        sent = sum(int(re.search(r"sent (\d+)", out).group(1)) for out, _ in outputs)
        return {"workers": workers, "sent": sent, "seconds": elapsed}


def run_plan(database: str | None, subscribers: int) -> str:
    """Run benchmarks/plan.py on a fresh database; return its table row."""
    with fresh_database(database) as url:
        cmd = [sys.executable, str(Path(__file__).with_name("plan.py")),
               "--subscribers", str(subscribers)]  # fmt: skip
        if url:
            cmd += ["--database", url]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        return out.strip().splitlines()[-1]


def run_smtp_source(port: int, count: int, size: int) -> float:
    source = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    started = time.perf_counter()
    subprocess.run(
        [
            source,
            "-d",
            "-s",
            "4",
            "-m",
            str(count),
            "-l",
            str(size),
            "-f",
            "from@example.test",
            "-t",
            "to@example.test",
            f"127.0.0.1:{port}",
        ],
        check=True,
        capture_output=True,
    )
    return count / (time.perf_counter() - started)


def run_naive(shared: Path, port: int, count: int) -> float:
    script = shared / "bench" / "naive_sender.py"
    out = subprocess.run(
        [
            sys.executable,
            str(script),
            str(shared / "bench" / "seed_papers.json"),
            str(count),
            "127.0.0.1",
            str(port),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    match = re.search(r"=\s*([\d.]+)\s*msg/s", out)
    if not match:
        raise SystemExit(f"unexpected naive_sender output: {out!r}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--naive", type=int, default=2000, help="messages for the naive baseline")
    parser.add_argument("--database", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--memory", default="", help="also measure peak RSS at these sizes")
    parser.add_argument("--profile", action="store_true", help="write benchmarks/profile.txt")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument(
        "--workers", type=int, default=0, help="also time K worker processes beside 1 worker"
    )
    parser.add_argument(
        "--plan", type=int, default=0, help="also time planning for this many subscribers"
    )
    parser.add_argument(
        "--voters", type=float, default=0.0, help="share of subscribers holding 10+ votes"
    )
    parser.add_argument(
        "--followers", type=float, default=0.0, help="share of subscribers following an author"
    )
    parser.add_argument(
        "--own-words", type=float, default=0.0,
        help="share of subscribers with a sentence of interests and three papers of their own",
    )  # fmt: skip
    parser.add_argument(
        "--digest-papers", type=int, default=10,
        help="papers per digest (10: about 47 KB a message; 3: about 7 KB)",
    )  # fmt: skip
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--own-words-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prepare-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child or args.own_words_only:
        child(args)
        return
    port = free_port()
    sink = start_sink(port)
    try:
        signals = bool(args.voters or args.followers or args.own_words)
        ours = run_ours(args, port, args.subscribers, profile=args.profile and not signals)
        ours_rate = ours["sent"] / ours["seconds"]
        personal = (
            run_ours(args, port, args.subscribers, profile=args.profile, signals=True)
            if signals
            else None
        )
        source_rate = run_smtp_source(port, min(args.subscribers, 100_000), ours["avg_bytes"])
        naive_rate = run_naive(args.shared, port, args.naive) if args.naive else float("nan")
        memory = [
            (n, run_ours(args, port, n, signals=signals))
            for n in (int(x) for x in args.memory.split(",") if x)
        ]
        workers = (
            [run_workers(args, port, k) for k in sorted({1, args.workers})] if args.workers else []
        )
        plan_row = run_plan(args.database, args.plan) if args.plan else None
    finally:
        stop(sink)
    _print_table(args, ours, ours_rate, source_rate, naive_rate, memory)
    if personal:
        _print_personal(args, ours, personal, source_rate)
    _print_workers(workers, source_rate, args.connections)
    if plan_row:
        print("\n| database | subscribers | populate s | plan s | pending | skipped |")
        print("|---|---:|---:|---:|---:|---:|")
        print(plan_row)


def _print_workers(rows: list[dict], source_rate: float, connections: int) -> None:
    if not rows:
        return
    base = rows[0]["sent"] / rows[0]["seconds"]
    print(f"\n| workers (x{connections} connections) | msg/s | ratio to 1 worker "
          f"| ratio to smtp-source |")  # fmt: skip
    print("|---:|---:|---:|---:|")
    for row in rows:
        rate = row["sent"] / row["seconds"]
        print(f"| {row['workers']} | {rate:,.0f} | {rate / base:.2f} | {rate / source_rate:.2f} |")


def _print_personal(args, ours: dict, personal: dict, source_rate: float) -> None:  # noqa: ANN001
    base = ours["sent"] / ours["seconds"]
    rate = personal["sent"] / personal["seconds"]
    print("\n| subscribers | readers' signals | msg/s | ratio to without | ratio to smtp-source "
          "| peak RSS MB |")  # fmt: skip
    print("|---:|---|---:|---:|---:|---:|")
    print(f"| {args.subscribers:,} | none | {base:,.0f} | 1.00 | {base / source_rate:.2f} "
          f"| {ours['rss_mb']:.0f} |")  # fmt: skip
    words = f", {args.own_words:.0%} own words and papers" if args.own_words else ""
    print(f"| {args.subscribers:,} | {args.voters:.0%} vote, {args.followers:.0%} follow{words} "
          f"| {rate:,.0f} | {rate / base:.2f} | {rate / source_rate:.2f} "
          f"| {personal['rss_mb']:.0f} |")  # fmt: skip
    cpu = ours["cpu_seconds"] / personal["cpu_seconds"]
    print(f"\nmessages per CPU second of the sender, with signals to without: {cpu:.2f}")
    print(
        f"\nwith signals: sent {personal['sent']:,}, failed {personal['failed']}, "
        f"skipped {personal['skipped']:,} in {personal['seconds']:.1f}s"
    )


def _print_table(args, ours, ours_rate, source_rate, naive_rate, memory) -> None:  # noqa: ANN001
    db = (args.database or "sqlite").split(":", 1)[0]
    print(
        f"{args.subscribers:,} subscribers, {ours['avg_bytes'] / 1024:.1f} KB average message, "
        f"{args.connections} connections, {db}, {os.cpu_count()} cores"
    )
    print()
    print("| sender | msg/s | ratio to smtp-source | ratio to naive |")
    print("|---|---:|---:|---:|")
    print(
        f"| smtp-source -d -s 4 (C limit) | {source_rate:,.0f} | 1.00 | "
        f"{source_rate / naive_rate:.1f} |"
    )
    print(
        f"| daily-papers-newsletter, end to end | {ours_rate:,.0f} | "
        f"{ours_rate / source_rate:.2f} | {ours_rate / naive_rate:.1f} |"
    )
    print(
        f"| naive baseline (per-recipient premailer, smtplib) | {naive_rate:,.0f} | "
        f"{naive_rate / source_rate:.3f} | 1.0 |"
    )
    print()
    print(
        f"sent {ours['sent']:,}, failed {ours['failed']}, skipped {ours['skipped']:,}, "
        f"owed {ours['owed']} in {ours['seconds']:.1f}s; peak RSS while sending "
        f"{ours['rss_mb']:.0f} MB, builder process {_megabytes(ours['builder_rss_mb'])}"
    )
    if memory:
        print()
        print("| subscribers | peak RSS MB while sending | builder process MB |")
        print("|---:|---:|---:|")
        for n, run in memory:
            print(f"| {n:,} | {run['rss_mb']:.0f} | {_megabytes(run['builder_rss_mb'], '')} |")


def _megabytes(value: float | None, unit: str = " MB") -> str:
    """Say a peak RSS: none when the send built in one process, ? when it is unknown."""
    if value is None:
        return "?"
    return f"{value:.0f}{unit}" if value else "none"


if __name__ == "__main__":
    main()
