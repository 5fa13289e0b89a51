"""Gradescope: when students see what, the bundle, and the bundle's per-submission entry point.

    python -m autograder.gradescope build [--out_dir dist/gradescope]   # -> DIR/autograder.zip (make gradescope)
    python -m autograder.gradescope run [--root /autograder]     # what the bundle's run_autograder runs

`SubmissionResult.to_gradescope` (autograder/results.py) turns a result of `autograder.grade` into
Gradescope's format: one entry in `tests` per graded check (its share of the item's points, and
its hint as `output`), then one per marked written answer. `make grade` writes the same file per student
(OUT/gradescope/<id>/results.json), so both paths give the same scores. When students see each
entry is read from autograder/gradescope.toml (see docs/instructors.md).

On Gradescope, `run` grades the one .ipynb under $AUTOGRADER_ROOT/submission/ (whatever its name)
with `grade.grade_notebook`, the function `make grade` uses, and always writes
$AUTOGRADER_ROOT/results/results.json: bad input gets score 0 and a message, never a crash.
"""
from __future__ import annotations

import ast
import dataclasses
import fnmatch
import json
import logging
import os
import sys
import time
import tomllib
import zipfile
from pathlib import Path

from autograder import MAX_POINTS
from autograder.results import SUBMISSION_CHECKS, gradescope_json, gradescope_test
from kdcourse.cli import parse_config
from kdcourse.errors import run_cli
from kdcourse.paths import DIST_DIR

log = logging.getLogger("autograder.gradescope")
HERE = Path(__file__).resolve().parent
CONFIG = HERE / "gradescope.toml"
REPO = HERE.parent
BUNDLE_ZIP = DIST_DIR / "gradescope" / "autograder.zip"
VISIBILITIES = ("visible", "after_due_date", "after_published", "hidden")


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


def failure(message: str, execution_time: float | None = None,
            visibility: Visibility | None = None) -> dict:
    """results.json with score 0 for a submission that could not be graded at all; `message`
    says why."""
    visibility = visibility or Visibility()
    test = gradescope_test("submission", 0.0, float(sum(MAX_POINTS.values())), message,
                           visibility.submission)
    return gradescope_json(0.0, [test], message, visibility.stdout, execution_time)


def write_results(results: dict, path: Path) -> Path:
    """Replace `path` whole (Gradescope never reads half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(path)
    return path


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


def run(root: Path) -> dict:
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
        results = result.to_gradescope(visibility, time.monotonic() - start)
    except SubmissionError as err:
        results = failure(str(err), time.monotonic() - start, visibility)
    except Exception:  # noqa: BLE001  a crash would leave the student with no result at all
        log.exception("the autograder failed")
        results = failure("internal grader error: tell your instructor", time.monotonic() - start,
                          visibility)
    write_results(results, root / "results" / "results.json")
    log.info("score %s: %s", results["score"], root / "results" / "results.json")
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


@dataclasses.dataclass
class BuildConfig:
    """`build`: write the autograder.zip to upload to Gradescope."""
    out_dir: Path = dataclasses.field(default=BUNDLE_ZIP.parent, metadata={
        "help": f"folder to write {BUNDLE_ZIP.name} into (default dist/gradescope)"})


@dataclasses.dataclass
class RunConfig:
    """`run`: grade $AUTOGRADER_ROOT/submission -> results/results.json (on Gradescope)."""
    root: Path = dataclasses.field(
        default_factory=lambda: Path(os.environ.get("AUTOGRADER_ROOT", "/autograder")),
        metadata={"help": "Gradescope's autograder folder (default $AUTOGRADER_ROOT or /autograder)"})


COMMANDS = {"build": BuildConfig, "run": RunConfig}
USAGE = ("usage: python -m autograder.gradescope {build,run} [options]\n"
         "  build [--out_dir DIR]   write DIR/autograder.zip (default dist/gradescope)\n"
         "  run [--root ROOT]       grade ROOT/submission -> ROOT/results/results.json")


def _old_out_file(argv: list[str], prog: str) -> tuple[list[str], Path | None]:
    """`build --out FILE` (the zip itself), the spelling before --out_dir: (argv without it, FILE)."""
    for k, token in enumerate(argv):
        flag, eq, value = token.partition("=")
        if flag == "--out" and (eq or k + 1 < len(argv)):
            print(f"{prog}: warning: --out FILE is deprecated, use --out_dir DIR (it writes "
                  f"DIR/{BUNDLE_ZIP.name})", file=sys.stderr)
            rest = argv[:k] + argv[k + (1 if eq else 2):]
            return rest, Path(value if eq else argv[k + 1])
    return argv, None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return
    if not argv or argv[0] not in COMMANDS:
        print(f"{USAGE}\nautograder.gradescope: error: choose build or run", file=sys.stderr)
        raise SystemExit(2)
    command, prog = argv[0], f"autograder.gradescope {argv[0]}"
    rest, zip_path = _old_out_file(argv[1:], prog) if command == "build" else (argv[1:], None)
    (cfg,) = parse_config(COMMANDS[command], rest, prog=prog, description=COMMANDS[command].__doc__)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if command == "build":
        out = build_bundle(zip_path or cfg.out_dir / BUNDLE_ZIP.name)
        print(f"Gradescope bundle -> {out} ({len(bundle_files())} files, {out.stat().st_size // 1024} KiB): "
              "upload it as the assignment's autograder (docs/instructors.md)")
    else:
        run(cfg.root.resolve())


if __name__ == "__main__":
    run_cli(main)
