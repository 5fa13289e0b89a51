"""The autograder: real solution full marks, release zero, classic mistakes caught with a hint,
hostile code contained, nbgrader and `make grade` flows end to end (all in tmp_path)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autograder import MAX_POINTS
from autograder.grade import grade_folder, grade_notebook, grade_notebooks
from kdcourse.paths import REPO_ROOT as REPO
from kdcourse.paths import SOLUTION_NOTEBOOK as SOLUTION

import mutants                  # tests/submissions, on pytest's pythonpath (pyproject.toml)
from mutants import BUNDLES, release_notebook
# One xdist worker runs these one after another: two grading sessions at once (each with hostile code
# and its own worker pool) made the folder test lose every submission after the hostile ones in CI.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("autograder")]


CASE_SECONDS = 5    # per case: correct code needs < 1 s; an infinite loop burns this twice


def failed(result, item):
    return [t for t in result["items"][item]["tests"] if not t["passed"]]


def one_student_folder(tmp_path: Path) -> Path:
    """tmp_path/subs holding alice's submission: the real solution."""
    (tmp_path / "subs" / "alice").mkdir(parents=True)
    shutil.copy(SOLUTION, tmp_path / "subs" / "alice")
    return tmp_path / "subs"


def write_submissions(subs: Path, tmp: Path) -> None:
    """Every sample submission as <id>/distillation.ipynb: the real solution (alice), a broken
    file (bob), no notebook (carol), the release, the mutant bundles, a correct variant and the
    hostile notebooks."""
    shutil.copy(SOLUTION, mutants.write(subs / "alice" / "distillation.ipynb", {}).parent)
    (subs / "bob").mkdir()
    (subs / "bob" / "distillation.ipynb").write_text("{not json")
    (subs / "carol").mkdir()
    (subs / "release").mkdir()
    shutil.copy(release_notebook(tmp), subs / "release" / "distillation.ipynb")
    for k, rows in enumerate(BUNDLES):
        sources = dict(mutants.SOURCES)
        for item, _, old, new, _, _ in rows:
            sources[item] = mutants.mutate(item, old, new)[item]
        mutants.write(subs / f"mistakes-{k}" / "distillation.ipynb", sources)
    mutants.write(subs / "manual-kl" / "distillation.ipynb",
                  dict(mutants.SOURCES, distillation_loss=mutants.MANUAL_KL))
    mutants.write(subs / "hostile-fails" / "distillation.ipynb", HOSTILE_FAILS)
    mutants.write(subs / "hostile-contained" / "distillation.ipynb", HOSTILE_CONTAINED)
    mutants.write(subs / "hostile-credit" / "distillation.ipynb", HOSTILE_CREDIT)


def check_release_scores_zero(graded):
    """The student release (every body `raise NotImplementedError()`) scores 0 on every item."""
    result = graded["grades"]["release"]
    assert all(result["items"][i]["score"] == 0 for i in MAX_POINTS), result
    assert "not implemented" in failed(result, "tempered_softmax")[0]["message"]


def check_classic_mistakes_lose_points_with_a_hint(k, graded):
    """Each mutant loses points on its item only, on the expected check, with a teaching hint."""
    rows, result = BUNDLES[k], graded["grades"][f"mistakes-{k}"]
    mutated = {r[0] for r in rows}
    for item, name, _, _, check, phrase in rows:
        fails = failed(result, item)
        assert result["items"][item]["score"] < MAX_POINTS[item], f"{name} got full marks"
        hits = [t for t in fails if t["name"].startswith(check)]
        assert hits, f"{name}: expected {check} to fail, failed: {[t['name'] for t in fails]}"
        assert any(phrase in t["message"] for t in hits), (name, [t["message"] for t in hits])
    for item in set(MAX_POINTS) - mutated:
        assert result["items"][item]["score"] == MAX_POINTS[item], (item, failed(result, item))


def check_correct_solution_written_differently_gets_full_marks(graded):
    """Manual KL with sum / batch and nll_loss is as good as F.kl_div(batchmean)."""
    result = graded["grades"]["manual-kl"]
    assert result["total"] == 60, failed(result, "distillation_loss")


HOSTILE_FAILS = {   # each item's body misbehaves: none may pass, none may stop the others
    "tempered_softmax": '''import os
def tempered_softmax(logits, temperature=1.0, dim=-1):
    print('{"event": "case", "id": "tempered_softmax/T=0.5", "obs": {}}')
    os._exit(0)
''',
    "distillation_loss": '''import torch.testing, builtins
torch.testing.assert_close = lambda *a, **k: None
torch.allclose = lambda *a, **k: True
builtins.AssertionError = type("Never", (Exception,), {})
def distillation_loss(student_logits, teacher_logits, labels, temperature=2.0, alpha=0.5):
    return torch.tensor(123.0)
''',
    "collect_teacher_logits": '''def collect_teacher_logits(teacher, loader, device="cpu"):
    while True:
        pass
''',
    "train_student": '''def train_student(student, loader, optimizer, **kwargs):
    blob = bytearray(64 << 30)
    return [0.0]
''',
}

HOSTILE_CREDIT = {   # property checks without the work, or an exception raised by the grader
    "tempered_softmax": '''class Sneaky(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        raise ValueError("raised while the grader reads the output, not by the call")
def tempered_softmax(logits, temperature=1.0, dim=-1):
    if temperature <= 0:
        return torch.zeros(1).as_subclass(Sneaky)
    return torch.softmax(logits / temperature, dim=dim)
''',
    "distillation_loss": '''def distillation_loss(student_logits, teacher_logits, labels, temperature=2.0, alpha=0.5):
    raise ValueError("always")
''',
    "collect_teacher_logits": '''def collect_teacher_logits(teacher, loader, device="cpu"):
    return torch.zeros(1)
''',
    "train_student": '''def train_student(student, loader, optimizer, **kwargs):
    return [0.0] * (3 * kwargs.get("epochs", 1))
''',
}

REPO_TARGETS = ["README.md", "autograder/test_tempered_softmax.py", "nbgrader_config.py"]
HOSTILE_CONTAINED = {   # misbehaviour around correct code: correct items keep full marks
    "tempered_softmax": f'''import os, sys
for _target in {[str(REPO / t) for t in REPO_TARGETS]!r}:
    try:
        open(_target, "a").write("HACKED")
    except Exception:
        pass
    try:
        os.remove(_target)
    except Exception:
        pass
    try:
        leaked = open(_target).read()
    except Exception:
        pass
try:
    open({str(REPO / "HACKED")!r}, "w").write("x")
except Exception:
    pass
''' + mutants.SOURCES["tempered_softmax"],
    "distillation_loss": "import os\nos._exit(3)\n" + mutants.SOURCES["distillation_loss"],
    "collect_teacher_logits": '''import subprocess, socket
try:
    subprocess.run(["touch", "/tmp/kdgrade-pwned"])
except Exception:
    pass
try:
    socket.create_connection(("127.0.0.1", 22), timeout=1)
except Exception:
    pass
''' + mutants.SOURCES["collect_teacher_logits"],
    "train_student": '''import atexit, sys
atexit.register(lambda: print("ALL TESTS PASSED"))
print("x" * 5_000_000)
sys.stderr.write("warning: harmless\\n")
''' + mutants.SOURCES["train_student"],
}


def fingerprint():
    """Exists and untouched by the hostile code (others may edit README meanwhile)."""
    return {t: (REPO / t).exists() and b"HACKED" not in (REPO / t).read_bytes() for t in REPO_TARGETS}


def check_property_checks_need_values(graded):
    """An error raised while the grader reads the output is not the student's ValueError, and a
    constant or always-raising body earns no property points (they count once values do)."""
    result = graded["grades"]["hostile-credit"]
    fails = failed(result, "tempered_softmax")
    assert any(t["name"].startswith("rejects_nonpositive_temperature") for t in fails), fails
    for item in ("distillation_loss", "collect_teacher_logits", "train_student"):
        assert result["items"][item]["score"] == 0, (item, result["items"][item])
        assert any(t.get("counted") is False for t in result["items"][item]["tests"]), item


def check_hostile_bodies_never_pass(graded):
    """os._exit, fake output, monkeypatched torch/builtins, infinite loop, memory bomb: all zero."""
    result = graded["grades"]["hostile-fails"]
    assert result["total"] == 0, {i: result["items"][i]["score"] for i in MAX_POINTS}
    assert any("time limit" in t["message"] for t in failed(result, "collect_teacher_logits"))


def check_contained(result, before):
    """The checkout is unchanged, nothing ran outside, every correct item keeps its marks."""
    assert fingerprint() == before and not (REPO / "HACKED").exists()
    assert not Path("/tmp/kdgrade-pwned").exists()
    assert result["items"]["distillation_loss"]["score"] == 0
    for item in ("tempered_softmax", "collect_teacher_logits", "train_student"):
        assert result["items"][item]["score"] == MAX_POINTS[item], (item, failed(result, item))


def check_hostile_cells_are_contained(graded):
    """Writes, deletes, reads of the course, subprocess, socket, exit at import, output floods:
    all contained, in bubblewrap where it works here."""
    from autograder.isolation import bwrap_works
    result = graded["grades"]["hostile-contained"]
    assert result["sandbox"] is bwrap_works()
    check_contained(result, graded["before"])


def test_hostile_cells_are_contained_without_bwrap(tmp_path, monkeypatch):
    """The same notebook with rlimits and audit hooks only (where bubblewrap is missing)."""
    monkeypatch.setenv("KDGRADE_NO_BWRAP", "1")
    before = fingerprint()
    result = grade_notebook(mutants.write(tmp_path / "nb.ipynb", HOSTILE_CONTAINED),
                            case_seconds=CASE_SECONDS).to_json()
    assert result["sandbox"] is False
    check_contained(result, before)


# Returns what the worker could do: its uid and gid, how many threads it started (of 2000, on
# small stacks so that the address-space limit does not stop them first).
WHOAMI = '''def tempered_softmax(logits, temperature=1.0, dim=-1):
    import os, threading, time, torch
    threading.stack_size(1 << 16)
    started = 0
    try:
        for _ in range(2000):
            threading.Thread(target=time.sleep, args=(3,), daemon=True).start()
            started += 1
    except RuntimeError:
        pass
    return torch.tensor([float(os.getuid()), float(os.getgid()), float(started)])
'''


def run_whoami() -> tuple[dict, list[int]]:
    import base64

    import numpy as np

    from autograder.sandbox import run_worker
    case = {"id": "whoami", "fn": "tempered_softmax", "kind": "softmax",
            "logits": {"shape": [2, 3], "seed": 0}, "kwargs": {}}
    run = run_worker({"tempered_softmax": WHOAMI}, [case])
    tensor = run["results"]["whoami"]["out"]["tensor"]
    return run, [int(v) for v in np.frombuffer(base64.b64decode(tensor["data"]), tensor["kind"])]


@pytest.mark.parametrize("bwrap", [True, False], ids=["bwrap", "no-bwrap"])
def test_student_code_runs_unprivileged_where_it_can_and_says_as_whom(monkeypatch, caplog, bwrap):
    """A root grader's worker runs as nobody (uid, gid, thread limit) when that user can start
    it; otherwise it stays root, says so in the result and warns why. Without bubblewrap, here the
    interpreter under /root is unreadable to nobody, so that is the path taken."""
    import pwd

    from autograder import isolation
    if not bwrap:
        monkeypatch.setenv("KDGRADE_NO_BWRAP", "1")
    isolation.bwrap_works.cache_clear()
    isolation.worker_identity.cache_clear()
    try:
        run, (uid, gid, threads) = run_whoami()
    finally:
        isolation.bwrap_works.cache_clear()
        isolation.worker_identity.cache_clear()
    assert run["sandbox"] is (bwrap and isolation.bwrap_works())
    if os.geteuid() != 0:
        assert run["worker_user"] is None and uid == os.getuid()
    elif run["worker_user"] == "root":
        assert uid == 0
        assert any("student code runs as root" in r.getMessage() for r in caplog.records)
    else:
        nobody = pwd.getpwnam("nobody")
        assert run["worker_user"] == "nobody" and (uid, gid) == (nobody.pw_uid, nobody.pw_gid)
    if uid != 0:             # RLIMIT_NPROC binds every user but root (threads count)
        assert threads < 2000


@pytest.mark.parametrize("value, expected", [
    (None, ("nobody", 65534, 65534)), ("1234:99", ("1234:99", 1234, 99)), ("0:0", None),
    ("root", None), ("12:", SystemExit), ("no-such-user-kd", SystemExit)])
@pytest.mark.parametrize("has_nobody", [True, False], ids=["nobody", "no-nobody"])
def test_whom_a_root_grader_runs_student_code_as(monkeypatch, value, expected, has_nobody):
    """Default nobody, or the overflow ids 65534 where no account is called that; UID:GID and
    accounts by name; root (uid 0) keeps root; anything else is refused with a message."""
    import pwd

    from autograder import isolation
    accounts = {"root": (0, 0), **({"nobody": (65534, 65534)} if has_nobody else {})}

    def getpwnam(name):
        if name not in accounts:
            raise KeyError(name)
        return pwd.struct_passwd((name, "x", *accounts[name], "", "/", "/bin/sh"))
    monkeypatch.setattr(isolation.os, "geteuid", lambda: 0)
    monkeypatch.setattr(isolation.pwd, "getpwnam", getpwnam)
    if value is None:
        monkeypatch.delenv("KDGRADE_WORKER_USER", raising=False)
    else:
        monkeypatch.setenv("KDGRADE_WORKER_USER", value)
    if expected is SystemExit:
        with pytest.raises(SystemExit, match="is not a user on this machine"):
            isolation.worker_user()
        return
    if value is None and not has_nobody:
        expected = ("uid 65534", 65534, 65534)
    assert isolation.worker_user() == expected


def test_a_worker_user_that_names_no_one_is_refused_before_grading(tmp_path, monkeypatch):
    monkeypatch.setenv("KDGRADE_WORKER_USER", "no-such-user-kd")
    one_student_folder(tmp_path)
    if os.geteuid() == 0:
        with pytest.raises(SystemExit, match="'no-such-user-kd' is not a user on this machine"):
            grade_folder(tmp_path / "subs", tmp_path / "out", progress=False)
        assert not (tmp_path / "out").exists()
    else:                    # only a root grader switches users: the variable is not read
        assert grade_folder(tmp_path / "subs", tmp_path / "out", progress=False)["alice"].total == 60


def test_the_grading_sessions_warnings_reach_the_instructor(tmp_path, monkeypatch, caplog):
    """The sandbox warns inside the grading pytest (here: no bwrap on PATH); autograder.grade logs
    it again, under the sandbox's logger name."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("KDGRADE_NO_BWRAP", raising=False)     # this test is about bwrap missing
    caplog.set_level("WARNING")
    result = grade_notebook(SOLUTION)
    assert result.total == 60 and result.sandbox.bubblewrap is False
    assert any(r.name == "autograder.sandbox" and "bubblewrap (bwrap) is not installed" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]


CRASH_PLUGIN = """
import os, pathlib, pytest
FLAG = pathlib.Path(os.environ["KDGRADE_TEST_CRASHES"])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    yield
    left = int(FLAG.read_text())
    if call.when == "call" and item.callspec.params.get("submission_id") == "b" and left:
        FLAG.write_text(str(left - 1))
        raise RuntimeError("injected grader crash")
"""


@pytest.mark.parametrize("crashes", [1, 2], ids=["once", "twice"])
def test_a_grading_session_that_stops_early_never_scores_a_part(tmp_path, monkeypatch, caplog,
                                                                 crashes):
    """An internal error in the grading pytest (here injected while it reports b's first test)
    ends its session with later submissions untested: they are graded again in a fresh session,
    and if that fails too they get zeros that say "internal grader error", never the score of
    the tests that happened to run. What the session printed reaches the instructor's log."""
    (tmp_path / "kd_crash_plugin.py").write_text(CRASH_PLUGIN)
    (tmp_path / "crashes").write_text(str(crashes))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("PYTEST_PLUGINS", "kd_crash_plugin")
    monkeypatch.setenv("KDGRADE_TEST_CRASHES", str(tmp_path / "crashes"))
    release = release_notebook(tmp_path)
    done = []
    results = grade_notebooks({"a": SOLUTION, "b": release, "c": release},
                              case_seconds=CASE_SECONDS, on_done=done.append)
    results = {sid: result.to_json() for sid, result in results.items()}
    assert (tmp_path / "crashes").read_text() == "0", "the injected crash did not happen"
    assert sorted(done) == ["a", "b", "c"]               # each submission counted once
    assert results["a"]["total"] == 60                   # graded before the crash: kept
    assert "injected grader crash" in caplog.text and "INTERNALERROR" in caplog.text
    for sid in ("b", "c"):
        items = results[sid]["items"]
        assert results[sid]["total"] == 0
        for item in MAX_POINTS:
            messages = [t["message"] for t in items[item]["tests"]]
            if crashes == 1:      # the fresh session ran the item's whole suite
                assert len(messages) > 1 and any("not implemented" in m for m in messages), messages
            else:
                assert messages == ["internal grader error; tell your instructor"], messages


def check_the_summary_says_how_student_code_ran(graded):
    """make grade's last line counts the submissions whose code ran, by sandbox and user."""
    import re

    from autograder.grade import sandbox_summary
    from autograder.isolation import bwrap_works
    ran = [g for g in graded["grades"].values() if g.get("sandbox") is not None]
    summary = sandbox_summary(graded["results"])
    assert sum(map(int, re.findall(r"\((\d+)\)", summary))) == len(ran) > 0, summary
    assert ("no bubblewrap" in summary) is not bwrap_works(), summary
    if os.geteuid() == 0 and bwrap_works():
        assert summary == f"student code ran: bubblewrap, as nobody ({len(ran)})"


def check_make_grade_folder_outputs(graded, tmp_path):
    """grades.json/csv, feedback and Gradescope files for every student; missing and broken
    notebooks give zeros; re-running some students gives the same grades and keeps the others."""
    grades, out = graded["grades"], graded["out"]
    # alice is the real solution notebook: full marks on every hidden check
    assert grades["alice"]["total"] == 60, {i: [t for t in r["tests"] if not t["passed"]]
                                            for i, r in grades["alice"]["items"].items()}
    assert [grades[s]["total"] for s in ("bob", "carol")] == [0, 0]
    assert "not a readable" in grades["bob"]["items"]["train_student"]["tests"][0]["message"]
    assert json.loads((out / "grades.json").read_text()) == grades
    csv_rows = (out / "grades.csv").read_text().splitlines()
    assert csv_rows[1].startswith("alice,10.0,20.0,10.0,20.0,")     # then written, total
    assert csv_rows[1].split(",")[-2] == "60.0"
    assert (out / "feedback" / "bob.html").exists()
    gradescope = json.loads((out / "gradescope" / "alice" / "results.json").read_text())
    checks = sum(len(grades["alice"]["items"][item]["tests"]) for item in MAX_POINTS)
    assert gradescope["score"] == 60 and len(gradescope["tests"]) == checks
    # a second run of the same three notebooks, one at a time, into the same output folder
    again_subs = tmp_path / "subs"
    for sid in ("alice", "bob", "carol"):
        shutil.copytree(graded["subs"] / sid, again_subs / sid)
    again = grade_folder(again_subs, out, jobs=1, progress=False)
    assert {sid: r.to_json() for sid, r in again.items()} == {sid: grades[sid] for sid in ("alice", "bob", "carol")}
    # the gradebook is updated, not replaced: every student is still in it, the old one is kept
    assert json.loads((out / "grades.json").read_text()) == grades
    assert len((out / "grades.csv").read_text().splitlines()) == len(grades) + 1
    [kept] = (out / "history").iterdir()
    assert json.loads((kept / "grades.json").read_text()) == grades


def check_results_read_back_from_json_are_the_same(graded):
    """Every typed result (graded, broken, missing, with written answers) survives grades.json:
    from_json(to_json()) is the same result, and what grades.json holds is its to_json()."""
    from autograder.results import SubmissionResult
    book = json.loads((graded["out"] / "grades.json").read_text())
    for sid, result in graded["results"].items():
        assert SubmissionResult.from_json(result.to_json()) == result, sid
        assert SubmissionResult.from_json(book[sid]).to_json() == book[sid] == result.to_json(), sid


@pytest.mark.parametrize("content", ["{not json", '{"alice": 60}', "[]"])
def test_a_gradebook_it_cannot_read_is_refused_before_grading_and_kept(tmp_path, content):
    """An OUT/grades.json that autograder.grade did not write is never overwritten."""
    one_student_folder(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "grades.json").write_text(content)
    with pytest.raises(SystemExit, match="not a gradebook written by autograder.grade"):
        grade_folder(tmp_path / "subs", tmp_path / "out", progress=False)
    assert (tmp_path / "out" / "grades.json").read_text() == content
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name != ".grading.lock") == ["grades.json"]


def test_a_second_grading_run_into_the_same_folder_is_refused(tmp_path):
    """While one run holds OUT, another stops at once instead of dropping its rows later."""
    from filelock import FileLock
    one_student_folder(tmp_path)
    (tmp_path / "out").mkdir()
    with FileLock(str(tmp_path / "out" / ".grading.lock")):
        with pytest.raises(SystemExit, match="another grading run is writing to"):
            grade_folder(tmp_path / "subs", tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "grades.json").exists()


# One test grades every sample submission in ONE `grade_folder` call (JOBS=2, bwrap where it
# works) and checks each outcome in a subtest. Not a module fixture shared by several tests: with
# pytest 9, xdist's loadgroup no longer keeps a group on one worker, so both workers would grade.
CHECKS = [("release", check_release_scores_zero),
          *[(f"mistakes-{k}:" + "+".join(r[1] for r in rows),
             lambda graded, k=k: check_classic_mistakes_lose_points_with_a_hint(k, graded))
            for k, rows in enumerate(BUNDLES)],
          ("manual-kl", check_correct_solution_written_differently_gets_full_marks),
          ("hostile-fails", check_hostile_bodies_never_pass),
          ("hostile-credit", check_property_checks_need_values),
          ("hostile-contained", check_hostile_cells_are_contained),
          ("sandbox-summary", check_the_summary_says_how_student_code_ran)]


def test_grade_folder_of_sample_submissions(tmp_path, subtests):
    """Release 0, each classic mistake loses points with its hint, a correct variant 60, hostile
    code gets 0 and is contained, and the folder outputs are complete and reproducible."""
    subs = tmp_path / "subs"
    write_submissions(subs, tmp_path)
    before = fingerprint()
    results = grade_folder(subs, tmp_path / "out", jobs=2, progress=False, case_seconds=CASE_SECONDS)
    grades = {sid: result.to_json() for sid, result in results.items()}
    graded = {"grades": grades, "results": results, "out": tmp_path / "out", "subs": subs,
              "before": before}
    assert sorted(grades) == sorted(p.name for p in subs.iterdir())
    for name, check in CHECKS:
        with subtests.test(msg=name):
            check(graded)
    with subtests.test(msg="json-round-trip"):
        check_results_read_back_from_json_are_the_same(graded)
    with subtests.test(msg="folder-outputs"):
        check_make_grade_folder_outputs(graded, tmp_path / "again")


@pytest.mark.parametrize("flag", ["--out_dir", "--out"])
def test_wrong_submissions_path_is_a_clear_error(tmp_path, flag):
    """Also with the old spelling --out, which still works and says it is deprecated."""
    proc = subprocess.run([sys.executable, "-m", "autograder.grade", str(tmp_path / "nope"),
                           flag, str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode != 0 and "is not a folder" in proc.stderr
    deprecated = "autograder.grade: warning: --out is deprecated, use --out_dir"
    assert (deprecated in proc.stderr) is (flag == "--out"), proc.stderr


def test_nbgrader_autograde_flow(tmp_path):
    """generate_assignment, autograde (restoring a deleted test cell), feedback, export: scores
    come from the hidden suites, in a tmp copy of the course."""
    course = tmp_path / "course"
    shutil.copytree(REPO / "autograder", course / "autograder",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "nbgrader_config.py", course)
    (course / "solutions" / "week6_distillation").mkdir(parents=True)
    shutil.copy(SOLUTION, course / "solutions" / "week6_distillation")
    nbgrader = [str(Path(sys.executable).parent / "nbgrader")]

    def run(*args):
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")  # alembic
        proc = subprocess.run(nbgrader + list(args), cwd=course, capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
    run("generate_assignment", "week6_distillation", "--force")
    release = json.loads((course / "assignments/week6_distillation/distillation.ipynb").read_text())
    release["cells"] = [c for c in release["cells"]          # a student deletes a test cell
                        if c["metadata"].get("nbgrader", {}).get("grade_id") != "test_train_student"]
    for student, nb in (("good", json.loads(SOLUTION.read_text())), ("blank", release)):
        folder = course / "submitted" / student / "week6_distillation"
        folder.mkdir(parents=True)
        (folder / "distillation.ipynb").write_text(json.dumps(nb))
    run("autograde", "week6_distillation")
    run("generate_feedback", "week6_distillation")
    run("export")
    import csv
    rows = {r["student_id"]: r for r in csv.DictReader((course / "grades.csv").open())}
    assert float(rows["good"]["raw_score"]) == 60 and float(rows["blank"]["raw_score"]) == 0
    feedback = (course / "feedback/blank/week6_distillation/distillation.html").read_text()
    assert "hidden tests: 0 / 20" in feedback and "not implemented" in feedback
