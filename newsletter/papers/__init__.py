"""Papers coming in: source parsers and fetchers, idempotent storage, the fetch job, queries.

Owns: `sources/` (the registry of sources, Hugging Face JSON, arXiv's announcement feed and
API, the seed page, our JSON, readers' BibTeX, RIS and CSL-JSON libraries, HTTP), `ingest`
(storing records), `fetch` (the fetching service and its job), `fetch_log` (each source's
last fetch), `queries` (listing dates and paper look-ups), `service` (a day's listing, one
paper and the sources as the CLI and pages show them), `seeds` (a reader's own papers
from identifiers or a library file: the store, else arXiv's API). May import `core` and
`matching` (papers are matched as they arrive).
"""
