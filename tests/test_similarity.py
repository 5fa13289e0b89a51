"""`make similarity`: planted copies rank above every pair of independent correct solutions, and a
folder with broken or missing notebooks still gives the whole report, naming what it skipped."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autograder import ITEMS, similarity
from kdcourse.notebook import graded_cells, solution_sources
from kdcourse.paths import RELEASE_NOTEBOOK, SOLUTION_NOTEBOOK

import mutants                  # tests/submissions, on pytest's pythonpath (pyproject.toml)
from correct_sources import SOURCES
from independent_sources import COPY_OF_C, COPY_OF_SOLUTION, SOURCES_B, SOURCES_C

INDEPENDENT = {"ana": None, "ben": SOURCES, "chloe": SOURCES_B, "dev": SOURCES_C}  # ana: the solution
COPIES = {("ana", "erin"), ("dev", "finn")}  # erin copied ana, finn copied dev


@pytest.fixture(scope="module")
def submissions(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submissions")
    sources = dict(INDEPENDENT, ana=solution_sources(SOLUTION_NOTEBOOK), erin=COPY_OF_SOLUTION,
                   finn=COPY_OF_C)
    for student, cells in sources.items():
        mutants.write(folder / student / "distillation.ipynb", cells)
    return folder


def test_planted_copies_rank_above_every_independent_pair(submissions):
    report = similarity.compare_folder(submissions)
    ranked = [(tuple(sorted((p.student_a, p.student_b))), p.similarity) for p in report.pairs]
    copies = [score for pair, score in ranked if pair in COPIES]
    independent = [score for pair, score in ranked
                   if pair[0] in INDEPENDENT and pair[1] in INDEPENDENT]
    assert len(copies) == 2 and len(independent) == 6
    assert min(copies) > max(independent), ranked
    assert {pair for pair, _ in ranked[:2]} == COPIES, ranked
    assert [score for _, score in ranked] == sorted((score for _, score in ranked), reverse=True)
    # The copies match cell by cell, the big cells included.
    top = {c.item: c.similarity for c in report.pairs[0].cells}
    assert set(top) == set(ITEMS) and min(top.values()) > 0.6, top


def test_release_starter_code_matches_nothing(tmp_path):
    """Two submissions that wrote nothing but the release's stubs share only boilerplate: 0."""
    stubs = {item: graded_cells(RELEASE_NOTEBOOK)[item] for item in ITEMS}
    for student in ("a", "b"):
        mutants.write(tmp_path / student / "distillation.ipynb", stubs)
    (pair,) = similarity.compare_folder(tmp_path).pairs
    assert pair.similarity == 0.0 and not pair.matching_cells()


def test_cli_writes_csv_and_html_and_names_what_it_skipped(submissions, tmp_path, capsys):
    folder = tmp_path / "exports"
    for student in ("ana", "erin", "ben"):
        (folder / student).mkdir(parents=True)
        (folder / student / "distillation.ipynb").write_bytes(
            (submissions / student / "distillation.ipynb").read_bytes())
    (folder / "gus").mkdir()
    (folder / "gus" / "distillation.ipynb").write_text("{not json")
    (folder / "hana").mkdir()
    (folder / "hana" / "notes.txt").write_text("forgot the notebook")
    # ivy is ben plus a comment: invisible to the fingerprints (similarity 1), shown escaped on the page.
    hostile = dict(SOURCES, tempered_softmax=SOURCES["tempered_softmax"] + "# </pre><script>alert(1)</script>\n")
    mutants.write(folder / "ivy" / "distillation.ipynb", hostile)
    out = tmp_path / "report"

    report = similarity.main([str(folder), "--out_dir", str(out), "--top", "3"])

    assert [s.student for s in report.skipped] == ["gus", "hana"]
    assert "not a readable .ipynb" in report.skipped[0].reason
    assert "no distillation.ipynb (found: notes.txt)" == report.skipped[1].reason
    with open(out / "similarity.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["student_a", "student_b", "similarity"]
    assert len(rows) == 1 + 6  # four readable submissions
    scores = [float(row[2]) for row in rows[1:]]
    assert scores == sorted(scores, reverse=True)
    assert set(rows[1][:2]) == {"ben", "ivy"} and rows[1][2] == "1.000"
    assert set(rows[2][:2]) == {"ana", "erin"} and "train_student" in rows[2][3]
    page = (out / "similarity.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<mark>" in page and "gus" in page and "hana" in page
    printed = capsys.readouterr().out
    assert "skipped gus" in printed and "skipped hana" in printed
    assert sorted(printed.strip().splitlines()[-2].split()[1:3]) == ["ana", "erin"]
    json.dumps(report.to_json())  # the typed result serialises

    # A second run keeps the first report in history/ instead of overwriting it.
    similarity.main([str(folder), "--out_dir", str(out)])
    (history,) = (out / "history").iterdir()
    assert sorted(p.name for p in history.iterdir()) == ["similarity.csv", "similarity.html"]


def test_scores_do_not_depend_on_the_process_hash_seed(submissions, tmp_path):
    """copydetect's own k-gram hash is Python's salted hash(): two runs must still agree."""
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / seed
        env = dict(os.environ, PYTHONHASHSEED=seed,
                   PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))
        subprocess.run([sys.executable, "-m", "autograder.similarity", str(submissions), "--out_dir", str(out)],
                       env=env, check=True, capture_output=True, timeout=300)
        outputs.append((out / "similarity.csv").read_text())
    assert outputs[0] == outputs[1]


def test_a_folder_that_is_not_a_submissions_folder_is_one_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="is not a folder"):
        similarity.main([str(tmp_path / "missing"), "--out_dir", str(tmp_path / "out")])
