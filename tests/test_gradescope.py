"""The Gradescope bundle: unpacked into a tmp folder laid out like /autograder, run_autograder
writes a results.json that follows Gradescope's format and gives `make grade`'s scores; bad
uploads get 0 and a message; setup.sh installs only pinned packages, and twice is the same."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from autograder import ITEMS, MAX_POINTS
from autograder.gradescope import build_bundle
from kdcourse.paths import SOLUTION_NOTEBOOK as SOLUTION

import mutants                  # tests/submissions, on pytest's pythonpath (pyproject.toml)

REPO = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("autograder")]

# Gradescope's autograder specification (gradescope/autograder_samples, docs/specs.md).
VISIBILITIES = {"visible", "after_due_date", "after_published", "hidden"}
TOP_KEYS = {"score", "execution_time", "output", "output_format", "test_output_format",
            "test_name_format", "visibility", "stdout_visibility", "extra_data", "tests", "leaderboard"}
TEST_KEYS = {"score", "max_score", "status", "name", "name_format", "number", "output",
             "output_format", "tags", "visibility", "extra_data"}


def check_schema(results: dict) -> None:
    """results.json as Gradescope reads it: known keys and types only."""
    assert set(results) <= TOP_KEYS, set(results) - TOP_KEYS
    assert isinstance(results["score"], (int, float)) and isinstance(results["output"], str)
    assert isinstance(results.get("execution_time", 0), (int, float))
    assert results.get("stdout_visibility", "hidden") in VISIBILITIES
    assert isinstance(results["tests"], list)
    for test in results["tests"]:
        assert set(test) <= TEST_KEYS, set(test) - TEST_KEYS
        assert isinstance(test["name"], str) and isinstance(test["output"], str)
        assert isinstance(test["score"], (int, float)) and isinstance(test["max_score"], (int, float))
        assert 0 <= test["score"] <= test["max_score"], test
        assert test["visibility"] in VISIBILITIES and test.get("status", "passed") in {"passed", "failed"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("dist") / "autograder.zip")


def gradescope_root(tmp_path: Path, bundle: Path) -> Path:
    """tmp_path/autograder as Gradescope lays it out: source/ unzipped, run_autograder copied up."""
    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    subprocess.run(["unzip", "-q", str(bundle), "-d", str(root / "source")], check=True)
    shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")
    return root


def run_autograder(root: Path, python: str = sys.executable) -> dict:
    """Run it as Gradescope does (cwd /autograder), with this repo's environment, not setup.sh's."""
    env = dict(os.environ, AUTOGRADER_ROOT=str(root), KDGRADE_PYTHON=python)
    proc = subprocess.run([str(root / "run_autograder")], cwd=root, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((root / "results" / "results.json").read_text())
    check_schema(results)
    return results


def test_the_bundle_holds_the_scripts_suites_and_worker_and_no_solution(bundle):
    from autograder.isolation import WORKER_FILES
    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
        modes = {i.filename: i.external_attr >> 16 for i in zf.infolist()}
    assert {"setup.sh", "run_autograder", "requirements.txt", "autograder/gradescope.toml"} <= names
    assert {f"autograder/{name}" for name in WORKER_FILES} <= names
    assert {f"autograder/test_{item}.py" for item in ITEMS} <= names
    assert modes["run_autograder"] & 0o111 and modes["setup.sh"] & 0o111
    assert not any("solution" in name or name.endswith(".ipynb") for name in names), names
    assert build_bundle(bundle.with_name("again.zip")).read_bytes() == bundle.read_bytes()


def hostile_notebook(path: Path) -> Path:
    """Kills its worker at import (os._exit in a cell), and has its train_student cell deleted."""
    sources = dict(mutants.SOURCES, distillation_loss="import os\nos._exit(3)\n"
                   + mutants.SOURCES["distillation_loss"])
    del sources["train_student"]
    return mutants.write(path, sources)


def test_run_autograder_gives_make_grades_scores(tmp_path, bundle, subtests):
    """The solution, the release, classic mistakes and a hostile notebook with a cell deleted:
    each upload, under any name, scores what grade_notebooks gives the same file."""
    from autograder.grade import grade_notebooks
    from mutants import BUNDLES, release_notebook
    sources = dict(mutants.SOURCES)
    for item, _, old, new, _, _ in BUNDLES[0]:
        sources[item] = mutants.mutate(item, old, new)[item]
    notebooks = {"solution": SOLUTION, "release": release_notebook(tmp_path),
                 "buggy": mutants.write(tmp_path / "buggy.ipynb", sources),
                 "hostile": hostile_notebook(tmp_path / "hostile.ipynb")}
    expected = {name: r.to_json() for name, r in grade_notebooks(notebooks, jobs=2).items()}
    assert [expected[k]["total"] for k in ("solution", "release")] == [60, 0]
    assert 0 < expected["buggy"]["total"] < 60 and 0 < expected["hostile"]["total"] < 60
    for name, notebook in notebooks.items():
        with subtests.test(msg=name):
            root = gradescope_root(tmp_path / name, bundle)
            shutil.copy(notebook, root / "submission" / f"{name} (1).ipynb")
            results = run_autograder(root)
            want = expected[name]
            assert results["score"] == want["total"]
            for item in ITEMS:
                tests = [t for t in results["tests"] if t["name"].startswith(f"{item}: ")]
                assert len(tests) == len(want["items"][item]["tests"])
                assert sum(t["max_score"] for t in tests) == pytest.approx(MAX_POINTS[item], abs=1e-3)
                assert sum(t["score"] for t in tests) == pytest.approx(want["items"][item]["score"],
                                                                       abs=0.01)
                for test, check in zip(tests, want["items"][item]["tests"]):
                    assert (test["score"] > 0) == (check["passed"] and check.get("counted", True))
                    if not check["passed"]:
                        assert check["message"] in test["output"]
            if name == "hostile":   # the deleted cell and the killed worker are named
                outputs = " ".join(t["output"] for t in results["tests"])
                assert "no cell with grade_id 'train_student'" in outputs
                assert results["score"] == MAX_POINTS["tempered_softmax"] + MAX_POINTS["collect_teacher_logits"]
            visibility = {t["visibility"] for t in results["tests"]}
            assert visibility == {"visible", "after_published"}, visibility


@pytest.mark.parametrize("upload", ["none", "two", "corrupt", "not-a-notebook"])
def test_a_bad_upload_scores_zero_with_a_message(tmp_path, bundle, upload):
    root = gradescope_root(tmp_path, bundle)
    if upload == "two":
        shutil.copy(SOLUTION, root / "submission" / "a.ipynb")
        (root / "submission" / "old").mkdir()
        shutil.copy(SOLUTION, root / "submission" / "old" / "b.ipynb")
    elif upload == "corrupt":
        (root / "submission" / "distillation.ipynb").write_text('{"cells": [')
    elif upload == "not-a-notebook":
        (root / "submission" / "distillation.py").write_text("print(1)")
    results = run_autograder(root)
    assert results["score"] == 0
    message = {"none": "no notebook (.ipynb) in your upload", "not-a-notebook": "distillation.py",
               "two": "2 notebooks in your upload (a.ipynb, old/b.ipynb)",
               "corrupt": "distillation.ipynb is not a readable .ipynb"}[upload]
    assert message in results["output"], results["output"]
    assert all(t["visibility"] == "visible" for t in results["tests"] if t["score"] == 0
               and message in t["output"])


def test_a_grader_that_cannot_start_still_writes_results(tmp_path, bundle):
    root = gradescope_root(tmp_path, bundle)
    results = run_autograder(root, python="/bin/false")
    assert results["score"] == 0 and "could not start (exit status 1)" in results["output"]


STUB = """#!/bin/bash
# Records how it was called; `python -m venv DIR` makes DIR/bin/python a copy of this stub.
echo "$(basename "$0") $*" >> "$SETUP_LOG"
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; fi
exit 0
"""


def test_setup_sh_installs_only_pinned_packages_and_twice_is_once(tmp_path, bundle):
    """apt-get and Python stubbed on PATH: every pip install is a requirements.txt pin, the venv is
    made once, and a second run repeats the same installs (which pip skips)."""
    root = gradescope_root(tmp_path, bundle)
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name in ("apt-get", "python3.13", "python3.12", "python3.11", "python3"):
        (stubs / name).write_text(STUB)
        (stubs / name).chmod(0o755)
    for tool in ("bash", "grep", "chmod", "mkdir", "cp", "basename"):
        (stubs / tool).symlink_to(shutil.which(tool))
    logs = []
    for attempt in (1, 2):
        log = tmp_path / f"setup{attempt}.log"
        env = {"PATH": str(stubs), "AUTOGRADER_ROOT": str(root), "SETUP_LOG": str(log)}
        proc = subprocess.run(["bash", str(root / "source" / "setup.sh")], cwd=root / "source",
                              env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        logs.append(log.read_text().splitlines())
    assert [line for line in logs[0] if "-m venv" not in line] == logs[1]
    assert sum("-m venv" in line for line in logs[0] + logs[1]) == 1
    pins = {line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")}
    installs = [line.split(" install ", 1)[1].split() for line in logs[0] if " pip install " in line]
    assert len(installs) == 2
    for args in installs:
        named = [a for a in args if not a.startswith("-") and not a.startswith("http")]
        for arg in named:
            assert arg in pins or arg == str(root / "source" / "requirements.txt"), arg
    assert any("bubblewrap" in line for line in logs[0] if line.startswith("apt-get install"))
