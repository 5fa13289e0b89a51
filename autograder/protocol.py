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
RELAYED_LOG = "kdgrade-log "    # + {"level", "name", "message}: a log record to log again

# Errors the grader or the sandbox reports for a case: never the student's function raising.
GRADER_ERRORS = ("Timeout", "WorkerExit", "Missing", "GraderError", "NoResult", "LoadFailure")


def error(kind: str, message: str, mro=None) -> dict:
    """An error as the processes pass it: {"type", "mro" (class names, most derived first),
    "message"}."""
    return {"type": kind, "mro": list(mro) if mro is not None else [kind], "message": message}
