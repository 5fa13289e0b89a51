"""Read the graded cells of a notebook, and load the graded functions from them.

The four graded functions live in nbgrader solution cells whose `grade_id` is the function's name.
The reference run loads them from the solution notebook (one source of truth); the autograder's
worker loads a student's from their submission. Cells run in a fresh namespace that holds
`PREAMBLE`, the imports of the notebook's setup cell, and nothing else of the notebook.

    fns = load_graded_functions(SOLUTION_NOTEBOOK)
    fns["distillation_loss"](student_logits, teacher_logits, labels, temperature=2.0, alpha=0.5)

    python -m kdcourse.notebook strip-outputs NOTEBOOK...   # clear outputs in place
"""
from __future__ import annotations

import dis
import json
import sys
import types
from pathlib import Path

from kdcourse.errors import KDError

# The graded functions, in notebook order, with the points of their `test_<name>` cells (the
# solution notebook's nbgrader metadata; tests/test_notebook.py checks that the two agree).
GRADED_POINTS = {"tempered_softmax": 10, "distillation_loss": 20, "collect_teacher_logits": 10,
                 "train_student": 20}
GRADED_FUNCTIONS = tuple(GRADED_POINTS)
# What graded cells may rely on without importing it themselves (the notebook's setup cell).
PREAMBLE = ("import math\nimport numpy as np\nimport torch\nimport torch.nn as nn\n"
            "import torch.nn.functional as F\n")


# Where each graded function is written, for messages to students.
PARTS = {"tempered_softmax": "Part A", "distillation_loss": "Part B",
         "collect_teacher_logits": "Part C", "train_student": "Part D"}


# nbgrader's release stub, as bytecode (CPython 3.11 to 3.13): a body that only raises
# NotImplementedError, no arguments; a cell that only defines that function, with constant
# defaults and no decorators or annotations (nothing a `def` line could run).
_STUB_BODY_OPS = {"RESUME", "NOP", "LOAD_GLOBAL", "PUSH_NULL", "PRECALL", "CALL", "RAISE_VARARGS"}
_STUB_CELL_OPS = {"RESUME", "NOP", "LOAD_CONST", "BUILD_CONST_KEY_MAP", "MAKE_FUNCTION",
                  "SET_FUNCTION_ATTRIBUTE", "STORE_NAME", "RETURN_VALUE", "RETURN_CONST"}
_DEFAULTS_ONLY = 0x01 | 0x02      # MAKE_FUNCTION / SET_FUNCTION_ATTRIBUTE: defaults, kw-defaults


def is_stub_code(code: types.CodeType) -> bool:
    """True when the function body `code` does nothing but `raise NotImplementedError()` (or
    `raise NotImplementedError`): the release stub, whatever its docstring and comments."""
    ops = [(i.opname, i.arg) for i in dis.get_instructions(code)]
    return (code.co_names == ("NotImplementedError",) and ("RAISE_VARARGS", 1) in ops
            and all(op in _STUB_BODY_OPS and (op not in ("PRECALL", "CALL") or not arg)
                    for op, arg in ops)
            and not any(isinstance(c, types.CodeType) for c in code.co_consts))


def is_stub(fn) -> bool:
    """True for a function that is still nbgrader's release stub (`require_implemented`)."""
    code = getattr(fn, "__code__", None)
    return isinstance(code, types.CodeType) and is_stub_code(code)


def is_stub_cell(source: str, name: str) -> bool:
    """True when a cell is only the release stub of `name`: `def name(...)` with constant defaults,
    no decorators or annotations, and a body that only raises NotImplementedError. Compiled,
    never run (the autograder skips such a cell instead of running student code)."""
    try:
        module = compile(source, f"<cell {name}>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError):
        return False
    functions = [c for c in module.co_consts if isinstance(c, types.CodeType)]
    ops = list(dis.get_instructions(module))
    return (module.co_names == (name,) and len(functions) == 1 and functions[0].co_name == name
            and all(i.opname in _STUB_CELL_OPS for i in ops)
            and sum(i.opname == "STORE_NAME" for i in ops) == 1
            and all((i.arg or 0) & ~_DEFAULTS_ONLY == 0 for i in ops
                    if i.opname in ("MAKE_FUNCTION", "SET_FUNCTION_ATTRIBUTE"))
            and is_stub_code(functions[0]))


def require_implemented(*functions) -> None:
    """Stop an experiment cell early, with a short message, while a function it needs is a stub.

    `require_implemented(train_student, distillation_loss)` raises
    RuntimeError("implement train_student (Part D) first: this cell needs it").
    """
    for fn in functions:
        if is_stub(fn):
            name = getattr(fn, "__name__", repr(fn))
            raise RuntimeError(f"implement {name} ({PARTS.get(name, 'above')}) first: "
                               "this cell needs it")


class NotebookError(KDError, ValueError):
    """The file is not a readable notebook, or lacks a graded cell."""


def read_notebook(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise NotebookError(f"notebook {path} does not exist")
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise NotebookError(f"{path} is not a readable .ipynb (JSON error: {err}); re-download "
                            "the notebook from Jupyter with File > Download") from err
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise NotebookError(f"{path} has no list of cells: is it a Jupyter notebook?")
    return nb


def cell_source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def graded_cells(nb: dict | str | Path) -> dict[str, str]:
    """{grade_id: source} of every code cell with nbgrader metadata and a grade_id."""
    nb = read_notebook(nb) if isinstance(nb, (str, Path)) else nb
    cells = {}
    for cell in nb["cells"]:
        meta = (cell.get("metadata") or {}).get("nbgrader") or {}
        if cell.get("cell_type") == "code" and isinstance(meta, dict) and meta.get("grade_id"):
            cells[str(meta["grade_id"])] = cell_source(cell)
    return cells


def solution_sources(nb: dict | str | Path, names=GRADED_FUNCTIONS) -> dict[str, str]:
    """{name: source} of the graded function cells; NotebookError names any that is missing."""
    cells = graded_cells(nb)
    missing = [name for name in names if name not in cells]
    if missing:
        raise NotebookError(f"no cell with grade_id {missing}: were the graded cells deleted or "
                            "their metadata changed? Copy them back from the released notebook")
    return {name: cells[name] for name in names}


def load_graded_functions(nb: dict | str | Path, names=GRADED_FUNCTIONS,
                          module_name: str = "graded") -> types.ModuleType:
    """Execute PREAMBLE and the graded cells (in notebook order) in a new module; return it.

    Later cells see earlier ones (train_student may call distillation_loss), as in the notebook.
    """
    sources = solution_sources(nb, names)
    module = types.ModuleType(module_name)
    exec(compile(PREAMBLE, f"<{module_name}:preamble>", "exec"), module.__dict__)
    for name, source in sources.items():
        exec(compile(source, f"<{module_name}:{name}>", "exec"), module.__dict__)
        if not callable(module.__dict__.get(name)):
            raise NotebookError(f"cell {name!r} ran but defines no function {name}()")
    return module


def strip_outputs(path: str | Path) -> None:
    """Clear outputs and execution counts of every code cell, in place."""
    path = Path(path)
    nb = read_notebook(path)
    for cell in nb["cells"]:
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "strip-outputs":
        sys.exit("usage: python -m kdcourse.notebook strip-outputs NOTEBOOK...")
    for path in argv[1:]:
        strip_outputs(path)
        print(f"cleared outputs: {path}")


if __name__ == "__main__":
    main()
