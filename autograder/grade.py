"""Grade a folder of submissions exported from an LMS: one <student_id>/distillation.ipynb each.

    python -m autograder.grade SUBMISSIONS --out_dir OUT [--jobs N]   (or: make grade SUBMISSIONS=... OUT=...)

Writes OUT/grades.json, OUT/grades.csv, OUT/feedback/<id>.html, OUT/gradescope/<id>/results.json
and OUT/written/answers.{csv,html} (the written answers, for TAs to mark; `--written` merges them).
All notebooks are graded by the hidden suites in one pytest process (it never runs student code);
each student's cells run in their own sandboxed worker, N workers at a time. A broken notebook
gets zeros and a message.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from autograder.protocol import PROGRESS, RELAYED_LOG
from autograder.results import SubmissionResult
from kdcourse.cli import parse_config
from kdcourse.errors import run_cli

log = logging.getLogger("autograder.grade")
HERE = Path(__file__).resolve().parent
NOTEBOOK = "distillation.ipynb"


def grade_notebooks(paths: dict, *, hide=(), jobs: int = 1, case_seconds=None, timeout=None,
                    on_done=None) -> dict[str, SubmissionResult]:
    """Grade {id: notebook path} in one pytest session, `jobs` workers at a time; {id: result}.

    Never raises for anything in a notebook. `on_done(id)` is called once as each one finishes.
    A submission whose tests did not all run (the grading session stopped early: an internal
    error, a signal) is graded again in a fresh session, then given zeros with "internal grader
    error" if that fails too; a partial set of tests is never scored.
    """
    from autograder.isolation import worker_user
    from kdcourse.notebook import NotebookError, read_notebook
    worker_user()                         # a KDGRADE_WORKER_USER that names no one stops here
    done = set()

    def finished(sid):
        if str(sid) not in done:
            done.add(str(sid))
            if on_done:
                on_done(sid)
    results, batch = {}, []
    for sid, path in paths.items():
        try:
            read_notebook(path)
            batch.append({"id": str(sid), "path": str(Path(path).resolve())})
        except NotebookError as err:      # the message names the file, not the instructor's folders
            results[sid] = SubmissionResult.empty(str(err).replace(str(path), Path(path).name))
            finished(sid)
    session = dict(hide=hide, jobs=jobs, case_seconds=case_seconds, timeout=timeout, on_done=finished)
    report, failure = _grading_session(batch, **session) if batch else ({}, None)
    unfinished = [entry for entry in batch if not _complete(report.get(entry["id"]))]
    if unfinished and failure != "timeout":
        log.warning("grading again, in a fresh session, the %d submission(s) whose tests did not "
                    "all run: %s", len(unfinished), ", ".join(e["id"] for e in unfinished))
        again, failure = _grading_session(unfinished, **session)
        report.update({sid: entry for sid, entry in again.items() if _complete(entry)})
    for entry in batch:
        sid = next(k for k in paths if str(k) == entry["id"])
        finished(sid)
        if not _complete(report.get(entry["id"])):
            results[sid] = SubmissionResult.empty(
                "grading took longer than the overall limit; tell your instructor"
                if failure == "timeout" else "internal grader error; tell your instructor")
            continue
        results[sid] = SubmissionResult.from_report(report[entry["id"]])
    return results


def _complete(entry) -> bool:
    """True when a submission's report holds every test collected for it."""
    return entry is not None and len(entry["tests"]) >= (entry.get("expected") or 1)


def _grading_session(batch: list, *, hide, jobs, case_seconds, timeout,
                     on_done) -> tuple[dict, str | None]:
    """Run the hidden suites over `batch` in one pytest process: ({id: report entry}, failure),
    failure being None, "timeout" or "crash". What the process printed is logged on a failure."""
    with tempfile.TemporaryDirectory(prefix="kdgrade-report-") as tmp:
        report_path, batch_path = Path(tmp) / "report.json", Path(tmp) / "batch.json"
        batch_path.write_text(json.dumps(batch))
        cmd = [sys.executable, "-m", "pytest", str(HERE), "-q", "--no-header", "-p", "no:cacheprovider",
               "-p", "no:xdist", "-o", "addopts=", "-o", "pythonpath=", "--import-mode=importlib", "--rootdir", str(HERE),
               "-s", "--batch", str(batch_path), "--jobs", str(max(1, jobs)), "--progress",
               "--grading-report", str(report_path)]
        if case_seconds:
            cmd += ["--case-seconds", str(case_seconds)]
        for folder in hide:
            cmd += ["--hide", str(Path(folder).resolve())]
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
        if timeout is None:      # each worker is bounded by Limits.submission_seconds
            timeout = 300 + 250 * math.ceil(len(batch) / max(1, jobs))
        with open(Path(tmp) / "stdout.txt", "wb") as out:
            proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=out, stderr=subprocess.PIPE)
            try:
                stderr = _follow(proc, timeout, on_done)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                stderr = "timeout"
        try:
            report = json.loads(report_path.read_text()).get("submissions", {})
        except (OSError, ValueError):      # not written, or cut short by a kill
            report = {}
        # pytest exits 0 (all passed) or 1 (some failed); 2 is an interruption, 3 an internal error
        failure = ("timeout" if stderr == "timeout" else "crash" if proc.returncode not in (0, 1)
                   or not all(_complete(report.get(e["id"])) for e in batch) else None)
        if failure:
            log.error("the grading session failed (%s, exit status %s):\n%s\n%s", failure,
                      proc.returncode, (Path(tmp) / "stdout.txt").read_text()[-3000:], stderr[-3000:])
    return report, failure


def _follow(proc, timeout: float, on_done) -> str:
    """Wait for the grading process, passing its progress lines to on_done and logging its log
    records here (the sandbox's warnings); return its other stderr."""
    import threading
    lines = []

    def read():
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace")
            if line.startswith(PROGRESS) and on_done:
                on_done(line[len(PROGRESS):].strip())
            elif not (line.startswith(RELAYED_LOG) and _relay(line[len(RELAYED_LOG):])):
                lines.append(line)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    proc.wait(timeout=timeout)
    reader.join(timeout=10)
    return "".join(lines)


def _relay(payload: str) -> bool:
    """Log a record that the grading session sent (see conftest.RelayHandler); False if malformed."""
    try:
        record = json.loads(payload)
        logging.getLogger(str(record["name"])).log(int(record["level"]), "%s", record["message"])
    except (ValueError, KeyError, TypeError):
        return False
    return True


def grade_notebook(path: str | Path, *, hide=(), timeout=None,
                   case_seconds=None) -> SubmissionResult:
    """Grade one notebook; never raises for anything in the notebook."""
    return grade_notebooks({"submission": path}, hide=hide, timeout=timeout,
                           case_seconds=case_seconds)["submission"]


def find_students(submissions: Path) -> list[str]:
    if not submissions.is_dir():
        raise SystemExit(f"SUBMISSIONS={submissions} is not a folder: pass the folder that holds "
                         f"one <student_id>/{NOTEBOOK} per student")
    students = sorted(p.name for p in submissions.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not students:
        raise SystemExit(f"SUBMISSIONS={submissions} holds no student folders: expected "
                         f"<student_id>/{NOTEBOOK} inside it")
    return students


def grade_folder(submissions: str | Path, out: str | Path, jobs: int = 1, progress: bool = True,
                 case_seconds=None) -> dict[str, SubmissionResult]:
    """Grade every student folder; write all outputs under `out`; return {student_id: result}.

    A gradebook already in `out` is updated, like nbgrader's: this run's students replace their
    rows, the others keep theirs, and the previous grades.json/csv are copied to out/history/.
    Two runs into one `out` at once are refused: the second would drop the first one's rows."""
    from filelock import FileLock, Timeout

    from autograder.isolation import worker_user
    submissions, out = Path(submissions), Path(out)
    students = find_students(submissions)
    worker_user()                         # a KDGRADE_WORKER_USER that names no one stops here
    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(out / ".grading.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise SystemExit(f"another grading run is writing to {out} now: wait for it to finish, or "
                         "choose another output folder") from None
    try:
        return _grade_into(students, submissions, out, jobs, progress, case_seconds)
    finally:
        lock.release()


def _grade_into(students, submissions: Path, out: Path, jobs, progress, case_seconds) -> dict:
    from autograder import reports, written
    from kdcourse.paths import move_to_history
    previous = reports.read_gradebook(out)
    questions = written.questions()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(students), desc="grading", unit="student")
    notebooks = {sid: submissions / sid / NOTEBOOK for sid in students}
    grades = grade_notebooks(notebooks, hide=[submissions, out], jobs=jobs,
                             case_seconds=case_seconds,
                             on_done=(lambda _sid: bar.update(1)) if bar else None)
    if bar:
        bar.close()
    grades = written.add_answers(dict(sorted(grades.items())), notebooks, previous, questions)
    kept = sorted(set(previous) - set(grades))
    if move_to_history(out, ("grades.json", "grades.csv"), copy=True):
        log.info("%d student(s) not in %s keep their grades: %s", len(kept), submissions,
                 ", ".join(kept) or "none")
    book = dict(sorted({**previous, **grades}.items()))
    reports.write_all(book, out)
    written.write_sheets(book, out / "written", questions)
    return grades


@dataclasses.dataclass
class GradeConfig:
    """`python -m autograder.grade SUBMISSIONS --out_dir OUT` (SUBMISSIONS is positional)."""
    out_dir: Path = dataclasses.field(metadata={"help": "output folder (grades.json, grades.csv, ...)"})
    jobs: int = dataclasses.field(default=1, metadata={"help": "students graded in parallel"})
    case_seconds: float | None = dataclasses.field(
        default=None, metadata={"help": "wall-clock limit of one grading case (default 20)"})
    written: Path | None = dataclasses.field(default=None, metadata={
        "help": "merge the TAs' points from this filled OUT/written/answers.csv into the gradebook "
                "in OUT instead of grading (no notebook is regraded)"})


def main(argv=None):
    cfg, args = parse_config(GradeConfig, argv, description=__doc__.split("\n\n")[0],
                             prog="autograder.grade",
                             positional={"submissions": f"folder of <student_id>/{NOTEBOOK}"})
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if cfg.written:
        from autograder.written import merge_written
        merged = merge_written(cfg.written, cfg.out_dir)
        print(f"merged {merged} written mark(s) from {cfg.written} into {cfg.out_dir / 'grades.json'}, "
              "grades.csv and the Gradescope files; no notebook was regraded")
        return
    grades = grade_folder(args.submissions, cfg.out_dir, cfg.jobs, case_seconds=cfg.case_seconds)
    mean = sum(g.total for g in grades.values()) / len(grades)
    most = max(g.max_total for g in grades.values())
    book = json.loads((cfg.out_dir / "grades.json").read_text())
    earlier = f" (it keeps {len(book) - len(grades)} more from earlier runs)" if len(book) > len(grades) else ""
    print(f"graded {len(grades)} submissions, mean {mean:.1f}/{most:g}: "
          f"{cfg.out_dir / 'grades.json'}{earlier}")
    print(sandbox_summary(grades))


def sandbox_summary(grades: dict[str, SubmissionResult]) -> str:
    """How the student code ran, counted over the submissions that ran any (for the instructor)."""
    ran = [g.sandbox for g in grades.values() if g.ran_code]
    if not ran:
        return "no student code ran (every notebook was missing, broken or a release stub)"
    counts = {}
    for run in ran:
        how = ("bubblewrap" if run.bubblewrap else "no bubblewrap") + (
            f", as {run.worker_user}" if run.worker_user else "")
        counts[how] = counts.get(how, 0) + 1
    return "student code ran: " + "; ".join(f"{how} ({n})" for how, n in sorted(counts.items()))


if __name__ == "__main__":
    run_cli(main)
