"""Long-running processes: the scheduler and the sending worker.

Owns: `scheduler` (APScheduler wiring: lease, standby, jobs, signals) and `worker` (drains
owed deliveries beside other workers). They only trigger the services of the other
packages, as the CLI does. May import every package but `cli` and `web`.
"""
