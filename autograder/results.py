"""One submission's grade, typed: grades.json, grades.csv, the feedback pages, Gradescope's
results.json and nbgrader's test cells are all written from it (as otter-grader's GradingResults).

    result = SubmissionResult.from_report(entry)    # the grading session's tests of one notebook
    result = SubmissionResult.empty(message)        # zeros, every item carrying `message`
    result.to_json()           # its grades.json entry; SubmissionResult.from_json() reads it back
    result.to_gradescope()     # Gradescope's results.json
    result.to_nbgrader()       # {"test_<item>": score and feedback} for nbgrader's test cells

The points rule is `share`: a check is worth its item's points times its weight over the
item's total weight. A property check (`property_check`: raises ValueError, keeps the dtype, ...)
counts only once a value check of the same item passes, so a stub that returns a constant or
always raises earns nothing.
"""
from __future__ import annotations

import dataclasses

from autograder import ITEMS, MAX_POINTS

# Names of the checks that report a problem with the upload itself, not a hidden test.
NOTEBOOK_CHECK, SUITE_CHECK = "notebook", "suite"
SUBMISSION_CHECKS = (NOTEBOOK_CHECK, SUITE_CHECK)


def share(max_points: float, weights: list[float], earned: float) -> float:
    """max_points * earned / sum(weights): the points of checks of weight `earned` (0 if none)."""
    total = sum(weights)
    return max_points * earned / total if total else 0.0


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """One check of a graded item: a hidden test, or a row saying why none ran."""
    name: str                     # `matches_reference[T=1.0]`, or "notebook"/"suite"
    passed: bool
    message: str                  # the hint when it failed ("" when it passed)
    points: float | None = None   # its weight within the item; None for the rows about the upload
    counted: bool = True          # False: passed, but a property check while no value check did

    @property
    def weight(self) -> float:
        return 1 if self.points is None else self.points

    @property
    def earns(self) -> bool:
        return self.passed and self.counted

    def to_json(self) -> dict:
        data = {"name": self.name, "passed": self.passed, "message": self.message}
        if self.points is not None:
            data["points"] = self.points
        if not self.counted:
            data["counted"] = False
        return data

    @classmethod
    def from_json(cls, data: dict) -> "CheckResult":
        return cls(data["name"], data["passed"], data["message"], data.get("points"),
                   data.get("counted", True))


@dataclasses.dataclass(frozen=True)
class ItemResult:
    """One automatically graded item (a graded function): its score and every check's outcome."""
    name: str                     # the grade_id: `tempered_softmax`
    score: float
    max_score: float
    checks: tuple[CheckResult, ...]

    @classmethod
    def from_tests(cls, name: str, tests: list[dict]) -> "ItemResult":
        """The item's score from the grading session's tests of it ({"name", "passed",
        "message", "points", "property"} each): the share of the counted checks' weight."""
        values_ok = any(t["passed"] and not t.get("property") for t in tests)
        checks = []
        for t in tests:
            check = CheckResult(t["name"], t["passed"], t["message"], t["points"])
            if t["passed"] and t.get("property") and not values_ok:
                check = dataclasses.replace(check, counted=False, message=(
                    f"passes, but counts only once {name} computes the right values in at least "
                    "one value check"))
            checks.append(check)
        if not tests:
            return cls(name, 0.0, float(MAX_POINTS[name]),
                       (CheckResult(SUITE_CHECK, False, "the grader ran no test for this item"),))
        earned = sum(c.points for c in checks if c.earns)
        score = round(share(MAX_POINTS[name], [c.points for c in checks], earned), 2)
        return cls(name, score, float(MAX_POINTS[name]), tuple(checks))

    @classmethod
    def zero(cls, name: str, message: str) -> "ItemResult":
        """No points: the notebook could not be graded, and `message` says why."""
        return cls(name, 0.0, float(MAX_POINTS[name]), (CheckResult(NOTEBOOK_CHECK, False, message),))

    def worths(self) -> list[float]:
        """What each check is worth (its share of max_score), in check order."""
        weights = [c.weight for c in self.checks]
        return [share(self.max_score, weights, c.weight) for c in self.checks]

    def feedback_lines(self) -> list[str]:
        """One line per failed (or passed but not counted) check: its short name and the hint."""
        return [f"{'FAILED' if not c.passed else 'NOT COUNTED'} {c.name}: {c.message}"
                for c in self.checks if not c.earns]

    def to_json(self) -> dict:
        return {"score": self.score, "max_score": self.max_score,
                "tests": [c.to_json() for c in self.checks]}

    @classmethod
    def from_json(cls, name: str, data: dict) -> "ItemResult":
        return cls(name, data["score"], data["max_score"],
                   tuple(CheckResult.from_json(t) for t in data["tests"]))


@dataclasses.dataclass(frozen=True)
class WrittenResult:
    """One written answer: the TAs' points once marked (None before), their comment, the text."""
    name: str                     # the answer cell's grade_id: `q1_temperature_limits`
    score: float | None
    max_score: float
    comment: str = ""
    answer: str = ""

    def to_json(self) -> dict:
        return {"written": True, "score": self.score, "max_score": self.max_score,
                "comment": self.comment, "answer": self.answer, "tests": []}

    @classmethod
    def from_json(cls, name: str, data: dict) -> "WrittenResult":
        return cls(name, data.get("score"), data["max_score"], data.get("comment", ""),
                   data.get("answer", ""))


Item = ItemResult | WrittenResult


@dataclasses.dataclass(frozen=True)
class SandboxInfo:
    """How the student's code ran: in bubblewrap or not (None: none of it ran), and as whom."""
    bubblewrap: bool | None
    worker_user: str | None       # the user a root grader ran it as; None when not root


_ENTRY_KEYS = ("items", "total", "max_total", "sandbox", "worker_user")   # what to_json writes


@dataclasses.dataclass(frozen=True)
class SubmissionResult:
    """One student's grade. `items` keeps its order (the automatic items, then the written
    answers, as graded; a gradebook read back has the order grades.json has)."""
    items: dict[str, Item]
    total: float
    max_total: float
    sandbox: SandboxInfo | None = None     # None: no grading session ran (a broken notebook)
    # Keys of a grades.json entry this class does not know (added by hand, or by a later version):
    # kept as they were, so reading and writing a gradebook back never drops them.
    extra: dict = dataclasses.field(default_factory=dict)

    @property
    def automatic(self) -> dict[str, ItemResult]:
        return {name: self.items[name] for name in ITEMS}

    @property
    def written(self) -> dict[str, WrittenResult]:
        return {k: v for k, v in self.items.items() if isinstance(v, WrittenResult)}

    @property
    def ran_code(self) -> bool:
        """True when some of the student's code ran (in the sandbox)."""
        return self.sandbox is not None and self.sandbox.bubblewrap is not None

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_items(cls, items: dict[str, Item],
                   sandbox: SandboxInfo | None = None) -> "SubmissionResult":
        """total = automatic + marked written points; max_total = every item's maximum."""
        total = round(sum(i.score for i in items.values() if i.score is not None), 2)
        return cls(dict(items), total, float(sum(i.max_score for i in items.values())), sandbox)

    @classmethod
    def empty(cls, message: str) -> "SubmissionResult":
        """All four items at zero, each carrying `message`."""
        return cls.from_items({item: ItemResult.zero(item, message) for item in ITEMS})

    @classmethod
    def from_report(cls, entry: dict) -> "SubmissionResult":
        """The grade of one submission's entry in the grading session's report.json."""
        items = {item: ItemResult.from_tests(item, [t for t in entry["tests"] if t["item"] == item])
                 for item in ITEMS}
        return cls.from_items(items, SandboxInfo(entry.get("sandbox"), entry.get("worker_user")))

    def with_items(self, items: dict[str, Item]) -> "SubmissionResult":
        """This result with `items` added or replaced (new ones last), totals recomputed."""
        return dataclasses.replace(self.from_items({**self.items, **items}, self.sandbox), extra=self.extra)

    # ------------------------------------------------------------ grades.json
    def to_json(self) -> dict:
        data = {"items": {name: item.to_json() for name, item in self.items.items()},
                "total": self.total, "max_total": self.max_total}
        if self.sandbox is not None:
            data.update(sandbox=self.sandbox.bubblewrap, worker_user=self.sandbox.worker_user)
        return {**data, **{k: v for k, v in self.extra.items() if k not in data}}

    @classmethod
    def from_json(cls, data: dict) -> "SubmissionResult":
        """A grades.json entry read back (KeyError, TypeError if it is not one)."""
        items = {name: (WrittenResult if item.get("written") else ItemResult).from_json(name, item)
                 for name, item in data["items"].items()}
        sandbox = SandboxInfo(data["sandbox"], data.get("worker_user")) if "sandbox" in data else None
        extra = {k: v for k, v in data.items() if k not in _ENTRY_KEYS}
        return cls(items, data["total"], data["max_total"], sandbox, extra)

    # ------------------------------------------------------------ Gradescope
    def to_gradescope(self, visibility=None, execution_time: float | None = None) -> dict:
        """Gradescope's results.json: one test per check of each automatic item (its share of the
        item's points, its hint as output), then one per marked written answer; the top score is
        the total (the sum of the tests before their rounding). `visibility`: a
        gradescope.Visibility, by default the one gradescope.toml gives."""
        if visibility is None:
            from autograder.gradescope import Visibility
            visibility = Visibility.load()
        tests = []
        for name, item in self.automatic.items():
            for check, worth in zip(item.checks, item.worths()):
                output = ("passed" if check.counted else check.message) if check.passed \
                    else f"FAILED: {check.message}"
                tests.append(gradescope_test(
                    f"{name}: {check.name}", round(worth if check.earns else 0.0, 4), round(worth, 4),
                    output, visibility.of_check(name, check.name)))
        for name, item in self.written.items():
            if item.score is not None:
                tests.append(gradescope_test(f"written: {name}", item.score, item.max_score,
                                             item.comment or "", visibility.written))
        problems = {c.message for item in self.automatic.values() for c in item.checks
                    if c.name in SUBMISSION_CHECKS}
        lines = [f"{self.total:g} of {self.max_total:g} points", *sorted(problems)]
        lines += [f"{name}: {i.score:g} / {i.max_score:g}" for name, i in self.items.items()
                  if i.score is not None]
        return gradescope_json(self.total, tests, "\n".join(lines), visibility.stdout, execution_time)

    # ------------------------------------------------------------ nbgrader
    def to_nbgrader(self, cell_points: dict[str, float] | None = None) -> dict[str, dict]:
        """{"test_<item>": {"score", "max_score", "feedback"}} for nbgrader's autograded test
        cells: each item's score scaled to its cell's points (`cell_points`, by grade_id; the
        item's own maximum where a cell gives none) and its failed checks as feedback."""
        cells = {}
        for name, item in self.automatic.items():
            points = float((cell_points or {}).get(f"test_{name}", item.max_score))
            cells[f"test_{name}"] = {"score": round(points * item.score / item.max_score, 2),
                                     "max_score": points,
                                     "feedback": "\n".join(item.feedback_lines())
                                     or "all hidden checks passed"}
        return cells


def gradescope_test(name: str, score: float, max_score: float, output: str, visibility: str) -> dict:
    """One entry of results.json's `tests` (Gradescope's autograder specification)."""
    return {"name": name, "score": score, "max_score": max_score,
            "status": "passed" if score >= max_score else "failed", "output": output,
            "visibility": visibility}


def gradescope_json(score: float, tests: list[dict], output: str, stdout_visibility: str = "hidden",
                    execution_time: float | None = None) -> dict:
    """Gradescope's results.json of one submission."""
    data = {"score": score, "output": output, "stdout_visibility": stdout_visibility, "tests": tests}
    if execution_time is not None:
        data["execution_time"] = round(execution_time, 1)
    return data
