"""Readers' own papers (seeds): given by identifier or library file, looked up on arXiv, counted
as likes in the digest and never sent back; hostile files and identifiers are one line."""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsletter.core.models import Edition, Paper, PaperTopic, ReaderSeed, Subscriber
from newsletter.delivery import service as sending
from newsletter.editions.readers import Reader
from newsletter.matching.embeddings import load_encoder
from newsletter.matching.matches import embed_papers
from newsletter.papers.sources.library import read_library
from tests import factories as f
from tests.conftest import FIXTURES, Cli
from tests.feed_server import FeedServer, Reply

LIBRARIES = FIXTURES / "libraries"
FIELDS = json.loads((Path(__file__).parent / "labelled/fields/papers.json").read_text("utf-8"))
QUANTUM = [p for p in FIELDS if p["categories"][0] == "quant-ph"][:8]
MATHS = [p for p in FIELDS if p["categories"][0] in ("math.AG", "math.AP")][:8]
IDLIST = FIXTURES / "arxiv_api_2026_idlist.xml"  # the arXiv API's answer for 1605.08386
ADDRESS = "ada@example.org"


def _paper(session, topic, *, title, abstract, arxiv_id=None, doi=None, day=f.DAY):
    row = Paper(
        title=title,
        title_key=title.casefold()[:512],
        abstract=abstract,
        authors=["A. Author"],
        arxiv_id=arxiv_id,
        doi=doi,
        url_abs=f"https://arxiv.org/abs/{arxiv_id}" if arxiv_id else None,
        listing_date=day,
        source="arxiv",
    )
    session.add(row)
    session.flush()
    session.add(PaperTopic(paper_id=row.id, topic_id=topic.id, score=1.0, evidence=["test"]))
    return row


def _csl_paper() -> dict:
    return json.loads((LIBRARIES / "zotero_quantum.json").read_text("utf-8"))[0]


@pytest.fixture
def day(app):
    """A day of real quantum-physics and mathematics papers in one topic, the quantum paper
    of the CSL-JSON library among them, and a reader of that topic."""
    with app.transaction() as s:
        physics = f.topic(s, "physics")
        for p in QUANTUM + MATHS:
            _paper(s, physics, title=p["title"], abstract=p["abstract"], arxiv_id=p["key"])
        own = _csl_paper()
        _paper(s, physics, title=own["title"], abstract=own["abstract"], arxiv_id="2410.00917")
        f.subscriber(s, ADDRESS, [physics], max_papers=5)
    return physics


def _seeds(app, address=ADDRESS):
    with app.reading() as s:
        sid = s.scalar(select(Subscriber.id).where(Subscriber.email == address))
        rows = s.scalars(select(ReaderSeed).where(ReaderSeed.subscriber_id == sid))
        return [(r.arxiv_id, r.doi, r.title) for r in rows]


def _digest_text(app, address=ADDRESS) -> str:
    box = mailbox.Maildir(app.settings.transport.removeprefix("maildir:"), create=True)
    for raw in box:
        message = email.message_from_bytes(bytes(raw), policy=email.policy.default)
        if message["To"].addresses[0].addr_spec == address:
            return message.get_body(("plain",)).get_content()
    raise AssertionError(f"no digest for {address}")


def _titles(app, topic_id):
    selection = sending.make_selection(app, Edition(listing_date=f.DAY, kind="daily"))
    with app.reading() as s:
        sid = s.scalar(select(Subscriber.id).where(Subscriber.email == ADDRESS))
    return [p.title for p in selection.papers_for(Reader(sid, (topic_id,), 5))]


@pytest.fixture
def meaning(app, env, day) -> Cli:
    """The day's papers with their sentence vectors, and a command line that embeds seeds
    (match_neighbours on), as an instance matching by meaning has them."""
    with app.transaction() as s:
        embed_papers(session=s, paper_ids=s.scalars(select(Paper.id)), encoder=load_encoder())
    return Cli({**env, "NEWSLETTER_MATCH_NEIGHBOURS": "true"})


def _lookup_config(tmp_path: Path, server: FeedServer) -> None:
    (tmp_path / "newsletter.toml").write_text(
        f'arxiv_api_url = "{server.url}"\narxiv_request_interval = 0\n'
        "http_backoff = 0.01\nhttp_retries = 2\nhttp_timeout = 2\n",
        encoding="utf-8",
    )


# --- the command line ---------------------------------------------------------------------


def test_stored_papers_by_any_version_or_doi_become_seeds_without_a_look_up(app, run, day):
    with app.transaction() as s:
        paper = s.scalar(select(Paper).where(Paper.arxiv_id == MATHS[0]["key"]))
        paper.doi = "10.1000/maths.1"
    result = run(
        "subscribers", "edit", ADDRESS,
        "--seed-papers", f"arXiv:{QUANTUM[0]['key']}v3, https://doi.org/10.1000/MATHS.1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "own papers: 2" in result.output
    shown = json.loads(run("subscribers", "show", ADDRESS, "--json").output)["seed_papers"]
    assert [(p["arxiv_id"], p["title"]) for p in shown] == [
        (QUANTUM[0]["key"], QUANTUM[0]["title"]),
        (MATHS[0]["key"], MATHS[0]["title"]),
    ]
    assert shown[1]["doi"] == "10.1000/maths.1" and shown[0]["abstract"] == QUANTUM[0]["abstract"]


def test_an_arxiv_id_the_store_lacks_is_looked_up_by_id_list(app, run, day, tmp_path):
    with FeedServer() as server:
        server.add("/api/query", Reply.file(IDLIST, content_type="application/atom+xml"))
        _lookup_config(tmp_path, server)
        result = run("subscribers", "edit", ADDRESS, "--seed-papers", "1605.08386v1")
    assert result.exit_code == 0, result.output
    (request,) = server.requests
    assert request.param("id_list") == "1605.08386"
    ((arxiv_id, doi, title),) = _seeds(app)
    assert (arxiv_id, doi) == ("1605.08386", None)
    assert title == "Heat-bath random walks with Markov bases"
    with app.reading() as s:  # looked up for the reader, not stored as a paper of a listing
        stored = select(func.count()).select_from(Paper).where(Paper.arxiv_id == arxiv_id)
        assert s.scalar(stored) == 0


def test_add_takes_seed_papers_too(app, run, day):
    result = run(
        "subscribers", "add", "bo@example.org", "--topics", "physics", "--confirmed",
        "--seed-papers", QUANTUM[1]["key"], "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [p["title"] for p in json.loads(result.output)["seed_papers"]] == [QUANTUM[1]["title"]]


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ("10.9999/nowhere", "no stored paper has the DOI '10.9999/nowhere'"),
        ("2410.99999", "arXiv has no paper '2410.99999'"),
        ("not-a-paper", "not a paper identifier: 'not-a-paper'"),
        (",".join(f"2401.{n:05d}" for n in range(201)), "at most 200 papers of one's own"),
    ],
)
def test_an_identifier_nothing_finds_is_one_line_and_changes_nothing(
    app, run, day, tmp_path, ids, message
):
    assert run("subscribers", "edit", ADDRESS, "--seed-papers", QUANTUM[2]["key"]).exit_code == 0
    before = _seeds(app)
    with FeedServer() as server:  # answers for 1605.08386 only: 2410.99999 is not in it
        server.add("/api/query", Reply.file(IDLIST, content_type="application/atom+xml"))
        _lookup_config(tmp_path, server)
        result = run("subscribers", "edit", ADDRESS, "--seed-papers", ids, "--name", "Changed")
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert _seeds(app) == before
    assert json.loads(run("subscribers", "show", ADDRESS, "--json").output)["name"] != "Changed"


def test_arxiv_down_is_one_line_exit_1_and_changes_nothing(app, run, day, tmp_path):
    with FeedServer() as server:
        server.add("/api/query", Reply(status=503, body=b"down", content_type="text/plain"))
        _lookup_config(tmp_path, server)
        result = run("subscribers", "edit", ADDRESS, "--seed-papers", "1605.08386")
    assert result.exit_code == 1
    # The last line is the command's (the test server may report the dropped connection).
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: GET ") and "HTTP 503" in last
    assert _seeds(app) == []


def test_clear_seeds_forgets_them(app, run, day):
    run("subscribers", "edit", ADDRESS, "--seed-papers", QUANTUM[0]["key"])
    assert run("subscribers", "edit", ADDRESS, "--clear-seeds").exit_code == 0
    assert _seeds(app) == []
    both = run("subscribers", "edit", ADDRESS, "--clear-seeds", "--seed-papers", "2401.00001")
    assert both.exit_code == 2 and _seeds(app) == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("zotero_event_extraction.bib", [("2306.06918", None)]),
        ("zotero_quantum.json", [("2410.00917", None)]),
        (
            "zotero_microbiome.ris",
            [
                (None, "10.1371/journal.pcbi.1003531"),
                (None, None),
                (None, "10.7554/elife.46923"),
                (None, None),
                (None, "10.1371/journal.pone.0030126"),
            ],
        ),  # fmt: skip
    ],
)
def test_real_library_exports_become_seeds_with_their_identifiers(app, run, day, name, expected):
    result = run("subscribers", "edit", ADDRESS, "--seed-file", str(LIBRARIES / name))
    assert result.exit_code == 0, result.output
    seeds = _seeds(app)
    assert [(a, d) for a, d, _ in seeds] == expected
    assert all(title for _, _, title in seeds)


def test_a_library_entry_in_the_store_takes_the_stored_text(app, run, day):
    """The CSL-JSON entry's arXiv DOI names the paper of the day: the store's text is used."""
    with app.transaction() as s:
        s.scalar(select(Paper).where(Paper.arxiv_id == "2410.00917")).title = "As stored"
    run("subscribers", "edit", ADDRESS, "--seed-file", str(LIBRARIES / "zotero_quantum.json"))
    assert _seeds(app) == [("2410.00917", None, "As stored")]


def test_latex_in_a_library_is_shown_as_text_never_run_or_expanded(app, run, day, tmp_path):
    traps = read_library((LIBRARIES / "bibtexparser_traps.bib").read_bytes(), "traps.bib")
    assert traps[0].title == "An amazing title"  # BibTeX's protective braces dropped
    assert traps[0].abstract.endswith("multilines... and with a french érudit word")
    hostile = tmp_path / "hostile.bib"
    hostile.write_text(
        "@string{t = {Expanded}}\n"
        "@article{a, title = t, abstract = {\\input{/etc/passwd} \\def\\x{BOOM}\\x}}\n"
        "@article{b, title = {\\immediate\\write18{touch " + str(tmp_path / "ran") + "}}}\n",
        encoding="utf-8",
    )
    assert run("subscribers", "edit", ADDRESS, "--seed-file", str(hostile)).exit_code == 0
    with app.reading() as s:
        rows = list(s.scalars(select(ReaderSeed).order_by(ReaderSeed.id)))
    assert rows[0].title == "t"  # the @string abbreviation is not expanded
    assert "root:" not in rows[0].abstract  # \input read no file
    assert "BOOM" in rows[0].abstract and "BOOMBOOM" not in rows[0].abstract  # \x not expanded
    assert not (tmp_path / "ran").exists()


def _hostile_files(tmp_path: Path) -> list[tuple[Path, str]]:
    real = (LIBRARIES / "zotero_event_extraction.bib").read_text("utf-8")
    cases = {
        "big.bib": ("@misc{x, note = {" + "a" * (1024 * 1024) + "}}", "larger than 1024 KB"),
        "many.bib": (
            "".join(real.replace("hao_devil_2023", f"k{n}") for n in range(201)),
            "201 entries, more than 200",
        ),
        "broken.bib": ("@article{x, title = {Unclosed", "not readable as BibTeX"),
        "notes.txt": ("Just some notes about papers I like.", "not a BibTeX, RIS or CSL-JSON"),
        "bad.json": ('[{"title": "x"', "truncated or invalid JSON"),
        "deep.json": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        "empty.ris": ("TY  - JOUR\nER  - \n", "no entry with a title"),
    }
    files = []
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        files.append((path, message))
    latin = tmp_path / "latin1.bib"
    latin.write_bytes("@article{k, title = {Gröbner bases}}".encode("latin-1"))
    files.append((latin, "not UTF-8"))
    return files


def test_hostile_library_files_are_one_line_and_change_nothing(app, run, day, tmp_path):
    run("subscribers", "edit", ADDRESS, "--seed-papers", QUANTUM[0]["key"])
    before = _seeds(app)
    for path, message in _hostile_files(tmp_path):
        result = run("subscribers", "edit", ADDRESS, "--seed-file", str(path))
        assert result.exit_code == 2, (path.name, result.output)
        assert message in result.output, (path.name, result.output)
        assert len(result.output.strip().splitlines()) == 1, (path.name, result.output)
        assert "Traceback" not in result.output
        assert _seeds(app) == before


# --- the digest ---------------------------------------------------------------------------


def _quantum_shown(text: str) -> tuple[int, int]:
    """Count the day's quantum and mathematics papers a digest's text shows."""
    flat = " ".join(text.split())
    shown = [sum(" ".join(p["title"].split()) in flat for p in kind) for kind in (QUANTUM, MATHS)]
    return shown[0], shown[1]


def test_seeds_bring_papers_like_them_and_never_themselves(app, day, meaning):
    quantum = {p["title"] for p in QUANTUM}
    assert sum(t in quantum for t in _titles(app, day.id)) <= 1  # by title: mostly maths
    library = str(LIBRARIES / "zotero_quantum.json")
    assert meaning("subscribers", "edit", ADDRESS, "--seed-file", library).exit_code == 0
    sending.send(app, f.DAY)
    text = " ".join(_digest_text(app).split())
    assert _csl_paper()["title"] not in text  # their own, though the day's closest to it
    quantum_shown, maths_shown = _quantum_shown(text)
    assert quantum_shown >= 3 and quantum_shown + maths_shown == 5


def test_a_seed_known_only_by_title_is_never_sent_either(app, run, day):
    """An RIS entry with neither arXiv id nor DOI: the day's paper of that title stays out."""
    ris = read_library((LIBRARIES / "zotero_microbiome.ris").read_bytes(), "lib.ris")
    untitled_ids = [e for e in ris if not e.doi]
    with app.transaction() as s:
        topic = s.get(f.Topic, day.id)
        _paper(s, topic, title=untitled_ids[0].title.upper(), abstract="Another source's copy.")
    library = str(LIBRARIES / "zotero_microbiome.ris")
    assert run("subscribers", "edit", ADDRESS, "--seed-file", library).exit_code == 0
    selection = sending.make_selection(app, Edition(listing_date=f.DAY, kind="daily"))
    with app.reading() as s:
        sid = s.scalar(select(Subscriber.id).where(Subscriber.email == ADDRESS))
    titles = [p.title for p in selection.papers_for(Reader(sid, (day.id,), 50))]
    assert len(titles) == len(QUANTUM + MATHS) + 1  # every paper of the day but that one
    assert untitled_ids[0].title.upper() not in titles


def test_three_seeds_count_as_likes_and_bring_papers_beyond_the_readers_topics(app, day, meaning):
    """A reader of another topic gets discoveries like their papers, and is planned for."""
    with app.transaction() as s:
        other = f.topic(s, "other")
        f.subscriber(s, "cy@example.org", [other])
    ids = ",".join(p["key"] for p in QUANTUM[:3])
    assert meaning("subscribers", "edit", "cy@example.org", "--seed-papers", ids).exit_code == 0
    report = sending.send(app, f.DAY)
    assert report.summary.sent == 2, report
    text = " ".join(_digest_text(app, "cy@example.org").split())
    assert text.count("Like your paper") == 2
    for p in QUANTUM[:3]:  # named in a reason, never as a paper of the digest
        title = " ".join(p["title"].split())
        text = text.replace(f"Like your paper \u201c{title}\u201d", "")
        assert title not in text
    assert _quantum_shown(text) == (2, 0)  # two discoveries, both like their papers


ML = json.loads((Path(__file__).parent / "labelled/papers.json").read_text("utf-8"))
ML_LABELS = json.loads((Path(__file__).parent / "labelled/labels.json").read_text("utf-8"))


def _discoveries_of_three_seeds(app, env, papers, seeds) -> list[str]:
    """Store a day of real papers in one topic and return what a reader of another topic
    gets from the first three `seeds` as their own (stored, listed a year before)."""
    with app.transaction() as s:
        physics, other = f.topic(s, "physics"), f.topic(s, "other")
        for p in papers:
            _paper(s, physics, title=p["title"], abstract=p["abstract"], arxiv_id=p["key"])
        for p in seeds[:3]:
            _paper(s, physics, title=p["title"], abstract=p["abstract"], arxiv_id=p["key"],
                   day=f.DAY - timedelta(days=365))  # fmt: skip
        f.subscriber(s, "cy@example.org", [other])
        embed_papers(session=s, paper_ids=s.scalars(select(Paper.id)), encoder=load_encoder())
    ids = ",".join(p["key"] for p in seeds[:3])
    cli = Cli({**env, "NEWSLETTER_MATCH_NEIGHBOURS": "true"})
    assert cli("subscribers", "edit", "cy@example.org", "--seed-papers", ids).exit_code == 0
    selection = sending.make_selection(app, Edition(listing_date=f.DAY, kind="daily"))
    with app.reading() as s:
        sid = s.scalar(select(Subscriber.id).where(Subscriber.email == "cy@example.org"))
        topic_id = s.scalar(select(f.Topic.id).where(f.Topic.slug == "other"))
    return [p.title for p in selection.papers_for(Reader(sid, (topic_id,), 5))]


def test_on_a_small_day_a_paper_no_nearer_their_papers_than_their_field_is_no_discovery(app, env):
    """Too few papers to judge a standing: papers of one field are 0.3 to 0.5 apart in
    meaning, and only the one much nearer their own papers joins (real quantum papers)."""
    shown = _discoveries_of_three_seeds(app, env, QUANTUM[3:7] + MATHS, QUANTUM[:3])
    assert shown == [QUANTUM[3]["title"]]  # 0.62 to their papers; the others 0.32 to 0.42


def test_among_many_papers_of_one_field_none_merely_of_the_field_is_a_discovery(app, env):
    """Judged against the day's papers, as interests are: in a day of machine learning, where
    every paper is near every other in meaning (six at 0.5 or more to their papers), none
    stands out near a reader's three papers on AI safety."""
    with_ids = [p for p in ML if re.fullmatch(r"\d{4}\.\d{4,5}", p["key"])]
    safety = [p for p in with_ids if "ai-safety" in ML_LABELS[p["key"]]][:3]
    others = [p for p in with_ids if "ai-safety" not in ML_LABELS[p["key"]]][:40]
    assert _discoveries_of_three_seeds(app, env, others, safety) == []


def test_among_many_papers_of_many_fields_one_of_their_subject_is_a_discovery(app, env):
    fields = [p for p in FIELDS if p["categories"][0] != "quant-ph"][:40]
    shown = _discoveries_of_three_seeds(app, env, fields + QUANTUM[3:4], QUANTUM[:3])
    assert shown == [QUANTUM[3]["title"]]


def test_the_json_backup_restores_a_readers_own_papers(app, run, day, tmp_path):
    library = str(LIBRARIES / "zotero_microbiome.ris")
    assert run("subscribers", "edit", ADDRESS, "--seed-file", library).exit_code == 0
    before = _seeds(app)
    backup = tmp_path / "backup.json"
    assert run("subscribers", "export", "--format", "json", "--output", str(backup)).exit_code == 0
    assert run("subscribers", "remove", ADDRESS, "--yes").exit_code == 0
    assert run("subscribers", "import", str(backup)).exit_code == 0
    assert _seeds(app) == before and len(before) == 5


def _vectors(app, address=ADDRESS):
    """Return each of a reader's own papers' (model, vector length), in their order."""
    with app.reading() as s:
        sid = s.scalar(select(Subscriber.id).where(Subscriber.email == address))
        rows = s.scalars(select(ReaderSeed).where(ReaderSeed.subscriber_id == sid))
        return [(r.model, len(r.vector or b"")) for r in rows]


def test_a_restored_readers_own_papers_have_their_vectors_again(meaning, app, tmp_path):
    library = str(LIBRARIES / "zotero_microbiome.ris")
    assert meaning("subscribers", "edit", ADDRESS, "--seed-file", library).exit_code == 0
    given = _vectors(app)
    assert given and all(model and size for model, size in given)
    backup = tmp_path / "backup.json"
    assert (
        meaning("subscribers", "export", "--format", "json", "--output", str(backup)).exit_code == 0
    )
    (record,) = json.loads(backup.read_text())
    assert all("vector" not in seed for seed in record["seed_papers"])  # made again on import
    assert meaning("subscribers", "remove", ADDRESS, "--yes").exit_code == 0
    assert meaning("subscribers", "import", str(backup)).exit_code == 0
    assert _vectors(app) == given
