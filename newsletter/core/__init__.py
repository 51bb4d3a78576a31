"""The foundation every stage stands on: settings, the database, models, errors, tokens.

Owns: `App` (settings plus engine and sessions), the typed settings (one registry, each
with its default, help and checks; `setting_fields` declares and parses them; the reference
made from it), what the list calls
itself (`identity`: its name, List-Id, subject line), paper identifiers (`identifiers`:
DOIs, arXiv's DOIs) and the secret key, the parse and masking of URLs that carry passwords,
engine and migrations, the SQLAlchemy models, the delivery store (`deliveries`: the one
module that writes delivery rows), the typed errors, the base of every loop
(`runner`: stop, signals, poll, hand-back), `[[sources]]` tables (`source_tables`), named
leases (with process identity and the heartbeat that renews them), signed link tokens,
arXiv's category taxonomy (`taxonomy`), papers' LaTeX shown as text (`latex`), the location
of shipped files and how counts read (`wording`: "1 paper", "2 papers"). Imports nothing
from the other packages.
"""
