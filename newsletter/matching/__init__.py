"""Which papers belong to which topic, with the evidence that says why.

Owns: `scoring` (text, stemming, keyword compilation and the pure scoring), `specificity`
(keyword weights from document frequencies), `matches` (scoring stored papers against the
recent listings and storing the matches), `check` (how topics and keywords fit recent papers),
`topics` (topic definitions and their admin). May import `core` only.
"""
