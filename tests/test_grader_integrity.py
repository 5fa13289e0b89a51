"""Nothing the grader holds can help a submission: cells that look for a correct answer in the
worker's memory (sys.modules, gc, frames, builtins) or on disk (the worker's files, another
student's notebook left in /tmp or a home folder) score 0 on the item they borrow for, with and
without bubblewrap; and one item's cell cannot break another item."""
import os
import secrets
import shutil
import sys
from pathlib import Path

import pytest

from autograder import MAX_POINTS
from autograder.grade import grade_notebook

import mutants                  # tests/submissions, on pytest's pythonpath (pyproject.toml)

REPO = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("autograder")]
CASE_SECONDS = 5

# Runs when the cell loads (the load limit is a minute; a case has seconds). _from_memory and
# _from_files are the two ways to borrow; every cell of BORROWERS defines its function through them.
BORROW = '''import builtins, gc, json, os, sys
def _own(fn):
    return getattr(getattr(fn, "__code__", None), "co_filename", "").startswith("<cell")
def _pick(value, name):
    if callable(value) and name in getattr(value, "__name__", "") and not _own(value):
        if getattr(value, "__name__", "").startswith("make_"):    # a factory of the function
            try:
                value = value()
            except Exception:
                return None
        return value if callable(value) else None
    return None
def _from_memory(name):
    """A callable named like `name` in modules, builtins, gc or the frames above this one."""
    places = [vars(m) for m in list(sys.modules.values()) if m is not None]
    places.append(vars(builtins))
    frame = sys._getframe()
    while frame is not None:
        places += [frame.f_locals, frame.f_globals]
        frame = frame.f_back
    for space in places:
        for value in list(space.values()):
            found = _pick(value, name)
            if found:
                return found
    for value in gc.get_objects():
        found = _pick(value, name)
        if found:
            return found
    return None
def _sources(roots, depth=4, limit=4000):
    for root in roots:
        base = root.count(os.sep)
        for folder, subdirs, files in os.walk(root):
            subdirs[:] = [] if folder.count(os.sep) - base >= depth else subdirs
            for file in files:
                limit -= 1
                if limit < 0:
                    return
                if file.endswith((".ipynb", ".py")):
                    yield os.path.join(folder, file)
def _from_files(name, roots=None):
    """Exec the first cell or module on disk that defines `name`; return that function."""
    if roots is None:
        here = os.path.dirname(getattr(sys.modules.get("__main__"), "__file__", "") or "/nonexistent")
        roots = [here, "/tmp", "/home", "/root", os.path.expanduser("~"),
                 *[v for v in os.environ.values() if v.startswith("/") and os.path.isdir(v)]]
    for path in _sources(roots):
        try:
            text = open(path).read()
        except Exception:
            continue
        if f"def {name}(" not in text and f"def make_{name}(" not in text:
            continue
        chunks = [text]
        if path.endswith(".ipynb"):
            try:
                chunks = ["".join(c["source"]) for c in json.loads(text)["cells"]
                          if c["cell_type"] == "code"]
            except Exception:
                continue
        for chunk in chunks:
            if "NotImplementedError" in chunk or "_from_files" in chunk:
                continue                      # a release stub, or a borrower like this one
            space = dict(globals())
            try:
                exec(chunk, space)
            except Exception:
                continue
            for value in space.values():
                found = _pick(value, name)
                if found:
                    return found
    return None
'''


def borrower(name: str, signature: str, call: str, checks: str = "") -> str:
    """A cell that defines `name` by borrowing it (looked up once, when the cell loads)."""
    found = f"_found_{name}"             # one global per cell: the cells share a namespace
    return (BORROW + f"{found} = _from_memory({name!r}) or _from_files({name!r})\n"
            f"def {name}({signature}):\n{checks}"
            f"    if {found} is None:\n        raise LookupError('nothing to borrow')\n"
            f"    return {found}({call})\n")


LOSS_CHECKS = '''    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    if not 0 <= alpha <= 1:
        raise ValueError("alpha must be in [0, 1]")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError("shapes differ")
'''
BORROWERS = {
    "tempered_softmax": borrower("tempered_softmax", "logits, temperature=1.0, dim=-1",
                                 "logits, temperature, dim"),
    "distillation_loss": borrower(
        "distillation_loss", "student_logits, teacher_logits, labels, temperature=2.0, alpha=0.5",
        "student_logits, teacher_logits, labels, temperature, alpha", LOSS_CHECKS),
    "collect_teacher_logits": borrower("collect_teacher_logits", 'teacher, loader, device="cpu"',
                                       "teacher, loader, device"),
    "train_student": borrower(
        "train_student", "student, loader, optimizer, *, temperature, alpha, epochs=1, "
        "scheduler=None, device='cpu'", "student, loader, optimizer, temperature=temperature, "
        "alpha=alpha, epochs=epochs, scheduler=scheduler, device=device"),
}


@pytest.fixture
def planted():
    """Another student's correct notebook, left in /tmp and in the grader's home folder (where an
    earlier grading run or a careless instructor may leave one)."""
    tag = secrets.token_hex(4)
    folders = [Path("/tmp") / f"kdgrade-planted-{tag}", Path.home() / f"kdgrade-planted-{tag}"]
    for folder in folders:
        mutants.write(folder / "other_student" / "distillation.ipynb", mutants.SOURCES)
    yield folders
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


CONTROL = """
import sys, torch
sys.path.insert(0, sys.argv[1])
import grader_loss                       # what train_student's grading process holds
from kdcourse.notebook import PREAMBLE
from test_grader_integrity_borrow import BORROW
space = {"__name__": "control"}
exec(PREAMBLE + BORROW, space)           # as in a grading process: torch, F, ...
loss = space["_from_memory"]("distillation_loss")
logits, labels = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
expected = grader_loss.make_distillation_loss()(logits, logits + 1, labels, 2.0, 0.5)
assert torch.allclose(loss(logits, logits + 1, labels, 2.0, 0.5), expected)
for item in ("tempered_softmax", "distillation_loss", "collect_teacher_logits", "train_student"):
    found = space["_from_files"](item, roots=sys.argv[2:])
    assert found is not None and found.__name__ == item, item
softmax = space["_from_files"]("tempered_softmax", roots=sys.argv[2:])
assert torch.allclose(softmax(logits, 2.0), torch.softmax(logits / 2.0, -1))
print("borrowed")
"""


def test_the_borrowers_work_where_nothing_stops_them(planted, tmp_path):
    """Control, in a fresh Python with the grader's loss imported and no sandbox: the same cells
    find that loss in memory and the planted notebook's functions on disk, and both compute the
    right answers. (A fresh process: this one holds the test suite's own mutants.)"""
    import subprocess
    (tmp_path / "test_grader_integrity_borrow.py").write_text(f"BORROW = {BORROW!r}\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", CONTROL, str(REPO / "autograder"),
                           *[str(p) for p in planted]], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0 and "borrowed" in proc.stdout, proc.stderr[-3000:]


@pytest.mark.parametrize("bwrap", [True, False], ids=["bwrap", "no-bwrap"])
def test_borrowing_from_memory_or_disk_scores_zero(tmp_path, monkeypatch, planted, bwrap):
    """Every item's cell borrows; every item scores 0, inside bubblewrap and without it (the
    audit hook's allow-list), while the planted notebook and the grader's files are all there."""
    if not bwrap:
        monkeypatch.setenv("KDGRADE_NO_BWRAP", "1")
    result = grade_notebook(mutants.write(tmp_path / "nb.ipynb", BORROWERS),
                            case_seconds=CASE_SECONDS).to_json()
    if bwrap:
        from autograder.isolation import bwrap_works
        assert result["sandbox"] is bwrap_works()
    else:
        assert result["sandbox"] is False
    assert {i: r["score"] for i, r in result["items"].items()} == dict.fromkeys(MAX_POINTS, 0.0)
    messages = [t["message"] for r in result["items"].values() for t in r["tests"]]
    assert any("nothing to borrow" in m for m in messages), messages[:5]
    assert all(p.exists() for p in planted)


BREAKS_OTHERS = '''import torch, torch.nn.functional
torch.softmax = lambda *args, **kwargs: torch.zeros(1)
torch.log_softmax = lambda *args, **kwargs: torch.zeros(1)
torch.nn.functional.log_softmax = lambda *args, **kwargs: torch.zeros(1)
torch.nn.functional.kl_div = lambda *args, **kwargs: torch.zeros(())
torch.nn.functional.cross_entropy = lambda *args, **kwargs: torch.zeros(())
'''


def test_one_items_cell_cannot_break_another_item(tmp_path):
    """A train_student cell that breaks torch's softmax, log-softmax, KL and cross-entropy for
    everyone when it loads: the three earlier items never see it, and train_student is still
    graded with the grader's own loss, bound before the cell ran. Full marks."""
    sources = dict(mutants.SOURCES, train_student=BREAKS_OTHERS + mutants.SOURCES["train_student"])
    result = grade_notebook(mutants.write(tmp_path / "nb.ipynb", sources),
                            case_seconds=CASE_SECONDS).to_json()
    assert result["total"] == 60, {i: [t for t in r["tests"] if not t["passed"]][:2]
                                   for i, r in result["items"].items()}


def test_worker_files_are_those_the_sandbox_binds():
    """The grader's loss is a worker file (bound into bubblewrap for train_student's process)
    and no longer part of cases.py, which every item's process imports."""
    from autograder import isolation
    assert "grader_loss.py" in isolation.WORKER_FILES
    assert all((REPO / "autograder" / name).exists() for name in isolation.WORKER_FILES)
    assert "kl_div" not in (REPO / "autograder" / "cases.py").read_text()
    assert all(os.path.isabs(p) for p in isolation.import_roots())


IMPORTS_THE_COURSE = '''import importlib
try:
    fit = importlib.import_module("kdcourse.distributed").fit_distillation
    problem = None
except BaseException as err:
    fit, problem = None, f"{type(err).__name__}: {err}"
def train_student(student, loader, optimizer, *, temperature, alpha, epochs=1, scheduler=None,
                  device="cpu"):
    if fit is None:
        raise LookupError(f"no course package: {problem}")
    return fit(student, loader, optimizer, temperature=temperature, alpha=alpha, epochs=epochs)
'''


@pytest.mark.parametrize("bwrap", [True, False], ids=["bwrap", "no-bwrap"])
def test_the_course_package_is_out_of_reach(tmp_path, monkeypatch, bwrap):
    """kdcourse holds a full training loop (the reference run's DDP loop): a train_student cell
    that imports it gets nothing, whether or not the grading Python has kdcourse on its path."""
    import kdcourse.distributed  # noqa: F401  (control: importable here, beside the grader)
    if not bwrap:
        monkeypatch.setenv("KDGRADE_NO_BWRAP", "1")
    sources = dict(mutants.SOURCES, train_student=IMPORTS_THE_COURSE)
    result = grade_notebook(mutants.write(tmp_path / "nb.ipynb", sources),
                            case_seconds=CASE_SECONDS).to_json()
    assert result["items"]["train_student"]["score"] == 0
    assert any("no course package" in t["message"] for t in result["items"]["train_student"]["tests"])
