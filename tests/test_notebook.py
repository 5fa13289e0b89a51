"""The Week-6 notebook: its structure, the release's sync with the source, and what the release hides.

Fast, static checks here; the executions (papermill on the source, the release under nbclient) are in
`test_notebook_run.py`. Nothing here writes into the checkout: releases are generated under tmp_path.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kdcourse.notebook import (GRADED_FUNCTIONS, GRADED_POINTS, PARTS, cell_source, is_stub, load_graded_functions,
                               require_implemented)
from kdcourse.paths import RELEASE_NOTEBOOK, SOLUTION_NOTEBOOK

REPO = Path(__file__).resolve().parents[1]
SOURCE, RELEASE = SOLUTION_NOTEBOOK, RELEASE_NOTEBOOK  # the solution and its generated release
TEST_POINTS = {f"test_{name}": points for name, points in GRADED_POINTS.items()}


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def nbgrader_meta(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader") or {}


def by_grade_id(nb: dict) -> dict:
    return {nbgrader_meta(c)["grade_id"]: c for c in nb["cells"] if nbgrader_meta(c).get("grade_id")}


def normalised_cells(nb: dict) -> list[dict]:
    """What must agree between two releases: type, source, nbgrader metadata and tags of each cell."""
    return [{"type": c["cell_type"], "source": cell_source(c).rstrip(),
             "nbgrader": nbgrader_meta(c), "tags": c.get("metadata", {}).get("tags", [])}
            for c in nb["cells"]]


def solution_lines(nb: dict) -> list[str]:
    """Distinctive lines between BEGIN/END SOLUTION in the source (code and model answers)."""
    lines = []
    for cell in nb["cells"]:
        match = re.search(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", cell_source(cell), re.S)
        if match:
            lines += [line.strip() for line in match.group(1).splitlines() if len(line.strip()) > 25]
    return lines


def nbgrader_env() -> dict:
    # nbgrader runs `alembic` as a subprocess: the venv's bin folder must be on PATH.
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


@pytest.fixture(scope="module")
def source():
    return load(SOURCE)


@pytest.fixture(scope="module")
def release():
    return load(RELEASE)


# ---------------------------------------------------------------- structure of the source
def test_solution_folder_holds_only_the_notebook():
    """nbgrader copies every file of solutions/week6_distillation/ into the release."""
    files = sorted(p.name for p in SOURCE.parent.iterdir() if p.name != ".ipynb_checkpoints")
    assert files == ["distillation.ipynb"], f"only the notebook may be there, found {files}"


@pytest.mark.parametrize("path", [SOURCE, RELEASE], ids=["source", "release"])
def test_committed_notebooks_carry_no_outputs(path):
    """One source of truth, clean diffs: no outputs, no execution counts."""
    nb = load(path)
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; run `make release` to clear them"


def test_graded_cells_follow_the_contract(source):
    """Each function: a solution cell named after it, then its test cell with the contract's points."""
    cells = source["cells"]
    ids = [nbgrader_meta(c).get("grade_id") for c in cells]
    for name in GRADED_FUNCTIONS:
        cell = cells[ids.index(name)]
        meta = nbgrader_meta(cell)
        assert meta["solution"] and not meta["grade"], f"{name}: must be an ungraded solution cell"
        assert cell_source(cell).lstrip().startswith(f"def {name}("), f"{name}: one function per cell"
        assert '"""' in cell_source(cell).split("### BEGIN SOLUTION")[0], f"{name}: docstring first"
        test = cells[ids.index(name) + 1]
        test_meta = nbgrader_meta(test)
        assert test_meta.get("grade_id") == f"test_{name}", f"test_{name} must follow {name}"
        assert test_meta["grade"] and test_meta["locked"] and not test_meta["solution"]
        assert test_meta["points"] == TEST_POINTS[f"test_{name}"]


def test_written_answers_are_manually_graded(source):
    answers = [nbgrader_meta(c) for c in source["cells"]
               if c["cell_type"] == "markdown" and nbgrader_meta(c).get("grade")]
    assert len(answers) == 5, f"expected 5 written questions, found {len(answers)}"
    assert all(m["solution"] and m["points"] == 5 for m in answers)


def test_parameters_cell(source):
    """papermill's `parameters` cell sets the profile (cpu by default) and the sweep sizes."""
    tagged = [cell_source(c) for c in source["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1, f"expected one cell tagged 'parameters', found {len(tagged)}"
    names = dict(re.findall(r"^(\w+) = (.+?)(?:\s+#.*)?$", tagged[0], re.M))
    for name in ("PROFILE", "SEED", "MAX_TRAIN_SAMPLES", "SWEEP_TEMPERATURES", "SWEEP_ALPHAS"):
        assert name in names, f"parameters cell lacks {name}"
    assert '"cpu"' in names["PROFILE"]


def test_code_cells_stay_short(source):
    """Thin notebook: a cell does one thing; graded cells may be longer (docstring + solution)."""
    long = [(i, len(cell_source(c).splitlines())) for i, c in enumerate(source["cells"])
            if c["cell_type"] == "code" and not nbgrader_meta(c)
            and len(cell_source(c).splitlines()) > 20]
    assert not long, f"(cell, lines) over 20 lines: {long}"


def test_graded_cells_load_with_the_preamble_only():
    """The reference pipeline loads the four functions from the source with nothing else."""
    graded = load_graded_functions(SOURCE)
    import torch
    logits = torch.tensor([[1000.0, -1000.0, 0.0]])
    assert torch.isfinite(graded.tempered_softmax(logits, 0.5)).all()
    loss = graded.distillation_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 1]),
                                    temperature=2.0, alpha=1.0)
    assert float(loss) == pytest.approx(0.0, abs=1e-7)
    assert not any(is_stub(getattr(graded, name)) for name in GRADED_FUNCTIONS)


# ---------------------------------------------------------------- the release
def test_release_stubs_every_function(release):
    graded = load_graded_functions(RELEASE)
    for name in GRADED_FUNCTIONS:
        assert is_stub(getattr(graded, name)), f"{name} is not nbgrader's stub in the release"
        with pytest.raises(RuntimeError, match=f"implement {name} \\({PARTS[name]}\\) first"):
            require_implemented(getattr(graded, name))
    solution_cells = [cell_source(c) for c in release["cells"] if nbgrader_meta(c).get("solution")]
    assert all("YOUR" in src for src in solution_cells)


def test_release_leaks_no_solution(source, release):
    text = json.dumps(release)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "BEGIN MARK SCHEME"):
        assert marker not in text, f"marker {marker!r} leaked into the release"
    body = "\n".join(cell_source(c) for c in release["cells"])
    shared = {line.strip() for c in source["cells"] if not nbgrader_meta(c).get("solution")
              for line in cell_source(c).splitlines()}  # e.g. inference_mode in an experiment
    leaked = [line for line in solution_lines(source) if line in body and line not in shared]
    assert not leaked, f"solution lines in the release: {leaked[:3]}"


def test_no_hidden_test_code_in_the_release(release):
    """The hidden suites live in autograder/; none of their code may reach students."""
    body = "\n".join(cell_source(c) for c in release["cells"])
    suites = sorted((REPO / "autograder").glob("test_*.py"))
    lines = {line.strip() for suite in suites for line in suite.read_text().splitlines()
             if len(line.strip()) > 40 and not line.strip().startswith(("#", '"""', "import", "from"))}
    assert not [line for line in lines if line in body]


def test_release_is_in_sync_with_the_source(tmp_path):
    """`make release` output equals the committed release (generated in a temporary course root)."""
    course = tmp_path / "course"
    shutil.copytree(SOURCE.parent, course / "solutions" / "week6_distillation")
    shutil.copy(REPO / "nbgrader_config.py", course / "nbgrader_config.py")
    result = subprocess.run(
        [sys.executable, "-m", "nbgrader", "generate_assignment", "week6_distillation", "--force",
         f"--CourseDirectory.db_url=sqlite:///{tmp_path / 'release.db'}"],
        cwd=course, env=nbgrader_env(), capture_output=True, text=True, timeout=300)
    fresh_path = course / "assignments" / "week6_distillation" / "distillation.ipynb"
    assert result.returncode == 0 and fresh_path.exists(), result.stderr[-3000:]
    released = sorted(p.name for p in fresh_path.parent.iterdir())
    assert released == ["distillation.ipynb"], f"the release would ship {released}"
    fresh, committed = normalised_cells(load(fresh_path)), normalised_cells(load(RELEASE))
    assert len(fresh) == len(committed), "cell count differs: run `make release` and commit"
    for i, (a, b) in enumerate(zip(fresh, committed)):
        assert a == b, f"cell {i} differs from a fresh release: run `make release` and commit"


def test_release_holds_the_notebook_contract():
    """The course's contract, checked here (the project stands alone): in the release, each graded
    function is an nbgrader solution cell named after it, stubbed with NotImplementedError and
    followed by its test cell; no solution or hidden-test marker and no output remains."""
    release = load(RELEASE)
    cells = {}
    for cell in release["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade_id"):
            cells[meta["grade_id"]] = (meta, cell_source(cell))
    for name in GRADED_FUNCTIONS:
        meta, source = cells.get(name, ({}, ""))
        assert meta.get("solution"), f"release: no solution cell with grade_id {name!r}"
        assert f"def {name}(" in source and "NotImplementedError" in source, f"{name} is not a stub"
        assert f"test_{name}" in cells, f"release: no test cell test_{name}"
    text = json.dumps(release)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS"):
        assert marker not in text, f"release: marker {marker!r} leaked"
    assert not any(c.get("outputs") for c in release["cells"] if c["cell_type"] == "code")
