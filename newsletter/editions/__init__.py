"""Editions: planning one delivery per reader, choosing each reader's papers, and when.

Owns: `planning` (editions and set-based planning of deliveries), `selection` (which of
the day's papers each reader gets, best first), `schedule` (what is due when across time
zones and weeks, catch-up). May import `core`, `matching` and `papers`.
"""
