"""Which papers belong to which topic, with the evidence that says why.

Owns: `scoring` (text, stemming, keyword compilation and the pure scoring), `matches`
(scoring stored papers and storing the matches), `topics` (topic definitions and their
admin). May import `core` only.
"""
