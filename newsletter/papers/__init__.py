"""Papers coming in: source parsers and fetchers, idempotent storage, the fetch job, queries.

Owns: `sources/` (Hugging Face JSON, arXiv Atom and RSS, the seed page, our JSON, HTTP),
`ingest` (storing records), `fetch` (the fetching service and its job), `queries` (listing
dates and paper look-ups). May import `core` and `matching` (papers are matched as they
arrive).
"""
