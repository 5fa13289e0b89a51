"""The typed result (autograder/results.py): one points rule for the gradebook and Gradescope,
property checks that count only with a value check, and every format read back unchanged."""

import pytest

from autograder import ITEMS, MAX_POINTS
from autograder.gradescope import Visibility
from autograder.results import SubmissionResult, WrittenResult, share


def row(item, name, passed, points=1.0, prop=False):
    """One test outcome as the grading session reports it."""
    return {"item": item, "name": name, "passed": passed, "points": points, "property": prop,
            "message": "" if passed else f"{name} is wrong"}


def entry(*tests, sandbox=True, worker_user=None):
    """A submission's entry of the grading session's report.json."""
    return {"tests": list(tests), "sandbox": sandbox, "worker_user": worker_user}


ALL_PASS = [row(item, f"check{k}", True, points=k + 1.0) for item in ITEMS for k in range(3)]


def test_share_is_the_weighted_fraction():
    assert share(10, [1.0, 2.0, 1.0], 2.0) == 5.0
    assert share(10, [], 0) == 0.0


def test_an_item_scores_the_weighted_share_of_its_passed_checks():
    tests = [t for t in ALL_PASS if t["item"] != "tempered_softmax"]
    tests += [row("tempered_softmax", "a", True, 1.0), row("tempered_softmax", "b", False, 3.0)]
    result = SubmissionResult.from_report(entry(*tests))
    item = result.items["tempered_softmax"]
    assert item.score == pytest.approx(MAX_POINTS["tempered_softmax"] / 4)
    assert result.total == pytest.approx(sum(MAX_POINTS.values()) - 0.75 * MAX_POINTS["tempered_softmax"])
    assert item.feedback_lines() == ["FAILED b: b is wrong"]


def test_a_property_check_counts_only_once_a_value_check_passes():
    tests = [row("distillation_loss", "raises_value_error", True, prop=True),
             row("distillation_loss", "matches_reference", False)]
    item = SubmissionResult.from_report(entry(*tests)).items["distillation_loss"]
    assert item.score == 0
    assert [c.counted for c in item.checks] == [False, True]
    assert item.feedback_lines()[0].startswith("NOT COUNTED raises_value_error: passes, but counts")


def test_an_item_with_no_test_and_an_unreadable_notebook_score_zero_with_a_reason():
    result = SubmissionResult.from_report(entry())
    assert [c.name for c in result.items["train_student"].checks] == ["suite"]
    empty = SubmissionResult.empty("notebook x is not a readable .ipynb")
    assert empty.total == 0 and empty.max_total == sum(MAX_POINTS.values())
    assert empty.sandbox is None and "sandbox" not in empty.to_json()
    assert empty.to_json()["items"]["tempered_softmax"] == {
        "score": 0.0, "max_score": float(MAX_POINTS["tempered_softmax"]),
        "tests": [{"name": "notebook", "passed": False, "message": "notebook x is not a readable .ipynb"}]}


def test_gradescope_splits_each_item_by_the_same_rule():
    tests = [t for t in ALL_PASS if t["item"] != "collect_teacher_logits"]
    tests += [row("collect_teacher_logits", "a", True, 2.0), row("collect_teacher_logits", "b", False, 1.0)]
    result = SubmissionResult.from_report(entry(*tests))
    results = result.to_gradescope(Visibility(), execution_time=1.234)
    assert results["score"] == result.total and results["execution_time"] == 1.2
    for item in ITEMS:
        rows = [t for t in results["tests"] if t["name"].startswith(f"{item}: ")]
        assert sum(t["score"] for t in rows) == pytest.approx(result.items[item].score, abs=0.01)
        assert sum(t["max_score"] for t in rows) == pytest.approx(MAX_POINTS[item], abs=1e-3)
    assert results["output"].splitlines()[0] == f"{result.total:g} of {result.max_total:g} points"


def test_nbgrader_cells_get_the_item_score_scaled_to_their_points():
    tests = [t for t in ALL_PASS if t["item"] != "train_student"]
    tests += [row("train_student", "a", True), row("train_student", "b", False)]
    cells = SubmissionResult.from_report(entry(*tests)).to_nbgrader({"test_train_student": 4})
    assert cells["test_train_student"] == {"score": 2.0, "max_score": 4.0,
                                           "feedback": "FAILED b: b is wrong"}
    assert cells["test_tempered_softmax"]["feedback"] == "all hidden checks passed"
    assert cells["test_tempered_softmax"]["max_score"] == MAX_POINTS["tempered_softmax"]


def test_written_answers_add_to_the_total_once_marked_and_survive_json():
    result = SubmissionResult.from_report(entry(*ALL_PASS, sandbox=False, worker_user="nobody"))
    marked = result.with_items({"q1": WrittenResult("q1", 2.5, 5.0, "ok", "text"),
                                "q2": WrittenResult("q2", None, 5.0, "", "more")})
    assert marked.total == result.total + 2.5 and marked.max_total == result.max_total + 10
    assert list(marked.written) == ["q1", "q2"]
    assert SubmissionResult.from_json(marked.to_json()) == marked
    assert marked.to_json()["items"]["q2"] == {"written": True, "score": None, "max_score": 5.0,
                                               "comment": "", "answer": "more", "tests": []}
    assert (marked.to_json()["sandbox"], marked.to_json()["worker_user"]) == (False, "nobody")


def test_keys_a_gradebook_entry_gained_by_hand_survive_reading_and_writing_it_back():
    """grades.json is the course's record: a field a TA added (a late-day note) is never dropped."""
    entry = {**SubmissionResult.empty("no notebook").to_json(), "late_days": 2, "note": "extension"}
    result = SubmissionResult.from_json(entry)
    assert result.to_json() == entry
    marked = result.with_items({"q1": WrittenResult("q1", 3.0, 5.0, "", "answer")})
    assert (marked.to_json()["late_days"], marked.to_json()["note"]) == (2, "extension")
