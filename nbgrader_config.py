"""nbgrader course configuration. The course root is this repository.

Instructors: `nbgrader generate_assignment week6_distillation` (or `make release`) turns the source in
solutions/ into the student notebook in assignments/; submissions go to submitted/<student>/...
"""
c = get_config()  # noqa: F821  (nbgrader injects get_config)

c.CourseDirectory.root = "."
c.CourseDirectory.course_id = "week6_distillation"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
# Only the notebook is released: scripts and data stay in the package and data/.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "runs", "*.pt", "*.db"]
# Releases carry no outputs; the source's outputs (if any) are cleared.
c.ClearOutput.enabled = True

# --- autograding (the autograder section below is owned by autograder/) ---
# Deleted or edited test cells come back from the database copy.
c.OverwriteCells.add_missing_cells = True
# `nbgrader autograde` scores from the hidden suites (autograder/), never by executing the notebook:
# IsolatedGrade replaces Execute, runs the solution cells in the sandboxed worker and writes each
# item's score as the numeric result of its test_<item> cell (stdout only, so nothing zeroes it).
# `autograder` is importable because `make venv` installs it (pyproject.toml), beside kdcourse.
c.Autograde.autograde_preprocessors = [
    "autograder.nbgrader_grade.IsolatedGrade", "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor", "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades", "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata"]
