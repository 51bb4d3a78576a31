"""Long-running processes: the base runner, the scheduler, the sending worker, one `send` run.

Owns: `base` (a runner: stop event, SIGTERM/SIGINT, poll loop, hand-back of what it holds),
`scheduler` (APScheduler wiring: lease, standby, jobs), `tick` (what is due when, catch-up),
`worker` (drains owed deliveries beside other workers) and `send` (one `newsletter send`).
They only trigger the services of the other packages, as the CLI does. May import every
package but `cli` and `web`.
"""
