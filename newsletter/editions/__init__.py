"""Editions: planning one delivery per reader and choosing each reader's papers.

Owns: `archive` (the public archive's queries: editions, their papers per topic, feeds),
`schedule` (what is due when: each group's delivery moment, catch-up, stale skips),
`planning` (editions and set-based planning of deliveries), `selection` (which of
the day's papers each reader gets, best first, shaped by their votes and rules, and why
each is there), `readers` (the one selection every digest, preview, test copy and dry run
asks for a reader's papers, with what they already had). May import `core`, `matching`,
`papers`, `content` (the paper cards it hands to rendering) and `audience` (who receives
digests).
"""
