"""Autograder of the Week-6 distillation assignment: hidden suites run against an isolated worker.

    make grade SUBMISSIONS=dir OUT=dir [JOBS=n]           # a folder of <student_id>/distillation.ipynb
    python -m pytest autograder -p no:cacheprovider --submission NB --grading-report out.json

The route of a submission, stage by stage (each stage one file; the names they share are in
`protocol.py`):

1. `grade.py` (`make grade`; `gradescope.py` and `nbgrader_grade.py` call the same functions):
   reads each notebook once, writes `batch.json`, and starts ONE pytest session over the suites.
2. `conftest.py`, in that session: collects every case of the suites `test_<item>.py` (plain-JSON
   case descriptions, built by `cases.py`), takes the four graded cells from each notebook
   (`kdcourse.notebook.graded_cells`), and hands them to `sandbox.run_worker`, `--jobs` at a time.
3. `sandbox.py` (trusted side) starts `worker.py` in bubblewrap, as an unprivileged user, under
   rlimits and time limits, and reads its answers ("<nonce> <json>" lines on a private pipe).
4. `worker.py` imports torch and builds every case's inputs, then forks one process per item
   before any student cell runs; that process installs `guard.py`'s audit hook, runs the item's
   cell and those before it, calls the student's function on each case and sends back what it
   returned as plain arrays. Only train_student's process loads `grader_loss.py`.
5. The suites compare those arrays with their own references (`judge.py` turns a mismatch into
   the student's hint); `conftest.py` writes each test's outcome and points to `report.json`.
6. `grade.py` turns the report into item scores (`score_report`: the weighted share of passed
   checks; property checks count only once a value check passes), adds the written answers
   (`written.py`), and `reports.py` writes grades.json, grades.csv, feedback HTML and Gradescope
   results.json.

The trusted side never imports student code.
"""
from kdcourse.notebook import GRADED_POINTS

# Points of each graded item: the `points` of its `test_<name>` cell, defined in kdcourse.notebook.
MAX_POINTS = dict(GRADED_POINTS)
ITEMS = tuple(MAX_POINTS)
