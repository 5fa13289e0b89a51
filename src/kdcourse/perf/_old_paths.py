"""The module paths `kdcourse.perf`'s modules had before they moved, kept working for a while.

Each old module (`kdcourse/bench.py`, ...) is two lines that call `forward`: `python -m <old>` prints
one deprecation line on stderr and runs the new module's `main`; `import <old>` warns with a
DeprecationWarning and looks each name up in the new modules.
"""
from __future__ import annotations

import importlib
import sys
import warnings


def forward(namespace: dict, old: str, new: tuple[str, ...]) -> None:
    """Make the module whose globals are `namespace` (imported as `old`, or run as __main__) stand
    for the modules `new`: the first one holds `main`, and names are looked up in their order."""
    if namespace["__name__"] == "__main__":
        from kdcourse.errors import run_cli
        print(f"warning: `python -m {old}` is deprecated, use `python -m {new[0]}`", file=sys.stderr)
        run_cli(importlib.import_module(new[0]).main)
        return
    warnings.warn(f"{old} moved to {new[0]}: import it from there", DeprecationWarning, stacklevel=3)

    def __getattr__(name: str):
        for module in new:
            found = importlib.import_module(module)
            if hasattr(found, name):
                return getattr(found, name)
        raise AttributeError(f"module {old!r} has no attribute {name!r} (it moved to {new[0]})")
    namespace["__getattr__"] = __getattr__
