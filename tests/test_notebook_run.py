"""Executing the Week-6 notebook: the source top to bottom with papermill (smoke profile, tiny sweep),
the release as nbgrader's autograde would run it, and the visible self-checks against the solutions,
the stubs and a few typical bugs.

Everything runs under tmp_path; conftest.py points KD_CACHE_DIR and KD_CHECKPOINT_DIR outside the
checkout, and the kernels inherit them.
"""
import json
import re
import time
from pathlib import Path

import nbformat
import pytest

from kdcourse.notebook import GRADED_FUNCTIONS, PREAMBLE, cell_source
from kdcourse.paths import RELEASE_NOTEBOOK, SOLUTION_NOTEBOOK

REPO = Path(__file__).resolve().parents[1]
SOURCE, RELEASE = SOLUTION_NOTEBOOK, RELEASE_NOTEBOOK  # the solution and its generated release
# The smoke splits' first rows hold no debt_collection complaint: section 4b omits another class.
SMOKE = {"PROFILE": "smoke", "SWEEP_TEMPERATURES": [1.0, 4.0], "SWEEP_ALPHAS": [0.5],
         "SWEEP_EPOCHS": 1, "OMITTED_CLASS": "payment_problem"}
HELPERS = ("def rel_error", "class ToyClassifier", "def toy_batches")  # what the self-checks use


def grade_id(cell) -> str | None:
    return (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id")


def outputs_of(nb, kind: str):
    return [(i, out) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
            for out in c.get("outputs", []) if out["output_type"] == kind]


# ---------------------------------------------------------------- the self-checks, in process
def run_self_checks(nb: dict, replace: dict | None = None) -> dict:
    """{function: exception or None} from running each visible test cell after its graded cell.

    `replace` ({function: (old, new)}) edits a graded cell first, to plant a bug.
    """
    namespace: dict = {}
    exec(PREAMBLE + "import pytest\nfrom types import SimpleNamespace\n", namespace)
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    for cell in cells:
        if cell_source(cell).lstrip().startswith(HELPERS):
            exec(cell_source(cell), namespace)
    by_id = {grade_id(c): cell_source(c) for c in cells if grade_id(c)}
    results = {}
    for name in GRADED_FUNCTIONS:
        source = by_id[name]
        if replace and name in replace:
            old, new = replace[name]
            assert old in source, f"mutation target {old!r} not in {name}"
            source = source.replace(old, new)
        exec(source, namespace)
        try:
            exec(by_id[f"test_{name}"], namespace)
            results[name] = None
        except Exception as err:  # noqa: BLE001 (the failure is the result)
            results[name] = err
    return results


def test_visible_checks_pass_on_the_solutions():
    results = run_self_checks(json.loads(SOURCE.read_text()))
    assert results == dict.fromkeys(GRADED_FUNCTIONS), results


def test_visible_checks_fail_on_the_stubs():
    results = run_self_checks(json.loads(RELEASE.read_text()))
    for name, err in results.items():
        assert isinstance(err, NotImplementedError), f"test_{name} on the stub raised {err!r}"


BUGS = {  # a typical mistake per function, which the visible check must catch
    "tempered_softmax": ("torch.softmax(logits / temperature, dim=dim)",
                         "torch.softmax(logits, dim=dim)"),
    "distillation_loss": ('reduction="batchmean"', 'reduction="mean"'),
    "collect_teacher_logits": ("teacher.eval().to(device)", "teacher.to(device)"),
    "train_student": ("scheduler.step()", "pass"),
}


@pytest.mark.parametrize("name", list(BUGS))
def test_visible_checks_catch_a_typical_bug(name):
    results = run_self_checks(json.loads(SOURCE.read_text()), replace={name: BUGS[name]})
    assert isinstance(results[name], AssertionError), f"{BUGS[name]} went unnoticed: {results}"


# ---------------------------------------------------------------- the source, top to bottom
# One test per execution: with pytest 9, xdist's loadgroup does not keep a group on one worker, so
# a fixture shared by several tests could run the notebook twice.
@pytest.mark.slow
def test_source_runs_top_to_bottom_on_smoke(tmp_path):
    """papermill raises on the first failing cell; then we check what the run produced."""
    import papermill
    start = time.perf_counter()
    nb = papermill.execute_notebook(str(SOURCE), str(tmp_path / "distillation.ipynb"),
                                    parameters=SMOKE, kernel_name="python3", cwd=str(tmp_path),
                                    progress_bar=False)
    print(f"papermill smoke run: {time.perf_counter() - start:.0f} s")
    assert not outputs_of(nb, "error")
    stdout = "".join("".join(out["text"]) for _, out in outputs_of(nb, "stream")
                     if out["name"] == "stdout")
    assert "profile 'smoke'" in stdout
    assert re.search(r"T = 4, alpha = 0.5: val macro-F1 \d\.\d{3}", stdout), "the sweep did not run"
    figures = [i for i, c in enumerate(nb["cells"]) for out in c.get("outputs", [])
               if "image/png" in out.get("data", {})]
    assert len(figures) >= 9, f"expected every plot as an inline PNG, got {len(figures)}"
    check_demo_cells(nb, stdout, figures)
    tables = "".join("".join(out["data"].get("text/plain", ""))
                     for _, out in outputs_of(nb, "execute_result"))
    assert "retained_%" in tables and "latency_ms" in tables, "the comparison table is missing"
    # nbgrader scores a test cell 0 if it writes to stderr (warnings, progress bars, logging).
    for cell in nb["cells"]:
        if (grade_id(cell) or "").startswith("test_"):
            streams = [out for out in cell["outputs"] if out.get("name") == "stderr"]
            assert not streams, f"{grade_id(cell)} wrote to stderr: {streams}"
    assert sorted(p.name for p in SOURCE.parent.iterdir()) == ["distillation.ipynb"]


def check_demo_cells(nb, stdout: str, figures: list[int]) -> None:
    """The slider leaves its static figure, the toy and the omitted class print their numbers and
    plot, the optional out-of-fold cell either uses the set or says how to make it."""
    def cell_with(text):
        [index] = [i for i, c in enumerate(nb["cells"]) if text in cell_source(c)]
        return index
    assert cell_with("demo_plots.temperature_explorer(") in figures, "the slider left no static figure"
    assert cell_with("toy_result = run_toy(") in figures and cell_with("plot_omitted_class(") in figures
    for name in ("hard", "distilled"):
        assert re.search(rf"{name} student: accuracy 0\.\d{{3}}, mean KL to the teacher", stdout)
        assert re.search(rf"{name} student: recall \d\.\d\d, mean probability", stdout), "section 4b"
    assert "transfer set without payment_problem" in stdout
    assert ("skipped, no usable out-of-fold soft labels" in stdout and 'ARGS="--folds 3"' in stdout) or \
        "out-of-fold train soft labels:" in stdout


# ---------------------------------------------------------------- the release, as autograde runs it
@pytest.mark.slow
def test_release_fails_its_tests_and_stops_experiments_early(tmp_path, monkeypatch):
    """Every cell of the release, errors allowed (as nbgrader executes), on the smoke profile: the
    test cells fail with NotImplementedError, and experiments stop at once with a short message."""
    from nbclient import NotebookClient
    nb = nbformat.read(RELEASE, as_version=4)
    monkeypatch.setenv("KD_PROFILE", "smoke")
    start = time.perf_counter()
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    seconds = time.perf_counter() - start
    for cell in nb.cells:
        if (grade_id(cell) or "").startswith("test_"):
            errors = [out["ename"] for out in cell.outputs if out.output_type == "error"]
            assert errors == ["NotImplementedError"], f"{grade_id(cell)}: {errors}"
    messages = [out["evalue"] for cell in nb.cells for out in cell.get("outputs", [])
                if out.output_type == "error" and out["ename"] == "RuntimeError"]
    assert messages[0] == "implement tempered_softmax (Part A) first: this cell needs it"
    assert {f"implement {name} ({part}) first: this cell needs it" for name, part in
            [("distillation_loss", "Part B"), ("collect_teacher_logits", "Part C"),
             ("train_student", "Part D")]} <= set(messages)
    assert seconds < 120, f"the stubbed release took {seconds:.0f} s: is something training?"
