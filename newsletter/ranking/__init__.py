"""Ranking: one reader's papers of an edition, best first, each with the reasons it is there.

Owns: `weights` (how much each of a reader's signals weighs: the `ranking_*` settings as one
frozen object), `inputs` (what ranking reads: the edition's candidates, a reader's taste and
their rules as they fall on the edition, and what it answers: picks with their reasons) and
`rank` (the one pure function from those to a reader's ordered picks). No SQL, no session,
no paper cards: `editions.selection` loads what ranking reads and turns its picks into cards,
and every digest, preview, test copy and dry run asks it. May import `core` and `matching`.
"""
