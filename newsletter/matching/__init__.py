"""Which papers belong to which topic, and to which reader, with the evidence that says why.

Owns: `text` (a paper's words as tokens, stems and acronym forms), `wordlists` (the
machine-learning prior: generic words, false friends, synonyms, named models), `keywords`
(a topic's keywords compiled into token sequences), `scoring` (the index of topics and the
pure scoring), `specificity` (keyword weights from document frequencies), `embeddings`
(the sentence model and stored vectors), `meaning` (topic
prototypes and papers' standings among recent papers), `neighbours` (a paper's nearest
papers), `combine` (every signal into one decision, with the fitted weights), `matches`
(scoring stored papers against the recent listings, storing the matches and the vectors),
`matched` (the one definition of a topic's matched papers and their count over the window of
days), `check` (how topics and keywords fit recent papers, and which signal placed their
matches), `unmatched` (the recent papers no topic took, with the terms that set them apart),
`suggestions` (papers to teach a topic with: close ones it leaves out, weak ones it takes),
`topics` (topic definitions and their admin), `service` (the topic admin, checks and
matching again as the CLI and pages call them, each in its own session), `examples_store`
(a topic's example papers: identifiers checked against the store and resolved to paper
ids), and readers' signals:
`feedback` (votes on papers), `profiles` (tf-idf profiles of liked and disliked papers),
`personal` (followed authors, muted words, personal keywords), `interests` (a reader's own
words: their vector and the papers that stand out against it), `first_round` (the few recent
papers a new reader rates first, chosen to teach their profile fastest), `seeds` (a reader's
own papers: stored as text with their identifiers, counted as likes, never sent back).
May import `core` only.
"""
