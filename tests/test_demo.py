import mailbox

from newsletter.demo import DEMO_SUBSCRIBERS


def test_demo_writes_one_digest_per_demo_subscriber_and_is_rerunnable(run, settings):
    # The demo runs the defaults, matching by meaning included.
    run.env = {**run.env, "NEWSLETTER_MATCH_NEIGHBOURS": "true"}
    first = run("demo", "--date", "2026-11-27")
    assert first.exit_code == 0, first.output
    assert "imported 30 papers of a real Hugging Face listing for 2026-11-27" in first.output
    for email, *_ in DEMO_SUBSCRIBERS:
        assert email in first.output
    assert "sent 4, failed 0" in first.output
    box = mailbox.Maildir(settings.transport.removeprefix("maildir:"), create=False)
    assert len(box) == 4
    assert "open one: " in first.output

    second = run("demo", "--date", "2026-11-27")
    assert second.exit_code == 0 and "sent 0," in second.output
    assert len(box) == 4
