"""One stub detector: the autograder (which skips a cell that is still the release stub, never
running it) and the notebook's `require_implemented` (which stops an experiment cell early) give
the same verdict, from `kdcourse.notebook`, on stubs, implementations and near-stubs."""

import pytest

from autograder.sandbox import stub_cells
from kdcourse.notebook import require_implemented

STUB = '''def tempered_softmax(logits, temperature=1.0, dim=-1):
    """Softmax of logits / temperature.

    logits: [batch, num_classes]
    """
    # YOUR CODE HERE
    raise NotImplementedError()
'''
SIGNATURE = "def tempered_softmax(logits, temperature=1.0, dim=-1):\n"
FUNCTIONS = {   # id: (cell source, still the release stub?)
    "release-stub": (STUB, True),
    "no-docstring": (SIGNATURE + "    # YOUR CODE HERE\n    raise NotImplementedError()\n", True),
    "raise-the-class": ("def tempered_softmax(logits, *, temperature=-1.0, dim=-1):\n"
                        "    raise NotImplementedError\n", True),
    "implemented": (SIGNATURE + "    return torch.softmax(logits / temperature, dim=dim)\n", False),
    "local-names-only": (SIGNATURE + "    return logits / temperature\n", False),
    "pass": (SIGNATURE + "    pass\n", False),
    "docstring-only": (SIGNATURE + '    """todo"""\n', False),
    "raise-with-a-message": (SIGNATURE + "    raise NotImplementedError('todo')\n", False),
    "raise-from": (SIGNATURE + "    raise NotImplementedError() from None\n", False),
    "partly-done": (SIGNATURE + "    if temperature == 1.0:\n        return 0.5\n"
                    "    raise NotImplementedError()\n", False),
    "another-error": (SIGNATURE + "    raise ValueError()\n", False),
}
CELLS = {   # the function is the stub, but the cell does more than define it: the grader runs it
    "decorated": "@staticmethod\n" + STUB,
    "annotated": STUB.replace("(logits,", "(logits: 'Tensor',"),
    "call-in-a-default": STUB.replace("dim=-1", "dim=print('x')"),
    "list-default": STUB.replace("dim=-1", "dim=[1]"),
    "code-before-it": "import os\n" + STUB,
    "another-name": STUB.replace("def tempered_softmax", "def softmax"),
    "defined-twice": STUB + STUB,
    "syntax-error": "def tempered_softmax(:\n",
}


def notebook_says_stub(source: str) -> bool:
    """What require_implemented decides about the function the cell defines."""
    namespace = {}
    exec(source, namespace)
    try:
        require_implemented(namespace["tempered_softmax"])
    except RuntimeError as err:
        assert str(err) == "implement tempered_softmax (Part A) first: this cell needs it"
        return True
    return False


@pytest.mark.parametrize("source, stub", FUNCTIONS.values(), ids=list(FUNCTIONS))
def test_the_grader_and_the_notebook_agree(source, stub):
    assert (stub_cells({"tempered_softmax": source}) == {"tempered_softmax"}) is stub
    assert notebook_says_stub(source) is stub


@pytest.mark.parametrize("source", CELLS.values(), ids=list(CELLS))
def test_a_cell_that_does_more_than_define_the_stub_is_run(source):
    assert stub_cells({"tempered_softmax": source}) == set()


def test_the_release_notebook_is_all_stubs_and_the_solution_none():
    from kdcourse.notebook import GRADED_FUNCTIONS, graded_cells
    from kdcourse.paths import RELEASE_NOTEBOOK, SOLUTION_NOTEBOOK
    if not RELEASE_NOTEBOOK.exists():
        pytest.fail("no release notebook: run make release")
    release = {n: s for n, s in graded_cells(RELEASE_NOTEBOOK).items() if n in GRADED_FUNCTIONS}
    solution = {n: s for n, s in graded_cells(SOLUTION_NOTEBOOK).items() if n in GRADED_FUNCTIONS}
    assert stub_cells(release) == set(GRADED_FUNCTIONS)
    assert stub_cells(solution) == set()
