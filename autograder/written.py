"""The written answers: collected by `make grade`, marked by TAs in a CSV, merged into every gradebook.

    make grade SUBMISSIONS=subs OUT=grades        # also writes grades/written/answers.{csv,html}
    # TAs fill in `points` (and `comment`) in grades/written/answers.csv, then:
    make grade SUBMISSIONS=subs OUT=grades ARGS="--written grades/written/answers.csv"

The questions and their points are the nbgrader markdown answer cells of the solution notebook
(`grade` and `solution` set, `points`), read each time, never listed here. A written item sits in
grades.json beside the automatic ones: {"written": true, "score": points or null (not marked yet),
"max_score", "comment", "answer"}. A blank answer (still "YOUR ANSWER HERE") gets 0 with the
comment "no answer" at once. Marks survive a regrade while the answer's text is unchanged.
"""
from __future__ import annotations

import csv
import dataclasses
import html
import io
import logging
import math
from pathlib import Path

from autograder.results import SubmissionResult, WrittenResult

BLANK = "YOUR ANSWER HERE"
NO_ANSWER = "no answer"
COLUMNS = ("student_id", "question", "answer", "max_points", "points", "comment")
SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")


@dataclasses.dataclass(frozen=True)
class Question:
    id: str          # the answer cell's grade_id, e.g. q1_temperature_limits
    points: float
    prompt: str      # the cell's text before its solution: what the release shows students


def questions(solution: str | Path | None = None) -> list[Question]:
    """The written questions of the solution notebook, in notebook order."""
    from kdcourse.notebook import cell_source, read_notebook
    from kdcourse.paths import SOLUTION_NOTEBOOK
    solution = Path(solution or SOLUTION_NOTEBOOK)
    if not solution.exists():      # a grading machine without the solutions: no written part
        logging.getLogger(__name__).warning("no solution notebook at %s: the written answers are "
                                            "not collected", solution)
        return []
    found = []
    for cell in read_notebook(solution)["cells"]:
        meta = (cell.get("metadata") or {}).get("nbgrader") or {}
        if cell.get("cell_type") == "markdown" and meta.get("grade") and meta.get("solution"):
            prompt = cell_source(cell).split(SOLUTION_MARKERS[0])[0].strip()
            found.append(Question(str(meta["grade_id"]), float(meta.get("points", 0)), prompt))
    return found


def read_answers(path: str | Path, asked: list[Question]) -> dict[str, str]:
    """{question id: answer text} of a notebook: its answer cell without the prompt ("" when the
    notebook or the cell is missing or unreadable)."""
    from kdcourse.notebook import NotebookError, cell_source, read_notebook
    try:
        cells = read_notebook(path)["cells"]
    except (NotebookError, OSError):
        cells = []
    by_id = {}
    for cell in cells:
        meta = (cell.get("metadata") or {}).get("nbgrader") or {} if isinstance(cell, dict) else {}
        if isinstance(meta, dict) and meta.get("grade_id") and cell.get("cell_type") == "markdown":
            by_id[str(meta["grade_id"])] = cell_source(cell)
    answers = {}
    for q in asked:
        text = by_id.get(q.id, "").strip()
        text = text[len(q.prompt):] if text.startswith(q.prompt) else text
        answers[q.id] = "\n".join(line for line in text.strip().splitlines()
                                  if line.strip() not in SOLUTION_MARKERS).strip()
    return answers


def is_blank(answer: str) -> bool:
    return answer.strip() in ("", BLANK)


def written_item(question: Question, answer: str,
                 previous: WrittenResult | None = None) -> WrittenResult:
    """The gradebook entry of one answer: 0 "no answer" if blank, the earlier marks if the text
    is unchanged, else not marked yet (score None)."""
    if is_blank(answer):
        return WrittenResult(question.id, 0.0, question.points, NO_ANSWER, answer)
    if previous and previous.answer == answer and previous.score is not None:
        return WrittenResult(question.id, previous.score, question.points, previous.comment, answer)
    return WrittenResult(question.id, None, question.points, "", answer)


def add_answers(grades: dict[str, SubmissionResult], notebooks: dict,
                previous: dict[str, SubmissionResult], asked: list[Question]) -> dict[str, SubmissionResult]:
    """Each graded result with its written items (marks kept from `previous` where the answer is
    unchanged), totals recomputed."""
    added = {}
    for sid, result in grades.items():
        answers = read_answers(notebooks[sid], asked)
        before = previous[sid].written if sid in previous else {}
        added[sid] = result.with_items({q.id: written_item(q, answers[q.id], before.get(q.id))
                                        for q in asked})
    return added


def written_ids(book: dict[str, SubmissionResult]) -> list[str]:
    """The written question ids in a gradebook, in first-seen order."""
    ids = {}
    for result in book.values():
        ids.update(dict.fromkeys(result.written))
    return list(ids)


# ---------------------------------------------------------------- the TAs' sheets
def write_sheets(book: dict, folder: Path, asked: list[Question]) -> Path:
    """folder/answers.csv (one row per student and question, marks so far) and answers.html
    (grouped by question). Earlier sheets, maybe half-filled, move to folder/history/ first."""
    from kdcourse.paths import move_to_history
    folder.mkdir(parents=True, exist_ok=True)
    move_to_history(folder, ("answers.csv", "answers.html"))
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(COLUMNS)
    pages = []
    for q in asked:
        entries = []
        for sid, result in book.items():
            item = result.written.get(q.id)
            if item is None:
                continue
            points = "" if item.score is None else f"{item.score:g}"
            writer.writerow([sid, q.id, item.answer, f"{q.points:g}", points, item.comment])
            mark = f"{points} / {q.points:g}" if points else "not marked yet"
            entries.append(f"<h3>{html.escape(sid)} ({html.escape(mark)}"
                           f"{': ' + html.escape(item.comment) if item.comment else ''})</h3>"
                           f"<pre>{html.escape(item.answer or '(blank)')}</pre>")
        pages.append(f"<h2>{html.escape(q.id)} ({q.points:g} points)</h2>"
                     f"<blockquote><pre>{html.escape(q.prompt)}</pre></blockquote>" + "".join(entries))
    (folder / "answers.csv").write_text(rows.getvalue(), newline="")
    (folder / "answers.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>Written answers</title>"
        "<style>pre{white-space:pre-wrap}</style><h1>Written answers</h1>" + "".join(pages) + "\n")
    return folder / "answers.csv"


def read_marks(path: Path, book: dict, asked: list[Question]) -> dict:
    """{(student, question): (points, comment)} of the filled rows of a TA's CSV; SystemExit
    listing every bad row (row number and reason) when any is bad."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise SystemExit(f"cannot read the written answers {path}: {err}") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = {"student_id", "question", "points", "comment"} - set(reader.fieldnames or ())
    if missing:
        raise SystemExit(f"{path} lacks the column(s) {sorted(missing)}: use the answers.csv that "
                         "make grade wrote (columns " + ", ".join(COLUMNS) + ")")
    maxima = {q.id: q.points for q in asked}
    marks, errors = {}, []
    for row_number, row in enumerate(reader, start=1):
        sid, qid = (row.get("student_id") or "").strip(), (row.get("question") or "").strip()
        raw = (row.get("points") or "").strip()
        where = f"row {row_number} ({sid or 'no student'}, {qid or 'no question'})"
        if sid not in book:
            errors.append(f"{where}: unknown student {sid!r} (not in the gradebook)")
        elif qid not in maxima:
            errors.append(f"{where}: unknown question {qid!r}; the questions are {', '.join(maxima)}")
        elif (sid, qid) in marks:
            errors.append(f"{where}: a second row for this student and question")
        elif raw:
            try:
                points = float(raw)
            except ValueError:
                points = math.nan
            if not math.isfinite(points):
                errors.append(f"{where}: points {raw!r} is not a number")
            elif points < 0:
                errors.append(f"{where}: points {raw} is negative")
            elif points > maxima[qid]:
                errors.append(f"{where}: points {raw} is above the maximum {maxima[qid]:g}")
            else:
                marks[(sid, qid)] = (points, (row.get("comment") or "").strip())
        else:
            marks.setdefault((sid, qid), None)   # not marked yet: left as it is
    if errors:
        raise SystemExit(f"{path}: {len(errors)} bad row(s); nothing was changed. Fix them and run "
                         "again:\n  " + "\n  ".join(errors))
    return {key: value for key, value in marks.items() if value is not None}


def merge_marks(book: dict[str, SubmissionResult], marks: dict) -> dict[str, SubmissionResult]:
    """The gradebook with the TAs' points and comments in its written items, totals updated."""
    merged = {}
    for sid, result in book.items():
        changed = {qid: dataclasses.replace(item, score=marks[(sid, qid)][0], comment=marks[(sid, qid)][1])
                   for qid, item in result.written.items() if (sid, qid) in marks}
        merged[sid] = result.with_items(changed)
    return merged


def merge_written(csv_path: Path, out: Path, solution=None) -> int:
    """Merge a filled answers.csv into out/grades.json, grades.csv, the feedback pages and the
    Gradescope files (earlier ones copied to out/history/); returns the number of marks merged."""
    from autograder import reports
    from kdcourse.paths import move_to_history
    book = reports.read_gradebook(out)
    if not book:
        raise SystemExit(f"no gradebook in {out}: run make grade first, then merge the written "
                         "answers into it")
    asked = questions(solution)
    for sid, result in book.items():    # a question the gradebook predates starts unmarked
        book[sid] = result.with_items({q.id: dataclasses.replace(
            result.written.get(q.id) or WrittenResult(q.id, None, q.points), max_score=q.points)
            for q in asked})
    marks = read_marks(csv_path, book, asked)
    move_to_history(out, ("grades.json", "grades.csv"), copy=True)
    book = merge_marks(book, marks)
    reports.write_all(book, out)
    write_sheets(book, out / "written", asked)
    return len(marks)
