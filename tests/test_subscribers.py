"""The subscriber service: validation, single subscribers, CSV import and export."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from newsletter.audience import backup, csv_format, csv_import, validation
from newsletter.audience import subscribers as svc
from newsletter.core.app import App
from newsletter.core.config import load_settings
from newsletter.core.errors import InputError, NotFound
from newsletter.core.models import Subscriber, SubscriberStatus, Subscription, Suppression, Topic
from newsletter.matching.topics import split_list

TOPICS = ("cv", "ml", "nlp")


@pytest.fixture
def topics(app: App) -> dict[str, int]:
    with app.transaction() as session:
        session.add_all(Topic(slug=s, name=s.upper()) for s in TOPICS)
    with app.transaction() as session:
        return svc.topic_ids(session=session)


def write(tmp_path: Path, text: str, name: str = "people.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def import_file(app: App, source, **kwargs) -> csv_import.ImportReport:
    with app.transaction() as session:
        return csv_import.import_csv(source, session=session, **kwargs)


def snapshot(app: App) -> list[tuple]:
    """Every subscriber with the fields an import may change, by address."""
    with app.transaction() as session:
        subs = svc.list_subscribers(session=session)
        return [
            (s.email, s.name, s.status.value, s.timezone, s.delivery_hour, s.max_papers)
            + (tuple(svc.topic_slugs(s)),)
            for s in subs
        ]


# --- validation -------------------------------------------------------------------------


def test_normalise_email_lowercases_the_domain_and_keeps_the_local_part() -> None:
    assert validation.normalise_email("  Jane.Doe+news@Example.ORG ") == "Jane.Doe+news@example.org"


def test_normalise_email_converts_punycode_domains_to_unicode() -> None:
    assert validation.normalise_email("ana@XN--BCHER-KVA.example") == "ana@bücher.example"


@pytest.mark.parametrize("raw", ["a@b.org\r\nBcc: x@y.org", "a@b.org\n", "a\x00@b.org"])
def test_normalise_email_rejects_line_breaks_and_nul(raw: str) -> None:
    with pytest.raises(InputError, match=r"contains a line break or NUL"):
        validation.normalise_email(raw)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("plainaddress", "must have an @-sign"),
        ("a@b@c.org", "invalid characters"),
        ("Ann <ann@example.org>", "display name"),
        ("ann@localhost", "not valid"),
        ("ann@.org", "period"),
    ],
)
def test_normalise_email_says_why_an_address_is_invalid(raw: str, reason: str) -> None:
    with pytest.raises(InputError) as info:
        validation.normalise_email(raw)
    message = str(info.value)
    assert message.startswith(f"invalid email address {raw!r}: ")
    assert reason in message


ADDRESS_PARTS = st.sampled_from(
    ["a", "Z", "0", ".", "..", "-", "+", "_", "@", '"', " ", "é", "ß", "\u0301", "xn--bcher-kva"]
    + ["example.org", "EXAMPLE.COM", "localhost", "[1.2.3.4]", "postmaster", "x" * 70, "-a"]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(ADDRESS_PARTS, max_size=8).map("".join))
def test_normalise_email_decides_exactly_as_email_validator(raw: str) -> None:
    address = raw.strip(" \t")
    try:
        expected: str | None = validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError:
        expected = None
    try:
        got: str | None = validation.normalise_email(raw)
    except InputError:
        got = None
    assert got == expected


def test_fast_path_agrees_on_long_and_role_addresses() -> None:
    local = "a" * 64
    domain = ".".join(["d" * 60] * 3) + ".org"  # 187 characters: the whole is over 254
    for address in [f"{local}@{domain}", "Postmaster@Example.org", "INFO@example.org"]:
        try:
            expected = validate_email(address, check_deliverability=False).normalized
        except EmailNotValidError:
            expected = None
        assert validation._fast_normalise(address) in (None, expected)
        try:
            assert validation.normalise_email(address) == expected
        except InputError:
            assert expected is None


def test_email_key_folds_ascii_case_only() -> None:
    assert validation.email_key("Jane.DOE@example.org") == "jane.doe@example.org"
    assert validation.email_key("Émile@example.org") == "Émile@example.org"


def test_validate_timezone() -> None:
    assert validation.validate_timezone(" Europe/Paris ") == "Europe/Paris"
    with pytest.raises(InputError, match=r"^unknown time zone 'Mars/Base' \(expected Area/City"):
        validation.validate_timezone("Mars/Base")
    with pytest.raises(InputError, match=r"did you mean 'Europe/Paris'\?"):
        validation.validate_timezone("europe/paris")


@pytest.mark.parametrize("value", [-1, 24, "7.5", "seven", "", "٣"])
def test_validate_hour_rejects_values_outside_0_to_23(value) -> None:
    with pytest.raises(InputError, match=r"^hour must be a whole number 0-23"):
        validation.validate_hour(value)


def test_validate_hour_and_max_papers_accept_their_bounds() -> None:
    assert [validation.validate_hour(v) for v in (0, "23", " 07 ")] == [0, 23, 7]
    assert [validation.validate_max_papers(v) for v in (1, "50")] == [1, 50]
    for bad in (0, 51):
        with pytest.raises(InputError, match="max papers must be a whole number 1-50"):
            validation.validate_max_papers(bad)


def test_resolve_topics_names_the_unknown_and_lists_the_known() -> None:
    known = {"ml": 1, "nlp": 2}
    assert svc.resolve_topics(split_list(" ML, nlp,ml,"), known) == [1, 2]
    assert svc.resolve_topics(split_list("nlp; ;ML", ";"), known) == [2, 1]
    with pytest.raises(InputError) as info:
        svc.resolve_topics(["ml", "quantum", "bio"], known)
    assert str(info.value) == "unknown topics 'quantum', 'bio' (known: ml, nlp)"
    with pytest.raises(InputError, match="no topics given"):
        svc.resolve_topics([], known)


# --- single subscribers -----------------------------------------------------------------


def test_add_subscriber_uses_the_defaults_given(app: App, topics: dict[str, int]) -> None:
    defaults = svc.Defaults(timezone="Asia/Tokyo", hour=6, max_papers=5)
    with app.transaction() as session:
        sub = svc.add_subscriber(
            session=session, email="Ada@Example.org", name=" Ada ", topics="ml,nlp",
            defaults=defaults,
        )  # fmt: skip
    with app.transaction() as session:
        sub = svc.get_subscriber("ada@EXAMPLE.ORG", session=session)
        assert (sub.email, sub.name, sub.timezone, sub.delivery_hour, sub.max_papers) == (
            "Ada@example.org", "Ada", "Asia/Tokyo", 6, 5,
        )  # fmt: skip
        assert sub.status is SubscriberStatus.PENDING and sub.confirmed_at is None
        assert svc.topic_slugs(sub) == ["ml", "nlp"]
        assert sub.consent_source == "admin"


def test_add_subscriber_confirmed_records_when(app: App, topics: dict[str, int]) -> None:
    with app.transaction() as session:
        svc.add_subscriber(session=session, email="b@example.org", topics=["cv"], confirmed=True)
    with app.transaction() as session:
        sub = svc.get_subscriber("b@example.org", session=session)
        assert sub.status is SubscriberStatus.CONFIRMED and sub.confirmed_at is not None


def test_add_subscriber_refuses_an_address_differing_only_in_case(
    app: App, topics: dict[str, int]
) -> None:
    with app.transaction() as session:
        svc.add_subscriber(session=session, email="Jane@example.org", topics="ml")
    with pytest.raises(InputError, match="subscriber 'jane@example.org' already exists"):
        with app.transaction() as session:
            svc.add_subscriber(session=session, email="jane@EXAMPLE.org", topics="ml")
    assert [row[0] for row in snapshot(app)] == ["Jane@example.org"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"email": "nope"}, "invalid email address 'nope'"),
        ({"topics": "ml,quantum"}, "unknown topic 'quantum' (known: cv, ml, nlp)"),
        ({"timezone": "Mars/Base"}, "unknown time zone 'Mars/Base'"),
        ({"hour": 24}, "hour must be a whole number 0-23"),
        ({"max_papers": 0}, "max papers must be a whole number 1-50"),
        ({"name": "Eve\r\nBcc: x@y.org"}, "invalid name"),
    ],
)
def test_add_subscriber_rejects_bad_input_and_writes_nothing(
    app: App, topics: dict[str, int], kwargs: dict, message: str
) -> None:
    values = {"email": "c@example.org", "topics": "ml"} | kwargs
    with pytest.raises(InputError) as info, app.transaction() as session:
        svc.add_subscriber(session=session, **values)
    assert message in str(info.value)
    assert snapshot(app) == []


def test_list_subscribers_filters_by_status_and_topic(app: App, topics: dict[str, int]) -> None:
    with app.transaction() as session:
        svc.add_subscriber(session=session, email="b@x.org", topics="ml,nlp", confirmed=True)
        svc.add_subscriber(session=session, email="a@x.org", topics="cv")
    with app.transaction() as session:
        emails = lambda **kw: [s.email for s in svc.list_subscribers(session=session, **kw)]  # noqa: E731
        assert emails() == ["a@x.org", "b@x.org"]
        assert emails(status="confirmed") == ["b@x.org"]
        assert emails(topic="nlp") == ["b@x.org"]
        assert emails(topic="cv", status=SubscriberStatus.CONFIRMED) == []
        with pytest.raises(InputError, match="unknown topic 'bio'"):
            emails(topic="bio")


def test_remove_subscriber_deletes_their_subscriptions(app: App, topics: dict[str, int]) -> None:
    with app.transaction() as session:
        svc.add_subscriber(session=session, email="a@x.org", topics="cv,ml")
    with app.transaction() as session:
        assert svc.remove_subscriber("A@X.org", session=session).email == "a@x.org"
    with app.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Subscription)) == 0
        with pytest.raises(NotFound, match="no subscriber 'a@x.org'"):
            svc.get_subscriber("a@x.org", session=session)


def test_remove_subscriber_with_deliveries(app: App, topics: dict[str, int]) -> None:
    from datetime import date

    from newsletter.core.models import Delivery, Edition

    with app.transaction() as session:
        sub = svc.add_subscriber(session=session, email="a@x.org", topics="ml")
        session.add(Edition(listing_date=date(2026, 11, 27), deliveries=[Delivery(subscriber=sub)]))
    with app.transaction() as session:
        svc.remove_subscriber("a@x.org", session=session)
    with app.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
        assert session.scalar(select(func.count()).select_from(Edition)) == 1


def test_suppressed_addresses_are_refused(app: App, topics: dict[str, int], tmp_path: Path) -> None:
    with app.transaction() as session:
        session.add(Suppression(email="Gone@x.org", reason="hard bounce"))
    with pytest.raises(InputError, match=r"^'gone@x.org' is suppressed \(hard bounce\)"):
        with app.transaction() as session:
            svc.add_subscriber(session=session, email="gone@X.org", topics="ml")
    report = import_file(app, write(tmp_path, "email,topics\nok@x.org,ml\nGONE@x.org,ml\n"))
    assert report.errors == [(3, "GONE@x.org is suppressed (hard bounce)")]
    assert [r[0] for r in snapshot(app)] == ["ok@x.org"]


# --- import -----------------------------------------------------------------------------

GOOD_AND_BAD = (
    "email,name,topics,timezone,hour\n"  # line 1
    "ada@example.org,Ada Lovelace,ml;nlp,Europe/London,7\n"  # 2
    "not-an-address,Bob,ml,,\n"  # 3
    '"grace@example.org","Grace\nHopper",cv,,\n'  # 4-5: a line break, unsafe in a name
    "linus@example.org,Linus,ml;quantum,,\n"  # 6
    "\n"  # 7: blank lines are ignored
    "ken@example.org,Ken,ml,Mars/Base,\n"  # 8
    "dmr@example.org,Dennis,ml,,25\n"  # 9
    "ADA@example.org,Ada again,ml,,\n"  # 10
    "short@example.org,Short\n"  # 11
    "zoe@bücher.example,Zoë Ünicode,nlp,,\n"  # 12
    "grace@example.org,Grace Hopper,cv,,\n"  # 13
)


def test_import_reports_bad_rows_by_line_and_keeps_the_good(
    app: App, topics: dict[str, int], tmp_path: Path
) -> None:
    report = import_file(app, write(tmp_path, GOOD_AND_BAD))
    assert (report.new, report.updated, report.unchanged, report.skipped) == (3, 0, 0, 7)
    lines = [(line, reason.split(":")[0].split(" (")[0]) for line, reason in report.errors]
    assert lines == [
        (3, "invalid email address 'not-an-address'"),
        (4, "invalid name 'Grace\\nHopper'"),
        (6, "unknown topic 'quantum'"),
        (8, "unknown time zone 'Mars/Base'"),
        (9, "hour must be a whole number 0-23, got '25'"),
        (10, "duplicate of line 2"),
        (11, "expected 5 fields, got 2"),
    ]
    rows = {row[0]: row for row in snapshot(app)}
    assert rows["ada@example.org"] == (
        "ada@example.org", "Ada Lovelace", "confirmed", "Europe/London", 7, 10, ("ml", "nlp"),
    )  # fmt: skip
    assert rows["grace@example.org"][1] == "Grace Hopper"
    assert rows["zoe@bücher.example"][1] == "Zoë Ünicode"


def test_reimporting_the_same_file_changes_nothing(
    app: App, topics: dict[str, int], tmp_path: Path
) -> None:
    path = write(tmp_path, GOOD_AND_BAD)
    import_file(app, path)
    before = snapshot(app)
    again = import_file(app, path, batch_size=2)
    assert (again.new, again.updated, again.unchanged, again.skipped) == (0, 0, 3, 7)
    assert snapshot(app) == before


def test_import_updates_preferences_and_topics_but_never_status(
    app: App, topics: dict[str, int], tmp_path: Path
) -> None:
    import_file(app, write(tmp_path, "email,topics,hour\nann@x.org,ml;nlp,7\nbo@x.org,cv,\n"))
    with app.transaction() as session:
        svc.get_subscriber("bo@x.org", session=session).status = SubscriberStatus.UNSUBSCRIBED
    text = "email,topics,hour,name\nANN@x.org,nlp;cv,9,\nbo@x.org,cv,,Bo\n"
    report = import_file(app, write(tmp_path, text, "again.csv"))
    assert (report.new, report.updated, report.unchanged) == (0, 2, 0)
    assert snapshot(app) == [
        ("ann@x.org", "", "confirmed", "UTC", 9, 10, ("cv", "nlp")),
        ("bo@x.org", "Bo", "unsubscribed", "UTC", 8, 10, ("cv",)),
    ]


def test_import_finds_repeats_across_batches(
    app: App, topics: dict[str, int], tmp_path: Path
) -> None:
    rows = "".join(f"u{i}@x.org,ml\n" for i in range(5))
    text = "email,topics\n" + rows + "U3@X.org,cv\n"  # the repeat of line 5 is line 7
    report = import_file(app, write(tmp_path, text), batch_size=2)
    assert report.new == 5
    assert report.errors == [(7, "duplicate of line 5 (U3@x.org)")]


def test_import_status_pending_and_the_status_column(
    app: App, topics: dict[str, int], tmp_path: Path
) -> None:
    text = "email,topics,status\na@x.org,ml,\nb@x.org,ml,unsubscribed\nc@x.org,ml,gone\n"
    report = import_file(app, write(tmp_path, text), status="pending")
    assert report.errors == [(4, "unknown status 'gone' (known: pending, confirmed, "
                                 "unsubscribed, bounced)")]  # fmt: skip
    assert [(r[0], r[2]) for r in snapshot(app)] == [("a@x.org", "pending"),
                                                     ("b@x.org", "unsubscribed")]  # fmt: skip
    with app.transaction() as session:
        sub = svc.get_subscriber("a@x.org", session=session)
        assert sub.consent_source == "import:people.csv" and sub.confirmed_at is None


def test_import_reads_crlf_and_a_bom(app: App, topics: dict[str, int], tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(
        b"\xef\xbb\xbfEmail,Name,Topics\r\na@x.org,\xc3\x89mile,ml\r\nb@x.org,B,cv\r\n"
    )
    report = import_file(app, path)
    assert (report.new, report.skipped) == (2, 0)
    assert [r[:2] for r in snapshot(app)] == [("a@x.org", "Émile"), ("b@x.org", "B")]


def test_import_of_a_header_only_file_imports_nothing(
    app: App, topics: dict[str, int], tmp_path: Path
) -> None:
    report = import_file(app, write(tmp_path, "email,name,topics\n"))
    assert (report.new, report.skipped, report.errors) == (0, 0, [])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "people.csv is empty: expected a header line"),
        (b"\n\n", "people.csv is empty"),
        (b"email,name\na@x.org,A\n", "people.csv, line 1: missing column(s) topics"),
        (b"mail,topics\n", "people.csv, line 1: unknown column(s) 'mail'"),
        (b"email,topics,email\n", "repeated column(s) email"),
        (b"email;name;topics\n", "seem separated by ';' or tabs: save the file as comma-separated"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "people.csv, line 1: not UTF-8 text (byte 0x89)"),
    ],
)
def test_import_refuses_an_unusable_file(
    app: App, topics: dict[str, int], tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        import_file(app, path)
    assert message in str(info.value)


def test_a_late_encoding_error_leaves_the_database_unchanged(
    app: App, topics: dict[str, int], tmp_path: Path
) -> None:
    rows = "".join(f"u{i}@x.org,N{i},ml\n" for i in range(10)).encode()
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"email,name,topics\n" + rows + "late@x.org,Andr\xe9,ml\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin1.csv, line 12: not UTF-8 text \(byte 0xe9\)"):
        import_file(app, path, batch_size=3)  # earlier batches were written, then rolled back
    assert snapshot(app) == []


def test_import_keeps_only_the_first_errors_but_counts_all(
    app: App, topics: dict[str, int], tmp_path: Path
) -> None:
    text = "email,topics\n" + "bad,ml\n" * 30
    report = import_file(app, write(tmp_path, text), max_errors=10)
    assert report.skipped == 30 and len(report.errors) == 10 and report.errors_truncated
    assert report.to_dict()["errors"][0] == {"line": 2, "reason": report.errors[0][1]}


def test_import_reports_progress_in_bytes(app: App, topics: dict[str, int], tmp_path: Path) -> None:
    path = write(tmp_path, "email,topics\n" + "".join(f"u{i}@x.org,ml\n" for i in range(50)))
    steps: list[int] = []
    import_file(app, path, batch_size=10, on_progress=steps.append)
    assert len(steps) >= 5 and sum(steps) == path.stat().st_size


def test_import_reads_open_binary_and_text_streams(app: App, topics: dict[str, int]) -> None:
    report = import_file(app, io.BytesIO(b"email,topics\na@x.org,ml\n"))
    assert (report.source, report.new) == ("<stream>", 1)
    report = import_file(app, io.StringIO("\nemail,topics\nb@x.org,ml\nc@x.org,ml,extra\n"))
    assert (report.new, report.errors) == (1, [(4, "expected 2 fields, got 3")])


def test_the_header_error_names_its_line(app: App, topics: dict[str, int]) -> None:
    with pytest.raises(InputError, match=r"^<stream>, line 3: missing column\(s\) topics;"):
        import_file(app, io.StringIO("\n\nemail\n"))


# --- export -----------------------------------------------------------------------------


def test_export_round_trips_through_import(
    app: App, topics: dict[str, int], tmp_path: Path
) -> None:
    import_file(app, write(tmp_path, GOOD_AND_BAD))
    import_file(app, write(tmp_path, "email,topics,status\nq@x.org,cv,bounced\n", "b.csv"))
    exported = io.StringIO()
    with app.transaction() as session:
        assert csv_format.export_csv(exported, session=session) == 4
    assert exported.getvalue().splitlines()[0] == ",".join(csv_format.CSV_COLUMNS)

    # The round trip always lands in a SQLite file: export must not depend on the backend.
    other = App(load_settings(env={}, database_url=f"sqlite:///{tmp_path}/other.db",
                              var_dir=str(tmp_path), secret_key="k" * 32))  # fmt: skip
    other.ensure_schema()
    with other.transaction() as session:
        session.add_all(Topic(slug=s, name=s) for s in TOPICS)
    report = import_file(other, io.BytesIO(exported.getvalue().encode()))
    assert (report.new, report.skipped) == (4, 0)
    assert snapshot(other) == snapshot(app)
    other.close()


def test_export_json_lists_every_subscriber(app: App, topics: dict[str, int]) -> None:
    out = io.StringIO()
    with app.transaction() as session:
        assert backup.export_json(out, session=session) == 0
    assert json.loads(out.getvalue()) == []
    with app.transaction() as session:
        svc.add_subscriber(session=session, email="a@x.org", name="Zoë", topics="nlp,cv")
        svc.add_subscriber(session=session, email="b@x.org", topics="ml")
    out = io.StringIO()
    with app.transaction() as session:
        backup.export_json(out, session=session)
    data = json.loads(out.getvalue())
    assert [(d["email"], d["name"], d["topics"]) for d in data] == [
        ("a@x.org", "Zoë", ["cv", "nlp"]), ("b@x.org", "", ["ml"]),
    ]  # fmt: skip
    assert data[0]["created_at"].endswith("+00:00")


def test_subscriber_count_matches_rows(app: App, topics: dict[str, int], tmp_path: Path) -> None:
    import_file(app, write(tmp_path, GOOD_AND_BAD))
    with app.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 3
        assert session.scalar(select(func.count()).select_from(Subscription)) == 4


# --- PostgreSQL: the same import on a throwaway cluster, when the binaries are installed ---


@pytest.fixture
def pg_topics(pg_app: App) -> App:
    with pg_app.transaction() as session:
        session.add_all(Topic(slug=s, name=s) for s in TOPICS)
    return pg_app


def test_postgres_import_update_and_round_trip(pg_topics: App, tmp_path: Path) -> None:
    pg_app = pg_topics
    path = write(tmp_path, GOOD_AND_BAD)
    first = import_file(pg_app, path, batch_size=2)
    assert (first.new, first.skipped) == (3, 7)
    assert [line for line, _ in first.errors] == [3, 4, 6, 8, 9, 10, 11]
    again = import_file(pg_app, path)
    assert (again.new, again.updated, again.unchanged) == (0, 0, 3)
    changed = import_file(pg_app, write(tmp_path, "email,topics,hour\nADA@example.org,cv,5\n"))
    assert (changed.new, changed.updated) == (0, 1)
    with pg_app.transaction() as session:
        ada = svc.get_subscriber("Ada@Example.org", session=session)
        assert (ada.delivery_hour, svc.topic_slugs(ada), ada.consent["source"]) == (
            5, ["cv"], "import:people.csv",
        )  # fmt: skip
        exported = io.StringIO()
        csv_format.export_csv(exported, session=session)
    assert "Zoë Ünicode" in exported.getvalue()
    with pg_app.transaction() as session:
        svc.add_subscriber(session=session, email="new@x.org", topics="ml")
        with pytest.raises(InputError, match="already exists"):
            svc.add_subscriber(session=session, email="NEW@x.org", topics="ml")
