"""Gradescope's results.json (one typed result), and the bundle's per-submission entry point.

    python -m autograder.gradescope build [--out dist/gradescope/autograder.zip]   (make gradescope)
    python -m autograder.gradescope run [--root /autograder]     # what the bundle's run_autograder runs

`GradescopeResults.from_result` turns a result of `autograder.grade` into Gradescope's format:
one entry in `tests` per graded check (its share of the item's points, and its hint as `output`),
then one per marked written answer. `make grade` writes the same file per student
(OUT/gradescope/<id>/results.json), so both paths give the same scores. When students see each
entry is read from autograder/gradescope.toml (see docs/instructors.md).

On Gradescope, `run` grades the one .ipynb under $AUTOGRADER_ROOT/submission/ (whatever its name)
with `grade.grade_notebook`, the function `make grade` uses, and always writes
$AUTOGRADER_ROOT/results/results.json: bad input gets score 0 and a message, never a crash.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import fnmatch
import json
import logging
import os
import time
import tomllib
import zipfile
from pathlib import Path

from autograder import ITEMS, MAX_POINTS

log = logging.getLogger("autograder.gradescope")
HERE = Path(__file__).resolve().parent
CONFIG = HERE / "gradescope.toml"
REPO = HERE.parent
BUNDLE_ZIP = REPO / "dist" / "gradescope" / "autograder.zip"   # dist/ is git-ignored
VISIBILITIES = ("visible", "after_due_date", "after_published", "hidden")
# Names of the checks that report a problem with the upload itself (grade.empty_result, score_report).
SUBMISSION_CHECKS = ("notebook", "suite")


@dataclasses.dataclass(frozen=True)
class Visibility:
    """When students see each kind of entry (one of VISIBILITIES); see gradescope.toml."""
    checks: str = "after_published"      # a check of the hidden suites: its points and hint
    visible_checks: tuple = ()           # fnmatch patterns of "<item>: <check>" shown at once
    submission: str = "visible"          # a problem with the upload (none, two, unreadable, ...)
    written: str = "after_published"     # a written answer, once TAs have marked it
    stdout: str = "hidden"               # run_autograder's log: for instructors

    def __post_init__(self):
        for key in ("checks", "submission", "written", "stdout"):
            if getattr(self, key) not in VISIBILITIES:
                raise ValueError(f"gradescope.toml: {key} = {getattr(self, key)!r} is not one of "
                                 f"{', '.join(VISIBILITIES)}")

    def of_check(self, item: str, name: str) -> str:
        if name in SUBMISSION_CHECKS:
            return self.submission
        label = f"{item}: {name}"
        return "visible" if any(fnmatch.fnmatchcase(label, p) for p in self.visible_checks) \
            else self.checks

    @classmethod
    def load(cls, path: Path = CONFIG) -> "Visibility":
        """The [visibility] table of `path`; the defaults above when the file does not exist."""
        if not path.exists():
            return cls()
        table = tomllib.loads(path.read_text()).get("visibility", {})
        unknown = set(table) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"{path}: unknown [visibility] keys {sorted(unknown)}")
        table["visible_checks"] = tuple(table.get("visible_checks", ()))
        return cls(**table)


@dataclasses.dataclass
class GradescopeTest:
    name: str
    score: float
    max_score: float
    output: str
    visibility: str

    def to_json(self) -> dict:
        return {"name": self.name, "score": self.score, "max_score": self.max_score,
                "status": "passed" if self.score >= self.max_score else "failed",
                "output": self.output, "visibility": self.visibility}


@dataclasses.dataclass
class GradescopeResults:
    """One submission's results.json (Gradescope's autograder specification)."""
    score: float
    tests: list
    output: str
    stdout_visibility: str = "hidden"
    execution_time: float | None = None

    def to_json(self) -> dict:
        data = {"score": self.score, "output": self.output,
                "stdout_visibility": self.stdout_visibility,
                "tests": [t.to_json() for t in self.tests]}
        if self.execution_time is not None:
            data["execution_time"] = round(self.execution_time, 1)
        return data

    def write(self, path: Path) -> Path:
        """Replace `path` whole (Gradescope never reads half a file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def from_result(cls, result: dict, visibility: Visibility | None = None,
                    execution_time: float | None = None) -> "GradescopeResults":
        """One test per check of each automatic item, then one per marked written answer; the
        top-level score is the result's total (the sum of the tests, before their rounding)."""
        visibility = visibility or Visibility.load()
        tests = []
        for item in ITEMS:
            tests += _check_tests(item, result["items"][item], visibility)
        for qid, written in result["items"].items():
            if written.get("written") and written.get("score") is not None:
                tests.append(GradescopeTest(f"written: {qid}", written["score"],
                                            written["max_score"], written.get("comment") or "",
                                            visibility.written))
        problems = {t["message"] for item in ITEMS for t in result["items"][item]["tests"]
                    if t["name"] in SUBMISSION_CHECKS}
        lines = [f"{result['total']:g} of {result['max_total']:g} points", *sorted(problems)]
        lines += [f"{item}: {r['score']:g} / {r['max_score']:g}" for item, r in result["items"].items()
                  if r.get("score") is not None]
        summary = "\n".join(lines)
        return cls(score=result["total"], tests=tests, output=summary,
                   stdout_visibility=visibility.stdout, execution_time=execution_time)

    @classmethod
    def failure(cls, message: str, execution_time: float | None = None,
                visibility: Visibility | None = None) -> "GradescopeResults":
        """Score 0 for a submission that could not be graded at all; `message` says why."""
        visibility = visibility or Visibility()
        test = GradescopeTest("submission", 0.0, float(sum(MAX_POINTS.values())), message,
                              visibility.submission)
        return cls(score=0.0, tests=[test], output=message, stdout_visibility=visibility.stdout,
                   execution_time=execution_time)


def _check_tests(item: str, item_result: dict, visibility: Visibility) -> list[GradescopeTest]:
    """The item's checks, each worth MAX_POINTS * its weight / the item's total weight."""
    checks = item_result["tests"]
    weight = sum(t.get("points", 1) for t in checks) or 1
    tests = []
    for t in checks:
        worth = MAX_POINTS[item] * t.get("points", 1) / weight
        counted = t["passed"] and t.get("counted", True)
        output = ("passed" if counted else t["message"]) if t["passed"] else f"FAILED: {t['message']}"
        tests.append(GradescopeTest(f"{item}: {t['name']}", round(worth if counted else 0.0, 4),
                                    round(worth, 4), output, visibility.of_check(item, t["name"])))
    return tests


# ---------------------------------------------------------------- on Gradescope
class SubmissionError(ValueError):
    """The upload holds no notebook, or more than one."""


def find_notebook(submission: Path) -> Path:
    """The one .ipynb under `submission` (any name, any depth, checkpoints ignored)."""
    if not submission.is_dir():
        raise SubmissionError("no submission folder was found: upload your notebook (.ipynb)")
    found = sorted(p for p in submission.rglob("*.ipynb")
                   if ".ipynb_checkpoints" not in p.parts and p.is_file())
    if not found:
        names = sorted(p.name for p in submission.rglob("*") if p.is_file())[:5]
        raise SubmissionError("no notebook (.ipynb) in your upload"
                              + (f" (it holds {', '.join(names)})" if names else "")
                              + ": upload distillation.ipynb, downloaded from Jupyter with File > Download")
    if len(found) > 1:
        names = ", ".join(str(p.relative_to(submission)) for p in found)
        raise SubmissionError(f"{len(found)} notebooks in your upload ({names}): upload only the "
                              "one to grade")
    return found[0]


def run(root: Path) -> GradescopeResults:
    """Grade the submission under `root` and write root/results/results.json; never raises for
    anything in the submission."""
    from autograder.grade import grade_notebook
    start = time.monotonic()
    visibility = Visibility()
    try:
        visibility = Visibility.load()
        notebook = find_notebook(root / "submission")
        log.info("grading %s", notebook)
        result = grade_notebook(notebook, hide=[root / "submission", root / "results"])
        results = GradescopeResults.from_result(result, visibility, time.monotonic() - start)
    except SubmissionError as err:
        results = GradescopeResults.failure(str(err), time.monotonic() - start, visibility)
    except Exception:  # noqa: BLE001  a crash would leave the student with no result at all
        log.exception("the autograder failed")
        results = GradescopeResults.failure("internal grader error: tell your instructor",
                                            time.monotonic() - start, visibility)
    results.write(root / "results" / "results.json")
    log.info("score %s: %s", results.score, root / "results" / "results.json")
    return results


# ---------------------------------------------------------------- the bundle
# Not in the bundle: tools for the instructor's machine (benchmark, nbgrader's preprocessor).
NOT_BUNDLED = ("bench_grading.py", "nbgrader_grade.py")


def bundle_files() -> dict[str, Path]:
    """{path in the zip: file here}: Gradescope's two scripts at the root, the pinned requirements,
    the autograder package (hidden suites, trusted side, every isolation.WORKER_FILES file) and the
    parts of kdcourse it imports. No solution notebook: the suites hold their own references."""
    from autograder.isolation import WORKER_FILES
    files = {name: HERE / "bundle" / name for name in ("setup.sh", "run_autograder")}
    files["requirements.txt"] = REPO / "requirements.txt"
    package = {p.name for p in HERE.glob("*.py")} - set(NOT_BUNDLED) | set(WORKER_FILES)
    for name in sorted(package) + [CONFIG.name]:
        files[f"autograder/{name}"] = HERE / name
    # the kdcourse modules the bundled files import (the worker imports none), followed as the
    # student kit follows them
    from autograder.student_kit import imported_names, package_closure
    roots = set().union(*(imported_names(ast.parse((HERE / name).read_text()), "autograder")
                          for name in package if name.endswith(".py")))
    source = REPO / "src"
    for path in package_closure(roots, source).values():
        files[f"src/{path.relative_to(source).as_posix()}"] = path
    return files


def build_bundle(out: Path = BUNDLE_ZIP) -> Path:
    """Write Gradescope's autograder.zip (the same bytes for the same files: fixed dates)."""
    files = bundle_files()
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"the bundle needs {', '.join(missing)}, which do not exist")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, path in files.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o100755 if os.access(path, os.X_OK) else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    tmp.replace(out)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description="Gradescope: build the bundle, or grade one submission.")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="write the autograder.zip to upload to Gradescope")
    build.add_argument("--out", type=Path, default=BUNDLE_ZIP, help="default: dist/gradescope/autograder.zip")
    grade = sub.add_parser("run", help="grade $AUTOGRADER_ROOT/submission -> results/results.json")
    grade.add_argument("--root", type=Path, default=Path(os.environ.get("AUTOGRADER_ROOT", "/autograder")),
                       help="Gradescope's autograder folder (default $AUTOGRADER_ROOT or /autograder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "build":
        out = build_bundle(args.out)
        print(f"Gradescope bundle -> {out} ({len(bundle_files())} files, {out.stat().st_size // 1024} KiB): "
              "upload it as the assignment's autograder (docs/instructors.md)")
    else:
        run(args.root.resolve())


if __name__ == "__main__":
    main()
