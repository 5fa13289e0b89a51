"""Pytest plumbing of the hidden suites: the submission, one worker run, per-case results.

    python -m pytest autograder -p no:cacheprovider --submission NB.ipynb --grading-report r.json

Every test takes a `case` parameter (a plain-JSON description, see autograder/cases.py). Before the
first test runs, all collected cases go to one sandboxed worker together; `observe(case)` then
returns what the student's function did on it. `--grading-report` writes each test's outcome,
points and feedback message as JSON (autograder.grade turns it into scores).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from autograder import ITEMS, judge, sandbox
from kdcourse.notebook import NotebookError, graded_cells

REPO = Path(__file__).resolve().parent.parent
SOLUTION = REPO / "solutions" / "week6_distillation" / "distillation.ipynb"
log = logging.getLogger("autograder")


def pytest_addoption(parser):
    group = parser.getgroup("autograder")
    group.addoption("--submission", default=str(SOLUTION), help="the notebook to grade "
                    "(default: the solution notebook, which must score full marks)")
    group.addoption("--grading-report", default=None, help="write per-test results as JSON here")
    group.addoption("--hide", action="append", default=[], help="a folder the worker must not see "
                    "(submissions, output); repeatable")
    group.addoption("--case-seconds", type=float, default=None, help="wall-clock limit per case")


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n): weight of a test within its graded item")
    config._grading_results = []


def load_sources(path: str) -> tuple[dict, list, str | None]:
    """({name: source}, notebook order, problem) of the graded function cells of `path`."""
    try:
        cells = graded_cells(path)
    except (NotebookError, OSError) as err:
        return {}, [], str(err)
    sources = {name: src for name, src in cells.items() if name in ITEMS}
    return sources, list(sources), None


@pytest.fixture(scope="session")
def worker_run(request):
    """Run every collected case in one sandboxed worker (once per session)."""
    config = request.config
    cases = {}
    for item in request.session.items:
        case = getattr(item, "callspec", None) and item.callspec.params.get("case")
        if isinstance(case, dict):
            cases.setdefault(case["id"], case)
    sources, order, problem = load_sources(config.getoption("--submission"))
    limits = sandbox.Limits()
    if config.getoption("--case-seconds"):
        limits.case_seconds = config.getoption("--case-seconds")
    run = {"results": {}, "load_errors": {}, "sandbox": None, "log": [], "problem": problem}
    todo = [c for c in cases.values() if c["fn"] in sources]
    if todo:
        hidden = [str(Path(config.getoption("--submission")).resolve().parent),
                  *config.getoption("--hide")]
        run.update(sandbox.run_worker(sources, todo, order=order, hidden=hidden))
    for case in cases.values():
        if case["fn"] not in sources:
            message = problem or (f"the notebook has no cell with grade_id '{case['fn']}': copy "
                                  "the cell back from the released notebook")
            run["results"][case["id"]] = {"error": {"type": "Missing", "message": message}}
    config._grading_run = run
    return run


@pytest.fixture
def observe(worker_run):
    """observe(case) -> what the student's function did; fails the test if it raised.

    observe(case, expect_error=True) returns the error description instead (or fails if none).
    """
    def get(case, expect_error=False):
        obs = worker_run["results"].get(case["id"])
        if obs is None:
            raise AssertionError("the grader got no result for this case")
        error = obs.get("error")
        if expect_error:
            if error is None:
                return None
            if error.get("type") in ("Timeout", "WorkerExit", "Missing", "GraderError") or obs.get("load"):
                raise AssertionError(judge.student_error_message(case["fn"], error, load=True))
            return error
        if error is not None:
            raise AssertionError(judge.student_error_message(case["fn"], error, load=obs.get("load", False)))
        return obs
    return get


def _message(excinfo) -> str:
    err = excinfo.value
    if isinstance(err, AssertionError):
        text = str(err).split("\nassert ")[0].strip()
        return (text or "assertion failed")[:400]
    log.error("internal grader error: %r", err)
    return f"internal grader error ({type(err).__name__}); tell your instructor"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" or (report.when == "setup" and report.failed):
        marker = item.get_closest_marker("points")
        module = item.module.__name__.rsplit(".", 1)[-1]
        name = item.name[len("test_"):] if item.name.startswith("test_") else item.name
        item.config._grading_results.append({
            "item": module[len("test_"):], "name": name, "passed": report.passed,
            "points": float(marker.args[0]) if marker else 1.0,
            "message": "" if report.passed else _message(call.excinfo)})


def pytest_sessionfinish(session):
    path = session.config.getoption("--grading-report")
    if path:
        run = getattr(session.config, "_grading_run", {}) or {}
        Path(path).write_text(json.dumps({
            "tests": session.config._grading_results, "sandbox": run.get("sandbox"),
            "problem": run.get("problem"), "log": run.get("log", []),
            "load_errors": run.get("load_errors", {})}, indent=1))
