"""Real returned mail of many systems, as labelled by the projects that collected it.

The corpora under fixtures/bounces/ (the repository's own samples, flufl.bounce's, baunsu's,
bounced's and Mail::DeliveryStatus::BounceParser's) go through the real processing one digest
per labelled address (benchmarks/bounces.py); what it does must meet the goals.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from newsletter.bounces.classify import parse_bounce, verp_token
from newsletter.core.models import Delivery, Edition
from tests import factories as f
from tests.bounce_mail import BOUNCES, make_maildir, statuses
from tests.conftest import REPO


def _benchmark():
    """Load benchmarks/bounces.py, which is a script rather than a package module."""
    path = REPO / "benchmarks" / "bounces.py"
    spec = importlib.util.spec_from_file_location("bounce_benchmark", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    bench = _benchmark()
    template = bench.migrated_template(tmp_path_factory.mktemp("corpora"))
    return {name: bench.evaluate(name, folder, template) for name, folder in bench.CORPORA.items()}


def _share(rows, acted: str) -> float:
    return sum(1 for o in rows if o.acted == acted) / len(rows)


def test_every_corpus_is_read_through_without_an_error(outcomes):
    for name, rows in outcomes.items():
        assert rows, name
        assert [o.case.file for o in rows if o.error] == [], name


def test_hard_bounces_are_found_and_soft_or_policy_ones_never_suppress(outcomes):
    rows = [o for corpus in outcomes.values() for o in corpus]
    hard = [o for o in rows if o.case.label == "hard"]
    gentle = [o for o in rows if o.case.label in ("soft", "policy", "temporary")]
    assert len(hard) >= 20 and len(gentle) >= 25
    assert _share(hard, "suppressed") >= 0.9, [o.case.file for o in hard if not o.acted]
    assert [o.case.file for o in gentle if o.acted] == []


def test_complaints_are_acted_on_and_non_bounces_change_nothing(outcomes):
    rows = [o for corpus in outcomes.values() for o in corpus]
    complaints = [o for o in rows if o.case.label == "complaint"]
    assert len(complaints) >= 5
    assert _share(complaints, "unsubscribed") >= 0.9
    assert [o.case.file for o in rows if o.case.label == "none" and o.acted] == []


def test_what_flufl_calls_permanent_suppresses_only_dead_addresses(outcomes):
    # flufl's "permanent" includes full mailboxes and blocks: those must not suppress.
    for o in outcomes["flufl"]:
        if o.acted == "suppressed":
            assert o.reason in ("bad-mailbox", "bad-domain", "moved"), o.case.file


def _sent_to(app, addresses: list[str]) -> dict[str, int]:
    with app.transaction() as s:
        edition = Edition(listing_date=f.DAY)
        s.add(edition)
        s.flush()
        ids = {}
        for email in addresses:
            sub = f.subscriber(s, email, [])
            row = Delivery(edition_id=edition.id, subscriber_id=sub.id, status="sent")
            s.add(row)
            s.flush()
            ids[email] = row.id
    return ids


def _arrivals(app, name: str, ids: dict[str, int]) -> list[bytes]:
    """The sample as it comes back to each delivery's signed return path."""
    data = (BOUNCES / name).read_bytes()
    return [
        b"Delivered-To: bounces+%s@news.example.test\n" % verp_token(app.settings, i).encode()
        + data
        for i in ids.values()
    ]


def test_a_report_on_several_recipients_counts_each_one_apart(app, run, tmp_path):
    (tmp_path / "newsletter.toml").write_text('bounce_domain = "news.example.test"\n')
    # A relay refused both at RCPT with a misused 5.3.0 "Addressee unknown"; one more
    # reader's report on its own recipient, over quota, stays soft.
    dead = ["after_another@example.net", "one_bad_address@example.net"]
    ids = _sent_to(app, [*dead, "userx@example.es", "usery@example.uk"])
    messages = _arrivals(app, "flufl/smtp32_04.txt", {a: ids[a] for a in dead})
    messages += _arrivals(app, "flufl/yahoo_04.txt", {"usery@example.uk": ids["usery@example.uk"]})
    make_maildir(tmp_path / "box", messages)

    result = run("bounces", "process", str(tmp_path / "box"), "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["suppressed_addresses"] == dead
    now = statuses(app)
    assert (now["usery@example.uk"], now["userx@example.es"]) == ("confirmed", "confirmed")
    outcome = next(o for o in report["outcomes"] if o["email"] == "usery@example.uk")
    assert (outcome["action"], outcome["reason"]) == ("counted", "mailbox-full")


def test_each_of_several_recipients_gets_its_own_reason():
    report = parse_bounce((BOUNCES / "flufl/yahoo_04.txt").read_bytes())
    assert report is not None
    reasons = {f.recipient: f.reason for f in report.failures}
    assert reasons == {"userx@example.es": "mailbox-full", "usery@example.uk": "mailbox-full"}
    assert report.about("usery@example.uk").recipient == "usery@example.uk"


def test_corpora_folders_say_where_their_samples_come_from():
    for folder in ("flufl", "baunsu", "bounced", "bounceparser"):
        readme = (BOUNCES / folder / "README.md").read_text()
        assert "https://" in readme and "icense" in readme, folder
        assert (BOUNCES / folder / "labels.tsv").exists()
    assert Path(BOUNCES / "labels.tsv").exists()
