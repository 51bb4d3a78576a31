"""One `newsletter send` run: plan the edition, hold its send lease, deliver; signals stop it."""

from __future__ import annotations

from datetime import date

from newsletter.core.app import App
from newsletter.core.runner import Runner
from newsletter.delivery import service as sending
from newsletter.delivery.engine import ProgressCallback, SendOptions


class SendRun(Runner):
    """Delivers one edition once; SIGTERM or Ctrl-C finishes the messages in flight."""

    def __init__(
        self,
        app: App,
        listing_date: date | None,
        *,
        options: SendOptions,
        progress: ProgressCallback | None = None,
        force: bool = False,
        resume: bool = False,
    ) -> None:
        super().__init__()
        self.force = force
        self.resume = resume
        self.app = app
        self.listing_date = listing_date
        self.options = options
        self.progress = progress
        self.report: sending.SendReport | None = None

    def deliver(self) -> sending.SendReport | None:
        """Run, and return what was planned and sent (None when stopped before it began)."""
        self.run()
        return self.report

    def work(self) -> bool:
        self.report = sending.send(
            self.app,
            self.listing_date,
            options=self.options,
            progress=self.progress,
            attach=self.control.attach,
            force=self.force,
            resume=self.resume,
        )
        return True

    def finished(self, busy: bool) -> bool:
        return True  # one run; the sender itself waits for retries within retry_wait_seconds
