"""Shared code of the Week-6 knowledge-distillation assignment: what the notebook, the grader and
the reference solution share.

Course modules: `paths`, `data` (splits, tokenization, batching), `profiles`, `models`, `teacher`,
`metrics`, `plots`, `logits_cache` and `soft_labels` (the teacher's soft labels on disk), `notebook`
(graded cells), `cli` and `errors` (one command-line style), `utils`. The TA performance tools
(`make bench`, `make traffic`, `make full-size`) are the subpackage `kdcourse.perf`. The table of
every module: docs/development.md.
"""
__version__ = "0.1.0"
