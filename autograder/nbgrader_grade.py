"""nbgrader autograde preprocessor: scores from the hidden suites, not from the student's kernel.

Registered in nbgrader_config.py in place of `Execute`, so `nbgrader autograde` never runs the
notebook: it grades the solution cells with autograder.grade (sandboxed worker), then writes each
item's score as the numeric result of its `test_<item>` cell, with the failed checks as stdout
(nbgrader reads the number as partial credit; nothing goes to stderr). The numbers come from
`SubmissionResult.to_nbgrader` (autograder/results.py).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import nbformat
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

from autograder import ITEMS
from autograder.grade import grade_notebook


class IsolatedGrade(Preprocessor):
    """Fill the autograded test cells with the hidden suites' scores."""

    enabled = Bool(True, help="nbconvert preprocessors are off by default").tag(config=True)

    def preprocess(self, nb, resources):
        with tempfile.TemporaryDirectory(prefix="kdgrade-nb-") as tmp:
            path = Path(tmp) / "distillation.ipynb"
            nbformat.write(nb, str(path))
            result = grade_notebook(path)
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            item = str(meta.get("grade_id", ""))[len("test_"):]
            if cell.cell_type != "code" or not meta.get("grade") or item not in ITEMS:
                continue
            points = {f"test_{item}": meta["points"]} if "points" in meta else {}
            graded = result.to_nbgrader(points)[f"test_{item}"]
            score, text = graded["score"], graded["feedback"]
            cell.outputs = [
                nbformat.v4.new_output("stream", name="stdout",
                                       text=f"hidden tests: {score:g} / {graded['max_score']:g}\n{text}\n"),
                nbformat.v4.new_output("execute_result", data={"text/plain": repr(score)},
                                       execution_count=1)]
            cell.execution_count = 1
        self.log.info("autograded with the hidden suites: total %s", result.total)
        return nb, resources
