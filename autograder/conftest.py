"""Pytest plumbing of the hidden suites: the submissions, their worker runs, per-case results.

    python -m pytest autograder -p no:cacheprovider --submission NB.ipynb --grading-report r.json
    python -m pytest autograder -p no:cacheprovider --batch batch.json --jobs 2 --grading-report r.json

Every test takes a `case` parameter (a plain-JSON description, see autograder/cases.py) and runs
once per submission (`--batch` is a JSON list of {"id", "path"}; `--submission` is a batch of
one). Before the first test runs, each submission's collected cases go to one sandboxed worker,
`--jobs` submissions at a time; `observe(case)` then returns what that submission's function did.
`--grading-report` writes each submission's test outcomes, points and feedback as JSON
(autograder.grade turns them into scores).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from autograder import ITEMS, judge, sandbox
from autograder.isolation import Limits
from autograder.protocol import GRADER_ERRORS, MISSING, PROGRESS, RELAYED_LOG, error
from kdcourse.notebook import NotebookError, graded_cells
from kdcourse.paths import SOLUTION_NOTEBOOK

log = logging.getLogger("autograder")


@dataclasses.dataclass
class GradingState:
    """What this session grades and has seen, kept in `config.stash[GRADING]`."""
    batch: list[tuple[str, str]]                   # (submission id, notebook path)
    runs: dict = dataclasses.field(default_factory=dict)       # id -> its worker run
    expected: dict = dataclasses.field(default_factory=dict)   # id -> tests collected for it
    results: dict = dataclasses.field(init=False)               # id -> per-test outcomes
    tags: dict = dataclasses.field(init=False)                  # id -> its test-id part

    def __post_init__(self):
        self.results = {sid: [] for sid, _ in self.batch}
        # the test-id part naming a submission (ASCII whatever the student id, removed from reports)
        self.tags = {sid: f"@{i}" for i, (sid, _) in enumerate(self.batch)}


GRADING = pytest.StashKey[GradingState]()


def pytest_addoption(parser):
    group = parser.getgroup("autograder")
    group.addoption("--submission", default=str(SOLUTION_NOTEBOOK), help="the notebook to grade "
                    "(default: the solution notebook, which must score full marks)")
    group.addoption("--batch", default=None, help="JSON list of {\"id\", \"path\"}: grade these "
                    "notebooks in one session instead of --submission")
    group.addoption("--jobs", type=int, default=1, help="workers (submissions) run in parallel")
    group.addoption("--grading-report", default=None, help="write per-test results as JSON here")
    group.addoption("--hide", action="append", default=[], help="a folder the worker must not see "
                    "(submissions, output); repeatable")
    group.addoption("--case-seconds", type=float, default=None, help="wall-clock limit per case")
    group.addoption("--progress", action="store_true", help=f"print '{PROGRESS}<id>' on stderr "
                    "as each submission's worker finishes, and the grader's warnings as "
                    f"'{RELAYED_LOG}<json>' (autograder.grade logs them again in its own process)")


class RelayHandler(logging.Handler):
    """Log records of this session as one `RELAYED_LOG {"level", "name", "message"}` line each
    on stderr, for autograder.grade to log again: the instructor sees the sandbox's warnings."""

    def emit(self, record):
        try:
            line = json.dumps({"level": record.levelno, "name": record.name,
                               "message": self.format(record)})
            print(f"{RELAYED_LOG}{line}", file=sys.stderr, flush=True)
        except Exception:  # noqa: BLE001  logging must never break grading
            self.handleError(record)


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n): weight of a test within its graded item")
    config.addinivalue_line("markers", "property_check: passes without computing the right "
                            "values (e.g. raises ValueError); its points count only when a value "
                            "check of the same item passes")
    if config.getoption("--progress"):
        log.addHandler(RelayHandler(logging.WARNING))
    batch = config.getoption("--batch")
    if batch:
        submissions = [(str(s["id"]), str(s["path"])) for s in json.loads(Path(batch).read_text())]
    else:
        submissions = [("submission", config.getoption("--submission"))]
    config.stash[GRADING] = GradingState(submissions)


def pytest_generate_tests(metafunc):
    """Every test that observes a submission runs once per submission of the batch."""
    if "submission_id" in metafunc.fixturenames:
        tags = metafunc.config.stash[GRADING].tags
        metafunc.parametrize("submission_id", list(tags), ids=list(tags.values()), scope="session")


def load_sources(path: str) -> tuple[dict, list, str | None]:
    """({name: source}, notebook order, problem) of the graded function cells of `path`."""
    try:
        cells = graded_cells(path)
    except (NotebookError, OSError) as err:
        return {}, [], str(err)
    sources = {name: src for name, src in cells.items() if name in ITEMS}
    return sources, list(sources), None


def grade_one(path: str, cases: dict, limits: Limits, hide: list[str]) -> dict:
    """All `cases` against one notebook: its worker run (never raises for student code)."""
    sources, order, problem = load_sources(path)
    run = {"results": {}, "load_errors": {}, "sandbox": None, "log": [], "problem": problem}
    todo = [c for c in cases.values() if c["fn"] in sources]
    if todo:
        hidden = [str(Path(path).resolve().parent), *hide]
        run.update(sandbox.run_worker(sources, todo, order=order, limits=limits, hidden=hidden))
    for case in cases.values():
        if case["fn"] not in sources:
            message = problem or (f"the notebook has no cell with grade_id '{case['fn']}': copy "
                                  "the cell back from the released notebook")
            run["results"][case["id"]] = {"error": error(MISSING, message)}
    return run


@pytest.fixture(scope="session")
def worker_runs(request):
    """{submission id: future of its worker run}; all start at once, `--jobs` at a time."""
    config = request.config
    state = config.stash[GRADING]
    cases = {}
    for item in request.session.items:
        case = getattr(item, "callspec", None) and item.callspec.params.get("case")
        if isinstance(case, dict):
            cases.setdefault(case["id"], case)
    limits = Limits()
    if config.getoption("--case-seconds"):
        limits.case_seconds = config.getoption("--case-seconds")
    hide = config.getoption("--hide")
    progress = config.getoption("--progress")

    def run(sid, path):
        try:
            result = grade_one(path, cases, limits, hide)
        except Exception:                     # a grader bug: this submission alone fails
            log.exception("grading %s failed", sid)
            result = {"results": {}, "load_errors": {}, "sandbox": None, "log": [],
                      "problem": "internal grader error; tell your instructor"}
        state.runs[sid] = result
        if progress:
            print(f"{PROGRESS}{sid}", file=sys.stderr, flush=True)
        return result

    pool = ThreadPoolExecutor(max_workers=max(1, config.getoption("--jobs")))
    request.addfinalizer(lambda: pool.shutdown(cancel_futures=True))
    return {sid: pool.submit(run, sid, path) for sid, path in state.batch}


@pytest.fixture
def observe(worker_runs, submission_id):
    """observe(case) -> what the student's function did; fails the test if it raised.

    observe(case, expect_error=True) returns the error the function raised (None if it returned),
    and fails the test when the case did not run or the grader could not read the result.
    """
    run = worker_runs[submission_id].result()

    def get(case, expect_error=False):
        obs = run["results"].get(case["id"])
        if obs is None:
            raise AssertionError(run.get("problem") or "the grader got no result for this case")
        error, raised = obs.get("error"), obs.get("raised") is True
        if error is not None and (not raised or error.get("type") in GRADER_ERRORS):
            raise AssertionError(judge.student_error_message(case["fn"], error, load=True))
        if "harness_error" in obs:
            raise AssertionError(f"{case['fn']} returned something the grader could not read "
                                 f"({obs['harness_error'].get('type')}): return a plain tensor")
        if expect_error:
            return error
        if error is not None:
            raise AssertionError(judge.student_error_message(case["fn"], error))
        return obs
    return get


def _message(excinfo) -> str:
    err = excinfo.value
    if isinstance(err, AssertionError):
        text = str(err).split("\nassert ")[0].strip()
        return (text or "assertion failed")[:400]
    log.error("internal grader error: %r", err)
    return f"internal grader error ({type(err).__name__}); tell your instructor"


def _test_name(item, sid: str) -> str:
    """The test's name without the submission: `matches_reference[T=1.0,alpha=0.5]`."""
    name = item.name[len("test_"):] if item.name.startswith("test_") else item.name
    tag = item.config.stash[GRADING].tags[sid]
    return name.replace(f"-{tag}]", "]").replace(f"[{tag}-", "[").replace(f"[{tag}]", "")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    sid = getattr(item, "callspec", None) and item.callspec.params.get("submission_id")
    if sid is None:
        return
    if report.when == "call" or (report.when == "setup" and report.failed):
        marker = item.get_closest_marker("points")
        module = item.module.__name__.rsplit(".", 1)[-1]
        item.config.stash[GRADING].results[sid].append({
            "item": module[len("test_"):], "name": _test_name(item, sid), "passed": report.passed,
            "points": float(marker.args[0]) if marker else 1.0,
            "property": item.get_closest_marker("property_check") is not None,
            "message": "" if report.passed else _message(call.excinfo)})


def pytest_collection_modifyitems(config, items):
    """Count each submission's tests: a report with fewer (a session that stopped early) is
    incomplete, and autograder.grade grades that submission again instead of scoring a part."""
    expected = config.stash[GRADING].expected = dict.fromkeys(config.stash[GRADING].tags, 0)
    for item in items:
        sid = getattr(item, "callspec", None) and item.callspec.params.get("submission_id")
        if sid in expected:
            expected[sid] += 1


def pytest_sessionfinish(session):
    path = session.config.getoption("--grading-report")
    if path:
        config = session.config
        state = config.stash[GRADING]
        report = {}
        for sid, _ in state.batch:
            run = state.runs.get(sid) or {}
            report[sid] = {"tests": state.results[sid], "expected": state.expected.get(sid),
                           "sandbox": run.get("sandbox"), "worker_user": run.get("worker_user"),
                           "problem": run.get("problem"),
                           "log": run.get("log", []), "load_errors": run.get("load_errors", {})}
        Path(path).write_text(json.dumps({"submissions": report}, indent=1))
