"""Autograder of the Week-6 distillation assignment: hidden suites run against an isolated worker.

    make grade SUBMISSIONS=dir OUT=dir [JOBS=n]           # a folder of <student_id>/distillation.ipynb
    python -m pytest autograder -p no:cacheprovider --submission NB --grading-report out.json

The route of a submission, stage by stage (each stage one file; the names the processes share
are in `protocol.py`):

1. `grade.py` (`make grade`; `gradescope.py` and `nbgrader_grade.py` call the same functions):
   reads each notebook once, writes `batch.json`, and starts ONE pytest session over the suites.
2. `conftest.py`, in that session: collects every case of the suites `test_<item>.py` (plain-JSON
   case descriptions, built by `cases.py`), takes the four graded cells from each notebook
   (`kdcourse.notebook.graded_cells`), and hands them to `sandbox.run_worker`, `--jobs` at a time.
3. `sandbox.py` (trusted side) skips the cells that are still the release stub
   (`kdcourse.notebook.is_stub_cell`), starts `worker.py` behind the walls `isolation.py` builds
   (bubblewrap, an unprivileged user, rlimits), and reads its answers ("<nonce> <json>" lines on
   a private pipe), under time limits.
4. `worker.py` imports torch and builds every case's inputs, then forks one process per item
   before any student cell runs; that process installs `guard.py`'s audit hook, runs the item's
   cell and those before it, calls the student's function on each case and sends back what it
   returned as plain arrays. Only train_student's process loads `grader_loss.py`.
5. The suites compare those arrays with their own references (`judge.py` turns a mismatch into
   the student's hint); `conftest.py` writes each test's outcome and points to `report.json`.
6. `results.py` is where the score comes from: `SubmissionResult.from_report` turns a
   submission's tests into item scores (`share`: the weighted share of passed checks; property
   checks count only once a value check passes). `written.py` adds the written answers, and every
   output is a method of that one result: `to_json` (grades.json, written by `reports.py` with
   grades.csv and the feedback pages), `to_gradescope` (results.json) and `to_nbgrader`.

The trusted side never imports student code.
"""
from kdcourse.notebook import GRADED_POINTS

# Points of each graded item: the `points` of its `test_<name>` cell, defined in kdcourse.notebook.
MAX_POINTS = dict(GRADED_POINTS)
ITEMS = tuple(MAX_POINTS)
