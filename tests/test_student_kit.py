"""The student kit (`make student-kit`): nothing of the solutions or the hidden suites is in it, it
runs the release notebook from a copy of itself, and its Jupyter config hides the instructor tools.

Every kit is built under tmp_path; the checkout is only read.
"""
import ast
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder import ITEMS
from autograder import student_kit
from kdcourse.notebook import cell_source, read_notebook

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "solutions" / "week6_distillation" / "distillation.ipynb"
RELEASE = REPO / "assignments" / "week6_distillation" / "distillation.ipynb"
HIDDEN_SUITES = sorted((REPO / "autograder").glob("test_*.py"))
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
# Solution lines that are also ordinary statements of kdcourse's own code (a batching example in
# data.py, MasterWeights' usage in perf/master_weights.py): found alone, they reveal nothing.
GENERIC_LINES = {"for batch in loader:", "optimizer.step()"}
# Likewise a line of the suites' reference loop that the toy teacher's Adam fit (toy.py) uses.
GENERIC_REFERENCE_LINES = {"optimizer.zero_grad()"}


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    return student_kit.build_kit(tmp_path_factory.mktemp("dist"))


def is_trivial(line: str) -> bool:
    """Blank or punctuation only: such a line proves nothing when found."""
    return not any(ch.isalnum() for ch in line)


def solution_lines() -> set[str]:
    """Every line between the solution markers of the source's solution cells (code and the
    written questions' model answers), except lines the release also holds and trivial ones."""
    release_text = "\n".join(cell_source(c) for c in read_notebook(RELEASE)["cells"])
    lines = set()
    for cell in read_notebook(SOURCE)["cells"]:
        if not ((cell.get("metadata") or {}).get("nbgrader") or {}).get("solution"):
            continue
        inside = False
        for line in cell_source(cell).splitlines():
            if line.strip() in (BEGIN, END):
                inside = line.strip() == BEGIN
            elif inside and not is_trivial(line) and line.strip() not in release_text:
                lines.add(line.strip())
    return lines


def suite_functions() -> dict[str, list[str]]:
    """{name: body lines} of every top-level helper of the hidden suites (the references, the
    case builders and the mistake diagnoses), and of the grader's loss in grader_loss.py."""
    found = {}
    for path in HIDDEN_SUITES + [REPO / "autograder" / "grader_loss.py"]:
        text = path.read_text()
        for node in ast.parse(text).body:
            if not isinstance(node, ast.FunctionDef) or node.name.startswith("test_"):
                continue
            body = ast.get_source_segment(text, node).splitlines()[1:]
            found[node.name] = [line.strip() for line in body if not is_trivial(line)]
    return found


def kit_texts(kit) -> dict[str, str]:
    """{name: text} of every file of the kit folder and every entry of its zip (binary files are
    decoded leniently: a solution line would still show as text)."""
    texts = {name: (kit.folder / name).read_bytes().decode("utf-8", "replace") for name in kit.files}
    with zipfile.ZipFile(kit.zip_path) as archive:
        texts |= {f"zip:{name}": archive.read(name).decode("utf-8", "replace") for name in archive.namelist()}
    return texts


def test_kit_holds_the_release_notebook_and_what_it_needs(kit):
    files = set(kit.files)
    assert (kit.folder / "distillation.ipynb").read_bytes() == RELEASE.read_bytes()
    assert {"README.md", "requirements.txt", "environment.yml", "configs/profiles.toml",
            "data/README.md", "data/cfpb/labels.json", "data/cfpb/train.parquet",
            "data/cfpb/validation.parquet", "data/cfpb/test.parquet"} <= files
    # What the notebook imports is there; instructor-only modules are not.
    assert {"kdcourse.data", "kdcourse.teacher", "kdcourse.notebook", "kdcourse.paths"} <= set(kit.modules)
    assert not {"kdcourse.distributed", "kdcourse.oof_train", "kdcourse.data_build"} & set(kit.modules)
    # Of the TA tools, only the kd_varlen attention that models.resolve_attention can register.
    assert {m for m in kit.modules if m.startswith("kdcourse.perf.")} == {"kdcourse.perf.attention"}
    assert not [f for f in files if f.startswith(("solutions/", "autograder/", "data/raw/", "tests/"))]
    with zipfile.ZipFile(kit.zip_path) as archive:
        assert sorted(n.removeprefix(student_kit.ZIP_ROOT + "/") for n in archive.namelist()) == list(kit.files)


def test_kit_leaks_no_solution_line_hidden_suite_or_model_answer(kit):
    lines = solution_lines()
    assert len(lines) > 40, f"only {len(lines)} solution lines found: did the markers change?"
    assert GENERIC_LINES <= lines, "a generic line is no longer a solution line: drop it above"
    lines -= GENERIC_LINES
    texts = kit_texts(kit)
    leaks = [(name, line) for line in sorted(lines) for name, text in texts.items() if line in text]
    assert not leaks, f"solution lines in the kit: {leaks[:5]}"

    suites = [path.name for path in HIDDEN_SUITES]
    assert suites == sorted(f"test_{item}.py" for item in ITEMS)
    assert not [(name, s) for s in suites + ["cases.py", "judge.py", "grader_loss.py"]
                for name, text in texts.items()
                if s in text or name.endswith("/" + s)]
    functions = suite_functions()
    assert {"reference", "reference_train", "make_distillation_loss"} <= set(functions)
    assert not [(n, name) for n in functions for name, text in texts.items() if f"def {n}(" in text]
    assert not [name for name, text in texts.items() if "make_distillation_loss" in text]
    # The references' bodies (the lines the release does not hold too).
    release_text = RELEASE.read_text()
    body = {line for n in ("reference", "reference_train", "_reference_train", "soft_loss",
                           "make_distillation_loss") for line in functions[n]}
    body = {line for line in body if json.dumps(line)[1:-1] not in release_text and len(line) > 20
            and line not in GENERIC_REFERENCE_LINES}
    assert not [(name, line) for line in body for name, text in texts.items() if line in text]


def test_kit_runs_the_release_notebook_up_to_the_first_stub(kit, tmp_path, monkeypatch):
    """A copy of the kit elsewhere, the smoke profile: the release runs until the first experiment
    that needs a graded function stops with "implement ... first" (no ImportError, no missing
    file), and kdcourse, its data and profiles came from the copy."""
    from nbclient import NotebookClient
    copy = tmp_path / "kit-copy"
    shutil.copytree(kit.folder, copy)
    for name in ("KD_DATA_DIR", "KD_PROFILES", "PYTHONPATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KD_PROFILE", "smoke")
    nb = nbformat.read(copy / "distillation.ipynb", as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(copy)}})
    stop, errors = None, []
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            client.execute_cell(cell, index)
            for out in cell.outputs:
                if out.output_type == "error":
                    errors.append((index, out["ename"], out["evalue"]))
            if errors and errors[-1][1] == "RuntimeError":
                stop = errors.pop()
                break
        probe = nbformat.v4.new_code_cell("import kdcourse, kdcourse.paths as p\n"
                                          "print(kdcourse.__file__, p.DATA_DIR, p.PROFILES_FILE, sep='\\n')")
        nb.cells.append(probe)
        client.execute_cell(probe, len(nb.cells) - 1)
    assert stop is not None, f"the notebook never stopped at an 'implement ... first'; errors: {errors}"
    assert stop[2] == "implement tempered_softmax (Part A) first: this cell needs it", stop
    # Before it, only the visible test cells of the stubs failed, as they must.
    assert {e[1] for e in errors} <= {"NotImplementedError"}, errors
    printed = "".join(out.get("text", "") for out in probe.outputs).split()
    assert len(printed) == 3, probe.outputs
    assert all(Path(p).resolve().is_relative_to(copy.resolve()) for p in printed), printed


def test_kit_jupyter_config_keeps_student_tools_only(kit):
    """JupyterLab and the server, started with JUPYTER_CONFIG_DIR=.jupyter as the kit's README
    says: formgrader, create-assignment and course-list are off; validate and assignments on."""
    probe = ("import json, os\n"
             "from jupyter_core.paths import jupyter_path\n"
             "from jupyter_server.serverapp import ServerApp\n"
             "from jupyterlab_server.config import get_page_config\n"
             "app = ServerApp(); app.load_config_file(); app.find_server_extensions()\n"
             "page = get_page_config([os.path.join(p, 'labextensions') for p in jupyter_path()])\n"
             "print(json.dumps({'server': app.jpserver_extensions,\n"
             "                  'lab_disabled': sorted(page.get('disabledExtensions', [])),\n"
             "                  'lab_locked': sorted(page.get('lockedExtensions', []))}))\n")
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(kit.folder / ".jupyter"))
    done = subprocess.run([sys.executable, "-c", probe], cwd=kit.folder, env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    state = json.loads(done.stdout.strip().splitlines()[-1])
    server = {k: v for k, v in state["server"].items() if k.startswith("nbgrader")}
    assert server == {"nbgrader.server_extensions.formgrader": False,
                      "nbgrader.server_extensions.course_list": False,
                      "nbgrader.server_extensions.validate_assignment": True,
                      "nbgrader.server_extensions.assignment_list": True}
    assert state["lab_disabled"] == state["lab_locked"] == sorted(student_kit.INSTRUCTOR_LAB_EXTENSIONS)
    # Those names are the installed nbgrader's plugin ids (a rename would silently disable nothing).
    lab = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "@jupyter" / "nbgrader"
    bundle = "".join(p.read_text(errors="replace") for p in (lab / "static").glob("*.js"))
    for plugin in student_kit.INSTRUCTOR_LAB_EXTENSIONS + ["@jupyter/nbgrader:validate-assignment"]:
        assert f'"{plugin}"' in bundle, f"{plugin} is not a plugin of the installed nbgrader"


def test_import_closure_follows_kdcourse_imports(tmp_path):
    """A module the notebook reaches only through another module's lazy import is picked up."""
    package = tmp_path / "src" / "kdcourse"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "front.py").write_text("def f():\n    from . import lazy\n")
    (package / "lazy.py").write_text("from kdcourse.deep import x\n")
    (package / "deep.py").write_text("x = 1\n")
    (package / "unused.py").write_text("")
    nb = tmp_path / "nb.ipynb"
    nb.write_text(json.dumps({"cells": [{"cell_type": "code", "metadata": {}, "outputs": [],
                                         "source": "%matplotlib inline\nfrom kdcourse.front import f\n"}]}))
    modules = student_kit.package_closure(student_kit.notebook_imports(nb), tmp_path / "src")
    assert sorted(modules) == ["kdcourse", "kdcourse.deep", "kdcourse.front", "kdcourse.lazy"]


def test_build_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "student").mkdir()
    (tmp_path / "student" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="is not a student kit"):
        student_kit.build_kit(tmp_path)
    assert (tmp_path / "student" / "notes.txt").read_text() == "mine"
