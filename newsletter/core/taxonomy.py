"""The categories papers carry: arXiv's taxonomy, and bioRxiv's and medRxiv's subjects.

An archive ("cond-mat", "math", "cs") stands for itself and every subject class in it
("cond-mat.supr-con", "math.NT"); a one-category archive ("hep-th", "quant-ph") is its own
only category. arXiv lists a paper of an aliased pair under both codes (a cs.IT paper is a
math.IT paper too), so either code covers both. Written from arXiv's public category
taxonomy. A bioRxiv or medRxiv subject collection ("Cell Biology") is the category code
"cell-biology". It lives in `core` because settings, topics and the sources all check
categories against it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable

ARCHIVES: dict[str, str] = {
    "astro-ph": "Astrophysics",
    "cond-mat": "Condensed Matter",
    "cs": "Computer Science",
    "econ": "Economics",
    "eess": "Electrical Engineering and Systems Science",
    "math": "Mathematics",
    "nlin": "Nonlinear Sciences",
    "physics": "Physics",
    "q-bio": "Quantitative Biology",
    "q-fin": "Quantitative Finance",
    "stat": "Statistics",
}

# Archives that are one category, without subject classes.
SINGLE_CATEGORY_ARCHIVES: dict[str, str] = {
    "gr-qc": "General Relativity and Quantum Cosmology",
    "hep-ex": "High Energy Physics - Experiment",
    "hep-lat": "High Energy Physics - Lattice",
    "hep-ph": "High Energy Physics - Phenomenology",
    "hep-th": "High Energy Physics - Theory",
    "math-ph": "Mathematical Physics",
    "nucl-ex": "Nuclear Experiment",
    "nucl-th": "Nuclear Theory",
    "quant-ph": "Quantum Physics",
}

SUBJECT_CLASSES: dict[str, str] = {
    "astro-ph.CO": "Cosmology and Nongalactic Astrophysics",
    "astro-ph.EP": "Earth and Planetary Astrophysics",
    "astro-ph.GA": "Astrophysics of Galaxies",
    "astro-ph.HE": "High Energy Astrophysical Phenomena",
    "astro-ph.IM": "Instrumentation and Methods for Astrophysics",
    "astro-ph.SR": "Solar and Stellar Astrophysics",
    "cond-mat.dis-nn": "Disordered Systems and Neural Networks",
    "cond-mat.mes-hall": "Mesoscale and Nanoscale Physics",
    "cond-mat.mtrl-sci": "Materials Science",
    "cond-mat.other": "Other Condensed Matter",
    "cond-mat.quant-gas": "Quantum Gases",
    "cond-mat.soft": "Soft Condensed Matter",
    "cond-mat.stat-mech": "Statistical Mechanics",
    "cond-mat.str-el": "Strongly Correlated Electrons",
    "cond-mat.supr-con": "Superconductivity",
    "cs.AI": "Artificial Intelligence",
    "cs.AR": "Hardware Architecture",
    "cs.CC": "Computational Complexity",
    "cs.CE": "Computational Engineering, Finance, and Science",
    "cs.CG": "Computational Geometry",
    "cs.CL": "Computation and Language",
    "cs.CR": "Cryptography and Security",
    "cs.CV": "Computer Vision and Pattern Recognition",
    "cs.CY": "Computers and Society",
    "cs.DB": "Databases",
    "cs.DC": "Distributed, Parallel, and Cluster Computing",
    "cs.DL": "Digital Libraries",
    "cs.DM": "Discrete Mathematics",
    "cs.DS": "Data Structures and Algorithms",
    "cs.ET": "Emerging Technologies",
    "cs.FL": "Formal Languages and Automata Theory",
    "cs.GL": "General Literature",
    "cs.GR": "Graphics",
    "cs.GT": "Computer Science and Game Theory",
    "cs.HC": "Human-Computer Interaction",
    "cs.IR": "Information Retrieval",
    "cs.IT": "Information Theory",
    "cs.LG": "Machine Learning",
    "cs.LO": "Logic in Computer Science",
    "cs.MA": "Multiagent Systems",
    "cs.MM": "Multimedia",
    "cs.MS": "Mathematical Software",
    "cs.NA": "Numerical Analysis",
    "cs.NE": "Neural and Evolutionary Computing",
    "cs.NI": "Networking and Internet Architecture",
    "cs.OH": "Other Computer Science",
    "cs.OS": "Operating Systems",
    "cs.PF": "Performance",
    "cs.PL": "Programming Languages",
    "cs.RO": "Robotics",
    "cs.SC": "Symbolic Computation",
    "cs.SD": "Sound",
    "cs.SE": "Software Engineering",
    "cs.SI": "Social and Information Networks",
    "cs.SY": "Systems and Control",
    "econ.EM": "Econometrics",
    "econ.GN": "General Economics",
    "econ.TH": "Theoretical Economics",
    "eess.AS": "Audio and Speech Processing",
    "eess.IV": "Image and Video Processing",
    "eess.SP": "Signal Processing",
    "eess.SY": "Systems and Control",
    "math.AC": "Commutative Algebra",
    "math.AG": "Algebraic Geometry",
    "math.AP": "Analysis of PDEs",
    "math.AT": "Algebraic Topology",
    "math.CA": "Classical Analysis and ODEs",
    "math.CO": "Combinatorics",
    "math.CT": "Category Theory",
    "math.CV": "Complex Variables",
    "math.DG": "Differential Geometry",
    "math.DS": "Dynamical Systems",
    "math.FA": "Functional Analysis",
    "math.GM": "General Mathematics",
    "math.GN": "General Topology",
    "math.GR": "Group Theory",
    "math.GT": "Geometric Topology",
    "math.HO": "History and Overview",
    "math.IT": "Information Theory",
    "math.KT": "K-Theory and Homology",
    "math.LO": "Logic",
    "math.MG": "Metric Geometry",
    "math.MP": "Mathematical Physics",
    "math.NA": "Numerical Analysis",
    "math.NT": "Number Theory",
    "math.OA": "Operator Algebras",
    "math.OC": "Optimization and Control",
    "math.PR": "Probability",
    "math.QA": "Quantum Algebra",
    "math.RA": "Rings and Algebras",
    "math.RT": "Representation Theory",
    "math.SG": "Symplectic Geometry",
    "math.SP": "Spectral Theory",
    "math.ST": "Statistics Theory",
    "nlin.AO": "Adaptation and Self-Organizing Systems",
    "nlin.CD": "Chaotic Dynamics",
    "nlin.CG": "Cellular Automata and Lattice Gases",
    "nlin.PS": "Pattern Formation and Solitons",
    "nlin.SI": "Exactly Solvable and Integrable Systems",
    "physics.acc-ph": "Accelerator Physics",
    "physics.ao-ph": "Atmospheric and Oceanic Physics",
    "physics.app-ph": "Applied Physics",
    "physics.atm-clus": "Atomic and Molecular Clusters",
    "physics.atom-ph": "Atomic Physics",
    "physics.bio-ph": "Biological Physics",
    "physics.chem-ph": "Chemical Physics",
    "physics.class-ph": "Classical Physics",
    "physics.comp-ph": "Computational Physics",
    "physics.data-an": "Data Analysis, Statistics and Probability",
    "physics.ed-ph": "Physics Education",
    "physics.flu-dyn": "Fluid Dynamics",
    "physics.gen-ph": "General Physics",
    "physics.geo-ph": "Geophysics",
    "physics.hist-ph": "History and Philosophy of Physics",
    "physics.ins-det": "Instrumentation and Detectors",
    "physics.med-ph": "Medical Physics",
    "physics.optics": "Optics",
    "physics.plasm-ph": "Plasma Physics",
    "physics.pop-ph": "Popular Physics",
    "physics.soc-ph": "Physics and Society",
    "physics.space-ph": "Space Physics",
    "q-bio.BM": "Biomolecules",
    "q-bio.CB": "Cell Behavior",
    "q-bio.GN": "Genomics",
    "q-bio.MN": "Molecular Networks",
    "q-bio.NC": "Neurons and Cognition",
    "q-bio.OT": "Other Quantitative Biology",
    "q-bio.PE": "Populations and Evolution",
    "q-bio.QM": "Quantitative Methods",
    "q-bio.SC": "Subcellular Processes",
    "q-bio.TO": "Tissues and Organs",
    "q-fin.CP": "Computational Finance",
    "q-fin.EC": "Economics",
    "q-fin.GN": "General Finance",
    "q-fin.MF": "Mathematical Finance",
    "q-fin.PM": "Portfolio Management",
    "q-fin.PR": "Pricing of Securities",
    "q-fin.RM": "Risk Management",
    "q-fin.ST": "Statistical Finance",
    "q-fin.TR": "Trading and Market Microstructure",
    "stat.AP": "Applications",
    "stat.CO": "Computation",
    "stat.ME": "Methodology",
    "stat.ML": "Machine Learning",
    "stat.OT": "Other Statistics",
    "stat.TH": "Statistics Theory",
}

# Pairs arXiv merged: the alias (left) and the canonical code a paper is listed under too.
ALIASES: dict[str, str] = {
    "cs.NA": "math.NA",
    "cs.SY": "eess.SY",
    "math.IT": "cs.IT",
    "math.MP": "math-ph",
    "q-fin.EC": "econ.GN",
    "stat.TH": "math.ST",
}

# Archives of the 1990s that arXiv folded into today's categories; old papers still carry them.
SUBSUMED: dict[str, str] = {
    "acc-phys": "physics.acc-ph",
    "adap-org": "nlin.AO",
    "alg-geom": "math.AG",
    "ao-sci": "physics.ao-ph",
    "atom-ph": "physics.atom-ph",
    "bayes-an": "physics.data-an",
    "chao-dyn": "nlin.CD",
    "chem-ph": "physics.chem-ph",
    "cmp-lg": "cs.CL",
    "comp-gas": "nlin.CG",
    "dg-ga": "math.DG",
    "funct-an": "math.FA",
    "mtrl-th": "cond-mat.mtrl-sci",
    "patt-sol": "nlin.PS",
    "plasm-ph": "physics.plasm-ph",
    "q-alg": "math.QA",
    "solv-int": "nlin.SI",
    "supr-con": "cond-mat.supr-con",
}

CATEGORIES: dict[str, str] = {**SINGLE_CATEGORY_ARCHIVES, **SUBJECT_CLASSES}
CODES: dict[str, str] = {**ARCHIVES, **CATEGORIES}  # every code an admin may write
_BY_LOWER = {code.lower(): code for code in CODES}
SUGGEST_CUTOFF = 0.6  # how alike a typo and a code must be for the code to be suggested


def canonical_code(value: str) -> str | None:
    """Return an archive or category code in arXiv's spelling ("COND-MAT.Supr-Con" ->
    "cond-mat.supr-con"), or None when the taxonomy has no such code."""
    return _BY_LOWER.get(value.strip().lower())


def category_name(code: str) -> str:
    """Return the name of an archive or category ("Superconductivity"), or "" if unknown."""
    return CODES.get(code, "")


def archive_of(code: str) -> str:
    """Return the archive a code belongs to ("cond-mat.supr-con" -> "cond-mat")."""
    return code.partition(".")[0]


def subject_classes(archive: str) -> tuple[str, ...]:
    """Return the subject classes of an archive ("nlin" -> nlin.AO, nlin.CD, ...)."""
    prefix = archive + "."
    return tuple(code for code in SUBJECT_CLASSES if code.startswith(prefix))


def closest_code(value: str) -> str | None:
    """Return the code most like a mistyped one, by its spelling or its subject's name.

    "cond-mat.superconductivity" -> "cond-mat.supr-con", "condmat" -> "cond-mat", and a
    subject class under the wrong archive to the archive that has it: "cs.ML" -> "stat.ML".
    None when nothing is close.
    """
    text = value.strip().lower()
    archive, dot, subject = text.partition(".")
    elsewhere = [c for c in SUBJECT_CLASSES if dot and c.lower().endswith("." + subject)]
    if len(elsewhere) == 1:
        return elsewhere[0]
    keys: dict[str, str] = {}
    for code, name in CODES.items():
        keys[code.lower()] = code
        if "." in code:  # the subject's name in the code's place: "math.number theory"
            keys[f"{archive_of(code).lower()}.{name.lower()}"] = code
        else:
            keys[name.lower()] = code
    close = difflib.get_close_matches(text, keys, n=1, cutoff=SUGGEST_CUTOFF)
    if not close and dot:  # "combinatorics" under the right archive
        close = difflib.get_close_matches(f"{archive}.{subject}", keys, n=1, cutoff=0.5)
    return keys[close[0]] if close else None


def covered_categories(codes: Iterable[str]) -> frozenset[str]:
    """Return every category a paper may carry that these codes take.

    An archive takes itself (old papers carry the bare archive), its subject classes, the
    aliases of those and the old archives folded into them; a category takes itself and its
    alias. A code the taxonomy does not know (a subject name of another source) takes itself.
    """
    covered: set[str] = set()
    for code in codes:
        covered.add(code)
        if code in ARCHIVES:
            covered.update(subject_classes(code))
    for code in list(covered):
        if code in ALIASES:
            covered.add(ALIASES[code])
    covered.update(alias for alias, canonical in ALIASES.items() if canonical in covered)
    covered.update(old for old, new in SUBSUMED.items() if new in covered)
    return frozenset(covered)


# bioRxiv's and medRxiv's subject collections, as their API's `category` field names them.
BIORXIV_SUBJECTS: tuple[str, ...] = (
    "animal behavior and cognition", "biochemistry", "bioengineering", "bioinformatics",
    "biophysics", "cancer biology", "cell biology", "clinical trials", "developmental biology",
    "ecology", "epidemiology", "evolutionary biology", "genetics", "genomics", "immunology",
    "microbiology", "molecular biology", "neuroscience", "paleontology", "pathology",
    "pharmacology and toxicology", "physiology", "plant biology",
    "scientific communication and education", "synthetic biology", "systems biology", "zoology",
)  # fmt: skip
MEDRXIV_SUBJECTS: tuple[str, ...] = (
    "addiction medicine", "allergy and immunology", "anesthesia", "cardiovascular medicine",
    "dentistry and oral medicine", "dermatology", "emergency medicine", "endocrinology",
    "epidemiology", "forensic medicine", "gastroenterology", "genetic and genomic medicine",
    "geriatric medicine", "health economics", "health informatics", "health policy",
    "health systems and quality improvement", "hematology", "hiv aids", "infectious diseases",
    "intensive care and critical care medicine", "medical education", "medical ethics",
    "nephrology", "neurology", "nursing", "nutrition", "obstetrics and gynecology",
    "occupational and environmental health", "oncology", "ophthalmology", "orthopedics",
    "otolaryngology", "pain medicine", "palliative medicine", "pathology", "pediatrics",
    "pharmacology and therapeutics", "primary care research",
    "psychiatry and clinical psychology", "public and global health", "radiology and imaging",
    "rehabilitation medicine and physical therapy", "respiratory medicine", "rheumatology",
    "sexual and reproductive health", "sports medicine", "surgery", "toxicology",
    "transplantation", "urology",
)  # fmt: skip
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
SUBJECT_CUTOFF = 0.75  # subjects are words: a looser match suggests an unrelated one


def subject_slug(name: str) -> str:
    """Spell a subject collection as a category code: "Cell Biology" -> "cell-biology"."""
    return _NOT_ALNUM.sub("-", name.casefold()).strip("-")


# Each server's subjects by code, with the name its API spells.
PREPRINT_SUBJECTS: dict[str, dict[str, str]] = {
    "biorxiv": {subject_slug(name): name for name in BIORXIV_SUBJECTS},
    "medrxiv": {subject_slug(name): name for name in MEDRXIV_SUBJECTS},
}
SUBJECT_CODES: frozenset[str] = frozenset().union(*PREPRINT_SUBJECTS.values())


def subject_code(value: str, server: str | None = None) -> str | None:
    """Return the code of a bioRxiv or medRxiv subject in any spelling ("Cell_Biology" ->
    "cell-biology"), of that server's when one is named, or None when it has no such subject."""
    code = subject_slug(value)
    return code if code in _subjects(server) else None


def closest_subject(value: str, server: str | None = None) -> str | None:
    """Return the subject code most like a mistyped one ("neurosciense" -> "neuroscience")."""
    known = sorted(_subjects(server))
    close = difflib.get_close_matches(subject_slug(value), known, n=1, cutoff=SUBJECT_CUTOFF)
    return close[0] if close else None


def _subjects(server: str | None) -> Collection[str]:
    return PREPRINT_SUBJECTS[server] if server else SUBJECT_CODES


def category_code(value: str) -> str | None:
    """Return an arXiv code in arXiv's spelling or a preprint subject's code, else None."""
    return canonical_code(value) or subject_code(value)


def closest_category(value: str) -> str | None:
    """Return the arXiv code or preprint subject most like a mistyped category."""
    subject = closest_subject(value)
    code = closest_code(value)
    if subject and code:  # both near: the one whose spelling is nearer
        text = value.strip().lower()
        return max((code, subject), key=lambda c: _likeness(text, c.lower()))
    return subject or code


def _likeness(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()
