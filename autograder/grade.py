"""Grade a folder of submissions exported from an LMS: one <student_id>/distillation.ipynb each.

    python -m autograder.grade SUBMISSIONS --out OUT [--jobs N]     (or: make grade SUBMISSIONS=... OUT=...)

Writes OUT/grades.json, OUT/grades.csv, OUT/feedback/<id>.html and OUT/gradescope/<id>/results.json.
Each notebook is graded by the hidden suites in a separate pytest process (which itself runs the
student's cells only in the sandboxed worker); a broken notebook gets zeros and a message.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from autograder import ITEMS, MAX_POINTS

log = logging.getLogger("autograder.grade")
HERE = Path(__file__).resolve().parent
NOTEBOOK = "distillation.ipynb"


def empty_result(message: str) -> dict:
    """All four items at zero, each carrying `message`."""
    items = {item: {"score": 0.0, "max_score": float(MAX_POINTS[item]),
                    "tests": [{"name": "notebook", "passed": False, "message": message}]}
             for item in ITEMS}
    return {"items": items, "total": 0.0, "max_total": float(sum(MAX_POINTS.values()))}


def score_report(report: dict) -> dict:
    """Item scores from the suites' per-test report: max_points * passed weight / total weight."""
    items = {}
    for item in ITEMS:
        tests = [t for t in report["tests"] if t["item"] == item]
        weight = sum(t["points"] for t in tests)
        earned = sum(t["points"] for t in tests if t["passed"])
        score = round(MAX_POINTS[item] * earned / weight, 2) if weight else 0.0
        items[item] = {"score": score, "max_score": float(MAX_POINTS[item]),
                       "tests": [{"name": t["name"], "passed": t["passed"], "message": t["message"],
                                  "points": t["points"]} for t in tests]}
        if not tests:
            items[item]["tests"] = [{"name": "suite", "passed": False,
                                     "message": "the grader ran no test for this item"}]
    total = round(sum(i["score"] for i in items.values()), 2)
    return {"items": items, "total": total, "max_total": float(sum(MAX_POINTS.values()))}


def grade_notebook(path: str | Path, *, hide=(), timeout: float = 600, case_seconds=None) -> dict:
    """Grade one notebook; never raises for anything in the notebook."""
    from kdcourse.notebook import NotebookError, read_notebook
    try:
        read_notebook(path)
    except NotebookError as err:      # the message names the file, not the instructor's folders
        return empty_result(str(err).replace(str(path), Path(path).name))
    with tempfile.TemporaryDirectory(prefix="kdgrade-report-") as tmp:
        report_path = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pytest", str(HERE), "-q", "--no-header", "-p", "no:cacheprovider",
               "-p", "no:xdist", "-o", "addopts=", "--import-mode=importlib", "--rootdir", str(HERE),
               "--submission", str(Path(path).resolve()), "--grading-report", str(report_path)]
        if case_seconds:
            cmd += ["--case-seconds", str(case_seconds)]
        for folder in hide:
            cmd += ["--hide", str(Path(folder).resolve())]
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
        try:
            proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return empty_result("grading took longer than the overall limit; tell your instructor")
        if not report_path.exists():
            log.error("grader failed on %s:\n%s", path, (proc.stdout + proc.stderr)[-3000:])
            return empty_result("internal grader error; tell your instructor")
        report = json.loads(report_path.read_text())
    result = score_report(report)
    result["sandbox"] = report.get("sandbox")
    return result


def find_students(submissions: Path) -> list[str]:
    if not submissions.is_dir():
        raise SystemExit(f"SUBMISSIONS={submissions} is not a folder: pass the folder that holds "
                         f"one <student_id>/{NOTEBOOK} per student")
    students = sorted(p.name for p in submissions.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not students:
        raise SystemExit(f"SUBMISSIONS={submissions} holds no student folders: expected "
                         f"<student_id>/{NOTEBOOK} inside it")
    return students


def grade_folder(submissions: str | Path, out: str | Path, jobs: int = 1, progress: bool = True) -> dict:
    """Grade every student folder; write all outputs under `out`; return {student_id: result}."""
    from autograder import reports
    submissions, out = Path(submissions), Path(out)
    students = find_students(submissions)
    out.mkdir(parents=True, exist_ok=True)
    grades = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(grade_notebook, submissions / sid / NOTEBOOK,
                               hide=[submissions, out]): sid for sid in students}
        done = as_completed(futures)
        if progress:
            from tqdm import tqdm
            done = tqdm(done, total=len(futures), desc="grading", unit="student")
        for future in done:
            grades[futures[future]] = future.result()
    grades = dict(sorted(grades.items()))
    reports.write_all(grades, out)
    return grades


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("submissions", help=f"folder of <student_id>/{NOTEBOOK}")
    parser.add_argument("--out", required=True, help="output folder (grades.json, grades.csv, ...)")
    parser.add_argument("--jobs", type=int, default=1, help="students graded in parallel")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    grades = grade_folder(args.submissions, args.out, args.jobs)
    mean = sum(g["total"] for g in grades.values()) / len(grades)
    print(f"graded {len(grades)} submissions, mean {mean:.1f}/{sum(MAX_POINTS.values())}: "
          f"{Path(args.out) / 'grades.json'}")


if __name__ == "__main__":
    main()
