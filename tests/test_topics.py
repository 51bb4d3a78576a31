"""Topics: validation, TOML import, listing, removal, and the `topics` commands."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsletter.core.app import App
from newsletter.core.errors import InputError, NotFound
from newsletter.core.models import Paper, PaperTopic, Subscriber, Subscription, Topic
from newsletter.matching.examples_store import example_paper_ids
from newsletter.matching.topics import (
    add_topic,
    import_topics,
    list_topics,
    make_spec,
    normalise_category,
    remove_topic,
    split_list,
)
from newsletter.papers.ingest import ingest_records
from newsletter.papers.sources.biorxiv import parse_biorxiv_json

REPO = Path(__file__).resolve().parent.parent
PREPRINTS = REPO / "tests" / "fixtures" / "biorxiv"

GOOD_TOML = """
[[topic]]
slug = "llm"
name = "Large language models"
description = "Prompting and evaluating LLMs."
keywords = ["LLM", "large language model"]
categories = ["cs.CL"]

[[topic]]
slug = "robotics"
name = "Robotics"
keywords = ["robot", "manipulation"]
"""


def _paper(app: App, title: str) -> int:
    with app.transaction() as s:
        paper = Paper(
            title=title, title_key=title.lower(), listing_date=date(2026, 11, 27), source="test"
        )
        s.add(paper)
        s.flush()
        return paper.id


def _count(app: App, model) -> int:
    with app.transaction() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_split_list_strips_and_drops_empties() -> None:
    assert split_list(" k1, k2 ,, ,k3 ") == ["k1", "k2", "k3"]
    assert split_list(None) == []


@pytest.mark.parametrize(
    "value",
    ["cs.LG", "stat.ML", "eess.AS", "q-bio.NC", "hep-th", "cs", "cond-mat", "math.IT", "nlin"],
)
def test_valid_categories(value: str) -> None:
    assert normalise_category(value) == value


def test_category_case_is_normalised_and_bad_shapes_rejected() -> None:
    assert normalise_category("cs.lg") == "cs.LG"
    assert normalise_category("Cond-Mat.Supr-Con") == "cond-mat.supr-con"
    for bad in ("LG", "cs.L G", "cs..LG", "computer science", "cs.XY", "cond"):
        with pytest.raises(InputError, match="arXiv category"):
            normalise_category(bad)


@pytest.mark.parametrize(
    ("value", "code"),
    [("neuroscience", "neuroscience"), ("Epidemiology", "epidemiology"),
     ("cell biology", "cell-biology"), ("Animal_Behavior_and_Cognition",
     "animal-behavior-and-cognition"), ("psychiatry-and-clinical-psychology",
     "psychiatry-and-clinical-psychology")],
)  # fmt: skip
def test_biorxiv_and_medrxiv_subjects_are_categories(value: str, code: str) -> None:
    assert normalise_category(value) == code


def test_a_category_of_no_source_is_one_line_with_the_closest() -> None:
    with pytest.raises(InputError) as caught:
        normalise_category("neurosciense")
    assert str(caught.value) == (
        "invalid category 'neurosciense': not an arXiv category or bioRxiv/medRxiv subject; "
        "did you mean neuroscience?"
    )


@pytest.mark.parametrize("slug", ["", "Big", "a_b", "-a", "a-", "x" * 65, "a b"])
def test_bad_slugs_are_rejected(slug: str) -> None:
    with pytest.raises(InputError, match="slug"):
        make_spec(slug, "Name")


def test_spec_dedupes_keywords_and_requires_a_name() -> None:
    spec = make_spec("llm", "LLMs", keywords="LLM, llm, large language model", categories="cs.CL")
    assert spec.keywords == ("LLM", "large language model")
    assert spec.categories == ("cs.CL",)
    with pytest.raises(InputError, match="name"):
        make_spec("llm", "  ")


def test_add_topic_matches_existing_papers(app: App) -> None:
    pid = _paper(app, "Large Language Models as judges")
    _paper(app, "Robots that grasp")
    with app.transaction() as s:
        topic = add_topic(session=s, slug="llm", name="LLMs", keywords="large language model")
        assert [pt.paper_id for pt in topic.papers] == [pid]


def test_add_duplicate_slug_is_an_input_error(app: App) -> None:
    with app.transaction() as s:
        add_topic(session=s, slug="llm", name="LLMs")
    with pytest.raises(InputError, match="already exists"), app.transaction() as s:
        add_topic(session=s, slug="llm", name="Other")


def test_import_creates_then_updates_idempotently(app: App, tmp_path: Path) -> None:
    _paper(app, "A robot for kitchens")
    path = tmp_path / "topics.toml"
    path.write_text(GOOD_TOML)
    with app.transaction() as s:
        first = import_topics(path, session=s)
    assert (first.created, first.updated, first.unchanged, first.matches) == (2, 0, 0, 1)
    with app.transaction() as s:
        again = import_topics(path, session=s)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
    path.write_text(GOOD_TOML.replace('"robot", ', ""))
    with app.transaction() as s:
        changed = import_topics(path, session=s)
    assert (changed.updated, changed.unchanged, changed.matches) == (1, 1, 0)
    assert _count(app, PaperTopic) == 0  # the robotics match went with its keyword


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[topic]]\nslug = "ok"\nname = "Ok"\n[[topic]]\nslug = "Bad"\nname = "B"', "topic #2"),
        ('[[topic]]\nslug = "ok"\nname = "Ok"\ncategories = ["nope"]', "arXiv category"),
        ('[[topic]]\nslug = "ok"\nname = "Ok"\nkeywords = "a, b"', "list of strings"),
        ('[[topic]]\nslug = "ok"\nname = "Ok"\ncolour = "red"', "unknown field 'colour'"),
        ('[[topic]]\nslug = "ok"\nname = "A"\n[[topic]]\nslug = "ok"\nname = "B"', "twice"),
        ('[[topic]]\nname = "No slug"', "slug is required"),
        ("[[topic]\n", "not valid TOML"),
        ('title = "no topics"', "expected [[topic]]"),
    ],
)
def test_invalid_file_names_the_entry_and_writes_nothing(
    app: App, tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "topics.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=re.escape(message)) as err, app.transaction() as s:
        import_topics(path, session=s)
    assert str(path) in str(err.value)
    assert _count(app, Topic) == 0


def test_table_per_slug_format(app: App, tmp_path: Path) -> None:
    path = tmp_path / "topics.toml"
    path.write_text('[topics.llm]\nname = "LLMs"\nkeywords = ["LLM"]\n')
    with app.transaction() as s:
        assert import_topics(path, session=s).created == 1
        assert [t.slug for t in list_topics(session=s)] == ["llm"]


def test_list_counts_and_remove_cascades(app: App) -> None:
    pid = _paper(app, "Large Language Models as judges")
    with app.transaction() as s:
        topic = add_topic(session=s, slug="llm", name="LLMs", keywords="LLM, large language model")
        sub = Subscriber(email="a@example.test")
        s.add(sub)
        s.flush()
        s.add(Subscription(subscriber_id=sub.id, topic_id=topic.id))
    with app.transaction() as s:
        [info] = list_topics(session=s)
    assert (info.slug, info.subscribers, info.papers) == ("llm", 1, 1)
    with app.transaction() as s:
        assert remove_topic("llm", session=s) == 1
    assert _count(app, Topic) == _count(app, Subscription) == _count(app, PaperTopic) == 0
    assert _count(app, Subscriber) == 1 and pid
    with pytest.raises(NotFound), app.transaction() as s:
        remove_topic("llm", session=s)


def test_seed_topics_give_most_seed_papers_a_home(run) -> None:
    result = run("topics", "import", str(REPO / "seeds" / "topics.toml"))
    assert result.exit_code == 0, result.output
    imported = run("papers", "import", str(REPO / "seeds" / "hf-daily-papers-page.txt"))
    assert imported.exit_code == 0, imported.output
    listed = json.loads(run("topics", "list", "--json").output)
    assert 8 <= len(listed) <= 12
    assert all(t["papers"] > 0 for t in listed)


def test_cli_add_list_remove(run) -> None:
    added = run(
        "topics", "add", "rob", "--name", "Robotics", "--keywords", "robot, , manipulation",
        "--categories", "cs.ro",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    listed = json.loads(run("topics", "list", "--json").output)
    assert listed[0]["keywords"] == ["robot", "manipulation"]
    assert listed[0]["categories"] == ["cs.RO"]
    refused = run("topics", "remove", "rob", input="n\n")
    assert refused.exit_code == 1
    assert len(json.loads(run("topics", "list", "--json").output)) == 1
    removed = run("topics", "remove", "rob", "--yes")
    assert removed.exit_code == 0 and "0 subscribers" in removed.output
    assert json.loads(run("topics", "list", "--json").output) == []


def test_cli_bad_input_exits_2_with_one_line(run) -> None:
    bad = run("topics", "add", "Bad_Slug", "--name", "X")
    assert bad.exit_code == 2
    assert "invalid topic slug 'Bad_Slug'" in bad.output
    missing = run("topics", "remove", "nope", "--yes")
    assert missing.exit_code == 2 and "unknown topic 'nope'" in missing.output
    bad_date = run("topics", "match", "--date", "2026-13-01")
    assert bad_date.exit_code == 2


def test_cli_match_rematches_by_date(run) -> None:
    run("topics", "add", "llm", "--name", "LLMs", "--keywords", "large language model")
    run(
        "papers", "import", str(REPO / "seeds" / "hf-daily-papers-page.txt"), "--date", "2026-11-27"
    )
    other_day = run("topics", "match", "--date", "2026-11-26")
    assert other_day.exit_code == 0 and "matched 0 papers" in other_day.output
    result = run("topics", "match", "--date", "2026-11-27")
    assert result.exit_code == 0
    assert "matched 50 papers against 1 topic: " in result.output


# Papers of three fields; none of the condensed matter ones names "cuprate".
FIELD_PAPERS = [
    {
        "title": "Pairing symmetry of a kagome metal under pressure",
        "abstract": "Muon spin rotation shows a nodeless gap that closes near 2 GPa.",
        "arxiv_id": "2507.01234",
        "categories": ["cond-mat.supr-con", "cond-mat.str-el"],
    },
    {
        "title": "Spinon continuum of a frustrated Heisenberg chain",
        "abstract": "Neutron scattering on a spin-1/2 chain compound.",
        "arxiv_id": "2507.02345",
        "categories": ["cond-mat.str-el"],
    },
    {
        "title": "Cuprate phase diagrams learned by a graph network",
        "abstract": "A graph neural network predicts transition temperatures.",
        "arxiv_id": "2507.03456",
        "categories": ["cs.LG"],
    },
    {
        "title": "Sum-free sets and a theorem of Kneser",
        "abstract": "We bound the size of sum-free subsets of abelian groups.",
        "arxiv_id": "math/0601001",
        "categories": ["math.NT", "math.CO"],
    },
    {
        "title": "Channel capacity of a quantum point contact",
        "abstract": "Shannon capacity of a mesoscopic conductor.",
        "arxiv_id": "2507.04567",
        "categories": ["cs.IT"],
    },
    {
        "title": "Dispersal kernels in a metapopulation",
        "abstract": "Seed dispersal shapes persistence of fragmented plant populations.",
        "url_abs": "https://www.biorxiv.org/content/10.1101/2024.05.01.592000v2",
        "categories": ["Ecology"],
    },
]


def _import_field_papers(run, tmp_path: Path) -> None:
    papers = [{**p, "listing_date": "2026-11-27"} for p in FIELD_PAPERS]
    path = tmp_path / "fields.json"
    path.write_text(json.dumps(papers), encoding="utf-8")
    result = run("papers", "import", str(path), "--format", "json")
    assert result.exit_code == 0, result.output


def _placed(run, slug: str) -> dict[str, list[str]]:
    """Return the title and evidence of each paper the topic holds."""
    rows = json.loads(run("papers", "list", "--topic", slug, "--json").stdout)
    return {r["title"]: next(t["evidence"] for t in r["topics"] if t["slug"] == slug) for r in rows}


def _listed(run) -> dict[str, dict]:
    return {t["slug"]: t for t in json.loads(run("topics", "list", "--json").stdout)}


def _one_line_refusal(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_examples_are_stored_listed_and_read_from_a_topics_file(run, app, tmp_path) -> None:
    _import_field_papers(run, tmp_path)
    added = run(
        "topics", "add", "supercon", "--name", "Superconductivity",
        "--examples", "arXiv:2507.01234v3, https://doi.org/10.1101/2024.05.01.592000",
        "--not-examples", "math.NT/0601001",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    listed = _listed(run)["supercon"]
    assert listed["examples"] == ["2507.01234", "10.1101/2024.05.01.592000"]
    assert listed["not_examples"] == ["math/0601001"]
    assert listed["whole_categories"] is False
    assert "(2 examples, 1 not)" in run("topics", "list").output
    path = tmp_path / "topics.toml"
    path.write_text(
        '[[topic]]\nslug = "chains"\nname = "Spin chains"\nkeywords = ["spin chain"]\n'
        'examples = ["2507.02345v1", "10.48550/arXiv.2507.01234"]\n'
        'not_examples = ["10.1101/2024.05.01.592000"]\n'
    )
    assert run("topics", "import", str(path)).exit_code == 0
    listed = _listed(run)["chains"]
    assert listed["examples"] == ["2507.02345", "2507.01234"]
    assert listed["not_examples"] == ["10.1101/2024.05.01.592000"]
    again = json.loads(run("topics", "import", str(path), "--json").stdout)
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 1)
    with app.transaction() as s:
        ids = dict(s.execute(select(Paper.arxiv_id, Paper.id)).all())
        chains = s.scalar(select(Topic).where(Topic.slug == "chains"))
        positives, negatives = example_paper_ids(chains, session=s)
    assert positives == [ids["2507.02345"], ids["2507.01234"]]
    assert negatives == [ids[None]]  # the bioRxiv paper, found by the DOI in its link


def test_changing_examples_rematches_and_clearing_them_is_a_change(run, tmp_path) -> None:
    _import_field_papers(run, tmp_path)
    run("topics", "add", "chains", "--name", "Spin chains", "--keywords", "Heisenberg chain")
    same = run("topics", "edit", "chains", "--keywords", "Heisenberg chain")
    assert same.stdout.startswith("topic chains unchanged")
    edited = run("topics", "edit", "chains", "--examples", "2507.02345")
    assert edited.stdout == "updated topic chains: it matches 1 paper of the last 30 days\n"
    assert _listed(run)["chains"]["examples"] == ["2507.02345"]
    cleared = run("topics", "edit", "chains", "--examples", "")
    assert cleared.stdout.startswith("updated topic chains")
    assert _listed(run)["chains"]["examples"] == []


def test_an_example_the_store_does_not_hold_is_refused_and_nothing_changes(
    run, app, tmp_path
) -> None:
    _import_field_papers(run, tmp_path)
    unknown = run(
        "topics", "add", "supercon", "--name", "Superconductivity",
        "--examples", "2507.01234,2507.99999v2",
    )  # fmt: skip
    _one_line_refusal(unknown, "topic 'supercon': no stored paper has the arXiv id '2507.99999'")
    assert _count(app, Topic) == 0
    doi = run(
        "topics", "add", "eco", "--name", "Ecology", "--not-examples", "10.1101/2024.05.01.59200"
    )
    _one_line_refusal(doi, "no stored paper has the DOI '10.1101/2024.05.01.59200'")
    garbled = run("topics", "add", "eco", "--name", "Ecology", "--examples", "2507.1")
    _one_line_refusal(garbled, "topic 'eco': not a paper identifier: '2507.1'")
    both = run(
        "topics", "add", "eco", "--name", "Ecology",
        "--examples", "2507.01234", "--not-examples", "10.48550/arxiv.2507.01234",
    )  # fmt: skip
    _one_line_refusal(both, "'2507.01234' is both an example and a not-example")
    assert _count(app, Topic) == 0
    run("topics", "add", "chains", "--name", "Spin chains", "--examples", "2507.02345")
    edit = run("topics", "edit", "chains", "--examples", "2507.02345,hep-th/9901001")
    _one_line_refusal(edit, "no stored paper has the arXiv id 'hep-th/9901001'")
    assert _listed(run)["chains"]["examples"] == ["2507.02345"]
    path = tmp_path / "topics.toml"
    path.write_text(
        '[[topic]]\nslug = "a"\nname = "A"\n'
        '[[topic]]\nslug = "b"\nname = "B"\nexamples = ["2507.99999"]\n'
    )
    imported = run("topics", "import", str(path))
    _one_line_refusal(imported, "topics.toml: topic 'b': no stored paper has the arXiv id")
    assert sorted(_listed(run)) == ["chains"]


def test_a_whole_category_topic_takes_its_papers_whatever_their_words(run, tmp_path) -> None:
    _import_field_papers(run, tmp_path)
    plain = run(
        "topics", "add", "plain", "--name", "Cuprates", "--keywords", "cuprate",
        "--categories", "cond-mat.supr-con",
    )  # fmt: skip
    assert plain.exit_code == 0, plain.output
    assert set(_placed(run, "plain")) == {"Cuprate phase diagrams learned by a graph network"}
    added = run(
        "topics", "add", "supercon", "--name", "Cuprates", "--keywords", "cuprate",
        "--categories", "cond-mat.supr-con", "--whole-categories",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    placed = _placed(run, "supercon")
    assert placed == {
        "Pairing symmetry of a kagome metal under pressure": ["category: cond-mat.supr-con"],
        "Cuprate phase diagrams learned by a graph network": ['title: "Cuprate"'],
    }
    assert _listed(run)["supercon"]["whole_categories"] is True
    assert "(every paper of cond-mat.supr-con)" in run("topics", "list").output
    dropped = run("topics", "edit", "supercon", "--no-whole-categories")
    assert dropped.stdout == "updated topic supercon: it matches 1 paper of the last 30 days\n"


def test_an_archive_takes_every_subject_class_and_alias_in_it(run, tmp_path) -> None:
    _import_field_papers(run, tmp_path)
    path = tmp_path / "topics.toml"
    path.write_text(
        '[[topic]]\nslug = "cm"\nname = "Condensed matter"\ncategories = ["cond-mat"]\n'
        "whole_categories = true\n"
        '[[topic]]\nslug = "maths"\nname = "Mathematics"\ncategories = ["MATH"]\n'
        "whole_categories = true\n"
    )
    result = run("topics", "import", str(path))
    assert result.exit_code == 0, result.output
    assert _placed(run, "cm") == {
        "Pairing symmetry of a kagome metal under pressure": ["category: cond-mat.supr-con"],
        "Spinon continuum of a frustrated Heisenberg chain": ["category: cond-mat.str-el"],
    }
    # arXiv lists cs.IT papers under math.IT as well: the math archive takes them.
    assert _placed(run, "maths") == {
        "Sum-free sets and a theorem of Kneser": ["category: math.NT"],
        "Channel capacity of a quantum point contact": ["category: cs.IT"],
    }
    assert _listed(run)["maths"]["categories"] == ["math"]


def test_an_unknown_category_is_refused_with_the_closest_code(run, app, tmp_path) -> None:
    result = run(
        "topics", "add", "supercon", "--name", "Superconductivity",
        "--categories", "cond-mat.superconductivity",
    )  # fmt: skip
    _one_line_refusal(
        result,
        "invalid category 'cond-mat.superconductivity': not an arXiv category or bioRxiv/medRxiv "
        "subject; did you mean cond-mat.supr-con?",
    )
    alone = run("topics", "add", "supercon", "--name", "S", "--whole-categories")
    _one_line_refusal(alone, "topic 'supercon': whole categories needs at least one category")
    path = tmp_path / "topics.toml"
    path.write_text('[[topic]]\nslug = "a"\nname = "A"\ncategories = ["astro-ph.GAL"]\n')
    _one_line_refusal(run("topics", "import", str(path)), "did you mean astro-ph.GA?")
    path.write_text('[[topic]]\nslug = "a"\nname = "A"\nwhole_categories = "yes"\n')
    _one_line_refusal(run("topics", "import", str(path)), "whole_categories must be true or false")
    assert _count(app, Topic) == 0


def test_a_topic_of_preprint_subjects_takes_the_preprints_of_them(run, app) -> None:
    with app.transaction() as session:
        for server in ("biorxiv", "medrxiv"):
            path = PREPRINTS / f"{server}_details.json"
            records = parse_biorxiv_json(path.read_bytes(), name=path.name, server=server)
            ingest_records(records, session=session)
    added = run(
        "topics", "add", "brain", "--name", "The brain",
        "--categories", "Neuroscience, neurology", "--whole-categories",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    # The fixtures' preprints were posted over three years: count every listing day.
    listed = json.loads(run("topics", "list", "--days", "5000", "--json").stdout)
    brain = {t["slug"]: t for t in listed}["brain"]
    assert brain["categories"] == ["neuroscience", "neurology"]
    assert brain["papers"] == 9 + 5  # bioRxiv's neuroscience preprints, medRxiv's neurology
    refused = run("topics", "add", "mind", "--name", "Mind", "--categories", "neurosciense")
    _one_line_refusal(refused, "did you mean neuroscience?")
    assert set(_listed(run)) == {"brain"}
