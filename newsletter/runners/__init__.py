"""Long-running processes: the scheduler, the sending worker, one `send` run.

Each is a `core.runner.Runner` (stop event, SIGTERM/SIGINT, poll loop, hand-back). Owns:
`scheduler` (APScheduler wiring: lease, standby, jobs), `tick` (one run: fetch, plan what
`editions.schedule` says is due, send what is owed), `worker` (drains owed deliveries beside
other workers) and `send` (one `newsletter send`). They only trigger the services of the
other packages, as the CLI does. May import every package but `cli` and `web`.
"""
