"""arXiv's taxonomy: the codes it knows, how a typo is answered, what an archive covers."""

from __future__ import annotations

import pytest

from newsletter.core.taxonomy import (
    ALIASES,
    ARCHIVES,
    CATEGORIES,
    CODES,
    PREPRINT_SUBJECTS,
    SINGLE_CATEGORY_ARCHIVES,
    SUBJECT_CLASSES,
    SUBSUMED,
    canonical_code,
    category_code,
    category_name,
    closest_category,
    closest_code,
    covered_categories,
    subject_classes,
    subject_code,
)


def test_every_subject_class_belongs_to_a_listed_archive_and_has_a_name() -> None:
    assert {code.partition(".")[0] for code in SUBJECT_CLASSES} == set(ARCHIVES)
    assert all(CATEGORIES[code] for code in CATEGORIES)
    counts = {archive: len(subject_classes(archive)) for archive in ARCHIVES}
    assert counts["cs"] == 40 and counts["math"] == 32 and counts["physics"] == 22
    assert counts["cond-mat"] == 9 and counts["astro-ph"] == 6 and counts["q-bio"] == 10
    assert set(SINGLE_CATEGORY_ARCHIVES) >= {"hep-th", "gr-qc", "quant-ph", "math-ph"}
    assert category_name("cond-mat.supr-con") == "Superconductivity"


def test_aliases_and_folded_archives_point_at_known_categories() -> None:
    assert all(a in CATEGORIES and c in CATEGORIES for a, c in ALIASES.items())
    assert set(SUBSUMED.values()) <= set(CATEGORIES)
    assert not set(SUBSUMED) & set(CATEGORIES)


@pytest.mark.parametrize(
    ("written", "code"),
    [("cs.lg", "cs.LG"), ("COND-MAT", "cond-mat"), ("Cond-Mat.Str-El", "cond-mat.str-el"),
     (" hep-th ", "hep-th"), ("astro-ph.ga", "astro-ph.GA"), ("cs.ML", None), ("LG", None)],
)  # fmt: skip
def test_canonical_code_is_arxivs_spelling(written: str, code: str | None) -> None:
    assert canonical_code(written) == code


@pytest.mark.parametrize(
    ("typo", "closest"),
    [("cond-mat.superconductivity", "cond-mat.supr-con"), ("condmat", "cond-mat"),
     ("math.number theory", "math.NT"), ("cs.ML", "stat.ML"), ("quantph", "quant-ph"),
     ("physics.optic", "physics.optics"), ("zzzz", None)],
)  # fmt: skip
def test_a_typo_is_answered_with_the_closest_code(typo: str, closest: str | None) -> None:
    assert closest_code(typo) == closest


def test_an_archive_covers_its_classes_their_aliases_and_its_old_names() -> None:
    maths = covered_categories(["math"])
    assert {"math", "math.NT", "math.IT", "cs.IT", "math-ph", "alg-geom"} <= maths
    assert "cs.LG" not in maths
    assert covered_categories(["cs.SY"]) == {"cs.SY", "eess.SY"}
    assert covered_categories(["eess.SY"]) == {"cs.SY", "eess.SY"}
    assert covered_categories(["cond-mat.supr-con"]) == {"cond-mat.supr-con", "supr-con"}
    assert covered_categories(["Ecology"]) == {"Ecology"}  # another source's subject name


def test_preprint_subjects_are_shipped_and_apart_from_arxivs_codes() -> None:
    biorxiv, medrxiv = PREPRINT_SUBJECTS["biorxiv"], PREPRINT_SUBJECTS["medrxiv"]
    assert (len(biorxiv), len(medrxiv)) == (27, 51)
    assert {"neuroscience", "cell-biology", "animal-behavior-and-cognition"} <= set(biorxiv)
    assert {"epidemiology", "infectious-diseases", "hiv-aids"} <= set(medrxiv)
    assert set(biorxiv) & set(medrxiv) == {"epidemiology", "pathology"}
    assert not {code.lower() for code in CODES} & (set(biorxiv) | set(medrxiv))
    assert biorxiv["cell-biology"] == "cell biology"  # the API's own spelling, for ?category=


@pytest.mark.parametrize(
    ("written", "code"),
    [("neuroscience", "neuroscience"), ("Cell Biology", "cell-biology"),
     ("cell_biology", "cell-biology"), (" Epidemiology ", "epidemiology"),
     ("HIV/AIDS", "hiv-aids"), ("cs.lg", "cs.LG"), ("cond-mat", "cond-mat"),
     ("neurosciense", None), ("biology", None)],
)  # fmt: skip
def test_a_category_is_arxivs_code_or_a_preprint_subject(written: str, code: str | None) -> None:
    assert category_code(written) == code


def test_a_subject_belongs_to_its_server_and_typos_are_answered() -> None:
    assert subject_code("neuroscience", "biorxiv") == "neuroscience"
    assert subject_code("neuroscience", "medrxiv") is None
    assert closest_category("neurosciense") == "neuroscience"
    assert closest_category("epidemology") == "epidemiology"
    assert closest_category("cond-mat.superconductivity") == "cond-mat.supr-con"
    assert closest_category("condmat") == "cond-mat"
    assert closest_category("zzzz") is None
