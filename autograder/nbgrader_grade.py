"""nbgrader autograde preprocessor: scores from the hidden suites, not from the student's kernel.

Registered in nbgrader_config.py in place of `Execute`, so `nbgrader autograde` never runs the
notebook: it grades the solution cells with autograder.grade (sandboxed worker), then writes each
item's score as the numeric result of its `test_<item>` cell, with the failed checks as stdout
(nbgrader reads the number as partial credit; nothing goes to stderr).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import nbformat
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

from autograder import ITEMS
from autograder.grade import grade_notebook
from autograder.reports import feedback_lines


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
            r = result["items"][item]
            points = float(meta.get("points", r["max_score"]))
            score = round(points * r["score"] / r["max_score"], 2)
            text = "\n".join(feedback_lines(r)) or "all hidden checks passed"
            cell.outputs = [
                nbformat.v4.new_output("stream", name="stdout",
                                       text=f"hidden tests: {score:g} / {points:g}\n{text}\n"),
                nbformat.v4.new_output("execute_result", data={"text/plain": repr(score)},
                                       execution_count=1)]
            cell.execution_count = 1
        self.log.info("autograded with the hidden suites: total %s", result["total"])
        return nb, resources
