"""The project's own errors, and how an entry point reports them.

A `KDError` is a user's mistake (a wrong profile name, a temperature <= 0, a missing file) or a
refusal that protects data (a stale soft-label cache, a teacher that does not fit). Entry points
run their `main` through `run_cli`, which prints such an error as one line and exits with status
2, as argparse does for a bad option. Any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import os
import sys


class KDError(Exception):
    """An error whose message says what is wrong and what to do; no traceback needed."""


class UsageError(KDError, ValueError):
    """A wrong value, name or path given on the command line, in a profile or in a file."""


class UnknownProfileError(UsageError, KeyError):
    """No profile of that name (a KeyError too, for lookups that expect one)."""

    def __str__(self) -> str:        # KeyError's str() would quote the message
        return str(self.args[0]) if self.args else ""


def run_cli(main, *args) -> None:
    """Call `main(*args)`; a KDError becomes `<program>: error: <message>` and exit status 2."""
    try:
        main(*args)
    except KDError as err:
        program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "kdcourse"
        print(f"{program}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
