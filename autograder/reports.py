"""Write graded results: grades.json, grades.csv, per-student HTML feedback and Gradescope JSON.

Each is written from the typed results of autograder/results.py (`SubmissionResult`), never from
a dict built here.
"""
from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

from autograder import ITEMS
from autograder.results import SubmissionResult


def read_gradebook(out: Path) -> dict[str, SubmissionResult]:
    """The grades.json already in `out` ({} if none); SystemExit if it is not one this grader wrote,
    before any grading, so that nothing overwrites it."""
    path = out / "grades.json"
    if not path.exists():
        return {}
    try:
        grades = json.loads(path.read_text())
        if isinstance(grades, dict) and all(isinstance(r, dict) and set(ITEMS) <= set(r.get("items", {}))
                                            and "total" in r for r in grades.values()):
            return {sid: SubmissionResult.from_json(r) for sid, r in grades.items()}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        pass
    raise SystemExit(f"{path} is not a gradebook written by autograder.grade (unreadable or "
                     "another format): move it away or choose another output folder; "
                     "nothing was graded")


def write_all(grades: dict[str, SubmissionResult], out: Path) -> None:
    """grades.json and grades.csv (each replaced whole: a crash leaves the old file, never half of
    one), then each student's feedback page and Gradescope file."""
    from autograder.written import written_ids
    questions = written_ids(grades)
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(["student_id", *ITEMS, *questions, "total", "max_total"])
    for sid, result in grades.items():
        written = [result.items[q].score if q in result.items else None for q in questions]
        writer.writerow([sid, *(result.items[i].score for i in ITEMS),
                         *("" if s is None else s for s in written), result.total, result.max_total])
    book = {sid: result.to_json() for sid, result in grades.items()}
    for name, text in (("grades.json", json.dumps(book, indent=1, sort_keys=True) + "\n"),
                       ("grades.csv", rows.getvalue())):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text, newline="")
        tmp.replace(out / name)
    for sid, result in grades.items():
        (out / "feedback").mkdir(exist_ok=True)
        (out / "feedback" / f"{sid}.html").write_text(feedback_html(sid, result))
        (out / "gradescope" / sid).mkdir(parents=True, exist_ok=True)
        (out / "gradescope" / sid / "results.json").write_text(
            json.dumps(result.to_gradescope(), indent=1))


def feedback_html(student_id: str, result: SubmissionResult) -> str:
    rows = []
    for item in ITEMS:
        r = result.items[item]
        passed = sum(c.passed for c in r.checks)
        lines = "".join(f"<li>{html.escape(line)}</li>" for line in r.feedback_lines()) or "<li>all passed</li>"
        rows.append(f"<h2>{item}: {r.score:g} / {r.max_score:g}</h2><p>{passed} of "
                    f"{len(r.checks)} checks passed</p><ul>{lines}</ul>")
    for qid, r in result.written.items():
        mark = "not marked yet" if r.score is None else f"{r.score:g} / {r.max_score:g}"
        comment = f"<p>{html.escape(r.comment)}</p>" if r.comment else ""
        rows.append(f"<h2>{html.escape(qid)} (written): {mark}</h2>{comment}")
    return (f"<!doctype html><meta charset='utf-8'><title>Feedback {html.escape(student_id)}</title>"
            f"<h1>Week 6 distillation: {result.total:g} / {result.max_total:g}</h1>"
            + "".join(rows) + "\n")
