"""The names that the grader's three processes share, defined once.

    autograder.grade  --(batch.json)-->  pytest session (conftest, suites)  --(job on stdin)-->  worker
                      <--(stderr lines: PROGRESS, RELAYED_LOG; report.json)--  <--("<nonce> <json>" events)--

The worker imports this file from its own folder (it runs with `python -I`); the trusted side as
`autograder.protocol`. It holds names and one helper, nothing that computes an answer.
"""
# Events of the worker, in the order one item's process sends them ("done" ends the worker).
ITEM, LOADING, LOADED, BEGIN, CASE, ITEM_DONE, DONE = (
    "item", "loading", "loaded", "begin", "case", "item_done", "done")

# Lines the grading session prints on stderr, read by autograder.grade.
PROGRESS = "kdgrade-done "      # + submission id: that submission's worker finished
RELAYED_LOG = "kdgrade-log "    # + {"level", "name", "message"}: a log record to log again

# Errors the grader or the sandbox reports for a case: never the student's function raising.
TIMEOUT = "Timeout"              # a case, or the whole submission, ran past its time limit
WORKER_EXIT = "WorkerExit"       # the worker died while it ran the case
MISSING = "Missing"              # the notebook has no cell with that grade_id
GRADER_ERROR = "GraderError"     # the worker could not start at all
NO_RESULT = "NoResult"           # the worker finished without answering the case
LOAD_FAILURE = "LoadFailure"     # running the item's cell hit a limit
GRADER_ERRORS = (TIMEOUT, WORKER_EXIT, MISSING, GRADER_ERROR, NO_RESULT, LOAD_FAILURE)


def error(kind: str, message: str, mro=None) -> dict:
    """An error as the processes pass it: {"type", "mro" (class names, most derived first),
    "message"}."""
    return {"type": kind, "mro": list(mro) if mro is not None else [kind], "message": message}


def is_a(err: dict | None, kind: str) -> bool:
    """True when the error `err` is a `kind` (that class or a subclass of it)."""
    return err is not None and kind in err.get("mro", [])
