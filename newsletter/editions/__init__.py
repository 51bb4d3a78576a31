"""Editions: planning one delivery per reader and choosing each reader's papers.

Owns: `archive` (the public archive's queries: editions, their papers per topic, feeds),
`schedule` (what is due when: each group's delivery moment, catch-up, stale skips),
`planning` (editions and set-based planning of deliveries), `selection` (the day's papers
loaded for `ranking`, and each reader's picks turned into paper cards saying why each is
there), `readers` (the one selection every digest, preview, test copy and dry run
asks for a reader's papers, with what they already had). May import `core`, `matching`,
`ranking` (the one place a reader's papers are ordered), `papers`, `content` (the paper
cards it hands to rendering) and `audience` (who receives digests).
"""
