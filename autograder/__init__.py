"""Autograder of the Week-6 distillation assignment: hidden suites run against an isolated worker.

    make grade SUBMISSIONS=dir OUT=dir [JOBS=n]           # a folder of <student_id>/distillation.ipynb
    python -m pytest autograder -p no:cacheprovider --submission NB --grading-report out.json

The trusted side (pytest suites, judge, CLI, nbgrader preprocessor) never imports student code: the
solution cells run in `autograder.worker` (sandboxed by `autograder.sandbox`), which sends back plain
arrays that the suites compare against their own reference implementations.
"""
# Points of each graded item (the `points` of its `test_<name>` cell in the solution notebook).
MAX_POINTS = {"tempered_softmax": 10, "distillation_loss": 20, "collect_teacher_logits": 10,
              "train_student": 20}
ITEMS = tuple(MAX_POINTS)
