"""Written answers: make grade writes the TAs' sheets, a filled CSV merges into every gradebook
format, any bad row is refused with nothing changed, and a regrade keeps the marks."""
import csv
import json
from pathlib import Path

import pytest

from autograder import MAX_POINTS, reports, written
from autograder.grade import grade_folder, main
from autograder.results import SubmissionResult
from kdcourse.paths import RELEASE_NOTEBOOK as RELEASE, SOLUTION_NOTEBOOK as SOLUTION

QUESTIONS = written.questions(SOLUTION)
Q1 = QUESTIONS[0].id
ANSWER = "As T -> 0 it is one-hot <b>argmax</b>; as T -> inf uniform & flat."
pytestmark = pytest.mark.xdist_group("autograder")


def answered_release(path: Path) -> Path:
    """The student release with only the first question answered (code cells still stubs)."""
    nb = json.loads(RELEASE.read_text())
    for cell in nb["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == Q1:
            cell["source"] = "".join(cell["source"]).replace(written.BLANK, ANSWER)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(nb))
    return path


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=written.COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def test_questions_and_points_come_from_the_solution_notebook():
    assert len(QUESTIONS) >= 4 and all(q.id.startswith("q") and q.points > 0 for q in QUESTIONS)
    assert QUESTIONS[0].prompt.startswith("**Question 1") and "BEGIN SOLUTION" not in QUESTIONS[0].prompt
    assert set(written.read_answers(RELEASE, QUESTIONS).values()) == {written.BLANK}


def test_sheets_merge_into_every_gradebook_and_survive_a_regrade(tmp_path):
    answered_release(tmp_path / "subs" / "alice" / "distillation.ipynb")
    answered_release(tmp_path / "subs" / "bob" / "distillation.ipynb")
    bob = tmp_path / "subs" / "bob" / "distillation.ipynb"
    bob.write_text(RELEASE.read_text())                        # bob answers nothing
    out = tmp_path / "out"
    grade_folder(tmp_path / "subs", out, progress=False)
    rows = read_rows(out / "written" / "answers.csv")
    assert [(r["student_id"], r["question"]) for r in rows] == [
        (sid, q.id) for q in QUESTIONS for sid in ("alice", "bob")]
    alice_q1 = next(r for r in rows if r["student_id"] == "alice" and r["question"] == Q1)
    assert (alice_q1["answer"], alice_q1["points"], alice_q1["comment"]) == (ANSWER, "", "")
    assert alice_q1["max_points"] == f"{QUESTIONS[0].points:g}"
    assert all((r["points"], r["comment"]) == ("0", "no answer") for r in rows if r is not alice_q1)
    page = (out / "written" / "answers.html").read_text()
    assert "&lt;b&gt;argmax&lt;/b&gt;" in page and "<b>argmax" not in page
    assert [page.index(f"<h2>{q.id} ") for q in QUESTIONS] == sorted(page.index(f"<h2>{q.id} ")
                                                                      for q in QUESTIONS)
    book = json.loads((out / "grades.json").read_text())
    assert book["alice"]["items"][Q1]["score"] is None          # not marked yet
    full = sum(MAX_POINTS.values()) + sum(q.points for q in QUESTIONS)
    assert book["bob"]["max_total"] == full and book["bob"]["total"] == 0

    # a TA marks alice's answer, then the CSV is merged
    alice_q1.update(points="4.5", comment="right limits; say why T^2")
    write_rows(out / "written" / "answers.csv", rows)
    main([str(tmp_path / "subs"), "--out_dir", str(out), "--written", str(out / "written" / "answers.csv")])
    book = json.loads((out / "grades.json").read_text())
    assert book["alice"]["items"][Q1]["score"] == 4.5 and book["alice"]["total"] == 4.5
    assert set(book["alice"]["items"]["tempered_softmax"]) == {"score", "max_score", "tests"}
    grades_csv = read_rows(out / "grades.csv")
    assert (grades_csv[0]["student_id"], grades_csv[0][Q1], grades_csv[0]["total"],
            float(grades_csv[0]["max_total"])) == ("alice", "4.5", "4.5", full)
    gradescope = json.loads((out / "gradescope" / "alice" / "results.json").read_text())
    [entry] = [t for t in gradescope["tests"] if t["name"] == f"written: {Q1}"]
    assert (entry["score"], entry["output"], gradescope["score"]) == (4.5, "right limits; say why T^2", 4.5)
    assert any(r["points"] == "4.5" for r in read_rows(out / "written" / "answers.csv"))

    # a regrade keeps the marks while the answer is unchanged
    grade_folder(tmp_path / "subs", out, progress=False)
    book = json.loads((out / "grades.json").read_text())
    assert book["alice"]["items"][Q1]["score"] == 4.5 and book["alice"]["total"] == 4.5
    assert book["bob"]["items"][Q1] == {"written": True, "score": 0.0, "max_score": QUESTIONS[0].points,
                                        "comment": "no answer", "answer": written.BLANK, "tests": []}


@pytest.fixture
def gradebook(tmp_path) -> Path:
    """out/ holding alice's gradebook and sheets (zero automatic points; no grading run)."""
    notebook = answered_release(tmp_path / "subs" / "alice" / "distillation.ipynb")
    book = written.add_answers({"alice": SubmissionResult.empty("not graded")}, {"alice": notebook}, {},
                               QUESTIONS)
    out = tmp_path / "out"
    out.mkdir()
    reports.write_all(book, out)
    written.write_sheets(book, out / "written", QUESTIONS)
    return out


BAD_ROWS = {
    "unknown-student": ({"student_id": "mallory"}, "unknown student 'mallory'"),
    "unknown-question": ({"question": "q9_nothing"}, "unknown question 'q9_nothing'"),
    "above-maximum": ({"points": f"{QUESTIONS[2].points + 1:g}"},
                      f"points {QUESTIONS[2].points + 1:g} is above the maximum {QUESTIONS[2].points:g}"),
    "negative": ({"points": "-1"}, "points -1 is negative"),
    "not-a-number": ({"points": "four"}, "points 'four' is not a number"),
    "nan": ({"points": "nan"}, "points 'nan' is not a number"),
}


@pytest.mark.parametrize("kind", list(BAD_ROWS))
def test_a_bad_row_is_refused_by_number_and_nothing_changes(gradebook, kind):
    change, reason = BAD_ROWS[kind]
    sheet = gradebook / "written" / "answers.csv"
    rows = read_rows(sheet)
    rows[0].update(points="3")                                   # a good row is not merged either
    rows[2].update(change)
    write_rows(sheet, rows)
    before = {p: p.read_bytes() for p in gradebook.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit, match="nothing was changed") as err:
        main(["subs", "--out_dir", str(gradebook), "--written", str(sheet)])
    assert "row 3 (" in str(err.value) and reason in str(err.value), str(err.value)
    assert {p: p.read_bytes() for p in gradebook.rglob("*") if p.is_file()} == before
